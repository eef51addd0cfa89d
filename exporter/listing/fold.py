"""The one fold (docs/incremental-listing.md, "One listing model: the fold"): every page of a
complete listing enters it here, placed by its own ``total`` at the age indices it covers.

Used for every complete listing: the first one, a fallback, ``--listing.mode full``, ``once``, and
the background listing of a project too big for a scrape. Tasks that arrive while it reads change
no age index, so they never fail it: the listing is exact as of its first page's total, and what a
later page's shift leaves uncovered is asked for again in the next round.

Pure: the caller fetches what ``next_requests`` asks for, at the pace it likes, and hands each
answer to ``add``. Memory is 17 bytes an age index (a hash of the task id, its create_time and a
status code) plus the open tasks' records and the set of ids, never a record a task.
"""

from __future__ import annotations

import bisect
import itertools
import math
from array import array
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from exporter.listing.known import (
    HEAD_AGES,
    KnownTasks,
    Order,
    PassRejected,
    age_index,
    head_entry,
    offset_of,
)
from exporter.tasks import OTHER_STATUS, Page, PageRequest, StatusCounts, Task

# The most tasks one listing holds: 17 bytes an age, 340 MB at this size; a VOD project has far
# fewer editing tasks, so a larger total is a broken answer.
MAX_TASKS = 20_000_000
_UNREAD = 0  # the hash of an age no page has placed yet
_MALFORMED = 1  # the hash of a malformed record (real hashes are folded away from 0 and 1)
# Status codes in one byte an age: 0 unread, 1 malformed, then statuses as first seen. Statuses
# past the last code (a hostile API naming hundreds) share the overflow code, counted as
# OTHER_STATUS, as StatusCounts would count them anyway.
_FIRST_STATUS_CODE = 2
_OVERFLOW_CODE = 255
# Newest first, a page is made to reach as many ages further down as the total grew over this
# many answers: about what arrives while the requests in flight before it are answered.
_DRIFT_ANSWERS = 5
# A tie group is looked for this many ages either side of where it was seen, through ages not read
# yet; past that it is left until the gaps around it are read.
_TIE_SEARCH = 200


@dataclass(frozen=True, slots=True)
class _Span:
    """What one page showed: the ages it placed, and create_time at the oldest and youngest."""

    low: int
    high: int  # inclusive
    oldest: float
    youngest: float
    total: int  # what the page answered


@dataclass(frozen=True, slots=True)
class Wanted:
    """Ages ``low`` to ``high`` (inclusive) to read, or the page at a fixed ``offset``."""

    low: int
    high: int
    offset: int | None = None
    settle: _Settle | None = None


@dataclass(frozen=True, slots=True)
class _Settle:
    """A page asked for to read a tie group whole: ages ``low``..``high`` are replaced by what it
    lists there; ``older`` and ``younger`` (outside the group, or -1) must hold what they held."""

    created: float
    low: int
    high: int
    older: int
    younger: int


