"""Inputs from a quirky or hostile API under which the fold, or the strategy around it, publishes
numbers that were never true, or goes dark although an exact listing was possible
(docs/incremental-listing.md: "One listing model: the fold", "As of which moment", "Ties are a set",
"What fails a listing", "Modes"). Each test states the behaviour the design promises."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from exporter.listing.fold import ListingFold
from exporter.listing.known import KnownTasks, Order, PassRejected
from exporter.listing.reading import read_to_end
from exporter.tasks import FAILED, PROCESSING, SUCCEED, WAITING, Page, PageRequest, Task
from tests.fake_listing import T0, Listing, make


class Quirky(Listing):
    """The in-memory API with two quirks: the records whose ids are in ``malformed`` come back
    malformed (they hold their place on the page, as ``parse_page`` reports them), and each tie
    group (tasks of one create_time) is listed reversed on the calls named in ``flips``, in its
    natural order otherwise: an API that names no order among ties."""

    def __init__(
        self,
        order: Order,
        tasks: Sequence[Task],
        *,
        malformed: Sequence[Task] = (),
        flips: dict[float, set[int]] | None = None,
        by_id: bool = False,
    ) -> None:
        super().__init__(order, tasks)
        self.malformed = {task.task_id for task in malformed}
        self.flips = flips or {}
        self.by_id = by_id  # ties sorted by id: a new task of a second is listed among its tasks

    def listed(self) -> list[Task]:
        ordered = sorted(self.tasks, key=lambda t: (t.created, t.task_id)) if self.by_id else list(self.tasks)
        groups: dict[float, list[Task]] = {}
        for task in ordered:
            groups.setdefault(task.created, []).append(task)
        listed: list[Task] = []
        for created, group in groups.items():
            listed.extend(reversed(group) if self.calls in self.flips.get(created, ()) else group)
        return listed[::-1] if self.order is Order.NEWEST_FIRST else listed

    def page(self, request: PageRequest) -> Page:
        self.calls += 1
        records = self.listed()[request.offset : request.offset + request.limit]
        invalid_at = tuple(index for index, task in enumerate(records) if task.task_id in self.malformed)
        page = Page(
            request.offset,
            len(self.tasks),
            [task for task in records if task.task_id not in self.malformed],
            len(invalid_at),
            invalid_at,
        )
        if self.on_page is not None:
            self.on_page()
        return page


def read(listing: Listing, fold: ListingFold) -> KnownTasks:
    read_to_end(fold, listing, lambda: float("inf"), lambda task: None, 1000)
    return fold.result()


def published(known: KnownTasks) -> tuple[dict[str, int], int, set[str], int]:
    return dict(+known.counts()), known.invalid, set(known.open), known.total


def truth(tasks: Sequence[Task], malformed: Sequence[Task]) -> tuple[dict[str, int], int, set[str], int]:
    bad = {task.task_id for task in malformed}
    valid = [task for task in tasks if task.task_id not in bad]
    return (
        dict(+Counter(task.status for task in valid)),
        len(tasks) - len(valid),
        {task.task_id for task in valid if task.is_open},
        len(tasks),
    )


def distinct(count: int) -> list[Task]:
    """``count`` finished tasks, each in a second of its own."""
    return [make(serial, SUCCEED, T0 + serial) for serial in range(count)]


# Ties are a set: malformed records inside a tie group ----------------------------------------------


def test_a_malformed_record_listed_twice_across_a_reshuffled_tie_boundary_is_not_counted_twice() -> None:
    """Oldest first, four tasks share second 98 at ages 98..101: x, a malformed record, an open
    task z, and y. Two calls list the group in two orders: the page at offset 0 ends with x and
    the malformed record, the page at offset 100 starts with the malformed record and y. Two
    tasks with ids at one age of a tie group mark it unsettled; a malformed record has no id, so
    here nothing does: the fold publishes 2 invalid records and no open task. Correct: the group
    is a set (docs, "Ties are a set"), so a malformed record seen by two pages at two ages of one
    tie group must unsettle it and have it read whole; the listing then shows 1 invalid record
    and z open (or fails), never 2 invalid and z missing."""
    tasks = distinct(200)
    second = T0 + 98
    x, bad, z, y = (make(1000 + n, PROCESSING if n == 2 else SUCCEED, second) for n in range(4))
    tasks[98:102] = [x, bad, z, y]
    listing = Quirky(Order.OLDEST_FIRST, tasks, malformed=[bad])

    # The API's two answers, ties in a different order on each call: [.., x, bad] and [bad, y, ..].
    first = Page(0, 200, [*tasks[:98], x], 1, (99,))
    second_page = Page(100, 200, [y, *tasks[102:]], 1, (0,))

    fold = ListingFold(Order.OLDEST_FIRST)
    fold.add(first)
    fold.add(second_page)
    try:
        while requests := fold.next_requests(10):
            for request in requests:
                fold.add(listing.page(request))
        known = fold.result()
    except PassRejected:
        return  # failing is allowed; publishing wrong numbers is not
    assert published(known) == truth(tasks, [bad])


def test_a_reshuffled_tie_group_holding_a_malformed_record_is_read_whole_not_failed() -> None:
    """Oldest first, second 98 has four records at ages 98..101, one of them malformed. A task
    arrives after the first page, so the boundary 99/100 is read again by a two-age page
    (docs, "What fails a listing"); that call lists the group reversed, so age 99 now shows a
    task where the first call showed the malformed record. The fold fails the listing
    (``duplicate``: "age index 99 read twice with different tasks"), as it would not for a group
    of valid tasks, which it marks unsettled and reads whole. Correct: a malformed record is a
    member of its tie group like any other; the group is read whole and the listing is exact as
    of its first page, less its youngest second (199 tasks, 1 invalid)."""
    tasks = distinct(200)
    group = [make(1000 + n, SUCCEED, T0 + 98) for n in range(4)]
    tasks[98:102] = group
    listing = Quirky(Order.OLDEST_FIRST, tasks, malformed=[group[1]], flips={T0 + 98: {3}})
    fold = ListingFold(Order.OLDEST_FIRST)
    fold.add(listing.page(PageRequest(0, 100)))
    listing.add(T0 + 500, SUCCEED)  # one arrival: the next pages answer another total
    known = read(listing, fold)
    # The youngest second (age 199) was read at the later total: the listing ends before it.
    assert published(known) == truth(tasks[:199], [group[1]])


def test_a_reshuffled_tie_group_next_to_another_tie_group_is_read_whole_not_failed() -> None:
    """Oldest first: second 96 has two tasks (ages 96, 97), second 98 has four (ages 98..101),
    a burst in two consecutive seconds. The second call lists group 98 reversed, so it shows
    tasks of the first page again: the group is unsettled and read whole by one page reaching
    from age 97 to 102. That third call lists group 96 reversed, so age 97, the "nearest older
    task outside the group", holds the other task of second 96, and the fold fails the listing
    as ``duplicate`` ("age index 97 read twice with different tasks"). Correct: a neighbour
    that is itself in a tie group may change between calls; the listing can be exact (all 200
    tasks), since both groups are listed whole as sets."""
    tasks = distinct(200)
    tasks[96:98] = [make(900 + n, SUCCEED, T0 + 96) for n in range(2)]
    tasks[98:102] = [make(1000 + n, PROCESSING if n % 2 else SUCCEED, T0 + 98) for n in range(4)]
    listing = Quirky(Order.OLDEST_FIRST, tasks, flips={T0 + 98: {2}, T0 + 96: {3}})
    known = read(listing, ListingFold(Order.OLDEST_FIRST))
    assert published(known) == truth(tasks, [])


# As of which moment: the youngest-second cut ------------------------------------------------------


def test_the_youngest_second_cut_is_not_fooled_by_a_malformed_record_at_the_young_end() -> None:
    """Oldest first, ties listed by id. The youngest second S holds a, a malformed record m and
    an open task z (ages 297..299, N0 = 300). After the first page, task b of second S arrives
    and is listed among them (its id sorts between a and m), pushing z out of age 299. The
    young-end page, read at 301, shows a, b, m at 297..299. The cut looks for the youngest
    second from age 299, whose record is malformed (create_time NaN), so it takes that record
    alone for the youngest second and cuts at 299: the result holds b, created during the
    listing, and not m or z, which existed before b. Published: total 299, 0 invalid, b open;
    no moment had these tasks. Correct: the youngest second is the second of the youngest
    task read (malformed records above it belong to it), so the listing ends before age 297:
    297 finished tasks, exact as of the moment before S began."""
    tasks = distinct(297)
    second = T0 + 1000
    a, m, z = make(5000, SUCCEED, second), make(5002, SUCCEED, second), make(5003, PROCESSING, second)
    listing = Quirky(Order.OLDEST_FIRST, [*tasks, a, m, z], malformed=[m], by_id=True)
    fold = ListingFold(Order.OLDEST_FIRST)
    fold.add(listing.page(PageRequest(0, 100)))
    listing.tasks.append(make(5001, WAITING, second))  # b: listed between a and m
    try:
        known = read(listing, fold)
    except PassRejected:
        return  # failing (young_end) is allowed; publishing a moment that never was is not
    assert published(known) == truth(tasks, [])


# Modes: an order not shown yet is not an order contradicted ----------------------------------------


def test_incremental_mode_learns_the_order_once_an_empty_project_gains_tasks() -> None:
    """``--listing.mode incremental`` on a project with no tasks yet (a new project, or one whose
    tasks were all purged). The first complete listing shows no order, having nothing to show it
    by, and the strategy takes that as an API that is not ordered by create_time: every later
    scrape fails with ``OrderUnknown`` without listing again, so the exporter stays dark for good,
    even after hundreds of well-ordered tasks arrive. Correct: a listing that showed no step (no
    contradiction, just too few tasks) is not evidence of an unordered API; the next scrape
    lists again, learns the order, and publishes the exact counts (docs, "Modes": failing with
    order_unknown is for a project "whose order cannot be learned")."""
    from tests.test_strategy import assert_published_exactly, far, strategy

    listing = Listing(Order.NEWEST_FIRST, [])
    runner, store, clock = strategy(listing, "incremental")
    runner.run(far(clock))
    assert store.view().up  # an empty project, published exactly
    for serial in range(300):
        listing.tasks.append(make(serial, (SUCCEED, FAILED, WAITING)[serial % 3], T0 + serial))
    runner.run(far(clock))
    assert_published_exactly(store.view(), listing)
