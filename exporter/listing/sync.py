"""A complete listing read by age index (docs/incremental-listing.md, "Complete listings"), for the
first sync of a big project, after a fallback, and for reconciliation.

Read page by page at any pace, over minutes if it must: tasks that arrive meanwhile change no age
index, so each page is placed by its own ``total`` and the pages fit together however long apart
they were read. Overlaps are checked to hold the same tasks (a 64-bit hash per age index: 8 MB for
a million tasks), and create_time must not decrease with the age index anywhere, which is the
order checked across the whole listing. The result is ``KnownTasks`` as of the first page's total;
an incremental pass then brings it to the present.

Pure: the caller fetches what ``next_requests`` asks for, at the pace it likes.
"""

from __future__ import annotations

import itertools
from array import array
from dataclasses import dataclass

from exporter.known import HEAD_AGES, HeadEntry, KnownTasks, Order, age_index, head_entry, offset_of
from exporter.listing.incremental import PassRejected
from exporter.tasks import Page, PageRequest, StatusCounts, Task

_MALFORMED = 1  # the hash stored for a malformed record (real hashes are folded away from 0 and 1)


@dataclass(frozen=True, slots=True)
class _Span:
    """What one page showed about the order: create_time at its lowest and highest age index."""

    low: int
    high: int
    oldest: float
    youngest: float


class SyncByAge:
    def __init__(self, order: Order, page_size: int = 100) -> None:
        if order is Order.UNKNOWN:
            raise ValueError("reading by age index needs an order to test")
        self.order = order
        self._page_size = page_size
        self._total: int | None = None  # the first page's total: the ages to cover are below it
        self._latest_total: int | None = None
        self._hashes = array("q")
        self._ids: set[int] = set()
        self._covered = 0
        self._cursor = 0  # every age below it is covered
        # Boundary a (between ages a and a + 1) is linked once one page read both ages.
        self._linked = bytearray()
        self._links = 0
        self._open: dict[str, tuple[int, Task]] = {}
        self._finished = StatusCounts()
        self._invalid = 0
        self._head: dict[int, HeadEntry] = {}
        self._spans: list[_Span] = []
        self.calls = 0

    @property
    def progress(self) -> float:
        if self._total is None:
            return 0.0
        return 1.0 if self._total == 0 else self._covered / self._total

    @property
    def done(self) -> bool:
        return self._total is not None and self._covered == self._total and self._links >= self._total - 1

    def next_requests(self, most: int) -> list[PageRequest]:
        """Up to ``most`` pages to read next, oldest ages first, placed by the latest total seen.

        Asked once per round, after every answer of the round before was added: a page that tasks
        arriving in between placed higher than planned leaves its lowest ages uncovered, and the
        next round asks for them again. Each page reaches one age past what it is for on either
        side, so that every two neighbouring ages are read by one page: a removal between two
        reads shows as a different task at an age both read (docs: "Complete listings").
        """
        if self._total is None:
            return [PageRequest(0, self._page_size)]
        total = self._total
        while self._cursor < total and self._hashes[self._cursor] != 0:
            self._cursor += 1
        latest = self._latest_total or total
        requests: list[PageRequest] = []
        run = max(1, self._page_size - 2)
        age = self._cursor
        while age < total and len(requests) < most:
            if self._hashes[age] != 0:
                age += 1
                continue
            low = age
            while age < total and self._hashes[age] == 0 and age - low < run:
                age += 1
            first, last = max(0, low - 1), min(total, age + 1)
            requests.append(PageRequest(offset_of(self.order, latest, last, last - first), last - first))
        if requests or self._cursor < total:
            return requests
        # Every age is read; a page that arrivals placed higher than planned may have left two
        # neighbours read only apart: read them together.
        boundary = self._linked.find(0, 0, max(0, total - 1))
        while boundary != -1 and len(requests) < most:
            requests.append(PageRequest(offset_of(self.order, latest, boundary + 2, 2), 2))
            boundary = self._linked.find(0, boundary + 1, total - 1)
        return requests

    def add(self, page: Page) -> list[Task]:
        """Place one page; the tasks it showed for the first time. ``PassRejected`` when it
        contradicts what was read or the order."""
        self.calls += 1
        if self._total is None:
            self._total = page.total
            self._hashes = array("q", bytes(8 * page.total))
            self._linked = bytearray(page.total)
        total = self._total
        self._latest_total = max(self._latest_total or 0, page.total)
        placed: list[tuple[int, Task | None]] = []
        for index, task in enumerate(page.records()):
            age = age_index(self.order, page.total, page.offset + index)
            if age < 0:
                raise PassRejected("removed", "a page reaches past the oldest task: tasks were removed")
            if age < total:
                placed.append((age, task))
        fresh = [task for age, task in placed if self._place(age, task) and task is not None]
        if placed:
            low = min(age for age, _ in placed)
            high = max(age for age, _ in placed)
            self._links += high - low - self._linked.count(1, low, high)
            self._linked[low:high] = b"\x01" * (high - low)
        times = sorted((age, task.created) for age, task in placed if task is not None)
        if times:
            if any(later < earlier for (_, earlier), (_, later) in itertools.pairwise(times)):
                raise PassRejected("order_changed", "create_time decreases with the age index on a page")
            self._spans.append(_Span(times[0][0], times[-1][0], times[0][1], times[-1][1]))
        return fresh

    def known(self) -> KnownTasks:
        """What the listing showed, as of the first page's total."""
        if not self.done or self._total is None:
            raise RuntimeError("the listing is not complete")
        spans = sorted(self._spans, key=lambda span: span.low)
        for older, younger in itertools.pairwise(spans):
            if younger.oldest < older.youngest and younger.low > older.high:
                raise PassRejected("order_changed", "create_time decreases with the age index across pages")
        return KnownTasks(
            order=self.order,
            total=self._total,
            head=dict(sorted(self._head.items(), reverse=True)),
            open=dict(self._open),
            finished=self._finished.nonzero(),
            invalid=self._invalid,
        )

    def _place(self, age: int, task: Task | None) -> bool:
        """Record one listed record at its age index; False if it was read before."""
        key = _MALFORMED if task is None else _fold(hash(task.task_id))
        earlier = self._hashes[age]
        if earlier:
            if earlier != key:
                raise PassRejected("duplicate", f"age index {age} read twice with different tasks")
            return False
        if key != _MALFORMED:
            if key in self._ids:
                raise PassRejected("duplicate", "one task listed at two age indices")
            self._ids.add(key)
        self._hashes[age] = key
        self._covered += 1
        assert self._total is not None
        if age >= self._total - HEAD_AGES:
            self._head[age] = head_entry(task)
        if task is None:
            self._invalid += 1
        elif task.is_open:
            self._open[task.task_id] = (age, task)
        else:
            self._finished.add(task.status)
        return True


def _fold(value: int) -> int:
    """A hash as a signed 64-bit value that is never 0 (uncovered) or 1 (malformed)."""
    folded = (value & 0xFFFF_FFFF_FFFF_FFFF) - (1 << 63)
    return folded if folded not in (0, _MALFORMED) else 2
