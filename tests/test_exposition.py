"""Our text renderer against prometheus_client's: identical bytes, for every family we serve."""

from __future__ import annotations

import math

import pytest
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from exporter.serving.exposition import _go_float, render_openmetrics, render_text
from tests.test_collector import fixed_registry


class Frozen:
    """The families of one collection, so that both renderers see the same process metrics."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.families = list(registry.collect())

    def collect(self) -> list[Metric]:
        return self.families


def test_the_full_exposition_is_byte_identical() -> None:
    registry = fixed_registry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    frozen = Frozen(registry)
    assert render_text(frozen) == generate_latest(frozen)  # type: ignore[arg-type]


def test_per_task_rows_become_samples_for_other_renderers() -> None:
    text = generate_latest(fixed_registry()).decode()
    assert 'huaweicloud_vod_editing_task_progress_ratio{project_id="p1",task_id="task-000003"} 0.9' in text


class Odd:
    """Families that the fast path hands to prometheus_client: they must come out the same too."""

    def collect(self) -> list[Metric]:
        stamped = GaugeMetricFamily("stamped_gauge", "has a timestamp", labels=["a"])
        stamped.add_metric(["x"], 1.5, timestamp=1234.5)
        created = CounterMetricFamily(
            "with_created", "counter with a created time", labels=["a"], created=99.0
        )
        created.add_metric(["x"], 3)
        escaped = GaugeMetricFamily("escaped", "help with \\ and\nnewline", labels=["v"])
        escaped.add_metric(['quote " back \\ new\nline'], 2)
        return [stamped, created, escaped]


def test_families_off_the_fast_path_match_too() -> None:
    registry = CollectorRegistry()
    registry.register(Odd())  # type: ignore[arg-type]
    Counter("plain_events", "a library counter", ["kind"], registry=registry).labels("a").inc()
    Histogram("latency_seconds", "a library histogram", registry=registry).observe(0.3)
    Gauge("no_labels", "a gauge", registry=registry).set(-2.5)
    frozen = Frozen(registry)
    assert render_text(frozen) == generate_latest(frozen)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value",
    [0.0, 1.0, -1.0, 0.1, 1e-9, 123456.0, 1234567.0, 1795859970.0, 1e21, math.inf, -math.inf, math.nan, 7],
)
def test_floats_are_written_as_go_writes_them(value: float) -> None:
    from prometheus_client.utils import floatToGoString

    assert _go_float(value) == floatToGoString(value)


@pytest.mark.parametrize(
    "accept",
    [
        # What Prometheus 2.42 sends: OpenMetrics first.
        "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
        "text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
        "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8",
    ],
)
def test_openmetrics_is_byte_identical(accept: str) -> None:
    registry = fixed_registry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    registry.register(Odd())  # type: ignore[arg-type]
    frozen = Frozen(registry)
    encoder, content_type = choose_encoder(accept)
    assert content_type.startswith("application/openmetrics-text")
    assert render_openmetrics(frozen, encoder) == encoder(frozen)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "accept",
    [
        "application/openmetrics-text;version=1.0.0;escaping=dots",
        "text/plain;version=1.0.0;escaping=dots",
        "text/plain;version=1.0.0;escaping=values",
    ],
)
def test_a_scraper_asking_for_another_name_escaping_gets_prometheus_clients_output(accept: str) -> None:
    from exporter.serving.web import _metrics

    registry = fixed_registry()
    answers: list[tuple[str, list[tuple[str, str]]]] = []
    environ = {"HTTP_ACCEPT": accept, "QUERY_STRING": ""}
    (body,) = _metrics(registry, environ, lambda status, headers: answers.append((status, headers)))  # type: ignore[arg-type]
    encoder, _ = choose_encoder(accept)
    assert body == encoder(registry)
