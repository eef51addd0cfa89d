"""What the exporter knows: the last listing's aggregates and the events seen while watching.

A listing ends in a ``Snapshot`` (built by ``listing.known.snapshot_of``, the one place statuses
are counted) and the events its tasks showed, staged in a ``TrackerPass``; ``record_listing`` is the
one way either enters the store. ``SeriesPicker`` keeps the bounded set of tasks that get per-task
series, ``FinishedTaskTracker`` turns successive listings into events (created, finished) that are
each counted once, and ``TaskStore`` holds them with the listing health and hands the collector an
immutable ``StoreView``.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from exporter.config import SeriesSettings
from exporter.histogram import BucketCounts, HistogramSnapshot
from exporter.tasks import FINISHED_STATUSES, OTHER_STATUS, PROCESSING, WAITING, Task

OLDEST_TRACKED_STATUSES = (WAITING, PROCESSING)


@dataclass(frozen=True)
class Snapshot:
    """One complete, consistent listing."""

    taken_at: float  # wall-clock seconds, the moment per-task durations are measured to
    counts: Mapping[str, int]  # tasks per status; every known status present
    reported_total: int
    invalid: int
    oldest_created: Mapping[str, float]  # WAITING/PROCESSING -> oldest create_time, when any
    series_tasks: tuple[Task, ...]  # the tasks that get per-task series
    series_dropped: int  # tasks that qualified for per-task series but were left out by the cap


@dataclass
class TrackerPass:
    """What one listing adds to the tracker: staged, and applied only if the listing succeeds."""

    now: float
    open_ids: dict[str, float] = field(default_factory=dict)  # task_id -> last seen open
    closed_ids: set[str] = field(default_factory=set)  # seen finished
    created_ids: dict[str, float] = field(default_factory=dict)  # task_id -> when it may be forgotten
    finished_ids: dict[str, float] = field(default_factory=dict)  # task_id -> when it may be forgotten
    ended: list[Task] = field(default_factory=list)  # counted as finished in this pass

    @property
    def created(self) -> int:
        return len(self.created_ids)


class FinishedTaskTracker:
    """Counts each task's creation and end once, from successive listings, in bounded memory.

    Only what happens while the exporter watches is counted. A task counts as created when it is
    first seen and was created after the exporter started; as finished when it was seen open
    before, or was created after the exporter started (it came and went between two listings, or
    showed up late). Each of the three memories (seen open, counted as created, counted as
    finished) keeps a task for ``retention`` after the time that made it qualify; a task older
    than that can no longer qualify, so it is forgotten. A task missing from one listing is still
    remembered as open, so it neither counts as created again nor loses its end.
    """

    def __init__(self, started_at: float, retention: float) -> None:
        self._started_at = started_at
        self._retention = retention
        self._open: dict[str, float] = {}  # task_id -> last seen open
        self._created: dict[str, float] = {}  # task_id -> when it may be forgotten
        self._finished: dict[str, float] = {}  # task_id -> when it may be forgotten

    @property
    def remembered(self) -> int:
        """Task ids held in the three memories: bounded by what starts and ends per retention."""
        return len(self._open) + len(self._created) + len(self._finished)

    def begin(self, now: float) -> TrackerPass:
        return TrackerPass(now)

    def observe(self, staged: TrackerPass, task: Task) -> None:
        task_id, now = task.task_id, staged.now
        if task.status in FINISHED_STATUSES:
            if task_id in self._open:  # only these need closing; adding every id would cost ~12 MB at 100k
                staged.closed_ids.add(task_id)
            if task_id in self._finished:
                return
            # A finished task without an end time is dated by its creation: dated "now", it
            # would qualify again every time its memory expired.
            ended = task.ended if task.ended is not None else task.created
            forget_at = ended + self._retention
            if task_id in self._open or (task.created >= self._started_at and forget_at >= now):
                staged.ended.append(task)
                staged.finished_ids[task_id] = max(forget_at, now)
                self._note_created(staged, task)
        elif task.is_open:
            staged.open_ids[task_id] = now
            self._note_created(staged, task)

    def _note_created(self, staged: TrackerPass, task: Task) -> None:
        forget_at = task.created + self._retention
        if task.created >= self._started_at and forget_at >= staged.now and task.task_id not in self._created:
            staged.created_ids[task.task_id] = forget_at

    def commit(self, staged: TrackerPass) -> None:
        now = staged.now
        self._open.update(staged.open_ids)
        for task_id in staged.closed_ids:
            self._open.pop(task_id, None)
        self._created.update(staged.created_ids)
        self._finished.update(staged.finished_ids)
        horizon = now - self._retention
        for memory, cutoff in ((self._open, horizon), (self._created, now), (self._finished, now)):
            for task_id in [key for key, stamp in memory.items() if stamp < cutoff]:
                del memory[task_id]


class OldestOpen:
    """The oldest create_time among WAITING and among PROCESSING tasks."""

    def __init__(self) -> None:
        self._oldest: dict[str, float] = {}

    def add(self, task: Task) -> None:
        status = task.status
        if status in OLDEST_TRACKED_STATUSES:
            oldest = self._oldest.get(status)
            if oldest is None or task.created < oldest:
                self._oldest[status] = task.created

    def times(self) -> dict[str, float]:
        return dict(self._oldest)


class SeriesPicker:
    """The bounded set of tasks that get per-task series: every open task and every task that
    finished within ``max_finished_age``, up to ``max_series``."""

    def __init__(self, settings: SeriesSettings, now: float) -> None:
        # The settings read on every offer are kept as plain attributes: offer runs once per task.
        self._enabled = settings.enabled
        self._max_series = settings.max_series
        self._finished_cutoff = now - settings.max_finished_age
        self._candidates = 0
        self._heap: list[tuple[int, float, int, Task]] = []
        self._order = itertools.count()

    def offer(self, task: Task) -> None:
        if not self._enabled:
            return
        # Higher keys win a place: open tasks before finished ones; among open tasks the oldest
        # (the likeliest to be stuck), among finished ones the most recently ended.
        if task.is_open:
            entry = (1, -task.created, next(self._order), task)
        elif task.ended is None or task.ended < self._finished_cutoff:
            return
        else:
            entry = (0, task.ended, next(self._order), task)
        self._candidates += 1
        heap = self._heap
        if len(heap) < self._max_series:
            heapq.heappush(heap, entry)
        elif heap and entry[:2] > heap[0][:2]:
            heapq.heapreplace(heap, entry)

    def tasks(self) -> tuple[Task, ...]:
        """The tasks picked, best first, as they were offered."""
        return tuple(task for *_, task in sorted(self._heap, reverse=True))

    def picked(self, counts: Mapping[str, int]) -> tuple[tuple[Task, ...], int]:
        """The tasks picked, best first, and how many qualified but were left out. A task whose
        status the counts merged into ``OTHER_STATUS`` carries that status here too."""
        series = tuple(
            task if task.status in counts else task._replace(status=OTHER_STATUS) for task in self.tasks()
        )
        return series, self._candidates - len(series)


@dataclass(frozen=True)
class ListingFacts:
    """How the last published snapshot was made (docs/incremental-listing.md, "Metrics")."""

    mode: str  # full, incremental or sync
    reason: str  # why that mode: configured, learning, order_verified, order_unknown, fallback
    order: str  # newest_first, oldest_first or unknown
    calls: int  # API calls the listing made


@dataclass(frozen=True)
class ListingHealth:
    """What the listing strategies report besides the snapshot."""

    last: ListingFacts | None = None
    fallbacks: Mapping[str, int] = field(default_factory=dict)  # discarded passes by reason
    reconciliations: int = 0
    reconciliation_mismatches: int = 0
    sync_progress: float | None = None  # of a running background complete listing
    last_agreement: float | None = None  # when the state last agreed with a complete listing


@dataclass(frozen=True)
class StoreView:
    """Everything the collector renders, copied under the store's lock."""

    project_id: str
    up: bool
    scrape_duration: float | None
    last_success: float | None
    errors: Mapping[str, int]
    last_error: tuple[str, str] | None  # (reason, detail) of the last listing, if it failed
    snapshot: Snapshot | None  # None unless the last listing succeeded
    created_total: int
    finished_total: Mapping[str, int]
    finished_durations: Mapping[str, HistogramSnapshot]
    tracked_tasks: int  # task ids the finished-task tracker remembers
    listing: ListingHealth = field(default_factory=ListingHealth)


