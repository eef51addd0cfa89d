"""One incremental pass (docs/incremental-listing.md, "The incremental pass"): plan the fewest calls
that see every new task and every open task, then verify before anything is applied.

Pure: the caller fetches what ``IncrementalPass`` asks for (pages by offset and limit, tasks by
id) and hands the answers back. A pass runs in up to three rounds: the page at the young end
(whose ``total`` tells how many tasks are new), the planned pages and ``task_id`` queries, and,
rarely, a fix-up round for what tasks arriving during the pass shifted out of reach. ``result``
then checks everything the design names and returns the new ``KnownTasks``, or raises
``PassRejected`` with the reason counted in ``huaweicloud_vod_listing_fallbacks_total``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from exporter.listing.known import (
    HEAD_AGES,
    HeadEntry,
    KnownTasks,
    Order,
    PassRejected,
    age_index,
    head_entry,
    offset_of,
)
from exporter.tasks import Page, PageRequest, Task


class _TiesMoved(PassRejected):
    """A task created in the youngest second arrived while the pass ran and may be listed among
    that second's tasks: the pages read after it no longer place them. Worth one more pass."""


@dataclass(frozen=True)
class Requests:
    pages: tuple[PageRequest, ...] = ()
    task_ids: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.pages or self.task_ids)


@dataclass
class PassResult:
    known: KnownTasks
    seen: list[Task] = field(default_factory=list)  # every task read: new ones and refreshed open ones


def cheapest_calls(depths: Iterable[int], new: int, page_size: int) -> int:
    """The fewest calls of any correct pass (docs: "The cheapest plan"): the youngest ``s`` ages,
    ``s >= new``, a page per ``page_size``, plus one ``task_id`` query per open task deeper than
    ``s``. ``depths`` are the open tasks' distances from the young end (1 for the youngest)."""
    ordered = sorted(depths)
    best = math.ceil(new / page_size) + sum(1 for depth in ordered if depth > new)
    for index, depth in enumerate(ordered):
        if depth > new:
            best = min(best, math.ceil(depth / page_size) + len(ordered) - index - 1)
    return max(best, 1)


