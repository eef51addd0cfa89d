"""The one fold (docs/incremental-listing.md, "One listing model: the fold"): every complete listing
is exact as of its first page's total while tasks arrive, learns the order from the pages it reads,
reads a reshuffled tie group whole, and fails only for what breaks exactness, each for its own
reason."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from exporter.listing.fold import ListingFold
from exporter.listing.known import BrokenInvariant, HeadEntry, KnownTasks, Order, PassRejected
from exporter.listing.reading import read_to_end
from exporter.tasks import PROCESSING, SUCCEED, WAITING, Page, PageRequest, Task
from tests.fake_listing import T0, Listing, history, make


def read(listing: Listing, fold: ListingFold, most: int = 1000) -> KnownTasks:
    """The fold's rounds against ``listing``, as the strategy reads them."""
    seen: list[Task] = []
    read_to_end(fold, listing, lambda: float("inf"), seen.append, most)
    assert len({task.task_id for task in seen}) == len(seen)  # each task handed on once
    return fold.result()


def counts_of(tasks: list[Task]) -> Counter[str]:
    return Counter(task.status for task in tasks)


def arriving(listing: Listing, every: int = 1, status: str = WAITING) -> None:
    """A task arrives, a second after the youngest, after every ``every`` pages answered."""
    answered = 0

    def arrive() -> None:
        nonlocal answered
        answered += 1
        if answered % every == 0:
            listing.add(max(task.created for task in listing.tasks) + 1, status)

    listing.on_page = arrive


@pytest.mark.parametrize("order", [Order.NEWEST_FIRST, Order.OLDEST_FIRST])
@pytest.mark.parametrize("hypothesis", [None, "known"])
def test_a_first_listing_is_exact_as_of_its_first_page_while_tasks_arrive(
    order: Order, hypothesis: str | None
) -> None:
    listing = Listing(order, history(5000))
    before = list(listing.tasks)
    arriving(listing)  # one arrival after every page: every page answers another total
    known = read(listing, ListingFold(order if hypothesis else None))
    assert known.order is order
    # Newest first, as of the first page's total. Oldest first the young end is read last, at a
    # later total: the listing ends before the youngest second, which that page cannot place.
    assert known.total == 5000 if order is Order.NEWEST_FIRST else 4990 < known.total < 5000
    as_of = listing.tasks[: known.total]  # the oldest tasks, in creation order
    if order is Order.NEWEST_FIRST:
        assert as_of == before  # the first page's total
    assert known.counts() == counts_of(as_of)
    assert {task_id: task for task_id, (_, task) in known.open.items()} == {
        task.task_id: task for task in as_of if task.is_open
    }


def test_a_listing_where_nothing_changes_costs_a_call_a_page() -> None:
    listing = Listing(Order.NEWEST_FIRST, history(5000))
    read(listing, ListingFold())
    assert listing.calls == 50


def test_arrivals_cost_few_calls_beyond_a_page_each_newest_first() -> None:
    listing = Listing(Order.NEWEST_FIRST, history(5000))
    arriving(listing, every=10)
    read(listing, ListingFold())
    # Each shift leaves one age uncovered at its page's old end: one round of pages reads them.
    assert 50 < listing.calls <= 56


def test_the_order_of_a_first_page_in_one_second_is_taken_from_the_last_page() -> None:
    tasks = [make(serial, SUCCEED, T0) for serial in range(100)] + [
        make(100 + serial, SUCCEED, T0 + 1 + serial) for serial in range(400)
    ]
    listing = Listing(Order.OLDEST_FIRST, tasks)
    fold = ListingFold()
    assert fold.next_requests(10) == [PageRequest(0, 100)]
    fold.add(listing.page(PageRequest(0, 100)))
    assert fold.next_requests(10) == [PageRequest(400, 100)]  # the last page, alone
    assert read(listing, fold).order is Order.OLDEST_FIRST
    assert listing.calls == 5  # the last page was one of the five, not a sixth


