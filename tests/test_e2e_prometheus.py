"""End to end: a real Prometheus scrapes the real exporter, which lists the simulator.

Every PromQL expression of the dashboard and of the rule files runs against Prometheus' HTTP API:
each must parse, and each must return data where the simulator's data should produce some. The
counts Prometheus stored must equal the simulator's ground truth, and ``promtool check metrics``
must find nothing to say about the live exposition.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest
import yaml

from exporter.app import Exporter
from exporter.cloud.credentials import AkSkCredentials
from exporter.config import ApiSettings, Config, ScrapeSettings, WebSettings
from exporter.serving.basic_auth import BasicAuth
from exporter.serving.server import HttpServer
from exporter.serving.web_config import load_web_config
from exporter.simulator.server import Simulator
from exporter.simulator.world import WorldSettings
from tests.certificates import make_pki
from tests.conftest import free_port, wait_for
from tests.test_dashboard import dashboard_expressions, load_dashboard
from tests.test_rules import ALERTING_RULES, RECORDING_RULES, all_rules

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).parent.parent
PROJECT = "e2e0e2e0e2e0e2e0e2e0e2e0e2e0e2e0"
AK, SK = "AKENDTOEND0000001", "end-to-end-secret"
JOB = "vod-exporter"

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None or PROMTOOL is None,
    reason="the Prometheus server and promtool (Debian package prometheus) are not installed",
)

# Expressions that rightly return nothing from a healthy, young pipeline: what they watch for
# (throttling, stuck or old tasks, failed listings, burn) does not happen in this run.
EXPECTED_EMPTY_PANELS = {"API throttling"}


class StoppableClock:
    """Wall time until ``freeze()``; then that moment, so the simulator's world stands still."""

    def __init__(self) -> None:
        self.frozen_at: float | None = None

    def __call__(self) -> float:
        return self.frozen_at if self.frozen_at is not None else time.time()

    def freeze(self) -> float:
        self.frozen_at = time.time()
        return self.frozen_at


@dataclass
class Stack:
    simulator: Simulator
    exporter: Exporter
    exporter_url: str
    prometheus_url: str
    clock: StoppableClock

    def query(self, expr: str) -> dict[str, Any]:
        response = httpx.get(f"{self.prometheus_url}/api/v1/query", params={"query": expr}, timeout=10)
        return dict(response.json())


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if PROMETHEUS is None:
        pytest.skip("the Prometheus server (Debian package prometheus) is not installed")
    clock = StoppableClock()
    # A fast pipeline, so that tasks finish within seconds and every rate and ratio has data.
    world = WorldSettings(
        tasks=300,
        seed=21,
        arrival_rate=4.0,
        wait_mean=1.0,
        duration_median=3.0,
        duration_sigma=0.5,
        history=600,
    )
    simulator = Simulator(project_id=PROJECT, world_settings=world, access_key=AK, secret_key=SK, clock=clock)
    simulator.start()
    config = Config(
        region="",
        api=ApiSettings(endpoint=simulator.url, project_id=PROJECT, rate_limit=0),
        iam_endpoint=simulator.url,
        # Scraped every second and compared with the world as it stands: every scrape lists.
        scrape=ScrapeSettings(timeout=5, min_refresh_interval=0),
        web=WebSettings(host="127.0.0.1", port=0),
    )
    exporter = Exporter(config, AkSkCredentials(AK, SK), wall_clock=clock)
    server = HttpServer(exporter.wsgi_app(), "127.0.0.1", 0)
    server.start()
    workdir = tmp_path_factory.mktemp("prometheus")
    prometheus_config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RECORDING_RULES), str(ALERTING_RULES)],
        "scrape_configs": [
            {
                "job_name": JOB,
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "static_configs": [{"targets": [f"127.0.0.1:{server.port}"]}],
            }
        ],
    }
    with run_prometheus(workdir, prometheus_config) as prometheus_url:
        yield Stack(simulator, exporter, f"http://127.0.0.1:{server.port}", prometheus_url, clock)
    server.stop()
    exporter.close()
    simulator.stop()


