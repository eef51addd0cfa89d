"""Which listing each scrape runs, and what reaches the store: complete listings until the order is
known, incremental passes after, fallbacks, background complete listings and reconciliation."""

from __future__ import annotations

import random

import pytest

from exporter.cloud.errors import ServerError
from exporter.config import ListingSettings, SeriesSettings
from exporter.deadline import Deadline, DeadlineExceeded
from exporter.listing.known import Order
from exporter.listing.strategy import ListingPending, ListingStrategy, OrderUnknown
from exporter.store import StoreView, TaskStore
from exporter.tasks import SUCCEED
from tests.conftest import FakeClock, wait_for
from tests.fake_listing import Listing, history, make, step


def strategy(
    listing: Listing, mode: str = "auto", *, rate_limit: float = 0.0, reconcile: float = 3600.0
) -> tuple[ListingStrategy, TaskStore, FakeClock]:
    clock = FakeClock()
    store = TaskStore("p1", SeriesSettings(), started_at=0)
    runner = ListingStrategy(
        listing,
        store,
        ListingSettings(mode=mode, reconcile_interval=reconcile),
        SeriesSettings(),
        rate_limit=rate_limit,
        clock=clock,
        pace=clock.sleep,
        wall_clock=lambda: 1_900_000_000.0,
    )
    return runner, store, clock


def far(clock: FakeClock) -> Deadline:
    return Deadline(clock() + 30.0)


def assert_published_exactly(view: StoreView, listing: Listing) -> None:
    assert view.up and view.snapshot is not None
    counts = {status: count for status, count in view.snapshot.counts.items() if count}
    assert counts == dict(listing.counts())
    assert view.snapshot.reported_total == len(listing.tasks)
    open_series = {task.task_id: task for task in view.snapshot.series_tasks if task.is_open}
    assert open_series == listing.open()


def test_auto_lists_everything_once_then_only_what_changed() -> None:
    rng = random.Random(2)
    listing = Listing(Order.NEWEST_FIRST, history(5000))
    runner, store, clock = strategy(listing)
    runner.run(far(clock))
    facts = store.view().listing.last
    assert facts is not None and (facts.mode, facts.reason, facts.order) == (
        "full",
        "learning",
        "newest_first",
    )
    assert facts.calls == 50
    assert_published_exactly(store.view(), listing)
    for _ in range(5):
        step(listing, rng, arrivals=20)
        listing.calls = 0
        runner.run(far(clock))
        facts = store.view().listing.last
        assert facts is not None and (facts.mode, facts.reason) == ("incremental", "order_verified")
        assert facts.calls == listing.calls <= 5
        assert_published_exactly(store.view(), listing)


def test_full_mode_lists_everything_every_time() -> None:
    listing = Listing(Order.NEWEST_FIRST, history(1000))
    runner, store, clock = strategy(listing, "full")
    for _ in range(3):
        listing.calls = 0
        runner.run(far(clock))
        assert listing.calls == 10
    facts = store.view().listing.last
    assert facts is not None and (facts.mode, facts.reason) == ("full", "configured")


def unordered(count: int = 800) -> Listing:
    """``count`` tasks listed in an order that is not by create_time (stable between calls)."""
    listing = Listing(Order.OLDEST_FIRST, [])
    listing.tasks = sorted(history(count), key=lambda task: task.task_id[::-1])
    return listing


def test_an_order_that_cannot_be_learned_keeps_auto_on_complete_listings() -> None:
    listing = unordered()
    runner, store, clock = strategy(listing)
    for _ in range(3):
        listing.calls = 0
        runner.run(far(clock))
        assert listing.calls == 8
        assert_published_exactly(store.view(), listing)
    facts = store.view().listing.last
    assert facts is not None and (facts.mode, facts.reason, facts.order) == (
        "full",
        "order_unknown",
        "unknown",
    )


def test_incremental_mode_refuses_complete_listings_once_the_order_is_unknown() -> None:
    listing = unordered()
    runner, _, clock = strategy(listing, "incremental")
    runner.run(far(clock))  # the first complete listing is how the order is learned
    with pytest.raises(OrderUnknown):
        runner.run(far(clock))