def test_a_listing_all_in_one_second_teaches_no_order_and_is_exact_at_one_total() -> None:
    listing = Listing(Order.NEWEST_FIRST, [make(serial, SUCCEED, T0) for serial in range(250)])
    known = read(listing, ListingFold())
    assert known.order is Order.UNKNOWN and known.finished == {SUCCEED: 250}


def unordered(count: int) -> Listing:
    listing = Listing(Order.OLDEST_FIRST, [])
    listing.tasks = sorted(history(count), key=lambda task: task.task_id[::-1])
    return listing


def test_an_unordered_api_is_listed_by_position_when_nothing_changes() -> None:
    listing = unordered(800)
    fold = ListingFold()
    known = read(listing, fold)
    assert known.order is Order.UNKNOWN
    assert known.counts() == listing.counts()
    assert fold.contradiction == "create_time goes both ways on the first page"
    assert listing.calls == 8


def test_an_unordered_api_that_gains_tasks_while_listed_fails_as_inconsistent() -> None:
    listing = unordered(800)
    arriving(listing, every=3)
    with pytest.raises(PassRejected) as raised:
        read(listing, ListingFold())
    assert raised.value.reason == "inconsistent"
    assert str(raised.value) == (
        "the API lists tasks in no order of create_time, and its total changed while paging (800 to 802)"
    )


def test_a_learned_order_that_a_page_contradicts_falls_back_to_positions() -> None:
    listing = Listing(Order.OLDEST_FIRST, history(500))
    fold = ListingFold(Order.NEWEST_FIRST)
    known = read(listing, fold)
    assert known.order is Order.UNKNOWN
    assert fold.contradiction == "create_time decreases with the age index on a page"
    assert known.counts() == listing.counts()


def test_a_strict_listing_by_the_wrong_order_fails_as_order_changed() -> None:
    listing = Listing(Order.NEWEST_FIRST, history(500))
    with pytest.raises(PassRejected) as raised:
        read(listing, ListingFold(Order.OLDEST_FIRST, strict=True))
    assert raised.value.reason == "order_changed"


def test_a_strict_fold_needs_an_order() -> None:
    with pytest.raises(ValueError, match="a strict fold needs an order to test"):
        ListingFold(None, strict=True)


class Reshuffling(Listing):
    """Lists the tasks of one create_time second in a new order on every call."""

    def __init__(self, order: Order, tasks: list[Task], seed: int = 7) -> None:
        super().__init__(order, tasks)
        self.rng = random.Random(seed)

    def listed(self) -> list[Task]:
        groups: dict[float, list[Task]] = {}
        for task in super().listed():
            groups.setdefault(task.created, []).append(task)
        listed: list[Task] = []
        for group in groups.values():
            self.rng.shuffle(group)
            listed.extend(group)
        return listed


@pytest.mark.parametrize("order", [Order.NEWEST_FIRST, Order.OLDEST_FIRST])
def test_a_tie_group_listed_in_a_new_order_on_every_call_is_read_whole(order: Order) -> None:
    tasks = [
        make(serial, SUCCEED if serial % 3 else PROCESSING, T0 + (80 if 80 <= serial < 120 else serial))
        for serial in range(250)
    ]
    listing = Reshuffling(order, tasks)
    known = read(listing, ListingFold())
    assert known.order is order
    assert known.counts() == listing.counts()
    assert set(known.open) == set(listing.open())
    assert listing.calls <= 3 + 2  # the three pages, and the group read whole at most twice


def test_a_tie_group_larger_than_a_page_that_reshuffles_fails_as_duplicate() -> None:
    tasks = [make(serial, SUCCEED, T0 + (50 if 50 <= serial < 200 else serial)) for serial in range(300)]
    listing = Reshuffling(Order.OLDEST_FIRST, tasks, seed=3)
    with pytest.raises(PassRejected) as raised:
        read(listing, ListingFold(Order.OLDEST_FIRST))
    assert raised.value.reason == "duplicate"
    assert "more than a page holds" in str(raised.value)


