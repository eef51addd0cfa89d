"""The simulated VOD API: its task model, and what it answers over real sockets.

Requests are signed with ``exporter.cloud.signing`` directly, so these tests hold whatever the exporter's
own auth does; ``test_simulator_sdk.py`` proves the official SDK accepts the simulator too.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Generator, Iterator
from dataclasses import replace
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
from exporter.simulator.command import build_simulator, simulate, world_settings
from exporter.simulator.platform import PlatformSettings
from exporter.simulator.world import NEWEST_FIRST, OLDEST_FIRST, ORDERS, SHUFFLED, UNORDERED
from exporter.tasks import (
    CANCEL,
    FAILED,
    FINISHED_STATUSES,
    KNOWN_STATUSES,
    PROCESSING,
    SUCCEED,
    WAITING,
    InvalidTask,
    Task,
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


# --- orders, ids, bursts, stuck, purged and deleted tasks ----------------------------------------


def brute_counts(tasks: list[Task]) -> dict[str, int]:
    counted = Counter(task.status for task in tasks)
    return {status: counted.get(status, 0) for status in KNOWN_STATUSES}


def test_newest_first_breaks_create_time_ties_by_latest_created_first() -> None:
    world = World(WorldSettings(tasks=3000, seed=4, burst_size=6, history=3600), start=START)
    records = world.records(START)
    keys = [(task.created, task.serial) for task in records]
    assert keys == sorted(keys, reverse=True) and len(set(keys)) == 3000
    seconds = Counter(task.created for task in records)
    assert max(seconds.values()) >= 6  # bursts share a second, so ties are common


def test_oldest_first_is_the_exact_reverse_of_newest_first() -> None:
    settings = WorldSettings(tasks=800, seed=5, burst_size=4, arrival_rate=2)
    newest = World(settings, start=START).tasks(START + 300)
    oldest = World(replace(settings, order=OLDEST_FIRST), start=START).tasks(START + 300)
    assert oldest == newest[::-1]


def test_unordered_is_stable_by_task_id_group_and_not_by_create_time() -> None:
    world = World(WorldSettings(tasks=2000, seed=6, order=UNORDERED, arrival_rate=1), start=START)
    records = world.records(START)
    created = [task.created for task in records]
    assert created != sorted(created) and created != sorted(created, reverse=True)
    groups = [task.task_id[:2] for task in records]
    assert groups == sorted(groups)  # grouped by the id's first two hex digits, 00 to ff
    for group in set(groups):
        members = [task.serial for task in records if task.task_id[:2] == group]
        assert members == sorted(members)  # oldest first within a group
    assert [t.task_id for t in world.records(START)] == [t.task_id for t in records]  # stable
    # New tasks land all through the listing, not at one end.
    later = [task.task_id for task in world.records(START + 200)]
    new = {task.task_id for task in world.records(START + 200)} - {task.task_id for task in records}
    places = sorted(later.index(task_id) for task_id in new)
    assert len(new) > 100 and places[0] < len(later) // 4 and places[-1] > 3 * len(later) // 4


def test_the_order_can_change_mid_run() -> None:
    world = World(WorldSettings(tasks=500, seed=7), start=START)
    newest = world.tasks(START)
    world.set_order(OLDEST_FIRST)
    assert world.order == OLDEST_FIRST and world.tasks(START) == newest[::-1]
    world.set_order(UNORDERED)
    shuffled = world.tasks(START)
    assert sorted(shuffled, key=lambda t: t.task_id) == sorted(newest, key=lambda t: t.task_id)
    assert shuffled not in (newest, newest[::-1])
    with pytest.raises(ConfigError, match="--order"):
        world.set_order("sideways")


@pytest.mark.parametrize("order", ORDERS)
def test_pages_and_positions_agree_with_the_whole_listing(order: str) -> None:
    world = World(WorldSettings(tasks=1234, seed=8, order=order, arrival_rate=1), start=START)
    at = START + 100
    everything = world.records(at)
    before = len(everything)
    world.delete_task(everything[5].task_id, at)
    world.delete_task(everything[700].task_id, at)
    everything = world.records(at)
    assert len(everything) == world.total(at) == before - 2
    for offset in (0, 1, 99, 617, len(everything) - 100, len(everything) - 1):
        total, page = world.page(offset, 100, at)
        assert total == len(everything)
        assert [t.task_id for t in page] == [t.task_id for t in everything[offset : offset + 100]]
    for index in (0, 5, 6, 699, 700, len(everything) - 1):
        assert world.position(everything[index].task_id, at) == index


def tied_world(order: str, **settings: Any) -> World:
    """Bursts of six tasks a second on average, so most pages start and end inside a tie."""
    chosen = {"tasks": 1500, "seed": 21, "burst_size": 6.0, "arrival_rate": 3.0, "order": order, **settings}
    return World(WorldSettings(**chosen), start=START)


def seconds_and_ids(tasks: list[Any]) -> tuple[list[int], list[str]]:
    return [task.created for task in tasks], [task.task_id for task in tasks]


@pytest.mark.parametrize("order", [NEWEST_FIRST, OLDEST_FIRST])
def test_shuffled_ties_keep_the_tasks_and_the_seconds_in_order(order: str) -> None:
    stable, shuffled = tied_world(order), tied_world(order, tie_order=SHUFFLED)
    at = START + 200
    gone = stable.records(at)[40].task_id
    for world in (stable, shuffled):
        world.delete_task(gone, at)
    expected = stable.records(at)
    assert shuffled.tasks(at) == stable.tasks(at)  # same tasks; the ground truth keeps the stable order
    whole = shuffled.page(0, 10_000, at)[1]
    assert sorted(task.task_id for task in whole) == sorted(task.task_id for task in expected)
    assert seconds_and_ids(whole)[0] == seconds_and_ids(expected)[0]  # seconds in order, ties as many
    assert seconds_and_ids(whole)[1] != seconds_and_ids(expected)[1]
    for offset in (0, 37, 500, len(expected) - 60):
        total, page = shuffled.page(offset, 100, at)
        assert total == len(expected)
        assert [task.created for task in page] == [task.created for task in expected[offset : offset + 100]]


@pytest.mark.parametrize("order", [NEWEST_FIRST, OLDEST_FIRST])
def test_shuffled_ties_change_order_from_one_answer_to_the_next(order: str) -> None:
    world = tied_world(order, tie_order=SHUFFLED)
    answers = [seconds_and_ids(world.page(0, 10_000, START)[1]) for _ in range(3)]
    assert answers[0][0] == answers[1][0] == answers[2][0]
    assert len({tuple(ids) for _, ids in answers}) == 3
    # Pages of one listing each draw their own order, so a tie cut by a page boundary can show a
    # task on both pages and another on neither: what a client of such an API has to live with.
    seen = [task.task_id for offset in range(0, 1500, 100) for task in world.page(offset, 100, START)[1]]
    assert len(seen) == 1500 and len(set(seen)) < 1500


def test_shuffling_ties_touches_only_the_seconds_a_page_overlaps(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = WorldSettings(tasks=200_000, seed=22, burst_size=4.0, history=30 * 86400, tie_order=SHUFFLED)
    world = World(settings, start=START)
    shuffled: list[int] = []
    shuffle = random.Random.shuffle

    def counted(rng: random.Random, members: list[Any]) -> None:
        shuffled.append(len(members))
        shuffle(rng, members)

    monkeypatch.setattr(random.Random, "shuffle", counted)
    total, page = world.page(123_456, 100, START)
    assert (total, len(page)) == (200_000, 100)
    assert len(set(task.created for task in page)) == len(shuffled) > 10  # one shuffle per second
    assert 100 <= sum(shuffled) < 100 + 2 * 100  # the page, and the rest of its two end seconds


def test_shuffled_ties_are_repeatable_and_stable_ties_never_move() -> None:
    first, second = tied_world(NEWEST_FIRST, tie_order=SHUFFLED), tied_world(NEWEST_FIRST, tie_order=SHUFFLED)
    for offset in (0, 100, 0, 1400):
        assert seconds_and_ids(first.page(offset, 100, START)[1]) == seconds_and_ids(
            second.page(offset, 100, START)[1]
        )
    stable = tied_world(NEWEST_FIRST)
    listing = [task.task_id for task in stable.records(START)]
    for offset in (0, 100, 0, 1400):
        assert [task.task_id for task in stable.page(offset, 100, START)[1]] == listing[offset : offset + 100]


def test_task_ids_decode_to_their_task_and_nothing_else() -> None:
    world = World(WorldSettings(tasks=2000, seed=9, arrival_rate=1), start=START)
    at = START + 50
    for task in world.records(at):
        found = world.find(task.task_id, at)
        assert found is not None and found.as_task(at) == task.as_task(at)
    some = world.records(at)[17].task_id
    strangers = ["0" * 32, some.upper(), some[:31], some + "0", "0x" + some[2:], "+" + some[1:], "", "ü" * 32]
    assert all(world.find(task_id, at) is None for task_id in strangers)
    newest = world.records(at)[0]
    assert world.find(newest.task_id, newest.created - 1) is None  # not created yet then


def test_arrivals_come_in_bursts_sharing_a_second_at_the_configured_rate() -> None:
    world = World(WorldSettings(tasks=0, seed=10, arrival_rate=1.8, burst_size=4), start=START)
    arrivals = world.records(START + 3600)
    assert 0.8 * 1.8 * 3600 < len(arrivals) < 1.2 * 1.8 * 3600
    bursts = Counter(task.created for task in arrivals)
    assert 3 < len(arrivals) / len(bursts) < 5
    assert all(START < task.created <= START + 3600 for task in arrivals)
    assert world.total(START) == 0


def test_stuck_tasks_stay_processing_deep_in_the_history() -> None:
    settings = WorldSettings(tasks=3000, seed=11, history=3 * 86400, stuck_tasks=3)
    world = World(settings, start=START)
    two_days = START + 2 * 86400
    stuck = world.open_tasks(two_days)
    assert len(stuck) == 3 and all(task.status == PROCESSING for task in stuck)
    assert all(task.created < START - 3600 for task in stuck)
    positions = sorted(world.position(task.task_id, two_days) or 0 for task in stuck)
    assert positions[0] > 300  # deep in the listing, not among the newest
    earlier = {task.task_id: task.progress for task in world.open_tasks(START)}
    assert all(earlier[task.task_id] < task.progress <= 99 for task in stuck)
    assert [task.status for task in world.open_tasks(START + 100 * 86400)] == [PROCESSING] * 3


def test_stuck_tasks_can_succeed_at_a_set_time() -> None:
    settings = WorldSettings(tasks=500, seed=12, history=86400, stuck_tasks=2, stuck_ends_after=7200)
    world = World(settings, start=START)
    assert len(world.open_tasks(START + 7199)) == 2
    assert world.open_tasks(START + 7200) == []
    ended = world.finished_between(START + 7199, START + 7200)
    assert [(t.status, t.progress, t.ended) for t in ended] == [(SUCCEED, 100, START + 7200)] * 2


def test_purged_tasks_leave_the_listing_and_total_falls() -> None:
    world = World(WorldSettings(tasks=3600, seed=13, history=3600, purge_after=1800), start=START)
    first = world.records(START)
    assert 1600 < len(first) < 2000 and all(task.created >= START - 1800 for task in first)
    oldest = first[-1]
    assert world.find(oldest.task_id, START) is not None
    later = START + 600
    assert world.total(later) < len(first) - 400
    assert world.find(oldest.task_id, later) is None
    assert world.position(oldest.task_id, later) is None
    assert brute_counts(world.tasks(later)) == world.counts(later)
    assert world.total(START + 1801) == 0


def test_a_deleted_task_is_gone_from_then_on() -> None:
    world = World(WorldSettings(tasks=300, seed=14), start=START)
    victim = world.records(START)[120]
    assert world.delete_task(victim.task_id, START + 10)
    assert not world.delete_task(victim.task_id, START + 20)  # already gone
    assert not world.delete_task("f" * 32, START + 20)
    assert world.total(START + 10) == 299 and world.total(START + 9) == 300
    assert world.find(victim.task_id, START + 10) is None
    assert world.find(victim.task_id, START + 9) is not None
    assert victim.task_id not in {task.task_id for task in world.records(START + 10)}
    assert brute_counts(world.tasks(START + 10)) == world.counts(START + 10)


@pytest.mark.parametrize("order", ORDERS)
def test_fast_ground_truth_matches_the_whole_listing(order: str) -> None:
    settings = WorldSettings(
        tasks=3000,
        seed=15,
        order=order,
        arrival_rate=1.8,
        burst_size=3,
        history=6 * 3600,
        stuck_tasks=3,
        purge_after=5 * 3600,
    )
    world = World(settings, start=START)
    world.delete_task(world.records(START)[10].task_id, START + 30)
    for at in (START - 1000, START, START + 15, START + 30.5, START + 900, START + 4000):
        everything = world.tasks(at)
        assert world.total(at) == len(everything)
        assert world.counts(at) == brute_counts(everything)
        open_now = sorted(
            (t for t in everything if t.status not in FINISHED_STATUSES), key=lambda t: t.task_id
        )
        assert sorted(world.open_tasks(at), key=lambda t: t.task_id) == open_now
    before, after = START + 900, START + 4000
    ended = {t.task_id for t in world.tasks(after) if t.ended is not None and before < t.ended <= after}
    assert {t.task_id for t in world.finished_between(before, after)} == ended


def test_same_seed_same_bursts_stuck_tasks_and_orders() -> None:
    settings = WorldSettings(tasks=500, seed=16, arrival_rate=2, burst_size=5, stuck_tasks=2, order=UNORDERED)
    first, second = World(settings, start=START), World(settings, start=START)
    assert first.tasks(START + 500) == second.tasks(START + 500)
    other = World(replace(settings, seed=17), start=START)
    assert first.tasks(START + 500) != other.tasks(START + 500)


def test_a_big_history_is_held_in_columns_not_objects() -> None:
    tracemalloc.start()
    try:
        world = World(WorldSettings(tasks=50_000, seed=18, burst_size=3), start=START)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert world.total(START) == 50_000
    assert held / 50_000 < 40  # bytes per task; an object per task costs hundreds


@pytest.mark.parametrize(
    "settings",
    [
        {"tasks": -1},
        {"arrival_rate": -0.1},
        {"succeed_share": 0, "failed_share": 0, "cancel_share": 0},
        {"duration_median": 0},
        {"failed_share": -1},
        {"order": "sideways"},
        {"burst_size": 0.5},
        {"stuck_tasks": 11, "tasks": 10},
        {"stuck_ends_after": -1},
        {"purge_after": float("inf")},
        {"tie_order": "random"},
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


def start_world(clock: FakeClock, **settings: Any) -> Simulator:
    world = WorldSettings(**settings)
    return Simulator(project_id=PROJECT, world_settings=world, access_key=AK, secret_key=SK, clock=clock)


@pytest.mark.parametrize("order", ORDERS)
def test_every_order_pages_through_every_task_once(order: str, clock: FakeClock) -> None:
    with (
        start_world(clock, tasks=450, seed=31, order=order, burst_size=5) as sim,
        httpx.Client(base_url=sim.url, auth=Signed(clock=clock)) as c,
    ):
        records = [parse_task(r) for r in list_all(c)]
        assert records == sim.world.tasks()
        created = [task.created for task in records]
        if order == NEWEST_FIRST:
            assert created == sorted(created, reverse=True)
        elif order == OLDEST_FIRST:
            assert created == sorted(created)
        else:
            assert created not in (sorted(created), sorted(created, reverse=True))
        assert len({task.task_id for task in records}) == 450


def test_the_order_breaks_mid_run_over_http(sim: Simulator, client: httpx.Client) -> None:
    head = list_page(client, limit=5)["tasks"]
    sim.world.set_order(OLDEST_FIRST)
    first = [parse_task(r) for r in list_page(client, limit=5)["tasks"]]
    assert first == sim.world.tasks()[:5] and first[0].created <= first[-1].created
    assert list_page(client, offset=232, limit=5)["tasks"] == head[::-1]


def test_task_id_query_of_a_deleted_or_purged_task_is_empty(clock: FakeClock) -> None:
    with (
        start_world(clock, tasks=600, seed=32, history=3600, purge_after=3000, stuck_tasks=1) as sim,
        httpx.Client(base_url=sim.url, auth=Signed(clock=clock)) as c,
    ):
        records = list_all(c)
        deep, victim = records[-1], records[300]
        assert list_page(c, task_id=deep["task_id"]) == {"total": 1, "tasks": [deep]}
        assert sim.world.delete_task(victim["task_id"])
        assert list_page(c, task_id=victim["task_id"]) == {"total": 0, "tasks": []}
        assert list_page(c)["total"] == len(records) - 1
        clock.sleep(600)  # the oldest tasks pass the purge age
        assert list_page(c, task_id=deep["task_id"]) == {"total": 0, "tasks": []}
        assert list_page(c)["total"] == sim.world.total() < len(records) - 50


def test_stuck_task_is_found_by_id_days_later(clock: FakeClock) -> None:
    with (
        start_world(clock, tasks=1000, seed=33, history=86400, stuck_tasks=2) as sim,
        httpx.Client(base_url=sim.url, auth=Signed(clock=clock)) as c,
    ):
        stuck = sim.world.open_tasks(START + 3 * 86400)
        assert len(stuck) == 2
        clock.sleep(3 * 86400)
        for task in stuck:
            page = list_page(c, task_id=task.task_id)
            assert page["total"] == 1 and parse_task(page["tasks"][0]) == task
            assert task.status == PROCESSING and "end_time" not in page["tasks"][0]


def test_world_clock_steps_simulated_time_while_requests_sign_with_real_time() -> None:
    world_clock = FakeClock(START)
    settings = WorldSettings(tasks=100, seed=34, arrival_rate=1.8, burst_size=3)
    with (
        Simulator(
            project_id=PROJECT, world_settings=settings, access_key=AK, secret_key=SK, world_clock=world_clock
        ) as sim,
        httpx.Client(base_url=sim.url, auth=Signed()) as c,  # dated by the real clock
    ):
        assert list_page(c)["total"] == 100
        for _ in range(4):
            world_clock.sleep(15)  # a scrape every 15 s of simulated time
            page = list_page(c, limit=100)
            assert page["total"] == sim.world.total() == len(sim.world.tasks())
            truth = sim.world.counts()
            assert sum(truth.values()) == page["total"]
        assert sim.world.total() > 100 and sim.world.now() == START + 60


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


def test_build_simulator_takes_the_order_bursts_stuck_and_purge_options() -> None:
    chosen = options(
        tasks=40,
        order=UNORDERED,
        burst_size=3.5,
        stuck_tasks=2,
        stuck_ends_after=3600.0,
        purge_after=86400.0,
    )
    settings = build_simulator(chosen, KEYS).world.settings
    assert (settings.order, settings.burst_size, settings.stuck_tasks) == (UNORDERED, 3.5, 2)
    assert (settings.stuck_ends_after, settings.purge_after) == (3600.0, 86400.0)
    with pytest.raises(ConfigError, match="--stuck-tasks"):
        build_simulator(options(tasks=1, stuck_tasks=2), KEYS)


def test_build_simulator_serves_platform_credentials_on_demand() -> None:
    assert build_simulator(options(), KEYS).platform is None
    args = ["--project-id", PROJECT, "--metadata-key-lifetime", "10m", "--idp-id", "idp-1"]
    sim = build_simulator(simulate.make_context("simulate", args).params, {"VOD_SIMULATOR_ID_TOKENS": "a, b"})
    assert sim.platform is not None
    assert sim.platform.settings == PlatformSettings(
        key_lifetime=600.0, idp_id="idp-1", id_tokens=frozenset("ab")
    )
    with pytest.raises(ConfigError, match="VOD_SIMULATOR_ID_TOKENS"):
        build_simulator(options(idp_id="idp-1"), {})


def test_simulate_parses_the_new_options_as_documented() -> None:
    args = ["--project-id", PROJECT, "--order", "oldest-first", "--purge-after", "2h", "--burst-size", "4"]
    params = simulate.make_context("simulate", args).params
    assert (params["order"], params["purge_after"], params["burst_size"]) == (OLDEST_FIRST, 7200.0, 4.0)
    assert (params["stuck_tasks"], params["stuck_ends_after"], params["tie_order"]) == (0, 0.0, "stable")
    shuffled = simulate.make_context("simulate", ["--project-id", PROJECT, "--tie-order", "shuffled"]).params
    assert build_simulator(shuffled, KEYS).world.settings.tie_order == SHUFFLED


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
        ({"HUAWEICLOUD_SDK_AK": AK, "HUAWEICLOUD_SDK_SK": SK}, {"project_id": ("a/b",)}, "--project-id"),
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
        ["--order", "sideways"],
        ["--burst-size", "0.5"],
        ["--stuck-tasks", "-1"],
        ["--purge-after", "soon"],
        ["--tie-order", "sometimes"],
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
    assert (params["project_id"], params["drift"], params["listen_address"]) == ((PROJECT,), 3, ":1")
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
    command = [
        sys.executable,
        "-m",
        "exporter.simulator.command",
        "--project-id",
        PROJECT,
        "--arrival-rate",
        "0",
    ]
    process = subprocess.Popen(
        [*command, "--web.listen-address", "127.0.0.1:0"], env=env, stderr=subprocess.PIPE, text=True
    )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stderr is not None
    reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stderr or ()], daemon=True)
    reader.start()
    try:
        url, start = None, None
        deadline = time.monotonic() + 30
        while url is None and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                assert process.poll() is None, "the simulator exited early"
                continue
            found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
            url = found.group(1) if found else None
            logged = re.search(rf"project {PROJECT}: seed 0, world start ([0-9.]+)", line)
            start = float(logged.group(1)) if logged else start
        assert url, "the simulator did not log its URL"
        answer = httpx.get(url + TASKS_PATH, auth=Signed())
        assert answer.status_code == 200 and answer.json()["total"] == 30
        # The logged start and the options are enough to recompute the world in this process.
        assert start is not None, "the simulator did not log its world's start"
        params = simulate.make_context("simulate", ["--project-id", PROJECT, "--arrival-rate", "0"]).params
        world = World(replace(world_settings(params), tasks=30), start=start)
        assert [task["task_id"] for task in answer.json()["tasks"]] == [
            t.task_id for t in world.records()[:10]
        ]
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