class ListingFold:
    def __init__(
        self,
        order: Order | None = None,
        *,
        strict: bool = False,
        page_size: int = 100,
        link_every_boundary: bool = False,
    ) -> None:
        """``order``: the hypothesis to place pages by (None: take it from the first pages).
        ``strict``: a contradiction of the order fails the listing (``order_changed``) instead of
        falling back to positions; the background listing reads for minutes and has no positions
        to fall back to. ``link_every_boundary``: every two neighbouring ages must be read by one
        page, not only those that pages of different totals placed: over minutes, a purge and an
        arrival between two reads are likely, and leave the total as it was."""
        if strict and (order is None or order is Order.UNKNOWN):
            raise ValueError("a strict fold needs an order to test")
        self._order: Order | None = None if order is Order.UNKNOWN else order
        self._strict = strict
        self._link_every = link_every_boundary
        self._recent_totals: deque[int] = deque(maxlen=_DRIFT_ANSWERS)
        self._page_size = page_size
        # The order failed on a page: ages are then positions (a bijection at one total), and the
        # listing is exact only if every page answered the same total.
        self._positional = False
        self.contradiction: str | None = None  # what contradicted the order, when something did
        self._as_of: int | None = None
        self._latest = 0
        self._totals: set[int] = set()
        self._held: list[Page] = []  # pages answered before the order to place them by is known
        self._hashes = array("q")
        self._created = array("d")
        self._status = bytearray()
        self._codes: dict[str, int] = {}
        self._names: dict[int, str] = {_OVERFLOW_CODE: OTHER_STATUS}
        self._ids: set[int] = set()
        self._cleared: set[int] = set()  # ids taken out by a tie group read again: not fresh again
        self._covered = 0
        self._cursor = 0  # every age below it is covered
        self._open: dict[int, Task] = {}  # age -> open task
        self._young: dict[int, tuple[Task | None, int]] = {}  # age -> (record, total that placed it)
        self._runs: list[tuple[int, int, int]] = []  # (lowest, highest) ages a page placed first, its total
        self._spans: list[_Span] = []
        self._steps = False  # create_time changed somewhere: an order can be learned
        self._unsettled: set[float] = set()  # create_times whose tie group must be read whole
        self._settled: set[float] = set()  # those read whole by one page since
        self._settles: dict[int, _Settle] = {}  # offset asked for -> the tie group it reads
        self._links: set[int] = set()  # boundaries asked to be read together this round
        self.changes = 0  # pages that placed, linked or settled something: the caller's progress
        self.calls = 0

    # Progress ------------------------------------------------------------------------------------

    @property
    def as_of(self) -> int | None:
        """The total the listing is exact as of, once the first page is in."""
        return self._as_of

    @property
    def by_age(self) -> bool:
        """Whether pages are placed by the age index of an order (not by positions): then time
        between two rounds does no harm, and the listing can be read on in a later scrape."""
        return self._order is not None and not self._positional

    @property
    def progress(self) -> float:
        if self._as_of is None:
            return 0.0
        return 1.0 if self._as_of == 0 else self._covered / self._as_of

    @property
    def done(self) -> bool:
        return self._as_of is not None and not self._held and not self.has_more()

    # Planning ------------------------------------------------------------------------------------

    def next_requests(self, most: int) -> list[PageRequest]:
        """Up to ``most`` pages to read next, planned and placed now."""
        return [self.locate(wanted) for wanted in self.next_wanted(most)]

    def next_wanted(self, most: int) -> Iterator[Wanted]:
        """Up to ``most`` runs of ages to read next: the first page; the last one when the first
        told no order; tie groups to read whole; what is not covered; boundaries to read together.
        Asked once per round, after every answer of the round before was added. Lazy: each run is
        planned, and turned into a page by ``locate``, when a request slot frees, so that what
        the answers before it showed (ages covered, tasks arriving) is taken into account."""
        if self._as_of is None:
            yield Wanted(0, self._page_size - 1, offset=0)
            return
        if self._held:
            yield Wanted(0, self._page_size - 1, offset=max(0, self._as_of - self._page_size))
            return
        self._settles.clear()
        settles = self._settle_requests(most)
        yield from settles
        gaps = 0
        for wanted in self._gap_requests(most - len(settles), busy=[(w.low, w.high) for w in settles]):
            gaps += 1
            yield wanted
        if settles or gaps or self._cursor < self._as_of:
            return
        if self._malformed_ties():
            yield from self._settle_requests(most)
            return
        yield from self._link_requests(most)

    def _malformed_ties(self) -> bool:
        """Mark unsettled every tie group that holds a malformed record and was placed by more than
        one page: a malformed record has no id, so one that another call showed again at another
        age is not seen as a duplicate, and the group must be read whole (docs: "Ties are a set").
        Whether any was marked."""
        if self._positional or self._order is None:
            return False
        marked = False
        age = self._status.find(_MALFORMED)
        while age != -1:
            for created in self._neighbour_times(age):
                fresh = created not in self._settled and created not in self._unsettled
                if fresh and self._read_apart(created):
                    self._unsettled.add(created)
                    marked = True
            age = self._status.find(_MALFORMED, age + 1)
        return marked

    def _neighbour_times(self, age: int) -> set[float]:
        """The create_times of the nearest valid records older and younger than ``age``."""
        times: set[float] = set()
        for step in (-1, 1):
            neighbour = age + step
            while 0 <= neighbour < len(self._created) and self._hashes[neighbour] == _MALFORMED:
                neighbour += step
            if 0 <= neighbour < len(self._created) and self._hashes[neighbour] != _UNREAD:
                times.add(self._created[neighbour])
        return times

    def _read_apart(self, created: float) -> bool:
        """Whether the tie group of ``created`` was placed by more than one page."""
        group = self._tie_group(created)
        if group is None or group.high - group.low + 3 > self._page_size:
            # One that no page can hold is taken as read: failing every burst of a stable API that
            # holds a malformed record would cost more than an API that also reorders it.
            return False
        return not any(low <= group.low and group.high <= high for low, high, _ in self._runs)

    def has_more(self) -> bool:
        """Whether anything is left to read."""
        return next(self.next_wanted(1), None) is not None

    def locate(self, wanted: Wanted) -> PageRequest:
        """The page that holds ``wanted`` as of the latest total seen. Newest first, tasks that
        arrive before it is answered place it younger than asked: it reaches as many ages further
        down as arrived over the last few answers."""
        if wanted.offset is not None:
            return PageRequest(wanted.offset, wanted.high - wanted.low + 1)
        low, high = wanted.low, wanted.high
        if self._positional or self._order is None:
            total = self._require_as_of()
        else:
            total = max(self._latest, self._require_as_of())
            if self._order is Order.NEWEST_FIRST and len(self._recent_totals) > 1:
                drift = self._recent_totals[-1] - self._recent_totals[0]
                # Below age 0 too: positions past the end answer nothing, and cost nothing.
                low -= min(drift, self._page_size - (high - low + 1))
        count = high - low + 1
        request = PageRequest(offset_of(self._mapping(), total, high + 1, count), count)
        if wanted.settle is not None:
            self._settles[request.offset] = wanted.settle
        return request

    def _mapping(self) -> Order:
        return self._order or Order.OLDEST_FIRST

    def _gap_requests(self, most: int, busy: list[tuple[int, int]]) -> Iterator[Wanted]:
        """Runs of the ages not read yet, each planned when asked for. Once pages have answered
        different totals (or always, with ``link_every_boundary``), each reaches one age into its
        older neighbour, and the last of a gap one into its younger, so that two neighbouring
        ages are read by one page without a page of their own. Positions need no overlap: they
        are exact only at one total anyway."""
        as_of = self._require_as_of()
        hashes = self._hashes
        while self._cursor < as_of and hashes[self._cursor] != _UNREAD:
            self._cursor += 1
        planned = 0
        age = self._cursor
        while age < as_of and planned < most:
            if hashes[age] != _UNREAD or any(low <= age <= high for low, high in busy):
                age += 1
                continue
            gap_end = age
            while gap_end + 1 < as_of and hashes[gap_end + 1] == _UNREAD:
                gap_end += 1
            while age <= gap_end and planned < most:
                overlap = 1 if not self._positional and (self._link_every or len(self._totals) > 1) else 0
                older = overlap if age > 0 else 0
                room = self._page_size - older
                younger = overlap if gap_end + 1 < as_of else 0
                fresh = gap_end - age + 1
                if fresh + younger > room:
                    fresh, younger = room, 0
                planned += 1
                yield Wanted(age - older, age + fresh - 1 + younger)
                age += fresh

    def _settle_requests(self, most: int) -> list[Wanted]:
        requests: list[Wanted] = []
        if self._positional:
            return requests
        for created in sorted(self._unsettled):
            if len(requests) >= most:
                break
            settle = self._tie_group(created)
            if settle is None:
                continue  # not found whole yet: the gaps around it are read first
            first = settle.older if settle.older >= 0 else settle.low
            last = settle.younger if settle.younger >= 0 else settle.high
            if last - first + 1 > self._page_size:
                raise PassRejected(
                    "duplicate",
                    f"{settle.high - settle.low + 1} tasks created in one second are listed in a "
                    "different order on every call, more than a page holds",
                )
            requests.append(Wanted(first, last, settle=settle))
        return requests

    def _tie_group(self, created: float) -> _Settle | None:
        """Where the tasks created at ``created`` lie: the ages between the nearest older and the
        nearest younger task read outside the group (unread ages in between included)."""
        as_of = self._require_as_of()
        try:
            seen = self._created.index(created)
        except ValueError:
            return None
        low = seen
        while low > 0 and self._in_group(low - 1, created):
            low -= 1
            if seen - low > _TIE_SEARCH:
                return None
        high = seen
        while high < as_of - 1 and self._in_group(high + 1, created):
            high += 1
            if high - seen > _TIE_SEARCH:
                return None
        return _Settle(created, low, high, low - 1, high + 1 if high + 1 < as_of else -1)

    def _in_group(self, age: int, created: float) -> bool:
        value = self._created[age]
        return self._hashes[age] in (_UNREAD, _MALFORMED) or value == created or math.isnan(value)

    def _link_requests(self, most: int) -> list[Wanted]:
        """Two-age pages for neighbouring ages that pages of different totals placed (or any, with
        ``link_every_boundary``) and no page read together: a removal between two reads would
        shift one of them by an age unseen (docs: "What fails a listing")."""
        self._links = set()
        if self._positional:
            return []
        runs = sorted(self._runs)
        boundaries = [
            older[1]
            for older, younger in itertools.pairwise(runs)
            if older[1] + 1 == younger[0] and (self._link_every or older[2] != younger[2])
        ]
        if not boundaries:
            return []
        spans = sorted((span.low, span.high) for span in self._spans)
        lows = [low for low, _ in spans]
        reach = list(itertools.accumulate((high for _, high in spans), max))
        requests: list[Wanted] = []
        for boundary in boundaries:
            index = bisect.bisect_right(lows, boundary) - 1
            if index >= 0 and reach[index] >= boundary + 1:
                continue  # some page that starts at or below it reaches past it
            self._links.add(boundary)
            requests.append(Wanted(boundary, boundary + 1))
            if len(requests) >= most:
                break
        return requests

    def _youngest_second_start(self) -> int | None:
        """Where the youngest second starts, when its ages were not all read at the total the
        listing is as of: a task created in that second while the listing ran may be listed among
        its tasks and push one of them out, so the listing ends before it (docs: "As of which
        moment"). None when it needs no cut."""
        if self._positional or self._order is None or not self._as_of:
            return None
        as_of = self._as_of
        youngest = as_of - 1
        while youngest > 0 and self._hashes[youngest] == _MALFORMED:
            youngest -= 1  # a malformed record has no time: the youngest second is the valid one's
        top = self._created[youngest]
        start, late = as_of - 1, False
        while start >= 0 and (self._created[start] == top or self._hashes[start] == _MALFORMED):
            entry = self._young.get(start)
            late = late or (entry is not None and entry[1] != as_of)
            start -= 1
        start += 1
        window = as_of - HEAD_AGES  # below it, which total placed an age is known by page only
        if start < window:
            late = late or any(
                span.total != as_of for span in self._spans if span.high >= start and span.low < window
            )
        return start if late else None

    # Answers -------------------------------------------------------------------------------------

    def add(self, page: Page) -> list[Task]:
        """Place one page; the tasks it listed for the first time. ``PassRejected`` when it
        contradicts what was read."""
        self.calls += 1
        self._totals.add(page.total)
        self._recent_totals.append(page.total)
        self._latest = max(self._latest, page.total)
        if self._as_of is None:
            self._start(page.total)
        as_of = self._require_as_of()
        if page.total < as_of:
            raise PassRejected("removed", f"the total fell from {as_of} to {page.total}: tasks were removed")
        if not page.tasks and not page.invalid and page.offset < page.total:
            raise PassRejected(
                "removed",
                f"the page at offset {page.offset} is empty although the API reported {page.total} tasks",
            )
        if self._order is None and not self._positional:
            self._held.append(page)
            if not self._guess_order():
                return []
            held, self._held = self._held, []
            return [task for page in held for task in self._place(page)]
        settle = self._settles.pop(page.offset, None)
        if settle is not None and not self._positional:
            return self._settle(settle, page)
        return self._place(page)

    def _start(self, total: int) -> None:
        if total > MAX_TASKS:
            # 17 bytes an age: a bogus total from a broken or hostile API must not take the memory.
            raise PassRejected(
                "inconsistent", f"the API reports {total} tasks, more than a listing holds ({MAX_TASKS})"
            )
        self._as_of = total
        self._hashes = array("q", bytes(8 * total))
        self._created = array("d", bytes(8 * total))
        self._status = bytearray(total)

    def _guess_order(self) -> bool:
        """Take the order to place by from the pages held (docs: "Learning the order from the pages
        being read"); False while the last page is still to come."""
        first = min(self._held, key=lambda page: page.offset)
        times = [task.created for task in first.tasks]
        pairs = list(itertools.pairwise(times))
        if any(b != a for a, b in pairs):
            if all(b <= a for a, b in pairs):
                self._order = Order.NEWEST_FIRST
            elif all(b >= a for a, b in pairs):
                self._order = Order.OLDEST_FIRST
            else:
                self._contradict("create_time goes both ways on the first page")
            return True
        if self._require_as_of() <= self._page_size or len(self._held) > 1:
            self._order = order_of_ends(first, max(self._held, key=lambda page: page.offset))
            # When nothing tells an order: positions, exact at one total.
            self._positional = self._order is None
            return True
        return False

    def _contradict(self, detail: str) -> None:
        if self._strict:
            raise PassRejected("order_changed", detail)
        if self._unsettled:
            # Tie groups are sets only in a listing ordered by create_time.
            raise PassRejected("duplicate", "one task listed at two places, and the listing is in no order")
        self.contradiction = detail
        self._positional = True

    def _place(self, page: Page, replace: tuple[int, int] | None = None) -> list[Task]:
        as_of = self._require_as_of()
        order = self._mapping()
        placed: list[tuple[int, Task | None]] = []
        for index, record in enumerate(page.records()):
            age = age_index(order, page.total, page.offset + index)
            if age < 0:
                raise PassRejected("removed", "a page reaches past the oldest task: tasks were removed")
            if age < as_of:
                placed.append((age, record))
        if replace is not None:
            placed = [(age, record) for age, record in placed if replace[0] <= age <= replace[1]]
        if not placed:
            return []
        if order is Order.NEWEST_FIRST:
            placed.reverse()  # oldest age first
        self._check_order(placed)
        if replace is not None:
            for age in range(replace[0], replace[1] + 1):
                self._clear(age)
        fresh: list[Task] = []
        new_ages: list[int] = []
        young_from = as_of - HEAD_AGES  # the ages kept with the total that placed them
        for age, record in placed:
            placed_now = self._put(age, record, page.total, young_from)
            if placed_now:
                new_ages.append(age)
                if record is not None and placed_now == 2:
                    fresh.append(record)
        low, high = placed[0][0], placed[-1][0]
        known = [(age, record.created) for age, record in placed if record is not None]
        if known:
            self._spans.append(_Span(low, high, known[0][1], known[-1][1], page.total))
        else:
            self._spans.append(_Span(low, high, math.nan, math.nan, page.total))
        for _, group in itertools.groupby(enumerate(new_ages), key=lambda pair: pair[1] - pair[0]):
            ages = [age for _, age in group]
            self._runs.append((ages[0], ages[-1], page.total))
        linked = {boundary for boundary in self._links if low <= boundary < high}
        self._links -= linked
        if new_ages or linked or replace is not None:
            self.changes += 1
        return fresh

    def _check_order(self, placed: list[tuple[int, Task | None]]) -> None:
        """create_time never decreases with the age index along a page."""
        if self._positional:
            return
        times = [record.created for _, record in placed if record is not None]
        for earlier, later in itertools.pairwise(times):
            if later < earlier:
                self._contradict("create_time decreases with the age index on a page")
                return
            if later != earlier:
                self._steps = True

    def _put(self, age: int, record: Task | None, total: int, young_from: int) -> int:
        """Place one record: 0 when it was there already or waits for its tie group to be read
        whole, 1 when placed again after such a read, 2 when placed for the first time."""
        key = _MALFORMED if record is None else _fold(hash(record.task_id))
        earlier = self._hashes[age]
        if earlier != _UNREAD:
            if earlier == key:
                return 0
            tie = self._tie_of(age, record)
            if tie is not None:
                if tie not in self._settled:  # a group read whole stays as that page listed it
                    self._unsettled.add(tie)
                return 0
            raise PassRejected("duplicate", f"age index {age} read twice with different tasks")
        if key != _MALFORMED and key in self._ids:
            if record is not None and not self._positional:
                self._unsettled.add(record.created)
                return 0
            raise PassRejected("duplicate", "one task listed at two age indices")
        self._hashes[age] = key
        self._covered += 1
        if record is None:
            self._created[age] = math.nan
            self._status[age] = _MALFORMED
        else:
            self._created[age] = record.created
            self._status[age] = self._code(record.status)
            self._ids.add(key)
            if record.is_open:
                self._open[age] = record
        if age >= young_from:
            self._young[age] = (record, total)
        if key in self._cleared:
            self._cleared.discard(key)
            return 1
        return 2

    def _tie_of(self, age: int, record: Task | None) -> float | None:
        """The create_time of the tie group that two different records read at ``age`` belong to,
        or None when they are no tie (then one of them was shifted there). A malformed record has
        no time of its own: it belongs to the group of a neighbour that shares the other's."""
        if self._positional:
            return None
        stored_malformed = self._hashes[age] == _MALFORMED
        if record is not None and not stored_malformed:
            return record.created if self._created[age] == record.created else None
        created = self._created[age] if record is None else record.created
        if math.isnan(created):
            return None  # two malformed records cannot differ
        for neighbour in (age - 1, age + 1):
            if 0 <= neighbour < len(self._created) and self._created[neighbour] == created:
                return created
        return None

    def _clear(self, age: int) -> None:
        key = self._hashes[age]
        if key == _UNREAD:
            return
        if key != _MALFORMED:
            self._ids.discard(key)
            self._cleared.add(key)
        self._hashes[age] = _UNREAD
        self._status[age] = 0
        self._created[age] = 0.0
        self._open.pop(age, None)
        self._young.pop(age, None)
        self._covered -= 1
        self._cursor = min(self._cursor, age)

    def _settle(self, settle: _Settle, page: Page) -> list[Task]:
        """A tie group read whole by one page: its members replace what was placed there, when
        the page reaches over the whole group and its neighbours hold what they held."""
        order = self._mapping()
        ages = {
            age_index(order, page.total, page.offset + index): record
            for index, record in enumerate(page.records())
        }
        if any(age not in ages for age in range(settle.low, settle.high + 1)):
            return self._place(page)  # shifted by arrivals: the group is asked for again
        for neighbour in (settle.older, settle.younger):
            if neighbour >= 0 and neighbour in ages:
                record = ages[neighbour]
                key = _MALFORMED if record is None else _fold(hash(record.task_id))
                if self._hashes[neighbour] in (_UNREAD, key):
                    continue
                tie = self._tie_of(neighbour, record)
                if tie is None:
                    raise PassRejected("duplicate", f"age index {neighbour} read twice with different tasks")
                if tie not in self._settled:
                    self._unsettled.add(tie)  # the neighbour's own tie group was reordered too
        self._unsettled.discard(settle.created)
        self._settled.add(settle.created)
        # Only the group is taken from this page: its neighbours were checked above, and other
        # groups it reaches into were reordered too, as they are on every call.
        fresh = self._place(page, replace=(settle.low, settle.high))
        for age in range(settle.low, settle.high + 1):
            if self._hashes[age] == _UNREAD:
                raise PassRejected("duplicate", f"a tie group read whole left age index {age} empty")
        return fresh

    # Result --------------------------------------------------------------------------------------

    def result(self) -> KnownTasks:
        """What the listing showed, as of ``as_of``. ``PassRejected`` when it cannot be exact."""
        if not self.done:
            raise RuntimeError("the listing is not complete")
        if not self._positional:
            self._check_spans()
        start = self._youngest_second_start()
        if start == 0:
            raise PassRejected(
                "young_end",
                "every task is of the youngest second, and tasks arrived in it while it was listed",
            )
        if start is not None:
            self._cut(start)
        as_of = self._require_as_of()
        # Placed by an order that the listing showed (or, strict, was told and never contradicted):
        # then pages of different totals fit together. Otherwise ages are positions, and the
        # listing is exact only if every page answered the same total.
        verified = self._order is not None and not self._positional and (self._steps or self._strict)
        if not verified and len(self._totals) > 1:
            raise PassRejected(
                "inconsistent",
                f"the API lists tasks in no order of create_time, and its total changed while paging "
                f"({min(self._totals)} to {max(self._totals)})",
            )
        order = self._order if verified and self._order is not None else Order.UNKNOWN
        finished = self._finished_counts()
        head = {}
        if order is not Order.UNKNOWN:
            for age in range(as_of - 1, max(-1, as_of - 1 - HEAD_AGES), -1):
                entry = self._young.get(age)
                if entry is None:
                    break
                head[age] = head_entry(entry[0])
        known = KnownTasks(
            order=order,
            total=as_of,
            head=head,
            open={task.task_id: (age, task) for age, task in self._open.items()},
            finished=finished,
            invalid=self._status.count(_MALFORMED),
        )
        known.check()
        return known

    def _cut(self, as_of: int) -> None:
        """End the listing before age ``as_of``: exact as of the moment before the task there was
        created, since no task created later can be listed below it (fact 2)."""
        for age in range(as_of, self._require_as_of()):
            self._clear(age)
        del self._hashes[as_of:], self._created[as_of:], self._status[as_of:]
        self._as_of = as_of

    def _check_spans(self) -> None:
        spans = sorted((span for span in self._spans if not math.isnan(span.oldest)), key=lambda s: s.low)
        for older, younger in itertools.pairwise(spans):
            if younger.low > older.high and younger.oldest < older.youngest:
                self._contradict("create_time decreases with the age index across pages")
                return
            if younger.low > older.high and younger.oldest != older.youngest:
                self._steps = True

    def _finished_counts(self) -> dict[str, int]:
        counts = StatusCounts()
        open_by_code: dict[int, int] = {}
        for age in self._open:
            code = self._status[age]
            open_by_code[code] = open_by_code.get(code, 0) + 1
        for code, status in self._names.items():
            finished = self._status.count(code) - open_by_code.get(code, 0)
            if finished:
                counts.add(status, finished)
        return counts.nonzero()

    def _code(self, status: str) -> int:
        code = self._codes.get(status)
        if code is None:
            code = _FIRST_STATUS_CODE + len(self._codes)
            if code >= _OVERFLOW_CODE:
                return _OVERFLOW_CODE
            self._codes[status] = code
            self._names[code] = status
        return code

    def _require_as_of(self) -> int:
        if self._as_of is None:
            raise RuntimeError("the first page comes first")
        return self._as_of


def order_of_ends(first: Page, last: Page) -> Order | None:
    """Newest first when the first page's first task is younger than the last page's last task,
    oldest first when it is older; None when they tell nothing (a page empty, or one second)."""
    if not first.tasks or not last.tasks:
        return None
    head, tail = first.tasks[0].created, last.tasks[-1].created
    if head == tail:
        return None
    return Order.NEWEST_FIRST if head > tail else Order.OLDEST_FIRST


def _fold(value: int) -> int:
    """A hash as a signed 64-bit value that is never 0 (unread) or 1 (malformed)."""
    folded = (value & 0xFFFF_FFFF_FFFF_FFFF) - (1 << 63)
    return folded if folded not in (_UNREAD, _MALFORMED) else 2