class IncrementalPass:
    def __init__(self, known: KnownTasks, page_size: int = 100, reach: int = 0) -> None:
        if known.order is Order.UNKNOWN:
            raise ValueError("an incremental pass needs a known order")
        self._known = known
        self._reach = reach  # a total seen already, to place the young-end page oldest first
        self.latest_total = 0  # the highest total any page answered
        self._page_size = page_size
        self._order = known.order
        self._as_of: int | None = None  # N1: the young-end page's total
        self._covered: dict[int, Task | None] = {}  # age -> record (None: malformed), ages < N1
        self._late: set[int] = set()  # ages read from a page whose total was not N1
        self._looked_up: dict[str, Page] = {}
        self._asked_ids: set[str] = set()
        self._window_low: int | None = None  # the oldest age the planned pages cover
        self.calls = 0

    # Planning -----------------------------------------------------------------------------------

    def first(self) -> PageRequest:
        """The page at the young end. Oldest first, that is the end of the listing: the page is
        placed to hold as many new tasks as the last pass saw, and the anchor."""
        size, known = self._page_size, self._known
        if self._order is Order.NEWEST_FIRST:
            return PageRequest(0, size)
        end = max(known.total + known.last_growth, self._reach)
        return PageRequest(max(0, min(self._lowest_needed_age(), end - size)), size)

    def plan(self, first: Page) -> Requests:
        """After the young-end page: the window's other pages and the open tasks beyond it."""
        self.add_pages([first])
        as_of = self._require_as_of()
        known = self._known
        if as_of < known.total:
            raise PassRejected("removed", f"the total fell from {known.total} to {as_of}")
        lowest_needed = self._lowest_needed_age()
        depths = sorted(as_of - age for age, _ in known.open.values())
        # Candidate windows: the least that holds the new tasks and the anchor, or one reaching
        # down to an open task; each costs its pages plus a query per open task below it.
        floor = as_of - lowest_needed
        candidates = [floor] + [depth for depth in depths if depth > floor]
        best_size, best_cost = floor, math.inf
        for size in candidates:
            cost = self._pages_for(as_of - size, as_of) + sum(1 for depth in depths if depth > size)
            if cost < best_cost:
                best_size, best_cost = size, cost
        window_low = as_of - best_size
        self._window_low = window_low
        return Requests(
            pages=tuple(self._requests_for(window_low, as_of)),
            task_ids=tuple(
                self._ask(task_id for task_id, (age, _) in known.open.items() if age < window_low)
            ),
        )

    def gaps(self) -> Requests:
        """What the answers so far leave uncovered (tasks that arrived during the pass shift later
        pages): the young end's missing ages, and open tasks to ask for by id instead."""
        as_of = self._require_as_of()
        pages = self._requests_for(self._lowest_needed_age(), as_of)
        window_low = as_of if self._window_low is None else self._window_low
        missing_open = (
            task_id
            for task_id, (age, _) in self._known.open.items()
            if age >= window_low and age not in self._covered and age < self._lowest_needed_age()
        )
        return Requests(pages=tuple(pages), task_ids=tuple(self._ask(missing_open)))

    # Answers ------------------------------------------------------------------------------------

    def add_pages(self, pages: Iterable[Page]) -> None:
        for page in pages:
            self.calls += 1
            self.latest_total = max(self.latest_total, page.total)
            if self._as_of is None:
                self._as_of = page.total
            for index, task in enumerate(page.records()):
                age = age_index(self._order, page.total, page.offset + index)
                if age >= self._as_of or age < 0:
                    continue  # arrived after the young-end page: the next pass's
                if age in self._covered and _id(self._covered[age]) != _id(task):
                    raise PassRejected(
                        "duplicate", f"age index {age} holds {_id(self._covered[age])!r} and {_id(task)!r}"
                    )
                self._covered[age] = task
                if page.total != self._as_of:
                    self._late.add(age)

    def add_lookups(self, answers: Mapping[str, Page]) -> None:
        self.calls += len(answers)
        self._looked_up.update(answers)

    # Verification -------------------------------------------------------------------------------

    def result(self) -> PassResult:
        """Verify the pass and fold it into new ``KnownTasks``; ``PassRejected`` on any surprise."""
        known, as_of = self._known, self._require_as_of()
        lowest_needed = self._lowest_needed_age()
        uncovered = [age for age in range(lowest_needed, as_of) if age not in self._covered]
        if uncovered:
            raise PassRejected("young_end", f"{len(uncovered)} of the youngest ages were not read")
        self._check_youngest_second()
        ids_by_age = {age: _id(task) for age, task in self._covered.items()}
        if len(set(ids_by_age.values()) - {""}) != sum(1 for i in ids_by_age.values() if i):
            raise PassRejected("duplicate", "one task was listed at two age indices")

        tie_low = known.total - known.youngest_run  # the youngest tie group had ages [tie_low, N0)
        if tie_low > 0 and tie_low - 1 not in known.head:
            raise PassRejected("young_end", "the youngest tie group is larger than the tasks known")
        # Anchor: known tasks older than the youngest tie group stay where they were.
        for age, entry in known.head.items():
            if age < tie_low and age in self._covered:
                task = self._covered[age]
                if _id(task) != entry.task_id:
                    raise PassRejected(
                        "anchor_moved",
                        f"age index {age} holds {_id(task)!r}, not {entry.task_id!r}: the order "
                        "changed or tasks were removed",
                    )
                _check_final(entry, task)

        # Young end: the old tie group plus exactly the new tasks, none older than the old youngest.
        young = {age: self._covered[age] for age in range(tie_low, as_of)}
        young_by_id = {task.task_id: (age, task) for age, task in young.items() if task is not None}
        old_tie = [entry for age, entry in known.head.items() if age >= tie_low]
        old_tie_ids = {entry.task_id for entry in old_tie if entry.task_id}
        for entry in old_tie:
            if entry.task_id and entry.task_id not in young_by_id:
                raise PassRejected("young_end", f"task {entry.task_id} left the youngest tasks")
            if entry.task_id:
                _check_final(entry, young_by_id[entry.task_id][1])
        new_tasks = [
            (age, task) for task_id, (age, task) in young_by_id.items() if task_id not in old_tie_ids
        ]
        new_invalid = sum(1 for task in young.values() if task is None) - sum(
            1 for entry in old_tie if not entry.task_id
        )
        grown = as_of - known.total
        if new_invalid < 0 or len(new_tasks) + new_invalid != grown:
            raise PassRejected(
                "young_end",
                f"{len(new_tasks)} new tasks and {new_invalid} malformed records at the young end, "
                f"but the total grew by {grown}",
            )
        top = known.youngest_created
        if top is not None and any(task.created < top for _, task in new_tasks):
            raise PassRejected("young_end", "a new task is older than the youngest known task")

        # Open tasks: each one refreshed, from the pages or by id.
        refreshed = {
            task_id: self._refresh(task_id, age, tie_low, young_by_id)
            for task_id, (age, _) in known.open.items()
        }
        refreshed.update((task.task_id, (age, task)) for age, task in new_tasks)

        finished: Counter[str] = Counter(known.finished)
        still_open: dict[str, tuple[int, Task]] = {}
        for task_id, (age, task) in refreshed.items():
            if task.is_open:
                still_open[task_id] = (age, task)
            else:
                finished[task.status] += 1
        new_known = KnownTasks(
            order=known.order,
            total=as_of,
            head=self._new_head(),
            open=still_open,
            finished=dict(finished),
            invalid=known.invalid + new_invalid,
            last_growth=grown,
        )
        return PassResult(new_known, [task for _, task in refreshed.values()])

    # Helpers ------------------------------------------------------------------------------------

    def _check_youngest_second(self) -> None:
        """Tasks arriving during the pass change no age index of a task older than the youngest
        second as of N1, but one created in that second may be listed among its tasks, below N1:
        those ages are trusted only from pages that answered with N1 itself."""
        if not self._late:
            return
        records = sorted((age, task.created) for age, task in self._covered.items() if task is not None)
        if not records:
            return
        top = max(created for _, created in records)
        older = [age for age, created in records if created < top]
        unstable_from = older[-1] + 1 if older else min(self._covered)
        if any(age >= unstable_from for age in self._late):
            raise _TiesMoved("young_end", "a task arrived among the youngest second's tasks during the pass")

    def _refresh(
        self, task_id: str, age: int, tie_low: int, young_by_id: Mapping[str, tuple[int, Task]]
    ) -> tuple[int, Task]:
        if age >= tie_low:
            # In the youngest tie group, whose order among itself is not fixed.
            if task_id in young_by_id:
                return young_by_id[task_id]
        elif age in self._covered:
            task = self._covered[age]
            if task is None or task.task_id != task_id:
                raise PassRejected("open_task_missing", f"open task {task_id} is not at age index {age}")
            return age, task
        answer = self._looked_up.get(task_id)
        if answer is None:
            raise PassRejected("open_task_missing", f"open task {task_id} was neither listed nor asked for")
        match = [task for task in answer.tasks if task.task_id == task_id]
        if answer.total == 0 or not match:
            raise PassRejected("task_deleted", f"open task {task_id} is gone")
        return age, match[0]

    def _new_head(self) -> dict[int, HeadEntry]:
        """The youngest ages read, as one contiguous run: the anchor of the next pass."""
        head: dict[int, HeadEntry] = {}
        age = self._require_as_of() - 1
        while age in self._covered and len(head) < HEAD_AGES:
            head[age] = head_entry(self._covered[age])
            age -= 1
        return head

    def _lowest_needed_age(self) -> int:
        """The young end and the anchor: the youngest tie group, the tasks added since, and the
        first known task older than the group."""
        return max(0, self._known.total - self._known.youngest_run - 1)

    def _require_as_of(self) -> int:
        if self._as_of is None:
            raise RuntimeError("the young-end page comes first")
        return self._as_of

    def _pages_for(self, low: int, high: int) -> int:
        """Calls to read ages [low, high) that are not covered yet."""
        return len(self._requests_for(low, high))

    def _requests_for(self, low: int, high: int) -> list[PageRequest]:
        """Pages (as of the young-end page's total) covering the uncovered ages in [low, high),
        youngest first."""
        as_of = self._require_as_of()
        requests: list[PageRequest] = []
        age = high
        while age > low:
            if age - 1 in self._covered:
                age -= 1
                continue
            run_high = age
            while age > low and age - 1 not in self._covered and run_high - age < self._page_size:
                age -= 1
            count = run_high - age
            requests.append(PageRequest(offset_of(self._order, as_of, run_high, count), count))
        return requests

    def _ask(self, task_ids: Iterable[str]) -> list[str]:
        fresh = [task_id for task_id in task_ids if task_id not in self._asked_ids]
        self._asked_ids.update(fresh)
        return fresh


