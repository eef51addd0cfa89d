"""What a listing knows about the tasks (docs/incremental-listing.md, "Age index" and "What is
known between passes"), and the one way a snapshot is made of it.

``KnownTasks`` holds the young end of the listing (the anchor), every open task with its age index,
and counts of the finished ones: memory follows the open tasks, not the history. Every complete
listing ends in one (``fold.ListingFold``), and each verified incremental pass carries it forward.
``snapshot_of`` turns it into what the store publishes, so statuses are counted in one place.
Pure: no HTTP, no clocks.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from exporter.config import SeriesSettings
from exporter.store import OldestOpen, SeriesPicker, Snapshot
from exporter.tasks import StatusCounts, Task


class PassRejected(Exception):
    """A listing or pass whose checks failed: nothing it read may be published. ``reason`` is the
    check, the label of ``huaweicloud_vod_listing_fallbacks_total``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class BrokenInvariant(AssertionError):
    """``KnownTasks`` that cannot describe any listing: a defect of the exporter's own."""


class Order(enum.Enum):
    NEWEST_FIRST = "newest_first"
    OLDEST_FIRST = "oldest_first"
    UNKNOWN = "unknown"


def age_index(order: Order, total: int, position: int) -> int:
    """The number of tasks older than the one at ``position`` of a listing of ``total`` tasks.

    New tasks arrive at the young end, so this never changes for a task that stays listed, however
    many arrive: a page read at any time is placed exactly by its own ``total``.
    """
    if order is Order.NEWEST_FIRST:
        return total - 1 - position
    if order is Order.OLDEST_FIRST:
        return position
    raise ValueError("an unknown order gives no age index")


def offset_of(order: Order, total: int, youngest_age: int, count: int) -> int:
    """The offset of the page that holds the ``count`` age indices up to ``youngest_age``
    (exclusive), in a listing of ``total`` tasks."""
    if order is Order.NEWEST_FIRST:
        return total - youngest_age
    if order is Order.OLDEST_FIRST:
        return youngest_age - count
    raise ValueError("an unknown order gives no offsets")


# The youngest ages kept as the anchor of the next pass: the youngest tie group and what else was
# read, up to a few pages. More anchors make a task that moved likelier to be seen at once.
HEAD_AGES = 300


@dataclass(frozen=True, slots=True)
class HeadEntry:
    """One listed record at the young end: a task, or a malformed record (``task_id`` empty)."""

    task_id: str
    created: float | None
    finished_status: str | None  # the final status, for tasks already finished


@dataclass(frozen=True)
class KnownTasks:
    order: Order
    total: int
    head: Mapping[int, HeadEntry]  # age index -> entry, for a contiguous run of the youngest ages
    open: Mapping[str, tuple[int, Task]]  # task_id -> (age index, last record seen)
    finished: Mapping[str, int]  # tasks per final status
    invalid: int  # malformed records in the listing
    last_growth: int = 0  # tasks added between the last two passes: where oldest-first looks

    @property
    def youngest_created(self) -> float | None:
        times = [entry.created for entry in self.head.values() if entry.created is not None]
        return max(times) if times else None

    @property
    def youngest_run(self) -> int:
        """How many of the youngest ages form the youngest tie group (malformed records among them
        included): their order among themselves is not fixed, so they are compared as a set."""
        top = self.youngest_created
        run = 0
        for age in range(self.total - 1, -1, -1):
            entry = self.head.get(age)
            if entry is None or (entry.created is not None and entry.created != top):
                break
            run += 1
        return run

    def counts(self) -> Counter[str]:
        counts: Counter[str] = Counter(self.finished)
        for _, task in self.open.values():
            counts[task.status] += 1
        return counts

    def check(self) -> None:
        """Raise ``BrokenInvariant`` unless these could be the tasks of one listing (docs:
        "Invariants"): every task counted once, open tasks at distinct ages in range, and a head
        that is one run of the youngest ages."""
        finished = sum(self.finished.values())
        if finished + len(self.open) + self.invalid != self.total:
            raise BrokenInvariant(
                f"{finished} finished + {len(self.open)} open + {self.invalid} invalid != total {self.total}"
            )
        if any(count < 0 for count in self.finished.values()) or self.invalid < 0:
            raise BrokenInvariant("a negative count")
        if self.order is Order.UNKNOWN:
            return
        ages = [age for age, _ in self.open.values()]
        if any(not 0 <= age < self.total for age in ages):
            raise BrokenInvariant(f"an open task's age index lies outside [0, {self.total})")
        if len(set(ages)) != len(ages):
            raise BrokenInvariant("two open tasks share an age index")
        if self.head and sorted(self.head) != list(range(self.total - len(self.head), self.total)):
            raise BrokenInvariant("the head is not one run of the youngest ages")


def head_entry(task: Task | None) -> HeadEntry:
    if task is None:
        return HeadEntry("", None, None)
    return HeadEntry(task.task_id, task.created, None if task.is_open else task.status)


def snapshot_of(known: KnownTasks, series: SeriesPicker, now: float) -> Snapshot:
    """The snapshot a listing publishes: counts from what is known, the oldest open tasks, and the
    per-task series ``series`` picked from the tasks offered to it. The only place statuses are
    counted."""
    counts = StatusCounts()
    for status, count in known.finished.items():
        counts.add(status, count)
    oldest = OldestOpen()
    for _, task in known.open.values():
        counts.add(task.status)
        oldest.add(task)
    capped = counts.capped()
    picked, dropped = series.picked(capped)
    return Snapshot(
        taken_at=now,
        counts=capped,
        reported_total=known.total,
        invalid=known.invalid,
        oldest_created=oldest.times(),
        series_tasks=picked,
        series_dropped=dropped,
    )


def series_of(
    known: KnownTasks, recently_finished: Iterable[Task], settings: SeriesSettings, now: float
) -> SeriesPicker:
    """The per-task series of a pass, which reads only some tasks: the open ones known, and the
    recently finished ones remembered."""
    series = SeriesPicker(settings, now)
    for _, task in known.open.values():
        series.offer(task)
    for task in recently_finished:
        series.offer(task)
    return series