def test_a_total_that_falls_fails_as_removed() -> None:
    listing = Listing(Order.NEWEST_FIRST, history(500))
    fold = ListingFold()
    fold.add(listing.page(PageRequest(0, 100)))
    listing.remove(listing.tasks[0].task_id)
    with pytest.raises(PassRejected) as raised:
        fold.add(listing.page(PageRequest(100, 100)))
    assert (raised.value.reason, str(raised.value)) == (
        "removed",
        "the total fell from 500 to 499: tasks were removed",
    )


def test_an_empty_page_inside_the_total_fails_as_removed() -> None:
    fold = ListingFold(Order.OLDEST_FIRST)
    fold.add(Page(0, 300, [make(serial, SUCCEED, T0 + serial) for serial in range(100)], 0))
    with pytest.raises(PassRejected) as raised:
        fold.add(Page(100, 300, [], 0))
    assert (raised.value.reason, str(raised.value)) == (
        "removed",
        "the page at offset 100 is empty although the API reported 300 tasks",
    )


def test_two_tasks_at_one_age_outside_a_tie_group_fail_as_duplicate() -> None:
    fold = ListingFold(Order.OLDEST_FIRST)
    fold.add(Page(0, 200, [make(serial, SUCCEED, T0 + serial) for serial in range(100)], 0))
    with pytest.raises(PassRejected) as raised:
        fold.add(Page(99, 200, [make(5000, SUCCEED, T0 + 99.5)], 0))
    assert (raised.value.reason, str(raised.value)) == (
        "duplicate",
        "age index 99 read twice with different tasks",
    )


def test_one_task_at_two_ages_of_an_unordered_listing_fails_as_duplicate() -> None:
    fold = ListingFold()
    first = [make(serial, SUCCEED, T0 + (serial * 7919) % 100) for serial in range(100)]
    fold.add(Page(0, 200, first, 0))  # in no order: positions
    with pytest.raises(PassRejected) as raised:
        fold.add(Page(100, 200, first, 0))  # the API repeats its first page
    assert (raised.value.reason, str(raised.value)) == ("duplicate", "one task listed at two age indices")


def test_a_purge_and_an_arrival_between_two_pages_of_different_totals_are_caught() -> None:
    # Oldest first, the purge of the oldest task moves every age down by one; the arrival makes
    # the second page's total differ from the first's, so the boundary is read again together.
    tasks = [make(serial, SUCCEED, T0 + serial) for serial in range(200)]
    listing = Listing(Order.OLDEST_FIRST, tasks)
    fold = ListingFold(Order.OLDEST_FIRST)
    fold.add(listing.page(PageRequest(0, 100)))
    listing.add(T0 + 500)
    listing.add(T0 + 501)
    listing.remove(tasks[0].task_id)
    fold.add(listing.page(PageRequest(100, 100)))
    fold.add(listing.page(PageRequest(200, 2)))  # the young end, at the new total
    assert fold.next_requests(10) == [PageRequest(99, 2)]  # the boundary, read together
    with pytest.raises(PassRejected) as raised:
        fold.add(listing.page(PageRequest(99, 2)))
    assert raised.value.reason == "duplicate"


def test_a_listing_read_on_in_another_round_keeps_what_it_had() -> None:
    listing = Listing(Order.NEWEST_FIRST, history(1000))
    fold = ListingFold(Order.NEWEST_FIRST)
    for request in fold.next_requests(1):
        fold.add(listing.page(request))
    first_round = fold.next_requests(1000)
    for request in first_round[:4]:  # interrupted: the rest is read later
        fold.add(listing.page(request))
    for _ in range(30):
        listing.add(max(task.created for task in listing.tasks) + 1)
    assert fold.by_age and fold.progress == 0.5
    known = read(listing, fold)
    assert known.total == 1000
    assert known.counts() == counts_of(listing.tasks[:1000])