def _id(task: Task | None) -> str:
    return "" if task is None else task.task_id


def _check_final(entry: HeadEntry, task: Task | None) -> None:
    if entry.finished_status is not None and task is not None and task.status != entry.finished_status:
        raise PassRejected(
            "status_reverted",
            f"task {task.task_id} had finished as {entry.finished_status}, now {task.status}",
        )


def run_pass(
    known: KnownTasks,
    fetch_pages: Callable[[Sequence[PageRequest]], list[Page]],
    fetch_ids: Callable[[Sequence[str]], dict[str, Page]],
    page_size: int = 100,
) -> tuple[PassResult, int]:
    """One pass, its rounds fetched by the callables (concurrently, by the caller's means); the
    result and the calls it made. Raises ``PassRejected``, or what the callables raise."""
    calls, reach = 0, 0
    for attempt in range(_ATTEMPTS):
        incremental = IncrementalPass(known, page_size, reach)
        try:
            (first,) = fetch_pages([incremental.first()])
            wanted = incremental.plan(first)
            for _ in range(_ROUNDS):
                if not wanted:
                    break
                incremental.add_pages(fetch_pages(wanted.pages) if wanted.pages else [])
                incremental.add_lookups(fetch_ids(wanted.task_ids) if wanted.task_ids else {})
                wanted = incremental.gaps()
            return incremental.result(), calls + incremental.calls
        except _TiesMoved:
            if attempt + 1 == _ATTEMPTS:
                raise
            # Again, with the young end on the first page where it fits: then nothing the
            # youngest second holds comes from a later page.
            calls, reach = calls + incremental.calls, incremental.latest_total
    raise AssertionError("unreachable")


# The planned round and one fix-up round: a pass that still has gaps after that is rejected by
# ``result`` rather than chasing a moving listing.
_ROUNDS = 2
# A pass that a task arriving in the youngest second disturbed is run once more before it is
# rejected: such an arrival during the second pass too is rarer still.
_ATTEMPTS = 2
