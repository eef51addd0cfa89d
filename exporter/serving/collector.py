"""Builds the metric families from a ``StoreView``: fresh families on every ``collect()``.

A sample of the exposition (one task, trimmed)::

    huaweicloud_vod_up{project_id="p1"} 1.0
    huaweicloud_vod_editing_tasks{project_id="p1",status="PROCESSING"} 1.0
    huaweicloud_vod_editing_task_info{asset_id="a1",project_id="p1",task_id="t1"} 1.0
    huaweicloud_vod_editing_task_progress_ratio{project_id="p1",task_id="t1"} 0.4
    huaweicloud_vod_editing_tasks_finished_total{project_id="p1",status="SUCCEED"} 3.0
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from exporter.build import build_info
from exporter.cloud.api_metrics import ApiRequestStats
from exporter.histogram import HistogramSnapshot
from exporter.serving.exposition import label_value
from exporter.store import StoreView
from exporter.tasks import PROCESSING, WAITING

PREFIX = "huaweicloud_vod_"

# Every reason is exported from the start, so rate() and increase() see the first failure.
SCRAPE_ERROR_REASONS = (
    "auth",
    "throttled",
    "timeout",
    "server_error",
    "network",
    "bad_response",
    "inconsistent",
    "internal",  # a defect of the exporter's own, logged with its traceback: not the API's fault
)


# The checks that can discard an incremental pass (docs/incremental-listing.md, "Metrics"), all
# exported from the start.
FALLBACK_REASONS = (
    "removed",
    "anchor_moved",
    "young_end",
    "open_task_missing",
    "task_deleted",
    "duplicate",
    "status_reverted",
    "order_changed",
    "order_unknown",
    "timeout",
    "inconsistent",
)


@dataclass(frozen=True)
class TargetView:
    """One target as the collector sees it: its store's view, and its region for ``target_info``."""

    region: str
    view: StoreView


class VodCollector(Collector):
    def __init__(
        self,
        targets: Callable[[], Iterable[TargetView]],
        api_stats: ApiRequestStats,
        *,
        min_refresh_interval: float = 0.0,
    ) -> None:
        """``targets``: every target's view, read once per scrape."""
        self._targets = targets
        self._api_stats = api_stats
        self._min_refresh_interval = min_refresh_interval

    def describe(self) -> Iterable[Metric]:
        # Without describe(), registering would call collect() and so the API.
        return list(_Families(self._min_refresh_interval).all())

    def collect(self) -> Iterable[Metric]:
        families = _Families(self._min_refresh_interval)
        families.fill_process(self._api_stats)
        for target in self._targets():
            view = target.view
            families.target_info.add_metric([view.project_id, label_value(target.region)], 1)
            families.fill_health(view)
            families.fill_events(view)
            families.fill_listing(view)
            if view.snapshot is not None:
                families.fill_snapshot(view)
                families.fill_tasks(view, now=view.snapshot.taken_at)
        return list(families.present())


class MissedDeadline(Collector):
    """What a scrape that could not wait for some targets' listings is served: ``source``'s
    families with ``up`` 0 and no snapshot series for the targets (project ids) in ``late``, so
    that no stale count passes for a fresh one. The counters stay as they are: the listing goes
    on, and is counted when it ends. The other targets' series are untouched.

    ``source`` is anything with ``collect()``: the registry, or the part of it that ``name[]``
    asks for. The families are the ones a normal scrape builds, so the cost is the same.
    """

    def __init__(self, source: Collector, late: Collection[str]) -> None:
        self._source = source
        self._late = late

    def collect(self) -> Iterable[Metric]:
        for family in self._source.collect():
            if family.name in _SNAPSHOT_FAMILIES:
                kept = _without_late(family, self._late)
                if kept.samples:
                    yield kept
                continue
            yield _down(family, self._late) if family.name == _UP else family


def _is_late(labels: Mapping[str, str], late: Collection[str]) -> bool:
    return labels.get("project_id") in late


def _without_late(family: Metric, late: Collection[str]) -> Metric:
    kept = Metric(family.name, family.documentation, family.type, family.unit)
    for sample in family.samples:  # gauges, all of them: no exemplars to carry
        if not _is_late(sample.labels, late):
            kept.add_sample(sample.name, sample.labels, sample.value, sample.timestamp)
    return kept