def test_a_surprise_falls_back_to_a_complete_listing_and_is_counted() -> None:
    listing = Listing(Order.NEWEST_FIRST, history(3000))
    runner, store, clock = strategy(listing)
    runner.run(far(clock))
    listing.remove(listing.tasks[0].task_id)  # purged
    listing.calls = 0
    runner.run(far(clock))  # the pass is discarded, and a complete listing fits the same scrape
    assert sum(store.view().listing.fallbacks.values()) == 1
    facts = store.view().listing.last
    assert facts is not None and (facts.mode, facts.reason) == ("full", "fallback")
    assert listing.calls == facts.calls + 1  # the young-end page that showed the surprise
    assert_published_exactly(store.view(), listing)
    runner.run(far(clock))
    facts = store.view().listing.last
    assert facts is not None and facts.mode == "incremental"


def test_a_project_too_big_for_a_scrape_is_listed_in_the_background() -> None:
    rng = random.Random(4)
    listing = Listing(Order.NEWEST_FIRST, history(4000))
    # 40 pages at 1 call/s cannot fit a 30 s scrape: the first page says so.
    runner, store, clock = strategy(listing, rate_limit=1.0)
    with pytest.raises(ListingPending):
        runner.run(far(clock))
    wait_for("the background listing", lambda: runner._background is not None and runner._background.done)
    step(listing, rng, arrivals=30)
    runner.run(far(clock))
    facts = store.view().listing.last
    assert facts is not None and facts.mode == "sync"
    assert_published_exactly(store.view(), listing)
    runner.close()


def test_reconciliation_wins_where_the_incremental_state_was_wrong() -> None:
    listing = Listing(Order.NEWEST_FIRST, history(2000))
    runner, store, clock = strategy(listing, reconcile=60.0)
    runner.run(far(clock))
    # A finished task changes status where no pass looks: only a complete listing can see it.
    old = listing.tasks[10]
    listing.tasks[10] = old._replace(status="CANCEL" if old.status == SUCCEED else SUCCEED)
    clock.sleep(61)
    runner.run(far(clock))  # due: starts the background listing
    wait_for("the reconciliation", lambda: runner._background is not None and runner._background.done)
    runner.run(far(clock))
    view = store.view()
    assert view.listing.reconciliations == 1 and view.listing.reconciliation_mismatches == 1
    assert_published_exactly(view, listing)
    runner.close()


def test_a_task_created_in_the_same_second_as_the_youngest_is_not_missed() -> None:
    listing = Listing(Order.NEWEST_FIRST, history(1000))
    runner, store, clock = strategy(listing)
    runner.run(far(clock))
    top = max(task.created for task in listing.tasks)
    for _ in range(150):  # a burst in one second, bigger than a page
        listing.add(top)
    runner.run(far(clock))
    assert_published_exactly(store.view(), listing)


class Flaky(Listing):
    """Fails every third fetch with a 5xx, as a busy API does now and then."""

    def __init__(self, order: Order, tasks: list) -> None:  # type: ignore[type-arg]
        super().__init__(order, tasks)
        self.fetches = 0

    def fetch_pages(self, requests, deadline):  # type: ignore[no-untyped-def]
        self.fetches += 1
        if self.fetches % 3 == 0:
            raise ServerError("HTTP 503 APIGW.0613: busy")
        return super().fetch_pages(requests, deadline)


def test_a_background_listing_survives_passing_api_failures() -> None:
    listing = Flaky(Order.NEWEST_FIRST, history(4000))
    runner, store, clock = strategy(listing, rate_limit=1.0)
    with pytest.raises(ListingPending):
        runner.run(far(clock))
    wait_for("the background listing", lambda: runner._background is not None and runner._background.done)
    assert runner._background is not None and runner._background.error is None
    listing.fetches = 1  # the pass that takes it over is not interrupted
    runner.run(far(clock))
    assert_published_exactly(store.view(), listing)
    runner.close()


def test_a_big_project_whose_order_cannot_be_read_by_age_is_listed_in_the_scrape() -> None:
    listing = unordered()
    listing.tasks = sorted(history(4000), key=lambda task: task.task_id[::-1])
    runner, store, clock = strategy(listing, rate_limit=1.0)
    with pytest.raises(ListingPending):
        runner.run(far(clock))  # too big for the scrape: to the background, on a guessed order
    wait_for("the background listing", lambda: runner._background is not None and runner._background.done)
    listing.calls = 0
    # The guess failed (counted), and there is no second background listing: a complete listing
    # in the scrape, as before incremental listing.
    runner.run(far(clock))
    assert runner._background is None
    assert store.view().listing.fallbacks == {"order_changed": 1}
    assert listing.calls == 40
    assert_published_exactly(store.view(), listing)


