"""Many targets in one process, against simulators over real sockets: one simulator per project,
two accounts, a targets file as the user writes it, reloads while scrapes run."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.app import Exporter
from exporter.config import ConfigError
from exporter.reload import Reloader
from exporter.serving.server import HttpServer
from exporter.simulator import Account
from exporter.simulator import Project as SimulatedProject
from exporter.simulator.faults import FaultSettings
from exporter.simulator.server import Simulator
from exporter.simulator.world import WorldSettings
from exporter.targets import TargetSetup, load_targets, resolve_targets
from tests.conftest import environment_without_settings, free_port, wait_for

P1, P2, P3 = "a1" * 16, "b2" * 16, "c3" * 16
ONE = ("AKACCOUNTONE0001", "account-one-secret")
TWO = ("AKACCOUNTTWO0002", "account-two-secret")
ENV = {"ONE_AK": ONE[0], "ONE_SK": ONE[1], "TWO_AK": TWO[0], "TWO_SK": TWO[1]}
CREDENTIALS = """credentials:
  account-one: {ak_env: ONE_AK, sk_env: ONE_SK}
  account-two: {ak_env: TWO_AK, sk_env: TWO_SK}
"""


@dataclass
class Project:
    project_id: str
    region: str
    account: str  # the credentials entry
    simulator: Simulator

    def line(self) -> str:
        return (
            f"  - {{region: {self.region}, project_id: {self.project_id}, "
            f"endpoint: '{self.simulator.url}', credentials: {self.account}}}\n"
        )


@pytest.fixture
def projects() -> Iterator[dict[str, Project]]:
    """Three projects in two accounts: P1 and P2 in account one, P3 in account two."""
    made = {}
    try:
        for project_id, tasks, (ak, sk), region, account in (
            (P1, 1000, ONE, "cn-north-4", "account-one"),
            (P2, 250, ONE, "cn-north-4", "account-one"),
            (P3, 120, TWO, "ap-southeast-1", "account-two"),
        ):
            simulator = Simulator(
                project_id=project_id,
                world_settings=WorldSettings(tasks=tasks, seed=len(made) + 11, frozen=True),
                access_key=ak,
                secret_key=sk,
            )
            simulator.start()
            made[project_id] = Project(project_id, region, account, simulator)
        yield made
    finally:
        for project in made.values():
            project.simulator.stop()


def write_targets(path: Path, *projects: Project) -> None:
    path.write_text("targets:\n" + "".join(p.line() for p in projects) + CREDENTIALS)


def read_setups(path: Path, env: dict[str, str], **options: Any) -> tuple[TargetSetup, ...]:
    options = {"rate_limit": 0, "scrape_timeout": "20s", "min_refresh_interval": "0s", **options}

    def no_chain() -> Any:
        raise AssertionError("every target names its credentials")

    return resolve_targets(load_targets(path), options, env, process_chain=no_chain)


@dataclass
class Running:
    exporter: Exporter
    reloader: Reloader
    url: str

    def scrape(self, timeout: float = 20.0) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """Every sample of one scrape, by name and labels."""
        headers = {"X-Prometheus-Scrape-Timeout-Seconds": str(timeout)}
        response = httpx.get(self.url + "/metrics", headers=headers, timeout=timeout + 5)
        assert response.status_code == 200
        return samples(response.text)


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(scraped: dict[Any, float], name: str, **labels: str) -> float | None:
    return scraped.get(("huaweicloud_vod_" + name, frozenset(labels.items())))


@contextmanager
def running(path: Path, env: dict[str, str], **options: Any) -> Iterator[Running]:
    load = lambda: read_setups(path, env, **options)  # noqa: E731
    setups = load()
    exporter = Exporter(setups[0].config, targets=setups, runtime_metrics=False)
    reloader = Reloader(str(path), load, exporter.apply)
    exporter.registry.register(reloader)
    server = HttpServer(exporter.wsgi_app(reload=reloader.reload), "127.0.0.1", 0)
    server.start()
    try:
        yield Running(exporter, reloader, f"http://127.0.0.1:{server.port}")
    finally:
        exporter.close(drain_timeout=1.0)
        server.stop()


def assert_exact(scraped: dict[Any, float], project: Project) -> None:
    """The project's snapshot equals the simulator's ground truth."""
    world = project.simulator.world
    assert value(scraped, "up", project_id=project.project_id) == 1
    assert value(scraped, "editing_tasks_reported", project_id=project.project_id) == world.total()
    for status, count in world.counts().items():
        assert value(scraped, "editing_tasks", project_id=project.project_id, status=status) == count


def test_three_targets_in_two_accounts_one_failing_the_others_exact(
    projects: dict[str, Project], tmp_path: Path
) -> None:
    path = tmp_path / "targets.yml"
    write_targets(path, *projects.values())
    # Account two's secret is wrong: its target fails on its own.
    with running(path, {**ENV, "TWO_SK": "not-the-secret"}) as exporter:
        scraped = exporter.scrape()
    assert_exact(scraped, projects[P1])
    assert_exact(scraped, projects[P2])
    assert value(scraped, "up", project_id=P3) == 0
    assert value(scraped, "scrape_errors_total", project_id=P3, reason="auth") == 1
    assert value(scraped, "editing_tasks_reported", project_id=P3) is None
    for project in projects.values():
        info = value(scraped, "target_info", project_id=project.project_id, region=project.region)
        assert info == 1
    assert projects[P3].simulator.requests.snapshot() == {("tasks", 401): 1}
    assert projects[P1].simulator.requests.snapshot() == {("tasks", 200): 10}


def test_a_slow_target_misses_the_deadline_alone(projects: dict[str, Project], tmp_path: Path) -> None:
    path = tmp_path / "targets.yml"
    write_targets(path, *projects.values())
    projects[P3].simulator.faults = FaultSettings(latency=30.0)
    with running(path, ENV) as exporter:
        started = time.monotonic()
        scraped = exporter.scrape(timeout=3.0)
        # Prometheus' timeout less the offset, and the answer: not the slow target's 30 s.
        assert time.monotonic() - started < 10
    assert_exact(scraped, projects[P1])
    assert_exact(scraped, projects[P2])
    assert value(scraped, "up", project_id=P3) == 0
    assert value(scraped, "editing_tasks_reported", project_id=P3) is None


def test_a_reload_adds_and_removes_targets_while_scrapes_run(
    projects: dict[str, Project], tmp_path: Path
) -> None:
    path = tmp_path / "targets.yml"
    write_targets(path, projects[P1], projects[P2])
    # P2 fails once (a 500 and no retries): its error counter must carry on through the reload.
    projects[P2].simulator.faults = FaultSettings(error_rate=1.0)
    with running(path, ENV, max_retries=0) as exporter:
        before = exporter.scrape()
        assert value(before, "scrape_errors_total", project_id=P2, reason="server_error") == 1
        projects[P2].simulator.faults = FaultSettings()
        answers: list[dict[Any, float]] = []
        stop = threading.Event()

        def keep_scraping() -> None:
            while not stop.is_set():
                answers.append(exporter.scrape())

        scraper = threading.Thread(target=keep_scraping)
        scraper.start()
        try:
            wait_for("a scrape before the reload", lambda: answers, 20, 0.01)
            write_targets(path, projects[P2], projects[P3])
            assert exporter.reloader.reload() is None
            # Its listing may have a page in flight: counted once the closing (in the background)
            # is over, after which nothing may reach it.
            closing = lambda: any(t.name == f"close-{P1}" for t in threading.enumerate())  # noqa: E731
            wait_for("the removed target to close", lambda: not closing(), 20, 0.01)
            calls_to_p1 = projects[P1].simulator.requests.count("tasks")
            seen = len(answers)
            wait_for("two scrapes after the reload", lambda: len(answers) >= seen + 2, 30, 0.01)
        finally:
            stop.set()
            scraper.join(30)
        after = exporter.scrape()
    for answer in answers:  # no scrape failed, and the kept target was there in every one
        assert value(answer, "target_info", project_id=P2, region="cn-north-4") == 1
    assert value(after, "target_info", project_id=P1, region="cn-north-4") is None
    assert value(after, "up", project_id=P1) is None
    assert_exact(after, projects[P3])
    assert value(after, "scrape_errors_total", project_id=P2, reason="server_error") == 1
    # The removed target's listings stopped: its simulator heard nothing more.
    assert projects[P1].simulator.requests.count("tasks") == calls_to_p1
    assert value(after, "config_last_reload_successful") == 1


def test_a_bad_reload_keeps_the_running_targets(projects: dict[str, Project], tmp_path: Path) -> None:
    path = tmp_path / "targets.yml"
    write_targets(path, projects[P1], projects[P2])
    with running(path, ENV) as exporter:
        before = exporter.scrape()
        loaded_at = value(before, "config_last_reload_success_timestamp_seconds")
        path.write_text(path.read_text().replace("project_id:", "projectid:", 1))
        refused = exporter.reloader.reload()
        assert refused is not None and str(path) in refused and "did you mean project_id?" in refused
        answer = httpx.post(exporter.url + "/-/reload", timeout=10)
        assert answer.status_code == 500 and "did you mean project_id?" in answer.text
        after = exporter.scrape()
    assert value(after, "config_last_reload_successful") == 0
    assert value(after, "config_last_reload_success_timestamp_seconds") == loaded_at
    assert_exact(after, projects[P1])
    assert_exact(after, projects[P2])


def test_targets_on_one_credentials_entry_share_one_rate_limit(
    projects: dict[str, Project], tmp_path: Path
) -> None:
    """Counted where the quota is spent: the requests both simulators received, over time."""
    path = tmp_path / "targets.yml"
    projects[P2].simulator.stop()
    # A second project of account one as large as P1: ten pages each, twenty in all.
    big = Simulator(
        project_id=P2,
        world_settings=WorldSettings(tasks=1000, seed=5, frozen=True),
        access_key=ONE[0],
        secret_key=ONE[1],
    )
    big.start()
    try:
        projects[P2].simulator = big
        write_targets(path, projects[P1], projects[P2])
        rate, burst = 10.0, 4  # burst: --api.concurrency
        sims = [projects[P1].simulator, big]
        counts: list[tuple[float, int]] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.005):
                total = sum(s.requests.count("tasks") for s in sims)
                counts.append((time.monotonic(), total))

        started = time.monotonic()
        with running(path, ENV, rate_limit=rate, concurrency=burst) as exporter:
            sampler = threading.Thread(target=sample)
            sampler.start()
            try:
                scraped = exporter.scrape()
            finally:
                stop.set()
                sampler.join()
    finally:
        big.stop()
    assert_exact(scraped, projects[P1])
    assert_exact(scraped, projects[P2])
    # At no moment had both together spent more than one bucket allows (one request of slack for
    # the sampler's own lag); two buckets would have allowed twice the burst at once.
    excess = max(total - rate * (moment - started) for moment, total in counts)
    assert excess <= burst + 1, excess
    assert counts[-1][1] == 20


def write_unresolved(path: Path, simulator: Simulator, *targets: tuple[str, str]) -> None:
    """Targets of (region, credentials entry) without a project id, on ``simulator``'s VOD and IAM."""
    endpoints = f"endpoint: '{simulator.url}', iam_endpoint: '{simulator.url}'"
    lines = "".join(
        f"  - {{region: {region}, {endpoints}, credentials: {entry}}}\n" for region, entry in targets
    )
    path.write_text("targets:\n" + lines + CREDENTIALS)