class YoungTieInserter(Listing):
    """Oldest first, and a task created in the youngest second is listed among that second's tasks
    (ordered by id), not after them, as an API that sorts ties by id would."""

    def listed(self) -> list[Task]:
        return sorted(self.tasks, key=lambda task: (task.created, task.task_id))


def test_the_youngest_second_read_late_is_left_to_the_next_listing() -> None:
    tasks = [make(1000 + serial, SUCCEED, T0 + serial // 5) for serial in range(300)]
    listing = YoungTieInserter(Order.OLDEST_FIRST, tasks)
    top = max(task.created for task in tasks)
    fold = ListingFold(Order.OLDEST_FIRST)
    fold.add(listing.page(PageRequest(0, 100)))
    # Before the young end is read, a task of the youngest second arrives, listed among them: the
    # page at the young end, read at 301, pushes one of them past age 299.
    listing.tasks.append(make(5, PROCESSING, top))
    known = read(listing, fold)
    # Exact as of the moment before the youngest second began: the 295 tasks before it.
    assert known.total == 295
    assert known.counts() == counts_of(tasks[:295])
    assert known.head[294].task_id == tasks[294].task_id


def test_a_listing_all_of_one_second_that_gains_tasks_in_it_fails_as_young_end() -> None:
    listing = Listing(Order.OLDEST_FIRST, [make(1000 + serial, SUCCEED, T0) for serial in range(300)])
    fold = ListingFold(Order.OLDEST_FIRST, strict=True)
    fold.add(listing.page(PageRequest(0, 100)))
    listing.add(T0)  # the rest is read at 301: no page shows the youngest second at 300
    with pytest.raises(PassRejected) as raised:
        read(listing, fold)
    assert (raised.value.reason, str(raised.value)) == (
        "young_end",
        "every task is of the youngest second, and tasks arrived in it while it was listed",
    )


def test_rounds_that_add_nothing_end_the_listing_as_inconsistent() -> None:
    # Newest first, a thousand tasks arrive before every answer: each page is placed among ages
    # the listing leaves to the next one, and no round covers anything.
    listing = Listing(Order.NEWEST_FIRST, history(300))

    def flood() -> None:
        top = max(task.created for task in listing.tasks) + 1
        for _ in range(1000):
            listing.add(top)

    fold = ListingFold(Order.NEWEST_FIRST)
    fold.add(listing.page(PageRequest(0, 100)))
    listing.on_page = flood
    with pytest.raises(PassRejected) as raised:
        read(listing, fold)
    assert (raised.value.reason, str(raised.value)) == (
        "inconsistent",
        "3 rounds of pages added nothing to the listing: the API repeats or omits pages",
    )


def test_malformed_records_are_counted_invalid_in_their_place() -> None:
    fold = ListingFold(Order.OLDEST_FIRST)
    tasks = [make(serial, SUCCEED, T0 + serial) for serial in range(98)]
    fold.add(Page(0, 100, tasks, 2, (10, 50)))
    known = fold.result()
    assert known.invalid == 2 and known.finished == {SUCCEED: 98}


def test_hundreds_of_unknown_statuses_share_one_code_counted_as_other() -> None:
    fold = ListingFold(Order.OLDEST_FIRST)
    for offset in range(0, 300, 100):
        tasks = [
            make(serial, SUCCEED, T0 + serial)._replace(status=f"NEW{serial:03}")
            for serial in range(offset, offset + 100)
        ]
        fold.add(Page(offset, 300, tasks, 0))
    known = fold.result()
    # 253 statuses have codes of their own; the tasks of the 47 after them share one.
    assert sum(known.finished.values()) == 300
    assert known.finished["other"] == 47 + 253 - 9  # the counts keep ten unknown names at most


# Invariants ------------------------------------------------------------------------------------


def known_with(**changes: object) -> KnownTasks:
    task = make(1, PROCESSING, T0)
    base = {
        "order": Order.NEWEST_FIRST,
        "total": 3,
        "head": {2: HeadEntry(task.task_id, T0, None), 1: HeadEntry("b", T0 - 1, SUCCEED)},
        "open": {task.task_id: (2, task)},
        "finished": {SUCCEED: 1},
        "invalid": 1,
    }
    base.update(changes)
    return KnownTasks(**base)  # type: ignore[arg-type]


def test_consistent_known_tasks_pass_their_check() -> None:
    known_with().check()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"total": 4}, "1 finished + 1 open + 1 invalid != total 4"),
        ({"finished": {SUCCEED: 2}, "invalid": 0, "total": 3}, None),
        ({"finished": {SUCCEED: -1}, "invalid": 3}, "a negative count"),
        ({"open": {"x": (3, make(1, PROCESSING, T0))}}, "an open task's age index lies outside [0, 3)"),
        ({"open": {"x": (-1, make(1, PROCESSING, T0))}}, "an open task's age index lies outside [0, 3)"),
        (
            {"head": {2: HeadEntry("a", T0, None), 0: HeadEntry("c", T0 - 2, SUCCEED)}},
            "the head is not one run of the youngest ages",
        ),
        ({"head": {1: HeadEntry("a", T0, None)}}, "the head is not one run of the youngest ages"),
    ],
)
def test_known_tasks_that_no_listing_could_show_break_their_check(changes: dict, message: str | None) -> None:  # type: ignore[type-arg]
    known = known_with(**changes)
    if message is None:
        known.check()
        return
    with pytest.raises(BrokenInvariant) as raised:
        known.check()
    assert str(raised.value) == message