def _down(up: Metric, late: Collection[str]) -> Metric:
    down = Metric(up.name, up.documentation, up.type, up.unit)
    for sample in up.samples:
        down.add_sample(sample.name, sample.labels, 0.0 if _is_late(sample.labels, late) else sample.value)
    return down


def _gauge(name: str, documentation: str, labels: Sequence[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, documentation, labels=labels)


def _counter(name: str, documentation: str, labels: Sequence[str]) -> CounterMetricFamily:
    return CounterMetricFamily(PREFIX + name, documentation, labels=labels)


class _Families:
    """The families of one exposition; each ``fill_*`` adds one group's samples."""

    def __init__(self, min_refresh_interval: float) -> None:
        shared = (
            f" Scrapes within {min_refresh_interval:g}s of a listing are served that listing."
            if min_refresh_interval > 0
            else " Overlapping scrapes share one listing."
        )
        p, pt = ("project_id",), ("project_id", "task_id")
        self.build_info = GaugeMetricFamily(
            "huaweicloud_vod_exporter_build_info",
            "vod-exporter's version and the git revision it was built from (or unknown), always 1.",
            labels=("version", "revision", "python_version"),
        )
        self.target_info = _gauge(
            "target_info", "A (region, project) this exporter lists, always 1.", ("project_id", "region")
        )
        self.up = _gauge("up", "1 if the last listing read every page and made sense, else 0." + shared, p)
        self.duration = _gauge("scrape_duration_seconds", "Time the last listing took.", p)
        self.last_success = _gauge(
            "last_success_timestamp_seconds", "When a listing last succeeded (0: never yet).", p
        )
        self.errors = _counter("scrape_errors", "Failed listings by reason.", ("project_id", "reason"))
        self.requests = _counter(
            "api_requests",
            "HTTP requests made to the API, by HTTP status or network_error/timeout: the quota bill.",
            ("operation", "code"),
        )
        self.latency = HistogramMetricFamily(
            PREFIX + "api_request_duration_seconds", "API request latency.", labels=("operation",)
        )
        self.tasks = _gauge(
            "editing_tasks",
            "Editing tasks per status in the last listing; unknown statuses past the ten most "
            'frequent are counted under status="other".',
            ("project_id", "status"),
        )
        self.reported = _gauge("editing_tasks_reported", "The API's own total in the last listing.", p)
        self.invalid = _gauge("editing_tasks_invalid", "Records skipped as malformed in the last listing.", p)
        self.oldest = _gauge(
            "editing_oldest_task_created_timestamp_seconds",
            "Oldest create_time among WAITING and among PROCESSING tasks.",
            ("project_id", "status"),
        )
        self.dropped = _gauge(
            "editing_task_series_dropped",
            "Tasks that qualified for per-task series but were left out by --tasks.max-series.",
            p,
        )
        self.info = _gauge(
            "editing_task_info", "An editing task, always 1.", ("project_id", "task_id", "asset_id")
        )
        self.status = _gauge(
            "editing_task_status", "1 for the task's current status.", ("project_id", "task_id", "status")
        )
        self.progress = _gauge("editing_task_progress_ratio", "Task progress, 0 to 1.", pt)
        self.created = _gauge("editing_task_created_timestamp_seconds", "The task's create_time.", pt)
        self.ended = _gauge("editing_task_ended_timestamp_seconds", "The task's end_time, once set.", pt)
        self.task_duration = _gauge(
            "editing_task_duration_seconds",
            "end_time - create_time; while open, listing time - create_time.",
            pt,
        )
        self.created_total = _counter(
            "editing_tasks_created",
            "Tasks first seen that were created after the exporter started.",
            p,
        )
        self.finished_total = _counter(
            "editing_tasks_finished",
            "Tasks seen reaching SUCCEED/FAILED/CANCEL while the exporter watched, each counted once.",
            ("project_id", "status"),
        )
        self.tracked = _gauge(
            "editing_tasks_tracked",
            "Task ids remembered so that each creation and end is counted once "
            "(bounded by --tasks.tracker-retention).",
            p,
        )
        self.listing_mode = _gauge(
            "listing_mode",
            "1 for how the last published listing was made: full (complete), incremental, or sync "
            "(a complete listing in the background); reason says why.",
            ("project_id", "mode", "reason"),
        )
        self.listing_order = _gauge(
            "listing_order",
            "1 for the API's listing order as last learned: newest_first, oldest_first or unknown.",
            ("project_id", "order"),
        )
        self.listing_calls = _gauge("listing_calls", "API calls the last published listing made.", p)
        self.listing_fallbacks = _counter(
            "listing_fallbacks",
            "Incremental passes discarded for a complete listing, by the check that failed.",
            ("project_id", "reason"),
        )
        self.sync_progress = _gauge(
            "listing_sync_progress_ratio",
            "Share of the tasks a running background complete listing has read.",
            p,
        )
        self.reconciliations = _counter(
            "listing_reconciliations",
            "Background complete listings compared with the incremental state.",
            p,
        )
        self.reconciliation_mismatches = _counter(
            "listing_reconciliation_mismatches",
            "Reconciliations that disagreed with the incremental state (the complete listing won).",
            p,
        )
        self.last_agreement = _gauge(
            "listing_last_agreement_timestamp_seconds",
            "When the published state last agreed with a complete listing: one it was built from, "
            "or a reconciliation that found no difference.",
            p,
        )
        self.finished_duration = HistogramMetricFamily(
            PREFIX + "editing_finished_task_duration_seconds",
            "end_time - create_time of the tasks counted in editing_tasks_finished_total.",
            labels=("project_id", "status"),
        )

    def all(self) -> Iterator[Metric]:
        for value in vars(self).values():
            if isinstance(value, Metric):
                yield value

    def from_snapshot(self) -> tuple[Metric, ...]:
        """The families that ``fill_snapshot`` and ``fill_tasks`` fill: only a fresh listing has them."""
        snapshot = (self.tasks, self.reported, self.invalid, self.oldest, self.dropped)
        per_task = (self.info, self.status, self.progress, self.created, self.ended, self.task_duration)
        return snapshot + per_task

    def present(self) -> Iterator[Metric]:
        return (f for f in self.all() if f.samples)

    def fill_process(self, api_stats: ApiRequestStats) -> None:
        """The families of the process, not of one target: its build, and the API calls of all."""
        build = build_info()
        self.build_info.add_metric([build.version, build.revision, build.python_version], 1)
        for (operation, code), count in sorted(api_stats.requests().items()):
            self.requests.add_metric([operation, code], count)
        for operation, histogram in sorted(api_stats.latencies().items()):
            self.latency.add_metric([operation], *_cumulative(histogram))

    def fill_health(self, view: StoreView) -> None:
        p = [view.project_id]
        self.up.add_metric(p, 1 if view.up else 0)
        if view.scrape_duration is not None:
            self.duration.add_metric(p, view.scrape_duration)
        self.last_success.add_metric(p, view.last_success or 0)
        for reason in _with_extra(SCRAPE_ERROR_REASONS, view.errors):
            self.errors.add_metric([view.project_id, reason], view.errors.get(reason, 0))

    def fill_listing(self, view: StoreView) -> None:
        p, listing = [view.project_id], view.listing
        if listing.last is not None:
            self.listing_mode.add_metric([view.project_id, listing.last.mode, listing.last.reason], 1)
            self.listing_order.add_metric([view.project_id, listing.last.order], 1)
            self.listing_calls.add_metric(p, listing.last.calls)
        for reason in _with_extra(FALLBACK_REASONS, listing.fallbacks):
            self.listing_fallbacks.add_metric([view.project_id, reason], listing.fallbacks.get(reason, 0))
        if listing.sync_progress is not None:
            self.sync_progress.add_metric(p, listing.sync_progress)
        self.reconciliations.add_metric(p, listing.reconciliations)
        self.reconciliation_mismatches.add_metric(p, listing.reconciliation_mismatches)
        if listing.last_agreement is not None:
            self.last_agreement.add_metric(p, listing.last_agreement)

    def fill_events(self, view: StoreView) -> None:
        self.created_total.add_metric([view.project_id], view.created_total)
        self.tracked.add_metric([view.project_id], view.tracked_tasks)
        for status, count in sorted(view.finished_total.items()):
            self.finished_total.add_metric([view.project_id, label_value(status)], count)
        for status, histogram in sorted(view.finished_durations.items()):
            self.finished_duration.add_metric([view.project_id, label_value(status)], *_cumulative(histogram))

    def fill_snapshot(self, view: StoreView) -> None:
        snapshot = view.snapshot
        assert snapshot is not None
        p = [view.project_id]
        for status, count in sorted(snapshot.counts.items()):
            self.tasks.add_metric([view.project_id, label_value(status)], count)
        self.reported.add_metric(p, snapshot.reported_total)
        self.invalid.add_metric(p, snapshot.invalid)
        for status in (WAITING, PROCESSING):
            if status in snapshot.oldest_created:
                self.oldest.add_metric([view.project_id, status], snapshot.oldest_created[status])
        self.dropped.add_metric(p, snapshot.series_dropped)

    def fill_tasks(self, view: StoreView, now: float) -> None:
        assert view.snapshot is not None
        project = view.project_id
        for task in view.snapshot.series_tasks:
            task_id = label_value(task.task_id)
            ids = [project, task_id]
            self.info.add_metric([project, task_id, label_value(task.asset_id)], 1)
            self.status.add_metric([project, task_id, label_value(task.status)], 1)
            self.progress.add_metric(ids, task.progress / 100)
            self.created.add_metric(ids, task.created)
            if task.ended is not None:
                self.ended.add_metric(ids, task.ended)
            self.task_duration.add_metric(ids, task.duration(now))


_UP = PREFIX + "up"
_SNAPSHOT_FAMILIES = frozenset(family.name for family in _Families(0.0).from_snapshot())


def _with_extra(known: Sequence[str], seen: Mapping[str, int]) -> list[str]:
    return list(known) + sorted(set(seen) - set(known))


def _cumulative(histogram: HistogramSnapshot) -> tuple[list[tuple[str, float]], float]:
    running = 0
    buckets: list[tuple[str, float]] = []
    for bound, count in zip([*histogram.bounds, float("inf")], histogram.bucket_counts, strict=True):
        running += count
        buckets.append(("+Inf" if bound == float("inf") else _float_text(bound), running))
    return buckets, histogram.total


def _float_text(value: float) -> str:
    # Prometheus' own client writes le="10.0"; keep that form so dashboards match across exporters.
    return repr(float(value))


class CredentialsState(Protocol):
    """What the collector reads of credentials that expire and are renewed (``auth`` provides
    it): read-only, and never a call to the cloud."""

    @property
    def expires_at(self) -> float | None: ...

    @property
    def renewal_failures(self) -> int: ...


class CredentialsCollector(Collector):
    """When each target's credentials expire, and how often renewing them failed. Only targets
    whose credentials expire (an IAM token, a temporary key) are in ``states``, so the families are
    absent for long-lived AK/SK or a static token. Sample::

        huaweicloud_vod_credentials_expiry_timestamp_seconds{project_id="p1"} 1.7649e+09
        huaweicloud_vod_credentials_renewal_failures_total{project_id="p1"} 0.0
    """

    def __init__(self, states: Callable[[], Sequence[tuple[str, CredentialsState]]]) -> None:
        self._states = states

    def describe(self) -> Iterable[Metric]:
        return list(self._families())

    def collect(self) -> Iterable[Metric]:
        expiry, failures = self._families()
        for project_id, state in self._states():
            expires_at = state.expires_at
            if expires_at is not None:
                expiry.add_metric((project_id,), expires_at)
            failures.add_metric((project_id,), state.renewal_failures)
        return [family for family in (expiry, failures) if family.samples]

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, CounterMetricFamily]:
        p = ("project_id",)
        return (
            _gauge(
                "credentials_expiry_timestamp_seconds",
                "When the credentials in use (IAM token or temporary key) expire; renewed before then.",
                p,
            ),
            _counter(
                "credentials_renewal_failures",
                "Failed attempts to renew the credentials; the last good ones are used until they expire.",
                p,
            ),
        )