@contextmanager
def run_prometheus(workdir: Path, prometheus_config: dict[str, Any]) -> Iterator[str]:
    """A Prometheus server with this configuration, on a free loopback port; its URL."""
    assert PROMETHEUS is not None
    workdir.mkdir(exist_ok=True)
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(prometheus_config))
    port = free_port()
    log = (workdir / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def series_count(stack: Stack, expr: str) -> int:
    try:
        answer = stack.query(expr)
    except (httpx.TransportError, ValueError):
        return 0  # not up yet: refused, or "Service Unavailable" in plain text while it starts
    return len(answer.get("data", {}).get("result", [])) if answer.get("status") == "success" else 0


@pytest.fixture(scope="module")
def warmed(stack: Stack) -> Stack:
    """Wait until Prometheus has scraped long enough for rates, ratios and rules to have data."""
    wait_for("Prometheus to scrape the exporter", lambda: series_count(stack, f'up{{job="{JOB}"}} == 1'))
    wait_for(
        "tasks to finish while the exporter watches",
        lambda: series_count(stack, "sum(huaweicloud_vod_editing_tasks_finished_total) > 5"),
    )
    wait_for(
        "the recording rules to produce SLIs",
        lambda: (
            series_count(stack, "project_id:vod_editing_tasks_success:ratio_rate5m")
            and series_count(stack, "project_id:vod_editing_tasks_under_latency_target:ratio_rate5m")
        ),
    )
    return stack


def has_data(stack: Stack, expr: str, within: float = 15.0) -> bool:
    """Whether ``expr`` returns data within ``within`` seconds. A listing that drifted twice in a row
    leaves the snapshot series stale for one scrape, so a single empty answer proves nothing."""
    deadline = time.monotonic() + within
    pause = threading.Event()
    while True:
        if stack.query(expr)["data"]["result"]:
            return True
        if time.monotonic() >= deadline:
            return False
        pause.wait(0.5)


def substitute(expr: str) -> str:
    """Grafana's variables as Grafana would fill them for this project."""
    return (
        expr.replace("${project_id}", PROJECT)
        .replace("$project_id", PROJECT)
        .replace("${job}", JOB)
        .replace("$job", JOB)
        .replace("${region}", ".*")
        .replace("$region", ".*")
        .replace("$__rate_interval", "1m")
        .replace("$__interval", "5s")
        .replace("$__range", "5m")
    )


def rule_expressions() -> list[tuple[str, str, str]]:
    """``(kind, name, expr)`` for every recording and alerting rule."""
    found = []
    for rule in all_rules():
        kind = "record" if "record" in rule else "alert"
        found.append((kind, rule[kind], rule["expr"]))
    return found


def variable_queries() -> list[tuple[str, str]]:
    """``(name, query)``: Grafana's ``label_values(metric, label)`` as the PromQL that feeds it."""
    dashboard = load_dashboard()
    queries = []
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        text = variable.get("definition") or variable.get("query")
        if isinstance(text, dict):
            text = text.get("query", "")
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", text.strip())
        assert match, f"variable {variable.get('name')} uses a query this test cannot run: {text!r}"
        queries.append((variable["name"], f"group by ({match.group(2)}) ({substitute(match.group(1))})"))
    return queries


@needs_prometheus
def test_every_dashboard_expression_parses_and_has_data(warmed: Stack) -> None:
    queries = dashboard_expressions()
    assert len(queries) >= 15
    empty = []
    for title, expr in queries:
        answer = warmed.query(substitute(expr))
        assert answer["status"] == "success", f"panel {title!r}: {answer.get('error')}\n{expr}"
        if title not in EXPECTED_EMPTY_PANELS and not has_data(warmed, substitute(expr)):
            empty.append(f"{title}: {expr}")
    assert not empty, "panels without data:\n" + "\n".join(empty)
    for name, query in variable_queries():
        assert warmed.query(query)["status"] == "success", query
        assert has_data(warmed, query), f"variable {name}: {query}"


@needs_prometheus
def test_every_rule_expression_parses_and_recording_rules_have_data(warmed: Stack) -> None:
    rules = rule_expressions()
    assert {kind for kind, _, _ in rules} == {"record", "alert"}
    empty = []
    for kind, name, expr in rules:
        answer = warmed.query(expr)
        assert answer["status"] == "success", f"{kind} {name}: {answer.get('error')}"
        if kind == "record" and not has_data(warmed, name):
            empty.append(name)
    assert not empty, f"recording rules without data: {empty}"


@needs_prometheus
def test_prometheus_loaded_every_rule_without_errors(warmed: Stack) -> None:
    groups = httpx.get(f"{warmed.prometheus_url}/api/v1/rules", timeout=10).json()["data"]["groups"]
    loaded = {rule["name"] for group in groups for rule in group["rules"]}
    assert loaded == {name for _, name, _ in rule_expressions()}
    unhealthy = [(r["name"], r.get("lastError")) for g in groups for r in g["rules"] if r["health"] == "err"]
    assert not unhealthy


@needs_prometheus
def test_no_alert_fires_on_a_healthy_pipeline(warmed: Stack) -> None:
    firing = warmed.query('ALERTS{alertstate="firing"}')["data"]["result"]
    assert [alert["metric"]["alertname"] for alert in firing] == []


@needs_prometheus
def test_stored_counts_equal_the_simulators_ground_truth(warmed: Stack) -> None:
    frozen_at = warmed.clock.freeze()
    truth = {status: count for status, count in warmed.simulator.world.counts(frozen_at).items() if count}

    def stored() -> dict[str, int] | None:
        # Only samples scraped after the freeze describe the frozen world.
        answer = warmed.query("huaweicloud_vod_editing_tasks")["data"]["result"]
        if not answer or min(float(sample["value"][0]) for sample in answer) < frozen_at + 2:
            return None
        return {s["metric"]["status"]: int(float(s["value"][1])) for s in answer if float(s["value"][1])}

    assert wait_for("a scrape after the world stood still", stored) == truth
    reported = warmed.query("huaweicloud_vod_editing_tasks_reported")["data"]["result"]
    assert int(float(reported[0]["value"][1])) == warmed.simulator.world.total(frozen_at)


@needs_prometheus
def test_promtool_finds_nothing_to_say_about_the_live_exposition(warmed: Stack) -> None:
    assert PROMTOOL is not None
    exposition = httpx.get(f"{warmed.exporter_url}/metrics", timeout=10).content
    result = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=exposition, capture_output=True, check=False
    )
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), (
        result.stdout.decode() + result.stderr.decode()
    )


