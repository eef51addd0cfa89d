"""Order learning and incremental passes against an in-memory listing: exact counts and open tasks
after every verified pass, and a rejection, never a guess, after every surprise."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from exporter.listing.fold import ListingFold
from exporter.listing.incremental import cheapest_calls, run_pass
from exporter.listing.known import KnownTasks, Order, PassRejected
from exporter.tasks import FAILED, PROCESSING, SUCCEED, Page
from tests.fake_listing import T0, Listing, assert_exact, history, make, step


@pytest.mark.parametrize("order", [Order.NEWEST_FIRST, Order.OLDEST_FIRST])
def test_the_order_is_learned_from_a_complete_listing(order: Order) -> None:
    assert Listing(order, history(1000)).complete().order is order


def test_a_listing_not_by_create_time_has_no_order() -> None:
    tasks = history(500)
    shuffled = Listing(Order.OLDEST_FIRST, [])
    shuffled.tasks = sorted(tasks, key=lambda task: task.task_id[::-1])
    assert shuffled.complete().order is Order.UNKNOWN


def test_one_second_of_tasks_teaches_nothing() -> None:
    tasks = [make(serial, SUCCEED, T0) for serial in range(150)]
    assert Listing(Order.NEWEST_FIRST, tasks).complete().order is Order.UNKNOWN


def test_the_order_learned_does_not_depend_on_page_arrival_order() -> None:
    listed = Listing(Order.NEWEST_FIRST, history(1000)).listed()
    fold = ListingFold()
    pages = [Page(offset, 1000, listed[offset : offset + 100], 0) for offset in range(0, 1000, 100)]
    fold.add(pages[0])  # the first page comes first: it tells the total
    for page in reversed(pages[1:]):
        fold.add(page)
    assert fold.next_requests(10) == []
    assert fold.result().order is Order.NEWEST_FIRST


@pytest.mark.parametrize("order", [Order.NEWEST_FIRST, Order.OLDEST_FIRST])
def test_passes_stay_exact_as_tasks_arrive_and_finish(order: Order) -> None:
    rng = random.Random(7)
    listing = Listing(order, history(3000))
    known = listing.complete()
    assert_exact(known, listing)
    for _ in range(30):
        step(listing, rng, arrivals=rng.choice((0, 3, 27, 140)))
        listing.calls = 0
        result, calls = run_pass(known, listing.pages, listing.lookups)
        known = result.known
        assert_exact(known, listing)
        assert calls == listing.calls
        # Far below a complete listing's 31+ calls.
        assert calls <= 12


def test_a_pass_costs_about_the_cheapest_plan() -> None:
    rng = random.Random(3)
    listing = Listing(Order.NEWEST_FIRST, history(20_000, deep_open=3, young_open=300))
    known = listing.complete()
    for _ in range(10):
        step(listing, rng, arrivals=27)
        ages = {task.task_id: age for age, task in enumerate(listing.tasks)}
        depths = [len(listing.tasks) - ages[task_id] for task_id in known.open]
        listing.calls = 0
        result, calls = run_pass(known, listing.pages, listing.lookups)
        cheapest = cheapest_calls(depths, new=len(listing.tasks) - known.total, page_size=100)
        assert calls <= cheapest + 1  # the anchor may cost a page of its own
        known = result.known


def test_tasks_arriving_during_a_pass_wait_for_the_next() -> None:
    rng = random.Random(11)
    listing = Listing(Order.NEWEST_FIRST, history(2000))
    known = listing.complete()
    top = max(task.created for task in listing.tasks)
    listing.on_page = lambda: listing.add(top + 1)  # one arrival after every page answered
    result, _ = run_pass(known, listing.pages, listing.lookups)
    listing.on_page = None
    # As of the first page: the tasks that came later are the next pass's.
    assert result.known.total < len(listing.tasks)
    step(listing, rng, arrivals=5)
    result, _ = run_pass(result.known, listing.pages, listing.lookups)
    assert_exact(result.known, listing)


def mutated(order: Order, change: Callable[[Listing, KnownTasks], None]) -> PassRejected:
    listing = Listing(order, history(2000))
    known = listing.complete()
    step(listing, random.Random(5), arrivals=10)
    change(listing, known)
    with pytest.raises(PassRejected) as raised:
        run_pass(known, listing.pages, listing.lookups)
    return raised.value


@pytest.mark.parametrize("order", [Order.NEWEST_FIRST, Order.OLDEST_FIRST])
def test_a_purged_old_task_is_a_surprise(order: Order) -> None:
    rejection = mutated(order, lambda listing, _: listing.remove(listing.tasks[0].task_id))
    # Ten tasks arrived: the total did not fall, but every known age moved down by one.
    assert rejection.reason == "anchor_moved"


def test_a_deleted_open_task_is_a_surprise() -> None:
    def delete_deep_open(listing: Listing, _: KnownTasks) -> None:
        deep = next(task for task in listing.tasks[:1000] if task.is_open)
        listing.remove(deep.task_id)

    # Every task younger than it moved down an age: the anchor shows it first.
    assert mutated(Order.NEWEST_FIRST, delete_deep_open).reason == "anchor_moved"


def test_a_changed_order_is_a_surprise() -> None:
    def shuffle(listing: Listing, _: KnownTasks) -> None:
        random.Random(1).shuffle(listing.tasks)

    assert mutated(Order.NEWEST_FIRST, shuffle).reason == "anchor_moved"


def test_a_task_that_appears_deep_in_the_history_is_a_surprise() -> None:
    def late(listing: Listing, _: KnownTasks) -> None:
        listing.tasks.insert(500, make(999_999, SUCCEED, listing.tasks[500].created))

    assert mutated(Order.NEWEST_FIRST, late).reason == "anchor_moved"


def test_a_finished_task_that_changes_status_is_a_surprise() -> None:
    def revert(listing: Listing, known: KnownTasks) -> None:
        # The youngest task that had already finished when the exporter last looked.
        young_finished = next(
            task
            for task in reversed(listing.tasks)
            if task.task_id not in known.open
            and not task.is_open
            and task.created <= max(e.created or 0 for e in known.head.values())
        )
        listing.set(young_finished.task_id, PROCESSING, progress=5)

    assert mutated(Order.NEWEST_FIRST, revert).reason == "status_reverted"


def test_the_cheapest_plan() -> None:
    # 27 new, 300 open within the youngest 1,150, 3 deep: 12 pages and 3 queries.
    depths = [*list(range(10, 1150, 4))[:300], 50_000, 90_000, 150_000]
    assert cheapest_calls(depths, new=27, page_size=100) == 12 + 3
    assert cheapest_calls([], new=0, page_size=100) == 1
    assert cheapest_calls([5_000], new=250, page_size=100) == 3 + 1


def sync(listing: Listing, order: Order, between_rounds: Callable[[], None] = lambda: None) -> ListingFold:
    """A background listing: strict about the order, every neighbouring pair read together."""
    reader = ListingFold(order, strict=True, link_every_boundary=True)
    while requests := reader.next_requests(4):
        for page in listing.pages(requests):
            reader.add(page)
        between_rounds()
    return reader


@pytest.mark.parametrize("order", [Order.NEWEST_FIRST, Order.OLDEST_FIRST])
def test_a_complete_listing_by_age_stays_exact_while_tasks_arrive(order: Order) -> None:
    rng = random.Random(13)
    listing = Listing(order, history(5000))
    # Tasks arrive and finish between every round of four pages: a classic listing would never
    # add up, since the total changes under it all the time.
    reader = sync(listing, order, lambda: step(listing, rng, arrivals=rng.choice((0, 1, 4))))
    assert reader.progress == 1.0
    known = reader.result()
    # As of the first page's total; oldest first the young end is read last, at a later total,
    # and the listing ends before the youngest second, which a late page cannot place.
    assert known.total == 5000 if order is Order.NEWEST_FIRST else 4990 < known.total < 5000
    # One incremental pass brings it to the present, exactly.
    result, _ = run_pass(known, listing.pages, listing.lookups)
    assert_exact(result.known, listing)


def test_reading_by_age_with_the_wrong_order_is_a_surprise() -> None:
    listing = Listing(Order.NEWEST_FIRST, history(1000))
    with pytest.raises(PassRejected) as raised:
        sync(listing, Order.OLDEST_FIRST)
    assert raised.value.reason == "order_changed"


def test_reading_by_age_a_listing_that_loses_tasks_is_a_surprise() -> None:
    listing = Listing(Order.NEWEST_FIRST, history(3000))
    with pytest.raises(PassRejected) as raised:
        # The oldest task is purged after every round.
        sync(listing, Order.NEWEST_FIRST, lambda: listing.remove(listing.tasks[0].task_id))
    assert (raised.value.reason, str(raised.value)) == (
        "removed",
        "the total fell from 3000 to 2999: tasks were removed",
    )


def test_a_task_arriving_during_a_pass_among_the_youngest_ties_is_not_taken_for_an_older_one() -> None:
    # Oldest first: the page at the young end is not the first one read when more tasks arrived
    # than last time. A task created in the youngest second while the pass runs may be listed
    # among that second's tasks, not after them: it takes an age index below the first page's
    # total, and pushes a task that was there out of the pass.
    listing = Listing(Order.OLDEST_FIRST, history(93, young_open=0, deep_open=0))
    known = listing.complete()
    top = max(task.created for task in listing.tasks)
    for _ in range(8):
        listing.add(top + 1, PROCESSING)
    youngest = listing.tasks[-1]

    def tie_listed_before_the_youngest() -> None:
        listing.on_page = None
        late = make(2_000_000, SUCCEED, youngest.created)
        listing.tasks.insert(len(listing.tasks) - 1, late)

    listing.on_page = tie_listed_before_the_youngest
    try:
        result, _ = run_pass(known, listing.pages, listing.lookups)
    except PassRejected:
        return
    # Accepted: read again after the arrival, the listing as it is now, the youngest task
    # included (as of the first page it was there, the late one was not).
    assert youngest.task_id in result.known.open
    assert_exact(result.known, listing)


@pytest.mark.parametrize("order", [Order.NEWEST_FIRST, Order.OLDEST_FIRST])
def test_a_purge_and_an_arrival_during_a_background_listing_are_not_missed(order: Order) -> None:
    # Purged tasks leave the old end while new ones arrive at the young end: the total stays the
    # same, but every age index moves down by one between two rounds of the listing.
    tasks = [task._replace(status=SUCCEED) for task in history(1000, young_open=0, deep_open=0)]
    tasks[0] = tasks[0]._replace(status=FAILED)  # the one purged: its count must fall to 0
    tasks[450] = tasks[450]._replace(status=PROCESSING, progress=40, ended=None)
    listing = Listing(order, tasks)
    top = max(task.created for task in listing.tasks)
    rounds = 0

    def purge_and_arrive() -> None:
        nonlocal rounds
        rounds += 1
        if rounds == 1:
            listing.remove(listing.tasks[0].task_id)
            listing.add(top + 1, SUCCEED)

    try:
        reader = sync(listing, order, purge_and_arrive)
        result, _ = run_pass(reader.result(), listing.pages, listing.lookups)
    except PassRejected:
        return
    assert_exact(result.known, listing)
