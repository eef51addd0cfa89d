"""The exporter against the simulator, over real sockets: no mocks anywhere on the path.

Ground truth comes from the simulator's own world; the number of API calls from its request log.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import httpx
import pytest
from prometheus_client import generate_latest

from exporter.app import Exporter
from exporter.cloud.credentials import AkSkCredentials, IamPasswordCredentials
from exporter.config import ApiSettings, Config, ScrapeSettings
from exporter.serving.server import HttpServer
from exporter.simulator.faults import FaultSettings
from exporter.simulator.identity import IamUser
from exporter.simulator.server import Simulator
from exporter.simulator.world import WorldSettings
from tests.conftest import environment_without_settings, free_port, wait_for

PROJECT = "0123456789abcdef0123456789abcdef"
AK, SK = "AKINTEGRATION0001", "integration-secret-key"


class WallClock:
    """Real time plus a shift the test controls, shared by the simulator and the exporter."""

    def __init__(self) -> None:
        self.shift = 0.0

    def __call__(self) -> float:
        return time.time() + self.shift


def start_simulator(world: WorldSettings, **kwargs: object) -> Simulator:
    simulator = Simulator(project_id=PROJECT, world_settings=world, access_key=AK, secret_key=SK, **kwargs)  # type: ignore[arg-type]
    simulator.start()
    return simulator


def config_for(simulator: Simulator, **api: object) -> Config:
    settings = ApiSettings(
        endpoint=simulator.url,
        project_id=PROJECT,
        rate_limit=0,
        backoff_base=0.01,
        backoff_max=0.02,
        throttle_backoff=0.01,
        **api,  # type: ignore[arg-type]
    )
    # Every list_once lists: these tests count the calls of each listing.
    scrape = ScrapeSettings(timeout=20, min_refresh_interval=0)
    return Config(region="", api=settings, iam_endpoint=simulator.url, scrape=scrape)


def exporter_for(simulator: Simulator, credentials: object = None, **api: object) -> Exporter:
    config = config_for(simulator, **api)
    return Exporter(config, credentials or AkSkCredentials(AK, SK), wall_clock=simulator.world._clock)  # type: ignore[arg-type]


@pytest.fixture
def frozen_simulator(request: pytest.FixtureRequest) -> Iterator[Simulator]:
    tasks = getattr(request, "param", 1_000)
    simulator = start_simulator(WorldSettings(tasks=tasks, seed=3, frozen=True))
    try:
        yield simulator
    finally:
        simulator.stop()


def exposition(exporter: Exporter) -> str:
    return generate_latest(exporter.registry).decode()


@pytest.mark.parametrize("frozen_simulator", [0, 1, 100, 101, 5_000], indirect=True)
def test_counts_equal_the_ground_truth_with_one_call_per_page(frozen_simulator: Simulator) -> None:
    exporter = exporter_for(frozen_simulator)
    try:
        view = exporter.list_once()
    finally:
        exporter.close()
    truth = frozen_simulator.world.counts()
    assert view.up and view.snapshot is not None
    assert {s: n for s, n in view.snapshot.counts.items() if n} == {s: n for s, n in truth.items() if n}
    assert view.snapshot.reported_total == frozen_simulator.world.total()
    pages = max(1, math.ceil(frozen_simulator.world.total() / 100))
    assert frozen_simulator.requests.count("tasks", 200) == pages
    assert frozen_simulator.requests.snapshot() == {("tasks", 200): pages}
    assert_bill_matches(exporter, frozen_simulator)


def assert_bill_matches(exporter: Exporter, simulator: Simulator) -> None:
    """Every request the simulator received is in huaweicloud_vod_api_requests_total, by status."""
    kinds = {"list_editing_tasks": "tasks", "iam_token": "tokens"}
    billed = {(kinds[op], int(code)): n for (op, code), n in exporter.api_stats.requests().items()}
    assert billed == simulator.requests.snapshot()


def test_wrong_secret_key_is_one_401_and_never_retried(frozen_simulator: Simulator) -> None:
    exporter = exporter_for(frozen_simulator, AkSkCredentials(AK, "not-the-secret"))
    try:
        view = exporter.list_once()
        text = exposition(exporter)
    finally:
        exporter.close()
    assert not view.up and view.last_error is not None and view.last_error[0] == "auth"
    assert frozen_simulator.requests.snapshot() == {("tasks", 401): 1}
    assert f'huaweicloud_vod_scrape_errors_total{{project_id="{PROJECT}",reason="auth"}} 1.0' in text
    assert "huaweicloud_vod_editing_tasks{" not in text


def test_iam_token_auth_with_refresh_before_expiry() -> None:
    clock = WallClock()
    simulator = start_simulator(
        WorldSettings(tasks=250, seed=5, frozen=True),
        iam_users=[IamUser("svc-monitor", "pw-123", domain="acme")],
        token_lifetime=2 * 3600,
        clock=clock,
    )
    exporter = exporter_for(
        simulator, IamPasswordCredentials(username="svc-monitor", domain="acme", password="pw-123")
    )
    try:
        assert exporter.list_once().up
        assert exporter.list_once().up
        assert simulator.requests.count("tokens", 201) == 1  # cached
        clock.shift = 1.5 * 3600  # inside the last hour of the token's life: renewed before it expires
        assert exporter.list_once().up
        assert simulator.requests.count("tokens", 201) == 2
        assert simulator.requests.count("tasks", 401) == 0
        assert_bill_matches(exporter, simulator)
    finally:
        exporter.close()
        simulator.stop()


def test_an_expired_token_is_renewed_once_and_the_listing_succeeds() -> None:
    clock = WallClock()
    simulator = start_simulator(
        WorldSettings(tasks=50, seed=5, frozen=True),
        iam_users=[IamUser("svc-monitor", "pw-123", domain="acme")],
        token_lifetime=600,  # shorter than the renewal margin: renewed at half its life
        clock=clock,
    )
    exporter = exporter_for(
        simulator, IamPasswordCredentials(username="svc-monitor", domain="acme", password="pw-123")
    )
    try:
        assert exporter.list_once().up
        clock.shift = 3600  # long past expiry
        assert exporter.list_once().up
        assert simulator.requests.count("tokens", 201) == 2
        assert simulator.requests.count("tasks", 401) <= 1
        assert_bill_matches(exporter, simulator)
    finally:
        exporter.close()
        simulator.stop()


def test_a_token_the_api_calls_expired_is_renewed_and_the_resend_is_billed() -> None:
    api_clock = WallClock()  # the API's clock runs ahead of the exporter's
    simulator = start_simulator(
        WorldSettings(tasks=50, seed=5, frozen=True),
        iam_users=[IamUser("svc-monitor", "pw-123", domain="acme")],
        token_lifetime=6 * 3600,
        clock=api_clock,
    )
    exporter = Exporter(
        config_for(simulator),
        IamPasswordCredentials(username="svc-monitor", domain="acme", password="pw-123"),
    )
    try:
        assert exporter.list_once().up
        api_clock.shift = 7 * 3600  # the API now sees the token as expired; the exporter does not
        assert exporter.list_once().up
        assert simulator.requests.count("tasks", 401) == 1  # one APIGW.0307, then one renewal
        assert simulator.requests.count("tokens", 201) == 2
        assert_bill_matches(exporter, simulator)
    finally:
        exporter.close()
        simulator.stop()


FAULTS = [
    (FaultSettings(error_rate=1.0), "server_error"),
    (FaultSettings(reset_rate=1.0), "network"),
    (FaultSettings(malformed_body_rate=1.0), "bad_response"),
    (FaultSettings(rate_limit=0.001), "throttled"),
    (FaultSettings(latency=3.0), "timeout"),
]


@pytest.mark.parametrize(("faults", "reason"), FAULTS, ids=[reason for _, reason in FAULTS])
@pytest.mark.parametrize("frozen_simulator", [300], indirect=True)
def test_every_fault_gives_up_0_its_reason_and_no_snapshot_then_recovers(
    frozen_simulator: Simulator, faults: FaultSettings, reason: str
) -> None:
    exporter = exporter_for(frozen_simulator, max_retries=1)
    exporter.config = replace(exporter.config, scrape=ScrapeSettings(timeout=1.0))
    frozen_simulator.faults = faults
    try:
        failed = exporter.list_once()
        text = exposition(exporter)
        assert not failed.up
        assert failed.errors == {reason: 1}
        assert f'huaweicloud_vod_up{{project_id="{PROJECT}"}} 0.0' in text
        assert f'reason="{reason}"}} 1.0' in text
        for snapshot_metric in (
            "huaweicloud_vod_editing_tasks{",
            "editing_task_info",
            "editing_tasks_reported",
        ):
            assert snapshot_metric not in text
        frozen_simulator.faults = FaultSettings()
        recovered = exporter.list_once()
        assert recovered.up and recovered.snapshot is not None
        assert recovered.snapshot.reported_total == 300
    finally:
        exporter.close()


@pytest.mark.parametrize("frozen_simulator", [500], indirect=True)
def test_malformed_records_are_skipped_and_counted(frozen_simulator: Simulator) -> None:
    frozen_simulator.faults = FaultSettings(malformed_record_rate=0.1)
    exporter = exporter_for(frozen_simulator)
    try:
        view = exporter.list_once()
    finally:
        exporter.close()
    assert view.up and view.snapshot is not None
    assert view.snapshot.invalid > 0
    assert sum(view.snapshot.counts.values()) + view.snapshot.invalid == 500


def test_tasks_created_while_paging_never_fail_a_listing_nor_count_twice() -> None:
    # A task is created after every page is served (newest first: each shifts every later page by
    # one). Each listing is exact as of its first page, whatever arrives after it.
    simulator = start_simulator(
        WorldSettings(tasks=1_000, seed=9, frozen=True), faults=FaultSettings(drift=1)
    )
    exporter = exporter_for(simulator, concurrency=1)
    try:
        truth = {status: count for status, count in simulator.world.counts().items() if count}
        for listing in range(3):
            view = exporter.list_once()
            assert view.up and view.snapshot is not None, view.last_error
            assert sum(view.snapshot.counts.values()) == view.snapshot.reported_total
            if listing == 0:
                assert view.snapshot.reported_total == 1_000
                assert {status: count for status, count in view.snapshot.counts.items() if count} == truth
        assert view.errors == {}
    finally:
        exporter.close()
        simulator.stop()


def test_finished_counters_move_by_exactly_the_tasks_that_finished_between_scrapes() -> None:
    clock = WallClock()
    simulator = start_simulator(
        WorldSettings(tasks=400, seed=11, arrival_rate=0.2, wait_mean=30, duration_median=120), clock=clock
    )
    exporter = exporter_for(simulator)
    try:
        assert exporter.list_once().up
        first = simulator.world.now()
        before = exporter.store.view()
        clock.shift = 900
        after = exporter.list_once()
        second = simulator.world.now()
        assert after.up
        expected = Counter(task.status for task in simulator.world.finished_between(first, second))
        moved = {s: after.finished_total[s] - before.finished_total[s] for s in after.finished_total}
        assert {s: n for s, n in moved.items() if n} == dict(expected)
        assert sum(expected.values()) > 0
        observed = {s: sum(h.bucket_counts) for s, h in after.finished_durations.items()}
        assert {s: n for s, n in observed.items() if n} == dict(expected)
    finally:
        exporter.close()
        simulator.stop()


def test_demo_serves_up_1_and_stops_on_sigterm() -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "exporter", "demo", "--web.listen-address", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        wait_for("the demo to be ready", lambda: _answers(f"http://127.0.0.1:{port}/-/ready"), 30, 0.05)
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        assert "} 1.0" in next(line for line in text.splitlines() if line.startswith("huaweicloud_vod_up{"))
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=20)
        assert process.returncode == 0, err
        assert f"metrics at http://127.0.0.1:{port}/metrics" in err
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


@pytest.mark.parametrize("frozen_simulator", [10], indirect=True)
def test_once_as_a_new_user_meets_it(frozen_simulator: Simulator, tmp_path: object) -> None:
    base = [
        sys.executable,
        "-m",
        "exporter",
        "once",
        "--endpoint",
        frozen_simulator.url,
        "--iam-endpoint",
        frozen_simulator.url,
        "--project-id",
        PROJECT,
    ]
    env = environment_without_settings()
    env["HOME"] = str(tmp_path)
    none = subprocess.run(base, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert none.returncode == 2 and none.stderr.count("\n") == 1 and "HUAWEICLOUD_SDK_AK" in none.stderr
    wrong = subprocess.run(
        base,
        env={**env, "HUAWEICLOUD_SDK_AK": AK, "HUAWEICLOUD_SDK_SK": "wrong"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert wrong.returncode == 1 and wrong.stderr.count("\n") == 1
    assert "listing failed (auth)" in wrong.stderr and "APIGW.0301" in wrong.stderr
    assert "wrong" not in wrong.stderr
    right = subprocess.run(
        base,
        env={**env, "HUAWEICLOUD_SDK_AK": AK, "HUAWEICLOUD_SDK_SK": SK},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert right.returncode == 0, right.stderr
    assert f'huaweicloud_vod_editing_tasks_reported{{project_id="{PROJECT}"}} 10.0' in right.stdout


@pytest.mark.parametrize("frozen_simulator", [150], indirect=True)
def test_a_scrape_that_joins_a_slow_listing_answers_in_time_with_up_0(frozen_simulator: Simulator) -> None:
    frozen_simulator.faults = FaultSettings(latency=1.0)
    exporter = exporter_for(frozen_simulator)
    server = HttpServer(exporter.wsgi_app(), "127.0.0.1", 0)
    server.start()
    url = f"http://127.0.0.1:{server.port}/metrics"
    try:
        results: dict[str, str] = {}
        leader = threading.Thread(
            target=lambda: results.update(
                leader=httpx.get(url, headers={"X-Prometheus-Scrape-Timeout-Seconds": "10"}, timeout=20).text
            )
        )
        leader.start()
        wait_for("the first scrape to start its listing", lambda: exporter.coordinator.listings > 0, 10, 0.01)
        started = time.monotonic()
        late = httpx.get(url, headers={"X-Prometheus-Scrape-Timeout-Seconds": "0.8"}, timeout=20).text
        assert time.monotonic() - started < 0.8
        leader.join(20)
        assert f'huaweicloud_vod_up{{project_id="{PROJECT}"}} 0.0' in late
        assert "huaweicloud_vod_editing_tasks{" not in late
        assert f'huaweicloud_vod_up{{project_id="{PROJECT}"}} 1.0' in results["leader"]
        assert exporter.coordinator.listings == 1
    finally:
        server.stop()
        exporter.close()


def start_serve(simulator: Simulator, home: object, port: int) -> subprocess.Popen[str]:
    """``vod-exporter serve`` in a process of its own, listing ``simulator`` with AK/SK from the env."""
    env = environment_without_settings()
    env.update(HOME=str(home), HUAWEICLOUD_SDK_AK=AK, HUAWEICLOUD_SDK_SK=SK, PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "exporter",
            "serve",
            "--project-id",
            PROJECT,
            "--endpoint",
            simulator.url,
            "--iam-endpoint",
            simulator.url,
            "--web.listen-address",
            f"127.0.0.1:{port}",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for("the exporter to be ready", lambda: _answers(f"http://127.0.0.1:{port}/-/ready"), 30, 0.05)
    except BaseException:
        process.kill()
        process.communicate()
        raise
    return process


@contextmanager
def serving(simulator: Simulator, home: object) -> Iterator[tuple[subprocess.Popen[str], str]]:
    port = free_port()
    process = start_serve(simulator, home, port)
    try:
        yield process, f"http://127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


@pytest.mark.parametrize("frozen_simulator", [250], indirect=True)
def test_serve_lists_on_scrape_and_stops_cleanly_on_sigterm(
    frozen_simulator: Simulator, tmp_path: object
) -> None:
    with serving(frozen_simulator, tmp_path) as (process, url):
        text = httpx.get(url + "/metrics", timeout=20).text
        assert f'huaweicloud_vod_editing_tasks_reported{{project_id="{PROJECT}"}} 250.0' in text
        assert frozen_simulator.requests.count("tasks", 200) == 3
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=20)
        assert process.returncode == 0, err
        assert "shutting down" in err and SK not in err


def test_sigterm_during_a_slow_scrape_answers_it_and_is_unready_while_the_listing_drains(
    frozen_simulator: Simulator, tmp_path: object
) -> None:
    with serving(frozen_simulator, tmp_path) as (process, url):
        # 1,000 tasks are 10 pages: the first, then three rounds of four, a second each.
        frozen_simulator.faults = FaultSettings(latency=1.0)
        scrape: dict[str, httpx.Response] = {}
        scraper = threading.Thread(
            target=lambda: scrape.update(response=httpx.get(url + "/metrics", timeout=30))
        )
        scraper.start()
        wait_for("the first page", lambda: frozen_simulator.requests.count("tasks") > 0, 10, 0.01)
        process.send_signal(signal.SIGTERM)
        # A refused connection here raises: the server must keep answering while it drains.
        wait_for("/-/ready to answer 503", lambda: httpx.get(url + "/-/ready").status_code == 503, 10, 0.02)
        assert httpx.get(url + "/-/healthy").status_code == 200
        scraper.join(30)
        assert scrape["response"].status_code == 200
        assert f'huaweicloud_vod_up{{project_id="{PROJECT}"}} 1.0' in scrape["response"].text
        _, err = process.communicate(timeout=20)
        assert process.returncode == 0, err


@pytest.mark.parametrize("frozen_simulator", [10], indirect=True)
def test_sighup_is_logged_and_ignored(frozen_simulator: Simulator, tmp_path: object) -> None:
    with serving(frozen_simulator, tmp_path) as (process, url):
        process.send_signal(signal.SIGHUP)
        assert httpx.get(url + "/metrics", timeout=20).status_code == 200
        assert process.poll() is None
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=20)
        assert process.returncode == 0, err
        assert err.index("ignored SIGHUP") < err.index("shutting down")


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def scrape(url: str, timeout_header: str) -> str:
    return httpx.get(url, headers={"X-Prometheus-Scrape-Timeout-Seconds": timeout_header}, timeout=30).text


UP = f'huaweicloud_vod_up{{project_id="{PROJECT}"}}'


@contextlib.contextmanager
def served_in_process(simulator: Simulator, min_interval: float) -> Iterator[tuple[Exporter, str]]:
    """The exporter served over HTTP, reusing a listing for ``min_interval``; its /metrics URL."""
    config = config_for(simulator)
    config = replace(config, scrape=replace(config.scrape, min_refresh_interval=min_interval))
    exporter = Exporter(config, AkSkCredentials(AK, SK), wall_clock=simulator.world._clock)
    server = HttpServer(exporter.wsgi_app(), "127.0.0.1", 0)
    server.start()
    try:
        yield exporter, f"http://127.0.0.1:{server.port}/metrics"
    finally:
        server.stop()
        exporter.close()


@pytest.mark.parametrize("min_interval", [0.0, 20.0], ids=["listing every scrape", "min interval 20s"])
@pytest.mark.parametrize("frozen_simulator", [150], indirect=True)
def test_a_short_scrape_that_started_the_listing_does_not_fail_a_longer_one(
    frozen_simulator: Simulator, min_interval: float
) -> None:
    frozen_simulator.faults = FaultSettings(latency=0.8)  # two pages, one after the other: > 1.6 s
    with served_in_process(frozen_simulator, min_interval) as (exporter, url):
        results: dict[str, str] = {}
        short = threading.Thread(target=lambda: results.update(short=scrape(url, "1")))
        short.start()
        wait_for("the short scrape to start the listing", lambda: exporter.coordinator.listings > 0, 10, 0.01)
        long = scrape(url, "15")
        short.join(30)
        assert f"{UP} 0.0" in results["short"]
        assert f"{UP} 1.0" in long and "huaweicloud_vod_editing_tasks{" in long
        assert exporter.coordinator.listings == 1 and exporter.store.view().errors == {}
        if min_interval:  # the listing ran to --scrape.timeout from the start: not one call lost
            assert frozen_simulator.requests.snapshot() == {("tasks", 200): 2}


@pytest.mark.parametrize("frozen_simulator", [150], indirect=True)
def test_a_scrape_announcing_no_time_at_all_spoils_nothing_for_the_interval(
    frozen_simulator: Simulator,
) -> None:
    frozen_simulator.faults = FaultSettings(latency=0.2)
    with served_in_process(frozen_simulator, min_interval=60.0) as (exporter, url):
        assert f"{UP} 0.0" in scrape(url, "0")  # it could not wait, and says so
        for _ in range(3):
            assert f"{UP} 1.0" in scrape(url, "15")
        assert exporter.coordinator.listings == 1
        assert frozen_simulator.requests.snapshot() == {("tasks", 200): 2}  # one listing, for everyone
        assert exporter.store.view().errors == {}


@pytest.mark.parametrize("frozen_simulator", [10], indirect=True)
def test_a_wrong_secret_key_costs_one_call_however_often_it_is_scraped(frozen_simulator: Simulator) -> None:
    exporter = exporter_for(frozen_simulator, AkSkCredentials(AK, "not-the-secret"))
    server = HttpServer(exporter.wsgi_app(), "127.0.0.1", 0)
    server.start()
    url = f"http://127.0.0.1:{server.port}/metrics"
    try:
        texts = [scrape(url, "10") for _ in range(6)]
    finally:
        server.stop()
        exporter.close()
    assert frozen_simulator.requests.snapshot() == {("tasks", 401): 1}  # the key never locks
    for text in texts:
        assert f'huaweicloud_vod_up{{project_id="{PROJECT}"}} 0.0' in text
        assert f'huaweicloud_vod_scrape_errors_total{{project_id="{PROJECT}",reason="auth"}} 1.0' in text