def test_targets_without_a_project_id_have_it_found_from_their_region(tmp_path: Path) -> None:
    """One simulator, two accounts: the same region in both is two projects, each found at IAM once."""
    accounts = [
        Account(
            "one",
            access_key=ONE[0],
            secret_key=ONE[1],
            projects=[
                SimulatedProject(
                    P1, region="cn-north-4", world=WorldSettings(tasks=130, seed=1, frozen=True)
                ),
                SimulatedProject(
                    P2, region="ap-southeast-1", world=WorldSettings(tasks=40, seed=2, frozen=True)
                ),
            ],
        ),
        Account(
            "two",
            access_key=TWO[0],
            secret_key=TWO[1],
            projects=[
                SimulatedProject(P3, region="cn-north-4", world=WorldSettings(tasks=7, seed=3, frozen=True))
            ],
        ),
    ]
    path = tmp_path / "targets.yml"
    with Simulator(accounts=accounts) as simulator:
        write_unresolved(
            path,
            simulator,
            ("cn-north-4", "account-one"),
            ("ap-southeast-1", "account-one"),
            ("cn-north-4", "account-two"),
        )
        with running(path, ENV) as exporter:
            scraped = exporter.scrape()
            assert exporter.reloader.reload() is None  # IAM is asked once per region and account
            again = exporter.scrape()
        lookups = simulator.requests.count("projects")
    for project_id, region in ((P1, "cn-north-4"), (P2, "ap-southeast-1"), (P3, "cn-north-4")):
        assert value(scraped, "target_info", project_id=project_id, region=region) == 1
        world = simulator.worlds[project_id]
        assert value(again, "editing_tasks_reported", project_id=project_id) == world.total()
    assert lookups == 3


