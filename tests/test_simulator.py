"""The simulated VOD API: its task model, and what it answers over real sockets.

Requests are signed with ``exporter.cloud.signing`` directly, so these tests hold whatever the exporter's
own auth does; ``test_simulator_sdk.py`` proves the official SDK accepts the simulator too.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Generator, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from click.testing import CliRunner

from exporter.cloud import signing
from exporter.config import ConfigError
from exporter.simulator import FaultSettings, IamUser, Simulator, World, WorldSettings
from exporter.simulator.command import build_simulator, simulate
from exporter.tasks import (
    CANCEL,
    FAILED,
    FINISHED_STATUSES,
    KNOWN_STATUSES,
    PROCESSING,
    SUCCEED,
    WAITING,
    InvalidTask,
    parse_task,
)
from tests.conftest import PROJECT, FakeClock

AK = "SIMULATORTESTAK00001"
SK = "simulator-test-secret-key"
START = 1_790_000_000.0  # 2026-09-21, a whole second
TASKS_PATH = f"/v1/{PROJECT}/asset/editing/tasks"
KEYS = {"HUAWEICLOUD_SDK_AK": AK, "HUAWEICLOUD_SDK_SK": SK}
REQUEST_ID = re.compile(r"[0-9a-f]{32}")


class Signed(httpx.Auth):
    """AK/SK signing over exactly Host and X-Sdk-Date, dated by ``clock`` (plus ``skew``)."""

    def __init__(self, ak: str = AK, sk: str = SK, *, clock: FakeClock | None = None, skew: float = 0.0):
        self.ak, self.sk, self.clock, self.skew = ak, sk, clock, skew

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        now = (self.clock() if self.clock else time.time()) + self.skew
        date = signing.format_sdk_date(datetime.fromtimestamp(now, timezone.utc))
        request.headers["X-Sdk-Date"] = date
        path, _, query = request.url.raw_path.decode().partition("?")
        request.headers["Authorization"] = signing.authorization(
            self.ak,
            self.sk,
            request.method,
            path,
            parse_qsl(query, keep_blank_values=True),
            {"Host": request.headers["Host"], "X-Sdk-Date": date},
            request.content,
        )
        yield request


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def sim(clock: FakeClock) -> Iterator[Simulator]:
    simulator = Simulator(
        project_id=PROJECT,
        world_settings=WorldSettings(tasks=237, seed=7),
        access_key=AK,
        secret_key=SK,
        iam_users=[IamUser("monitor", "correct horse", "acme")],
        token_lifetime=3600,
        clock=clock,
    )
    with simulator:
        yield simulator


@pytest.fixture
def client(sim: Simulator, clock: FakeClock) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, auth=Signed(clock=clock), timeout=10) as c:
        yield c


def list_page(client: httpx.Client, **params: Any) -> dict[str, Any]:
    response = client.get(TASKS_PATH, params=params)
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


def list_all(client: httpx.Client, limit: int = 100) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    total = None
    while total is None or len(records) < total:
        page = list_page(client, offset=len(records), limit=limit)
        total = page["total"]
        if not page["tasks"]:
            break
        records.extend(page["tasks"])
    return records


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    document: dict[str, Any] = response.json()
    assert document["error_code"] == code
    assert document["error_msg"]
    assert document["request_id"] == response.headers["X-Request-Id"]
    return document


# --- the task model, without sockets -------------------------------------------------------------


def test_same_seed_same_world_and_another_seed_another() -> None:
    settings = WorldSettings(tasks=300, seed=11, arrival_rate=0.5)
    first, second = World(settings, start=START), World(settings, start=START)
    other = World(WorldSettings(tasks=300, seed=12, arrival_rate=0.5), start=START)
    for at in (START, START + 600, START + 7200):
        assert first.tasks(at) == second.tasks(at)
        assert first.tasks(at) != other.tasks(at)


def test_start_population_is_mostly_finished_with_some_open() -> None:
    world = World(WorldSettings(tasks=1000, seed=3), start=START)
    counts = world.counts(START)
    assert sum(counts.values()) == world.total(START) == 1000
    assert counts[SUCCEED] > 700
    assert all(counts[status] > 0 for status in (WAITING, PROCESSING, FAILED, CANCEL))
    assert counts[WAITING] + counts[PROCESSING] < 150


def test_status_shares_follow_the_settings() -> None:
    world = World(
        WorldSettings(tasks=2000, seed=5, succeed_share=0, failed_share=1, cancel_share=1), start=START
    )
    counts = world.counts(START + 10 * 86400)  # everything has ended by then
    assert counts[SUCCEED] == counts[WAITING] == counts[PROCESSING] == 0
    assert 800 < counts[FAILED] < 1200
    assert counts[FAILED] + counts[CANCEL] == 2000


def test_each_task_waits_then_processes_then_ends_once() -> None:
    world = World(WorldSettings(tasks=200, seed=9, history=600), start=START)
    order = {WAITING: 0, PROCESSING: 1, SUCCEED: 2, FAILED: 2, CANCEL: 2}
    previous = {task.task_id: task for task in world.tasks(START)}
    for step in range(1, 40):
        at = START + step * 30
        for task in world.tasks(at):
            before = previous[task.task_id]
            assert order[task.status] >= order[before.status]
            if before.status == PROCESSING and task.status == PROCESSING:
                assert task.progress >= before.progress
            if before.status in FINISHED_STATUSES:
                assert task == before  # a finished task never changes again
            previous[task.task_id] = task
    for task in previous.values():
        assert 0 <= task.progress <= 100
        assert (task.ended is not None) == (task.status in FINISHED_STATUSES)
        if task.status == SUCCEED:
            assert task.progress == 100
        if task.ended is not None:
            assert task.ended >= task.created


def test_finished_between_lists_exactly_the_tasks_that_ended_in_the_interval() -> None:
    world = World(WorldSettings(tasks=400, seed=2, arrival_rate=0.2), start=START)
    before, after = START + 60, START + 300
    open_then = {t.task_id for t in world.tasks(before) if t.status not in FINISHED_STATUSES}
    ended_now = {t.task_id for t in world.tasks(after) if t.status in FINISHED_STATUSES}
    finished = world.finished_between(before, after)
    assert finished
    assert {t.task_id for t in finished} == {
        t.task_id for t in world.tasks(after) if t.ended is not None and before < t.ended <= after
    }
    assert {t.task_id for t in finished} <= ended_now
    assert {t.task_id for t in finished} >= open_then & ended_now
    assert all(before < (t.ended or 0) <= after for t in finished)


def test_arrivals_come_at_the_configured_rate_and_list_first() -> None:
    world = World(WorldSettings(tasks=50, seed=4, arrival_rate=2.0), start=START)
    assert world.total(START) == 50
    assert 150 < world.total(START + 100) - 50 < 250
    newest = world.tasks(START + 100)[0]
    assert newest.created > START
    created = [t.created for t in world.tasks(START + 100)]
    assert created == sorted(created, reverse=True)


def test_frozen_world_stands_still(clock: FakeClock) -> None:
    world = World(WorldSettings(tasks=100, seed=1, arrival_rate=5, frozen=True), start=START, clock=clock)
    first = world.tasks()
    clock.sleep(3600)
    assert world.now() == START
    assert world.tasks() == first


def test_every_record_parses_to_the_ground_truth() -> None:
    world = World(WorldSettings(tasks=300, seed=6, arrival_rate=1), start=START)
    for at in (START, START + 45.5, START + 1000):
        total, tasks = world.page(0, 10**6, at)
        assert total == len(tasks)
        for scheduled in tasks:
            raw = json.loads(scheduled.record(at))
            assert list(raw)[:5] == ["task_id", "asset_id", "status", "progress", "create_time"]
            assert ("end_time" in raw) == (raw["status"] in FINISHED_STATUSES)
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", raw["create_time"])
            assert parse_task(raw) == scheduled.as_task(at)


def test_added_task_is_newest_and_counts() -> None:
    world = World(WorldSettings(tasks=20, seed=8), start=START)
    added = world.add_task(START + 5)
    assert world.total(START + 5) == 21
    assert world.tasks(START + 5)[0].task_id == added.task_id
    assert world.tasks(START + 5)[0].created == START + 5


@pytest.mark.parametrize(
    "settings",
    [
        {"tasks": -1},
        {"arrival_rate": -0.1},
        {"succeed_share": 0, "failed_share": 0, "cancel_share": 0},
        {"duration_median": 0},
        {"failed_share": -1},
    ],
)
def test_impossible_world_settings_are_refused(settings: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        WorldSettings(**settings)


@pytest.mark.parametrize(
    "settings",
    [{"error_rate": 1.5}, {"reset_rate": -0.1}, {"latency": -1}, {"rate_limit": -2}, {"drift": -1}],
)
def test_impossible_fault_settings_are_refused(settings: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        FaultSettings(**settings)


# --- listing over HTTP -----------------------------------------------------------------------------


def test_default_page_is_the_ten_newest_tasks(sim: Simulator, client: httpx.Client) -> None:
    page = list_page(client)
    assert page["total"] == 237
    truth = sim.world.tasks()
    assert [parse_task(r) for r in page["tasks"]] == truth[:10]


def test_offset_and_limit_page_through_every_task_once(sim: Simulator, client: httpx.Client) -> None:
    records = list_all(client, limit=50)
    assert [parse_task(r) for r in records] == sim.world.tasks()
    assert len({r["task_id"] for r in records}) == 237
    last = list_page(client, offset=230, limit=50)
    assert (last["total"], len(last["tasks"])) == (237, 7)
    beyond = list_page(client, offset=237, limit=100)
    assert beyond == {"total": 237, "tasks": []}
    assert sim.requests.count("tasks", 200) == 7


def test_listing_matches_ground_truth_counts_as_time_passes(
    sim: Simulator, client: httpx.Client, clock: FakeClock
) -> None:
    for _ in range(3):
        records = [parse_task(r) for r in list_all(client)]
        counted = Counter(task.status for task in records)
        assert {s: counted.get(s, 0) for s in KNOWN_STATUSES} == sim.world.counts()
        assert len(records) == sim.world.total()
        clock.sleep(97)


def test_task_id_selects_one_task(sim: Simulator, client: httpx.Client) -> None:
    wanted = sim.world.tasks()[42]
    page = list_page(client, task_id=wanted.task_id)
    assert page["total"] == 1
    assert [parse_task(r) for r in page["tasks"]] == [wanted]
    assert list_page(client, task_id="0" * 32) == {"total": 0, "tasks": []}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "1000"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "1.5"}, "limit"),
        ({"limit": ""}, "limit"),
        ({"offset": "-1"}, "offset"),
        ({"offset": "x"}, "offset"),
        ({"offset": "2.0"}, "offset"),
    ],
)
def test_bad_parameters_are_400_vod_10053(client: httpx.Client, params: dict[str, str], field: str) -> None:
    document = assert_error(client.get(TASKS_PATH, params=params), 400, "VOD.10053")
    assert f"{{{field}}}" in document["error_msg"]


def test_limit_100_is_the_maximum_allowed(client: httpx.Client) -> None:
    assert len(list_page(client, limit=100)["tasks"]) == 100


def test_unknown_path_and_method_are_404(sim: Simulator, client: httpx.Client) -> None:
    assert_error(client.get(f"/v1/{PROJECT}/asset/editing/task"), 404, "APIGW.0101")
    assert_error(client.post(TASKS_PATH, json={}), 404, "APIGW.0101")
    assert_error(client.get("/"), 404, "APIGW.0101")
    assert sim.requests.count("other", 404) == 2


def test_another_project_is_403(client: httpx.Client) -> None:
    document = assert_error(
        client.get("/v1/fedcba9876543210fedcba9876543210/asset/editing/tasks"), 403, "APIGW.0302"
    )
    assert "not authorized" in document["error_msg"]


def test_every_answer_carries_a_request_id(sim: Simulator, client: httpx.Client) -> None:
    answers = [
        client.get(TASKS_PATH),
        client.get(TASKS_PATH, params={"limit": 0}),
        client.get("/nowhere"),
        httpx.get(sim.url + TASKS_PATH),
        httpx.post(sim.url + "/v3/auth/tokens", content=b"{}"),
        httpx.post(sim.url + "/v3/auth/tokens", json=token_request("monitor", "correct horse")),
    ]
    ids = [answer.headers["X-Request-Id"] for answer in answers]
    assert all(REQUEST_ID.fullmatch(i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_a_malformed_request_gets_a_json_answer_with_request_id(sim: Simulator) -> None:
    host, port = sim.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        raw.sendall(b"NONSENSE\r\n\r\n")
        answer = raw.makefile("rb").read()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert re.search(rb"X-Request-Id: [0-9a-f]{32}", head)
    assert json.loads(body)["error_code"] == "APIGW.0201"


def test_keep_alive_serves_many_requests_on_one_connection(sim: Simulator, clock: FakeClock) -> None:
    host = sim.url.removeprefix("http://")
    connection = http.client.HTTPConnection(host, timeout=5)
    sockets = []
    for _ in range(5):
        request = httpx.Request("GET", sim.url + TASKS_PATH)
        for signed in Signed(clock=clock).auth_flow(request):
            request = signed
        connection.request("GET", TASKS_PATH, headers=dict(request.headers))
        answer = connection.getresponse()
        assert answer.status == 200 and json.loads(answer.read())["total"] == 237
        sockets.append(connection.sock)
    connection.close()
    assert all(s is sockets[0] for s in sockets)


# --- authentication --------------------------------------------------------------------------------


def test_missing_credentials_are_401(sim: Simulator) -> None:
    document = assert_error(httpx.get(sim.url + TASKS_PATH), 401, "APIGW.0301")
    assert "x-auth-token not found" in document["error_msg"]


def test_wrong_secret_key_is_401(sim: Simulator, clock: FakeClock) -> None:
    response = httpx.get(sim.url + TASKS_PATH, auth=Signed(sk="not-the-secret", clock=clock))
    assert "verify aksk signature fail" in assert_error(response, 401, "APIGW.0301")["error_msg"]
    assert sim.requests.count("tasks", 401) == 1


def test_unknown_access_key_is_401(sim: Simulator, clock: FakeClock) -> None:
    response = httpx.get(sim.url + TASKS_PATH, auth=Signed(ak="UNKNOWNAK", clock=clock))
    assert "ak not exist" in assert_error(response, 401, "APIGW.0301")["error_msg"]


def test_a_query_changed_after_signing_is_401(sim: Simulator, clock: FakeClock) -> None:
    signed = httpx.Request("GET", sim.url + TASKS_PATH, params={"limit": 10})
    for step in Signed(clock=clock).auth_flow(signed):
        signed = step
    tampered = httpx.get(
        sim.url + TASKS_PATH,
        params={"limit": 20},
        headers={k: signed.headers[k] for k in ("X-Sdk-Date", "Authorization")},
    )
    assert_error(tampered, 401, "APIGW.0301")


def test_host_and_date_must_be_signed(sim: Simulator, clock: FakeClock) -> None:
    date = signing.format_sdk_date(datetime.fromtimestamp(clock(), timezone.utc))
    only_date = signing.canonical_request("GET", TASKS_PATH, [], {"X-Sdk-Date": date})[0]
    authorization = (
        f"SDK-HMAC-SHA256 Access={AK}, SignedHeaders=x-sdk-date, "
        f"Signature={signing.signature(SK, date, only_date)}"
    )
    response = httpx.get(sim.url + TASKS_PATH, headers={"X-Sdk-Date": date, "Authorization": authorization})
    assert "host" in assert_error(response, 401, "APIGW.0301")["error_msg"]


@pytest.mark.parametrize("skew", [16 * 60, -16 * 60])
def test_a_date_more_than_15_minutes_off_is_401(sim: Simulator, clock: FakeClock, skew: float) -> None:
    response = httpx.get(sim.url + TASKS_PATH, auth=Signed(clock=clock, skew=skew))
    assert "signature expired" in assert_error(response, 401, "APIGW.0301")["error_msg"]


def test_a_date_14_minutes_off_is_accepted(sim: Simulator, clock: FakeClock) -> None:
    assert httpx.get(sim.url + TASKS_PATH, auth=Signed(clock=clock, skew=-14 * 60)).status_code == 200


def test_five_failures_in_a_row_lock_the_key_for_five_minutes(sim: Simulator, clock: FakeClock) -> None:
    with httpx.Client(base_url=sim.url) as c:
        for _ in range(5):
            assert c.get(TASKS_PATH, auth=Signed(sk="wrong", clock=clock)).status_code == 401
        locked = c.get(TASKS_PATH, auth=Signed(clock=clock))
        assert "reach the limit" in assert_error(locked, 401, "APIGW.0301")["error_msg"]
        clock.sleep(301)
        assert c.get(TASKS_PATH, auth=Signed(clock=clock)).status_code == 200


def token_request(user: str, password: str, domain: str = "acme", project: str = PROJECT) -> dict[str, Any]:
    return {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": user, "password": password, "domain": {"name": domain}}},
            },
            "scope": {"project": {"id": project}},
        }
    }


def test_iam_issues_a_token_that_lists_tasks(sim: Simulator, clock: FakeClock) -> None:
    answer = httpx.post(sim.url + "/v3/auth/tokens", json=token_request("monitor", "correct horse"))
    assert answer.status_code == 201
    token = answer.headers["X-Subject-Token"]
    document = answer.json()["token"]
    assert document["expires_at"] == datetime.fromtimestamp(START + 3600, timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.000000Z"
    )
    assert document["project"]["id"] == PROJECT
    listing = httpx.get(sim.url + TASKS_PATH, headers={"X-Auth-Token": token})
    assert listing.status_code == 200
    assert listing.json()["total"] == 237


def test_an_expired_token_is_401_apigw_0307(sim: Simulator, clock: FakeClock) -> None:
    token = httpx.post(sim.url + "/v3/auth/tokens", json=token_request("monitor", "correct horse")).headers[
        "X-Subject-Token"
    ]
    clock.sleep(3600)
    expired = httpx.get(sim.url + TASKS_PATH, headers={"X-Auth-Token": token})
    assert_error(expired, 401, "APIGW.0307")


def test_an_unknown_token_is_401_apigw_0301(sim: Simulator) -> None:
    response = httpx.get(sim.url + TASKS_PATH, headers={"X-Auth-Token": "MIIforged"})
    assert "decrypt token fail" in assert_error(response, 401, "APIGW.0301")["error_msg"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (token_request("monitor", "wrong"), 401),
        (token_request("nobody", "correct horse"), 401),
        (token_request("monitor", "correct horse", domain="other"), 401),
        (token_request("monitor", "correct horse", project="another"), 401),
        ({"auth": {"identity": {"methods": ["password"]}}}, 400),
    ],
)
def test_iam_refuses_wrong_credentials_in_keystone_style(
    sim: Simulator, body: dict[str, Any], status: int
) -> None:
    answer = httpx.post(sim.url + "/v3/auth/tokens", json=body)
    assert answer.status_code == status
    assert "X-Subject-Token" not in answer.headers
    assert answer.json()["error"]["code"] == status
    assert sim.requests.count("tokens", status) == 1


def test_the_exporters_own_signer_is_accepted(sim: Simulator, clock: FakeClock) -> None:
    from exporter.cloud.auth import AkSkAuth

    auth = AkSkAuth(AK, SK, project_id=PROJECT, clock=clock)
    with httpx.Client(base_url=sim.url, auth=auth) as c:
        assert c.get(TASKS_PATH, params={"limit": 100}).json()["total"] == 237
        # Characters that encode differently in a URL and in the canonical query still verify.
        odd = c.get(TASKS_PATH, params={"task_id": "a b+c/é~*", "offset": 0})
        assert odd.status_code == 200 and odd.json() == {"total": 0, "tasks": []}


def test_the_exporters_iam_token_auth_renews_an_expired_token_once(sim: Simulator, clock: FakeClock) -> None:
    from exporter.cloud.auth import IamTokenAuth

    with httpx.Client(base_url=sim.url) as c:
        auth = IamTokenAuth(
            iam_endpoint=sim.url,
            username="monitor",
            password="correct horse",
            domain="acme",
            project_id=PROJECT,
            http=c,
            clock=lambda: START,  # believes the token is fresh, so only the 401 makes it renew
        )
        assert c.get(TASKS_PATH, auth=auth).status_code == 200
        clock.sleep(3600)
        assert c.get(TASKS_PATH, auth=auth).status_code == 200
    assert sim.requests.count("tokens", 201) == 2
    assert sim.requests.count("tasks", 401) == 1


# --- faults ----------------------------------------------------------------------------------------


def test_rate_limit_answers_429_without_retry_after(
    sim: Simulator, client: httpx.Client, clock: FakeClock
) -> None:
    sim.faults = FaultSettings(rate_limit=3)
    statuses = [client.get(TASKS_PATH).status_code for _ in range(3)]
    throttled = client.get(TASKS_PATH)
    assert statuses == [200, 200, 200]
    assert "throttling threshold" in assert_error(throttled, 429, "APIGW.0308")["error_msg"]
    assert "Retry-After" not in throttled.headers
    clock.sleep(1)
    assert client.get(TASKS_PATH).status_code == 200


def test_error_rate_answers_500_and_503_in_its_share(sim: Simulator, client: httpx.Client) -> None:
    sim.faults = FaultSettings(error_rate=0.5)
    answers = [client.get(TASKS_PATH) for _ in range(200)]
    codes = Counter((a.status_code, a.json().get("error_code")) for a in answers)
    assert set(codes) == {(200, None), (500, "APIGW.0601"), (503, "APIGW.0613")}
    assert 70 < codes[(200, None)] < 130
    assert codes[(500, "APIGW.0601")] > 30 and codes[(503, "APIGW.0613")] > 30


def test_faults_can_be_changed_between_requests(sim: Simulator, client: httpx.Client) -> None:
    sim.faults = FaultSettings(error_rate=1.0)
    assert client.get(TASKS_PATH).status_code >= 500
    sim.faults = FaultSettings()
    assert client.get(TASKS_PATH).status_code == 200


def test_reset_rate_resets_the_connection(sim: Simulator) -> None:
    sim.faults = FaultSettings(reset_rate=1.0)
    host, port = sim.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        raw.sendall(f"GET {TASKS_PATH} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        with pytest.raises(ConnectionResetError):
            raw.recv(1024)
    with pytest.raises(httpx.TransportError):
        httpx.get(sim.url + TASKS_PATH)
    assert sim.requests.count("tasks", "reset") == 2


def test_malformed_bodies_are_not_a_listing(sim: Simulator, client: httpx.Client) -> None:
    sim.faults = FaultSettings(malformed_body_rate=1.0)
    kinds = set()
    for _ in range(30):
        answer = client.get(TASKS_PATH)
        assert answer.status_code == 200
        try:
            document = json.loads(answer.content)
        except ValueError:
            kinds.add("html" if answer.content.startswith(b"<html>") else "truncated")
            continue
        assert not isinstance(document.get("tasks"), list) or not isinstance(document.get("total"), int)
        kinds.add("wrong shape")
    assert kinds == {"html", "truncated", "wrong shape"}


def test_malformed_records_fail_validation_the_rest_are_true(sim: Simulator, client: httpx.Client) -> None:
    sim.faults = FaultSettings(malformed_record_rate=0.3)
    records = list_all(client)
    truth = {task.task_id: task for task in sim.world.tasks()}
    bad = 0
    for raw in records:
        try:
            task = parse_task(raw)
        except InvalidTask:
            bad += 1
            continue
        assert task == truth[task.task_id]
    assert len(records) == 237
    assert 40 < bad < 110


def test_every_record_malformed(sim: Simulator, client: httpx.Client) -> None:
    sim.faults = FaultSettings(malformed_record_rate=1.0)
    page = list_page(client, limit=100)
    assert page["total"] == 237
    for raw in page["tasks"]:
        with pytest.raises(InvalidTask):
            parse_task(raw)


def test_drift_shifts_the_next_page_by_the_tasks_created(sim: Simulator, client: httpx.Client) -> None:
    sim.faults = FaultSettings(drift=1)
    first = list_page(client, offset=0, limit=10)
    second = list_page(client, offset=10, limit=10)
    assert (first["total"], second["total"]) == (237, 238)
    assert second["tasks"][0] == first["tasks"][-1]  # everything moved down one place
    assert sim.world.total() == 239


def test_latency_delays_answers_without_holding_up_other_clients(sim: Simulator, clock: FakeClock) -> None:
    sim.faults = FaultSettings(latency=0.4)
    durations: list[float] = []

    def one() -> None:
        started = time.monotonic()
        assert httpx.get(sim.url + TASKS_PATH, auth=Signed(clock=clock)).status_code == 200
        durations.append(time.monotonic() - started)

    started = time.monotonic()
    threads = [threading.Thread(target=one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(durations) == 4 and min(durations) >= 0.4
    assert time.monotonic() - started < 1.2  # one after the other would take 1.6 s


def test_frozen_listings_are_identical(clock: FakeClock) -> None:
    settings = WorldSettings(tasks=150, seed=3, arrival_rate=1.0, frozen=True)
    with (
        Simulator(
            project_id=PROJECT, world_settings=settings, access_key=AK, secret_key=SK, clock=clock
        ) as sim,
        httpx.Client(base_url=sim.url, auth=Signed(clock=clock)) as c,
    ):
        first = c.get(TASKS_PATH, params={"limit": 100}).content
        clock.sleep(600)
        assert c.get(TASKS_PATH, params={"limit": 100}).content == first


def test_stop_closes_kept_alive_connections_and_the_port(clock: FakeClock) -> None:
    sim = Simulator(project_id=PROJECT, access_key=AK, secret_key=SK, clock=clock)
    sim.start()
    url = sim.url
    with httpx.Client(base_url=url, auth=Signed(clock=clock)) as c:
        assert c.get(TASKS_PATH).status_code == 200
        sim.stop()
        with pytest.raises(httpx.TransportError):
            c.get(TASKS_PATH)


# --- the simulate command --------------------------------------------------------------------------


def options(**overrides: Any) -> dict[str, Any]:
    """What click hands to ``simulate`` for ``--project-id`` alone (defaults elsewhere)."""
    context = simulate.make_context("simulate", ["--project-id", PROJECT])
    return {**context.params, **overrides}


def test_build_simulator_takes_secrets_from_the_environment() -> None:
    env = {"HUAWEICLOUD_SDK_AK": AK, "HUAWEICLOUD_SDK_SK": SK, "VOD_SIMULATOR_IAM_PASSWORD": "pw"}
    sim = build_simulator(options(iam_user="ops", tasks=12, error_rate=0.25, frozen=True), env)
    assert sim.world.total() == 12
    assert sim.faults == FaultSettings(error_rate=0.25)
    assert sim.world.settings.frozen
    token = sim.identity.issue_token(json.dumps(token_request("ops", "pw", domain="ops")).encode())
    assert token.token


@pytest.mark.parametrize(
    ("env", "overrides", "message"),
    [
        ({}, {}, "no credentials"),
        ({"HUAWEICLOUD_SDK_AK": AK}, {}, "HUAWEICLOUD_SDK_SK"),
        (
            {"HUAWEICLOUD_SDK_AK": AK, "HUAWEICLOUD_SDK_SK": SK},
            {"iam_user": "ops"},
            "VOD_SIMULATOR_IAM_PASSWORD",
        ),
        ({"HUAWEICLOUD_SDK_AK": AK, "HUAWEICLOUD_SDK_SK": SK}, {"listen_address": "nowhere"}, "host:port"),
        ({"HUAWEICLOUD_SDK_AK": AK, "HUAWEICLOUD_SDK_SK": SK}, {"project_id": "a/b"}, "--project-id"),
    ],
)
def test_build_simulator_refuses_bad_configuration(
    env: dict[str, str], overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        build_simulator(options(**overrides), env)


@pytest.mark.parametrize(
    "args",
    [
        ["--error-rate", "1.5"],
        ["--latency", "5 parsecs"],
        ["--drift", "-1"],
        ["--tasks", "many"],
    ],
)
def test_simulate_refuses_bad_options_with_exit_2(args: list[str]) -> None:
    result = CliRunner().invoke(simulate, ["--project-id", PROJECT, *args], env=KEYS)
    assert result.exit_code == 2
    assert args[0] in result.output


def test_options_come_from_vod_simulator_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOD_SIMULATOR_PROJECT_ID", PROJECT)
    monkeypatch.setenv("VOD_SIMULATOR_DRIFT", "3")
    monkeypatch.setenv("VOD_SIMULATOR_WEB_LISTEN_ADDRESS", ":1")
    monkeypatch.setenv("VOD_SIMULATOR_LATENCY", "250ms")
    params = simulate.make_context("simulate", []).params
    assert (params["project_id"], params["drift"], params["listen_address"]) == (PROJECT, 3, ":1")
    assert params["latency"] == 0.25


def test_simulate_serves_until_sigterm_then_exits_0() -> None:
    root = Path(__file__).resolve().parent.parent
    env = {
        **os.environ,
        "PYTHONPATH": str(root),
        "HUAWEICLOUD_SDK_AK": AK,
        "HUAWEICLOUD_SDK_SK": SK,
        "VOD_SIMULATOR_TASKS": "30",
    }
    command = [sys.executable, "-m", "exporter.simulator.command", "--project-id", PROJECT]
    process = subprocess.Popen(
        [*command, "--web.listen-address", "127.0.0.1:0"], env=env, stderr=subprocess.PIPE, text=True
    )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stderr is not None
    reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stderr or ()], daemon=True)
    reader.start()
    try:
        url = None
        deadline = time.monotonic() + 30
        while url is None and time.monotonic() < deadline:
            try:
                found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", lines.get(timeout=0.5))
            except queue.Empty:
                assert process.poll() is None, "the simulator exited early"
                continue
            url = found.group(1) if found else None
        assert url, "the simulator did not log its URL"
        answer = httpx.get(url + TASKS_PATH, auth=Signed())
        assert answer.status_code == 200 and answer.json()["total"] == 30
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    reader.join(timeout=5)
    rest = []
    while not lines.empty():
        rest.append(lines.get())
    assert any("stopped" in line for line in rest)