class TaskStore:
    def __init__(self, project_id: str, settings: SeriesSettings, started_at: float) -> None:
        self._project_id = project_id
        self._settings = settings
        self._lock = threading.Lock()
        self._tracker = FinishedTaskTracker(started_at, settings.tracker_retention)
        self._snapshot: Snapshot | None = None
        self._up = False
        self._duration: float | None = None
        self._last_success: float | None = None
        self._errors: Counter[str] = Counter()
        self._last_error: tuple[str, str] | None = None
        self._created = 0
        self._finished: Counter[str] = Counter({status: 0 for status in sorted(FINISHED_STATUSES)})
        self._durations = {status: BucketCounts(settings.duration_buckets) for status in self._finished}
        self._listing_facts: ListingFacts | None = None
        self._fallbacks: Counter[str] = Counter()
        self._reconciliations = 0
        self._reconciliation_mismatches = 0
        self._sync_progress: float | None = None
        self._last_agreement: float | None = None

    @property
    def settings(self) -> SeriesSettings:
        return self._settings

    def begin_tracking(self, now: float) -> TrackerPass:
        """The events of one listing: ``observe`` each task it read, then hand the pass to
        ``record_listing``, which applies them only if the listing is published."""
        return self._tracker.begin(now)

    def observe(self, tracker_pass: TrackerPass, task: Task) -> None:
        self._tracker.observe(tracker_pass, task)

    def record_listing(
        self,
        snapshot: Snapshot,
        tracker_pass: TrackerPass,
        duration: float,
        facts: ListingFacts | None = None,
        *,
        agreed_at: float | None = None,
    ) -> None:
        """The one way a finished listing enters the store. ``agreed_at``: the published state
        comes from (or was checked against) a complete listing made at that moment."""
        with self._lock:
            if facts is not None:
                self._listing_facts = facts
            if agreed_at is not None:
                self._last_agreement = agreed_at
            self._sync_progress = None
            self._tracker.commit(tracker_pass)
            self._created += tracker_pass.created
            for task in tracker_pass.ended:
                self._finished[task.status] += 1
                if task.ended is not None and task.ended >= task.created:
                    self._durations[task.status].observe(task.ended - task.created)
            self._snapshot = snapshot
            self._last_error = None
            self._up = True
            self._duration = duration
            self._last_success = snapshot.taken_at

    def record_failure(self, reason: str, duration: float, detail: str = "") -> None:
        with self._lock:
            self._snapshot = None
            self._last_error = (reason, detail)
            self._up = False
            self._duration = duration
            self._errors[reason] += 1

    def record_pending(self, duration: float, detail: str, progress: float) -> None:
        """No snapshot yet, and no failure: a complete listing runs in the background."""
        with self._lock:
            self._snapshot = None
            self._last_error = ("syncing", detail)
            self._up = False
            self._duration = duration
            self._sync_progress = progress

    def record_fallback(self, reason: str) -> None:
        with self._lock:
            self._fallbacks[reason] += 1

    def note_reconciliation(self, *, mismatch: bool) -> None:
        with self._lock:
            self._reconciliations += 1
            self._reconciliation_mismatches += int(mismatch)

    def view(self) -> StoreView:
        with self._lock:
            return StoreView(
                project_id=self._project_id,
                up=self._up,
                scrape_duration=self._duration,
                last_success=self._last_success,
                errors=dict(self._errors),
                last_error=self._last_error,
                snapshot=self._snapshot,
                created_total=self._created,
                finished_total=dict(self._finished),
                finished_durations={status: counts.snapshot() for status, counts in self._durations.items()},
                tracked_tasks=self._tracker.remembered,
                listing=ListingHealth(
                    last=self._listing_facts,
                    fallbacks=dict(self._fallbacks),
                    reconciliations=self._reconciliations,
                    reconciliation_mismatches=self._reconciliation_mismatches,
                    sync_progress=self._sync_progress,
                    last_agreement=self._last_agreement,
                ),
            )