def test_two_targets_that_turn_out_to_be_one_project_are_refused(tmp_path: Path) -> None:
    accounts = [Account("one", access_key=ONE[0], secret_key=ONE[1], projects=[SimulatedProject(P1)])]
    path = tmp_path / "targets.yml"
    with Simulator(accounts=accounts) as simulator:
        # Two entries, one account: the file cannot tell, IAM's answers can.
        write_unresolved(path, simulator, ("cn-north-4", "account-one"), ("cn-north-4", "account-two"))
        with (
            pytest.raises(ConfigError) as refused,
            running(path, {**ENV, "TWO_AK": ONE[0], "TWO_SK": ONE[1]}),
        ):
            pass
    assert str(refused.value) == (
        f"{path}: target 2 (region cn-north-4) is project {P1}, as target 1 (region cn-north-4) is: "
        "remove one"
    )


def test_a_region_iam_does_not_know_names_the_file_the_target_and_its_keys(tmp_path: Path) -> None:
    accounts = [Account("one", access_key=ONE[0], secret_key=ONE[1], projects=[SimulatedProject(P1)])]
    path = tmp_path / "targets.yml"
    with Simulator(accounts=accounts) as simulator:
        iam = simulator.url
        write_unresolved(path, simulator, ("cn-north-4", "account-one"), ("eu-west-101", "account-one"))
        with pytest.raises(ConfigError) as refused, running(path, ENV):
            pass
    assert str(refused.value) == (
        f"{path}: target 2 (region eu-west-101): IAM at {iam} lists no project named "
        "eu-west-101 for these credentials: check region, or set project_id"
    )


