"""The HTTP surface over a real socket: endpoints, scrape deadline, gzip and OpenMetrics."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from prometheus_client import CollectorRegistry, Gauge

from exporter.config import ScrapeSettings, WebSettings
from exporter.serving.server import HttpServer
from exporter.serving.web import WebApp
from tests.conftest import FakeClock


class Recorder:
    def __init__(self) -> None:
        self.deadlines: list[float] = []
        self.late: frozenset[str] = frozenset()

    def __call__(self, deadline: float) -> frozenset[str]:
        self.deadlines.append(deadline)
        return self.late


@pytest.fixture
def served() -> Iterator[tuple[str, Recorder, WebApp]]:
    registry = CollectorRegistry()
    by_project = ["project_id"]
    up = Gauge("huaweicloud_vod_up", "test gauge", by_project, registry=registry)
    reported = Gauge("huaweicloud_vod_editing_tasks_reported", "test gauge", by_project, registry=registry)
    for project in ("p1", "p2"):
        up.labels(project).set(1)
        reported.labels(project).set(7)
    recorder = Recorder()
    app = WebApp(
        recorder,
        registry,
        WebSettings(telemetry_path="/metrics"),
        ScrapeSettings(timeout=30, timeout_offset=0.5),
        clock=FakeClock(100.0),
    )
    server = HttpServer(app, "127.0.0.1", 0)
    server.start()
    try:
        yield f"http://127.0.0.1:{server.port}", recorder, app
    finally:
        server.stop()


def test_metrics_refreshes_within_prometheus_timeout_less_the_offset(
    served: tuple[str, Recorder, WebApp],
) -> None:
    url, recorder, _ = served
    response = httpx.get(url + "/metrics", headers={"X-Prometheus-Scrape-Timeout-Seconds": "10"})
    assert response.status_code == 200
    assert 'huaweicloud_vod_up{project_id="p1"} 1.0' in response.text
    assert recorder.deadlines == [100.0 + 9.5]


@pytest.mark.parametrize(("header", "budget"), [(None, 30.0), ("120", 30.0), ("garbage", 30.0), ("0.2", 0.0)])
def test_scrape_budget_is_capped_by_the_configured_timeout(
    served: tuple[str, Recorder, WebApp], header: str | None, budget: float
) -> None:
    url, recorder, _ = served
    headers = {"X-Prometheus-Scrape-Timeout-Seconds": header} if header else {}
    httpx.get(url + "/metrics", headers=headers)
    assert recorder.deadlines == [100.0 + budget]


def test_gzip_and_openmetrics_are_negotiated(served: tuple[str, Recorder, WebApp]) -> None:
    url, _, _ = served
    raw = httpx.get(url + "/metrics", headers={"Accept-Encoding": "gzip"})
    assert raw.headers["Content-Encoding"] == "gzip"
    assert 'huaweicloud_vod_up{project_id="p1"} 1.0' in raw.text  # httpx decompressed it
    om = httpx.get(url + "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert om.headers["Content-Type"].startswith("application/openmetrics-text")
    assert om.text.rstrip().endswith("# EOF")


def test_health_readiness_landing_and_not_found(served: tuple[str, Recorder, WebApp]) -> None:
    url, recorder, app = served
    assert httpx.get(url + "/-/healthy").status_code == 200
    assert httpx.get(url + "/-/ready").status_code == 200
    landing = httpx.get(url + "/")
    assert landing.status_code == 200 and 'href="/metrics"' in landing.text
    assert httpx.get(url + "/nope").status_code == 404
    app.shutting_down.set()
    assert httpx.get(url + "/-/ready").status_code == 503
    assert recorder.deadlines == []  # none of these list tasks


def test_a_scrape_that_could_not_wait_for_the_listing_gets_up_0_and_no_snapshot(
    served: tuple[str, Recorder, WebApp],
) -> None:
    url, recorder, _ = served
    recorder.late = frozenset({"p1", "p2"})
    for accept in ("", "application/openmetrics-text; version=1.0.0"):
        text = httpx.get(url + "/metrics", headers={"Accept": accept}).text
        assert 'huaweicloud_vod_up{project_id="p1"} 0.0' in text and "editing_tasks_reported" not in text
    filtered = httpx.get(url + "/metrics", params={"name[]": "huaweicloud_vod_up"}).text
    assert 'huaweicloud_vod_up{project_id="p1"} 0.0' in filtered


def test_a_target_whose_listing_was_late_is_down_and_the_others_intact(
    served: tuple[str, Recorder, WebApp],
) -> None:
    url, recorder, _ = served
    recorder.late = frozenset({"p1"})
    text = httpx.get(url + "/metrics").text
    assert 'huaweicloud_vod_up{project_id="p1"} 0.0' in text
    assert 'huaweicloud_vod_up{project_id="p2"} 1.0' in text
    assert 'reported{project_id="p2"} 7.0' in text and 'reported{project_id="p1"}' not in text


def test_reload_is_forbidden_unless_the_lifecycle_api_is_enabled(
    served: tuple[str, Recorder, WebApp],
) -> None:
    url, recorder, _ = served
    assert httpx.post(url + "/-/reload").status_code == 403
    assert recorder.deadlines == []


@pytest.mark.parametrize(("outcome", "status"), [(None, 200), ("targets.yml: bad", 500)])
def test_reload_takes_post_only_and_says_why_it_was_refused(outcome: str | None, status: int) -> None:
    reloads: list[int] = []

    def reload() -> str | None:
        reloads.append(1)
        return outcome

    app = WebApp(lambda deadline: (), CollectorRegistry(), WebSettings(), ScrapeSettings(), reload=reload)
    server = HttpServer(app, "127.0.0.1", 0)
    server.start()
    try:
        url = f"http://127.0.0.1:{server.port}/-/reload"
        assert httpx.get(url).status_code == 405 and reloads == []
        answer = httpx.post(url)
        assert answer.status_code == status and reloads == [1]
        assert outcome is None or outcome in answer.text
    finally:
        server.stop()


def test_name_filter_and_method(served: tuple[str, Recorder, WebApp]) -> None:
    url, _, _ = served
    filtered = httpx.get(url + "/metrics", params={"name[]": "no_such_metric"})
    assert filtered.status_code == 200 and "huaweicloud_vod_up" not in filtered.text
    assert httpx.post(url + "/metrics").status_code == 405


def test_only_get_lists(served: tuple[str, Recorder, WebApp]) -> None:
    url, recorder, _ = served
    head = httpx.head(url + "/metrics")
    assert head.status_code == 405 and head.headers["Allow"] == "GET"
    assert recorder.deadlines == []