class Slow(Listing):
    """Runs out of the scrape's time whenever a pass must read more than 5 pages at once."""

    def fetch_pages(self, requests, deadline):  # type: ignore[no-untyped-def]
        if len(requests) > 5:
            raise DeadlineExceeded("the listing did not finish before the scrape deadline")
        return super().fetch_pages(requests, deadline)


def test_a_backlog_bigger_than_a_scrape_falls_back_to_a_complete_listing() -> None:
    listing = Slow(Order.NEWEST_FIRST, history(3000))
    runner, store, clock = strategy(listing)
    runner.run(far(clock))
    top = max(task.created for task in listing.tasks)
    for _ in range(700):  # the exporter was away: 7 pages of new tasks
        listing.add(top + 1)
    for _ in range(2):
        with pytest.raises(DeadlineExceeded):
            runner.run(far(clock))
    assert store.view().listing.fallbacks == {"timeout": 1}
    runner.run(far(clock))
    facts = store.view().listing.last
    assert facts is not None and (facts.mode, facts.reason) == ("full", "fallback")
    assert_published_exactly(store.view(), listing)


def test_a_background_listing_that_a_purge_broke_is_read_again() -> None:
    listing = Listing(Order.NEWEST_FIRST, history(4000))
    purged: list[str] = []

    def purge_once(seconds: float) -> None:
        if not purged:  # between the first two rounds, the oldest task is purged
            purged.append(listing.tasks[0].task_id)
            listing.remove(purged[0])

    clock = FakeClock()
    store = TaskStore("p1", SeriesSettings(), started_at=0)
    runner = ListingStrategy(
        listing, store, ListingSettings(), SeriesSettings(), rate_limit=1.0, clock=clock, pace=purge_once
    )
    with pytest.raises(ListingPending):
        runner.run(far(clock))
    wait_for(
        "the first background listing", lambda: runner._background is not None and runner._background.done
    )
    with pytest.raises(ListingPending):
        runner.run(far(clock))  # it was broken (counted), and is read again, not given up
    assert store.view().listing.fallbacks == {"removed": 1}  # the next round answered a lower total
    wait_for(
        "the second background listing", lambda: runner._background is not None and runner._background.done
    )
    runner.run(far(clock))
    assert_published_exactly(store.view(), listing)
    runner.close()


class Failing(Listing):
    """Answers 503 while ``down`` is set."""

    down = False

    def fetch_pages(self, requests, deadline):  # type: ignore[no-untyped-def]
        if self.down:
            raise ServerError("HTTP 503 APIGW.0613: busy")
        return super().fetch_pages(requests, deadline)


def test_a_finished_background_listing_outlives_a_failed_scrape() -> None:
    listing = Failing(Order.NEWEST_FIRST, history(4000))
    runner, store, clock = strategy(listing, rate_limit=1.0)
    with pytest.raises(ListingPending):
        runner.run(far(clock))
    wait_for("the background listing", lambda: runner._background is not None and runner._background.done)
    listing.down = True
    with pytest.raises(ServerError):
        runner.run(far(clock))  # the pass that would bring it to the present fails
    listing.down = False
    listing.calls = 0
    runner.run(far(clock))  # taken over now, not read again from the start
    assert listing.calls < 40
    facts = store.view().listing.last
    assert facts is not None and facts.mode == "sync"
    assert_published_exactly(store.view(), listing)
    runner.close()


def test_a_big_project_whose_ends_tell_no_order_is_listed_in_the_scrape() -> None:
    # Every task in one second: the first and the last page cannot tell the order.
    listing = Listing(Order.NEWEST_FIRST, [make(serial, SUCCEED, 1_800_000_000.0) for serial in range(4000)])
    runner, store, clock = strategy(listing, rate_limit=1.0)
    with pytest.raises(ListingPending):
        runner.run(far(clock))
    wait_for("the background listing", lambda: runner._background is not None and runner._background.done)
    listing.calls = 0
    runner.run(far(clock))  # no second background listing: a complete listing in the scrape
    assert runner._background is None and listing.calls == 40
    assert store.view().listing.fallbacks.get("order_unknown") == 1
    assert_published_exactly(store.view(), listing)