# --- the command: SIGHUP and POST /-/reload ---------------------------------------------------------


def test_serve_reloads_on_sighup_and_on_post_when_enabled(
    projects: dict[str, Project], tmp_path: Path
) -> None:
    path = tmp_path / "targets.yml"
    write_targets(path, projects[P1])
    port = free_port()
    env = environment_without_settings()
    env.update(ENV, HOME=str(tmp_path), PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "exporter", "serve", "--config.file", str(path)]
    command += ["--web.listen-address", f"127.0.0.1:{port}", "--web.enable-lifecycle"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    url = f"http://127.0.0.1:{port}"

    def scraped() -> dict[Any, float]:
        return samples(httpx.get(url + "/metrics", timeout=20).text)

    def answers() -> bool:
        try:
            return httpx.get(url + "/-/ready", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for("the exporter to be ready", answers, 30, 0.05)
        assert value(scraped(), "target_info", project_id=P1, region="cn-north-4") == 1
        write_targets(path, projects[P1], projects[P3])
        process.send_signal(signal.SIGHUP)
        wait_for(
            "the SIGHUP reload",
            lambda: value(scraped(), "target_info", project_id=P3, region="ap-southeast-1"),
            30,
            0.05,
        )
        write_targets(path, projects[P3])
        assert httpx.get(url + "/-/reload", timeout=10).status_code == 405
        assert httpx.post(url + "/-/reload", timeout=20).status_code == 200
        after = scraped()
        assert value(after, "target_info", project_id=P1, region="cn-north-4") is None
        assert_exact(after, projects[P3])
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=20)
        assert process.returncode == 0, err
        assert "reloaded" in err and ONE[1] not in err and TWO[1] not in err
        assert f"target added: project {P3} (region ap-southeast-1)" in err
        assert f"target removed: project {P1} (region cn-north-4)" in err
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_once_lists_every_target_and_names_each_that_failed(
    projects: dict[str, Project], tmp_path: Path
) -> None:
    path = tmp_path / "targets.yml"
    write_targets(path, projects[P1], projects[P3])
    env = environment_without_settings()
    env.update(ENV, HOME=str(tmp_path), TWO_SK="not-the-secret")
    done = subprocess.run(
        [sys.executable, "-m", "exporter", "once", "--config.file", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.startswith(f"vod-exporter: listing failed for project {P3} (auth): ")
    assert done.stderr.count("\n") == 1 and "not-the-secret" not in done.stderr
    scraped = samples(done.stdout)
    assert_exact(scraped, projects[P1])
    assert value(scraped, "up", project_id=P3) == 0


def test_targets_on_platform_identities_list_with_their_own_temporary_keys(tmp_path: Path) -> None:
    """A file's credentials entries may name the instance's metadata service or a workload
    identity: each target gets temporary keys from its own and lists exactly."""
    from exporter.simulator.platform import PlatformSettings

    token_file = tmp_path / "sa-token"
    token_file.write_text("sa-token-1\n")
    account = Account(
        "platform",
        projects=[
            SimulatedProject(P1, region="cn-north-4", world=WorldSettings(tasks=130, seed=1, frozen=True)),
            SimulatedProject(P2, region="cn-north-4", world=WorldSettings(tasks=40, seed=2, frozen=True)),
        ],
    )
    platform = PlatformSettings(key_lifetime=900.0, idp_id="cce-idp", id_tokens=frozenset({"sa-token-1"}))
    path = tmp_path / "targets.yml"
    with Simulator(accounts=[account], platform=platform) as simulator:
        url = simulator.url
        path.write_text(
            "targets:\n"
            f"  - {{region: cn-north-4, project_id: {P1}, endpoint: '{url}', credentials: instance}}\n"
            f"  - {{region: cn-north-4, project_id: {P2}, endpoint: '{url}', iam_endpoint: '{url}',"
            " credentials: pod}\n"
            "credentials:\n"
            f"  instance: {{method: metadata, metadata_endpoint: '{url}'}}\n"
            f"  pod: {{idp_id: cce-idp, id_token_file: '{token_file}'}}\n"
        )
        with running(path, {}) as exporter:
            scraped = exporter.scrape()
        metadata_calls, exchanges = simulator.requests.count("metadata"), simulator.requests.count("oidc")
    for project_id in (P1, P2):
        world = simulator.worlds[project_id]
        assert value(scraped, "up", project_id=project_id) == 1
        assert value(scraped, "editing_tasks_reported", project_id=project_id) == world.total()
        expiry = value(scraped, "credentials_expiry_timestamp_seconds", project_id=project_id)
        assert expiry is not None and expiry > time.time()
    assert metadata_calls > 0 and exchanges > 0


def test_a_workload_identity_entry_without_its_token_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "targets.yml"
    path.write_text(
        f"targets:\n  - {{region: cn-north-4, project_id: {P1}, credentials: pod}}\n"
        "credentials:\n  pod: {idp_id: cce-idp}\n"
    )
    with pytest.raises(ConfigError, match=r"credentials 'pod': a workload identity needs id_token_file"):
        read_setups(path, {})
