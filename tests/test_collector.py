"""The full exposition for a fixed task set and a fixed clock, against golden files.

Rendering through ``generate_latest`` catches what family objects alone do not (names, suffixes,
label escaping). To accept a deliberate change: ``UPDATE_GOLDEN=1 pytest tests/test_collector.py``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from exporter.cloud.api_metrics import ApiRequestStats
from exporter.config import SeriesSettings
from exporter.listing.fold import ListingFold
from exporter.listing.reading import CompleteListing
from exporter.serving.collector import MissedDeadline, VodCollector
from exporter.store import TaskStore
from exporter.tasks import parse_page
from exporter.timestamps import parse_timestamp
from tests.conftest import body, one_target, record

GOLDEN = Path(__file__).parent / "golden"
NOW = parse_timestamp("2026-11-28T10:00:00Z")
START = parse_timestamp("2026-11-28T09:00:00Z")


def fixed_store() -> TaskStore:
    store = TaskStore("p1", SeriesSettings(max_series=4), started_at=START)
    first = [
        record(1, "WAITING", create_time="2026-11-28T09:50:00Z"),
        record(2, "PROCESSING", progress=40, create_time="2026-11-28T09:40:00Z"),
        record(3, "PROCESSING", progress=90, create_time="2026-11-28T09:45:00Z"),
        record(4, "SUCCEED", create_time="2026-11-28T08:00:00Z", end_time="2026-11-28T08:10:00Z"),
        record(5, "RE-QUEUED", create_time="2026-11-28T09:55:00Z", end_time=None),
        {"task_id": "bad", "status": "WAITING", "progress": 500, "create_time": "2026-11-28T09:00:00Z"},
    ]
    second = [
        record(1, "PROCESSING", progress=10, create_time="2026-11-28T09:50:00Z"),
        record(2, "SUCCEED", create_time="2026-11-28T09:40:00Z", end_time="2026-11-28T09:58:00Z"),
        record(3, "FAILED", progress=90, create_time="2026-11-28T09:45:00Z", end_time="2026-11-28T09:59:00Z"),
        record(4, "SUCCEED", create_time="2026-11-28T08:00:00Z", end_time="2026-11-28T08:10:00Z"),
        record(5, "RE-QUEUED", create_time="2026-11-28T09:55:00Z", end_time=None),
        record(6, "WAITING", create_time="2026-11-28T09:59:30Z", asset_id='odd "asset"\\name'),
        {"task_id": "bad", "status": "WAITING", "progress": 500, "create_time": "2026-11-28T09:00:00Z"},
    ]
    for now, records in ((NOW - 60, first), (NOW, second)):
        publish(store, records, now, 0.25)
    store.record_failure("throttled", 1.5, "HTTP 429")
    publish(store, second, NOW, 0.5)
    return store


def publish(store: TaskStore, records: list[Any], now: float, duration: float) -> None:
    """One complete listing of ``records`` (one page), as the strategy publishes it."""
    complete = CompleteListing(ListingFold(), store, now)
    for task in complete.fold.add(parse_page(0, body(records))):
        complete.observe(task)
    store.record_listing(complete.snapshot(complete.fold.result()), complete.tracker, duration, agreed_at=now)


def fixed_stats() -> ApiRequestStats:
    stats = ApiRequestStats()
    for code, seconds in (("200", 0.04), ("200", 0.2), ("429", 0.01)):
        stats.observe("list_editing_tasks", code, seconds)
    stats.observe("iam_token", "201", 0.3)
    return stats


def fixed_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(VodCollector(one_target(fixed_store().view), fixed_stats()))
    return registry


def normalise(text: str) -> str:
    # What this build is differs from run to run (tests/test_build.py checks the values).
    return re.sub(r'(python_version|revision)="[^"]*"', r'\1="X"', text)


@pytest.mark.parametrize(
    ("name", "render"),
    [("exposition.prom", generate_latest), ("exposition.openmetrics", generate_openmetrics)],
)
def test_exposition_matches_golden(name: str, render: object) -> None:
    text = normalise(render(fixed_registry()).decode())  # type: ignore[operator]
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text()


def test_failed_listing_publishes_health_and_events_but_no_snapshot() -> None:
    store = TaskStore("p1", SeriesSettings(), started_at=START)
    store.record_failure("auth", 0.1, "HTTP 401")
    registry = CollectorRegistry()
    registry.register(VodCollector(one_target(store.view), ApiRequestStats()))
    text = generate_latest(registry).decode()
    assert 'huaweicloud_vod_up{project_id="p1"} 0.0' in text
    assert 'huaweicloud_vod_scrape_errors_total{project_id="p1",reason="auth"} 1.0' in text
    assert 'huaweicloud_vod_scrape_errors_total{project_id="p1",reason="timeout"} 0.0' in text
    assert 'huaweicloud_vod_editing_tasks_finished_total{project_id="p1",status="SUCCEED"} 0.0' in text
    for absent in (
        "huaweicloud_vod_editing_tasks{",
        "editing_tasks_reported",
        "editing_task_info",
        "series_dropped",
    ):
        assert absent not in text


def test_registering_the_collector_does_not_read_the_store() -> None:
    calls = []

    def view() -> object:
        calls.append(1)
        raise AssertionError("registering must not read the store, which may list")

    # auto_describe: a collector without describe() would be collected at registration.
    registry = CollectorRegistry(auto_describe=True)
    registry.register(VodCollector(one_target(view), ApiRequestStats()))  # type: ignore[arg-type]
    assert calls == []


def test_describe_names_every_family_that_collect_can_yield() -> None:
    collector = VodCollector(one_target(fixed_store().view), fixed_stats())
    described = {family.name for family in collector.describe()}
    assert {family.name for family in collector.collect()} <= described


def test_name_filter_selects_the_named_families() -> None:
    # name[] finds collectors by the names they describe: without describe() it finds none.
    registry = fixed_registry()
    names = ["huaweicloud_vod_up", "huaweicloud_vod_editing_task_info"]
    text = generate_latest(registry.restricted_registry(names)).decode()
    shown = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    assert shown == set(names)
    assert 'huaweicloud_vod_up{project_id="p1"} 1.0' in text


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool (Debian package prometheus) is not installed"
)
def test_promtool_finds_nothing_to_lint() -> None:
    result = subprocess.run(
        ["promtool", "check", "metrics"],
        input=generate_latest(fixed_registry()),
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode() + result.stdout.decode()
    assert result.stdout.decode().strip() == "" and result.stderr.decode().strip() == ""


def test_a_missed_deadline_is_up_0_with_every_snapshot_family_left_out() -> None:
    registry = fixed_registry()
    full = generate_latest(registry).decode()
    late = generate_latest(MissedDeadline(registry, {"p1"})).decode()  # type: ignore[arg-type]
    assert 'huaweicloud_vod_up{project_id="p1"} 1.0' in full
    assert 'huaweicloud_vod_up{project_id="p1"} 0.0' in late

    def families(text: str) -> set[str]:
        return {line.split(" ")[2] for line in text.splitlines() if line.startswith("# TYPE")}

    snapshot = {
        "huaweicloud_vod_" + name
        for name in (
            "editing_tasks",
            "editing_tasks_reported",
            "editing_tasks_invalid",
            "editing_oldest_task_created_timestamp_seconds",
            "editing_task_series_dropped",
            "editing_task_info",
            "editing_task_status",
            "editing_task_progress_ratio",
            "editing_task_created_timestamp_seconds",
            "editing_task_ended_timestamp_seconds",
            "editing_task_duration_seconds",
        )
    }
    assert snapshot <= families(full)
    assert families(late) == families(full) - snapshot
    # The counters are as they were: the listing goes on, and is counted when it ends.
    assert 'reason="throttled"} 1.0' in late


def test_a_defect_of_the_exporter_has_a_reason_of_its_own_exported_from_the_start() -> None:
    store = TaskStore("p1", SeriesSettings(), started_at=START)
    registry = CollectorRegistry()
    registry.register(VodCollector(one_target(store.view), ApiRequestStats()))
    text = generate_latest(registry).decode()
    assert 'huaweicloud_vod_scrape_errors_total{project_id="p1",reason="internal"} 0.0' in text