def test_two_open_tasks_at_one_age_break_the_check() -> None:
    first, second = make(1, PROCESSING, T0), make(2, WAITING, T0)
    known = known_with(open={first.task_id: (2, first), second.task_id: (2, second)}, finished={}, invalid=1)
    with pytest.raises(BrokenInvariant) as raised:
        known.check()
    assert str(raised.value) == "two open tasks share an age index"


def test_an_unknown_order_does_not_check_ages() -> None:
    task = make(1, PROCESSING, T0)
    known_with(order=Order.UNKNOWN, open={task.task_id: (-1, task)}, head={}).check()


@pytest.mark.parametrize("order", [Order.NEWEST_FIRST, Order.OLDEST_FIRST])
def test_every_tie_group_reordered_on_every_call_costs_a_few_calls_each(order: Order) -> None:
    # Bursts share a second all through the history, and every call lists each burst anew: the
    # groups that pages cut are read whole once each, and a group read whole stays as read (its
    # neighbours, reordered again on the next call, do not send it back to be read again).
    listing = Reshuffling(order, history(5000), seed=12)
    known = read(listing, ListingFold())
    assert known.counts() == listing.counts()
    assert set(known.open) == set(listing.open())
    # 50 pages, and the groups they cut read whole: 68 newest first, 70 oldest first (77 and 82
    # when a group read whole was sent back by its neighbours).
    assert listing.calls <= 72


def test_a_tie_group_read_again_in_another_order_at_the_same_ages_is_asked_for_whole() -> None:
    a, b, c, d = (make(serial, SUCCEED, T0 + time) for serial, time in enumerate((0, 1, 1, 2)))
    fold = ListingFold(Order.OLDEST_FIRST)
    fold.add(Page(0, 4, [a, b, c, d], 0))
    fold.add(Page(1, 4, [c, b], 0))  # ages 1 and 2 again: the tie of b and c in the other order
    assert fold.next_requests(10) == [PageRequest(0, 4)]  # the group and a neighbour either side
    fold.add(Page(0, 4, [a, c, b, d], 0))
    known = fold.result()
    assert known.finished == {SUCCEED: 4} and known.total == 4
