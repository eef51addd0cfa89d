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
        self.current = True

    def __call__(self, deadline: float) -> bool:
        self.deadlines.append(deadline)
        return self.current


@pytest.fixture
def served() -> Iterator[tuple[str, Recorder, WebApp]]:
    registry = CollectorRegistry()
    Gauge("huaweicloud_vod_up", "test gauge", registry=registry).set(1)
    Gauge("huaweicloud_vod_editing_tasks_reported", "test gauge", registry=registry).set(7)
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
    assert "huaweicloud_vod_up 1.0" in response.text
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
    assert "huaweicloud_vod_up 1.0" in raw.text  # httpx decompressed it
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
    recorder.current = False
    for accept in ("", "application/openmetrics-text; version=1.0.0"):
        text = httpx.get(url + "/metrics", headers={"Accept": accept}).text
        assert "huaweicloud_vod_up 0.0" in text and "editing_tasks_reported" not in text
    filtered = httpx.get(url + "/metrics", params={"name[]": "huaweicloud_vod_up"}).text
    assert "huaweicloud_vod_up 0.0" in filtered


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
