"""What a complete listing teaches (docs/incremental-listing.md, "Learning the order"): the API's
order, and the ``KnownTasks`` that incremental passes start from.

The API does not document its order. Incremental passes depend on it, so it is learned from what a
complete, consistent listing showed, and re-learned from every complete listing after that.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

from exporter.known import HEAD_AGES, HeadEntry, KnownTasks, Order, age_index, head_entry
from exporter.tasks import Page, StatusCounts, Task

_Record = TypeVar("_Record")

# Pages kept from each end of a complete listing, to know the young end once the order is known:
# as many ages as a pass keeps as its anchor.
_END_PAGES = math.ceil(HEAD_AGES / 100)


@dataclass(frozen=True, slots=True)
class _PageShape:
    offset: int
    size: int  # records on the page, valid or not
    first: float  # create_time of the first valid task
    last: float
    never_up: bool  # create_time never increases along the page
    never_down: bool
    steps: bool  # create_time changes somewhere on the page


class OrderEvidence:
    """Collects, page by page, what a complete listing says about the order: one entry per page
    (pages arrive in any order), never one per task."""

    def __init__(self) -> None:
        self._shapes: list[_PageShape] = []
        self._extents: list[tuple[int, int]] = []  # (offset, records) of every page

    def add(self, page: Page) -> None:
        self._extents.append((page.offset, len(page.tasks) + page.invalid))
        times = [task.created for task in page.tasks]
        if not times:
            return
        pairs = list(itertools.pairwise(times))
        self._shapes.append(
            _PageShape(
                offset=page.offset,
                size=len(page.tasks) + page.invalid,
                first=times[0],
                last=times[-1],
                never_up=all(later <= earlier for earlier, later in pairs),
                never_down=all(later >= earlier for earlier, later in pairs),
                steps=any(later != earlier for earlier, later in pairs),
            )
        )

    def order(self) -> Order:
        """Newest first when create_time never increases along the listing and decreases at
        least once; oldest first, the mirror; otherwise unknown. Ties never break it."""
        extents = sorted(self._extents)
        if any(offset + size != following for (offset, size), (following, _) in itertools.pairwise(extents)):
            return Order.UNKNOWN  # not one whole listing: no evidence of anything
        shapes = sorted(self._shapes, key=lambda shape: shape.offset)
        joins = list(itertools.pairwise(shapes))
        steps = any(s.steps for s in shapes) or any(b.first != a.last for a, b in joins)
        if not steps:
            return Order.UNKNOWN  # one task, or every task in one second: nothing to learn from
        if all(s.never_up for s in shapes) and all(b.first <= a.last for a, b in joins):
            return Order.NEWEST_FIRST
        if all(s.never_down for s in shapes) and all(b.first >= a.last for a, b in joins):
            return Order.OLDEST_FIRST
        return Order.UNKNOWN


class KnownTasksBuilder:
    """Learns ``KnownTasks`` from the pages of one complete listing, fed alongside the store's
    ``ListingBuilder``. Keeps one entry per page and per open task, never one per task."""

    def __init__(self) -> None:
        self._evidence = OrderEvidence()
        self._open: list[tuple[int, Task]] = []  # (position, task)
        self._finished = StatusCounts()
        self._invalid = 0
        self._ends: dict[int, Page] = {}  # offset -> page, for pages near either end

    def add(self, page: Page) -> None:
        self._evidence.add(page)
        self._invalid += page.invalid
        for index, task in enumerate(page.records()):
            if task is None:
                continue
            if task.is_open:
                self._open.append((page.offset + index, task))
            else:
                self._finished.add(task.status)
        self._ends[page.offset] = page
        if len(self._ends) > 2 * _END_PAGES:
            # Keep the pages with the lowest and the highest offsets.
            offsets = sorted(self._ends)
            for offset in offsets[_END_PAGES:-_END_PAGES]:
                del self._ends[offset]

    def finish(self, total: int) -> KnownTasks:
        """The known tasks, for a listing already found consistent with ``total`` tasks."""
        order = self._evidence.order()
        head: dict[int, HeadEntry] = {}
        if order is not Order.UNKNOWN:
            records: dict[int, Task | None] = {}
            for page in self._ends.values():
                for index, record in enumerate(page.records()):
                    records[age_index(order, total, page.offset + index)] = record
            # Entries only for the ages kept: the pages of the old end were half of them.
            head = {age: head_entry(record) for age, record in _youngest_contiguous(records, total).items()}
        open_tasks = (
            {task.task_id: (age_index(order, total, position), task) for position, task in self._open}
            if order is not Order.UNKNOWN
            else {task.task_id: (-1, task) for _, task in self._open}
        )
        return KnownTasks(
            order=order,
            total=total,
            head=head,
            open=open_tasks,
            finished=self._finished.nonzero(),
            invalid=self._invalid,
        )


def _youngest_contiguous(head: Mapping[int, _Record], total: int) -> dict[int, _Record]:
    kept: dict[int, _Record] = {}
    age = total - 1
    while age in head:
        kept[age] = head[age]
        age -= 1
    return kept