@needs_prometheus
def test_prometheus_scrapes_over_tls_with_basic_auth(tmp_path: Path) -> None:
    """The web config file as a user writes it; Prometheus with ``scheme: https``, the CA and the
    password scrapes it, and the same target with a wrong password is down."""
    pki = make_pki(tmp_path / "pki")
    password = "e2e-scrape-password"
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()
    (tmp_path / "web.yml").write_text(
        f"tls_server_config:\n  cert_file: {pki.server.cert}\n  key_file: {pki.server.key}\n"
        f"basic_auth_users:\n  prometheus: {hashed}\n"
    )
    web = load_web_config(tmp_path / "web.yml")
    simulator = Simulator(
        project_id=PROJECT, world_settings=WorldSettings(tasks=50, seed=3), access_key=AK, secret_key=SK
    )
    simulator.start()
    config = Config(
        region="",
        api=ApiSettings(endpoint=simulator.url, project_id=PROJECT, rate_limit=0),
        iam_endpoint=simulator.url,
        scrape=ScrapeSettings(timeout=5),
        web=WebSettings(host="127.0.0.1", port=0),
    )
    exporter = Exporter(config, AkSkCredentials(AK, SK))
    server = HttpServer(BasicAuth(exporter.wsgi_app(), web.users, web.headers), "127.0.0.1", 0, tls=web.tls)
    server.start()

    def job(name: str, secret: str) -> dict[str, Any]:
        return {
            "job_name": name,
            "scrape_interval": "1s",
            "scrape_timeout": "1s",
            "scheme": "https",
            "tls_config": {"ca_file": str(pki.ca.cert)},
            "basic_auth": {"username": "prometheus", "password": secret},
            "static_configs": [{"targets": [f"127.0.0.1:{server.port}"]}],
        }

    prometheus_config = {"scrape_configs": [job("tls", password), job("wrong-password", "guess")]}
    try:
        with run_prometheus(tmp_path / "prometheus", prometheus_config) as url:
            stack = Stack(simulator, exporter, f"https://127.0.0.1:{server.port}", url, StoppableClock())
            wait_for(
                "Prometheus to scrape over TLS",
                lambda: series_count(stack, 'huaweicloud_vod_up{job="tls"} == 1'),
            )
            wait_for(
                "the wrong password to fail", lambda: series_count(stack, 'up{job="wrong-password"} == 0')
            )
            assert series_count(stack, 'up{job="tls"} == 1') == 1
            assert series_count(stack, '{job="wrong-password", __name__=~"huaweicloud_.*"}') == 0
    finally:
        server.stop()
        exporter.close()
        simulator.stop()
