"""What is known about the tasks between listings, for incremental passes
(docs/incremental-listing.md, "Age index" and "What is known between passes").

``KnownTasks`` holds the young end of the listing (the anchor), every open task with its age index,
and counts of the finished ones: memory follows the open tasks, not the history. It is built from a
complete listing by ``KnownTasksBuilder`` and carried forward by each verified incremental pass.
Pure: no HTTP, no clocks.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from exporter.tasks import Task


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


def head_entry(task: Task | None) -> HeadEntry:
    if task is None:
        return HeadEntry("", None, None)
    return HeadEntry(task.task_id, task.created, None if task.is_open else task.status)
