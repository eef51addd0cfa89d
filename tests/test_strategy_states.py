"""The listing strategy's state machine (exporter/listing/strategy.py): each transition of the one
table, brought about the way an API would bring it about, and nothing the table does not name."""

from __future__ import annotations

import contextlib
import random
import threading

import pytest

from exporter.cloud.errors import ServerError
from exporter.config import ListingSettings, SeriesSettings
from exporter.deadline import Deadline, DeadlineExceeded
from exporter.listing.known import Order
from exporter.listing.strategy import TRANSITIONS, Event, ListingPending, ListingStrategy, State
from exporter.store import TaskStore
from exporter.tasks import SUCCEED, Page, PageRequest
from tests.conftest import FakeClock, wait_for
from tests.fake_listing import Listing, history, make, step
from tests.test_strategy import Slow, strategy, unordered

S, E = State, Event


def run(runner: ListingStrategy, clock: FakeClock) -> None:
    runner.run(Deadline(clock() + 30.0))


def background_done(runner: ListingStrategy) -> None:
    wait_for("the background listing", lambda: runner.background is not None and runner.background.done)


def seen(runner: ListingStrategy) -> list[tuple[State, Event, State]]:
    return list(runner.transitions)


def test_a_first_listing_that_shows_the_order_goes_incremental() -> None:
    runner, _, clock = strategy(Listing(Order.NEWEST_FIRST, history(500)))
    run(runner, clock)
    assert seen(runner) == [(S.LEARNING, E.ORDER_LEARNED, S.INCREMENTAL)]


def test_a_first_listing_in_no_order_stays_on_complete_listings() -> None:
    runner, _, clock = strategy(unordered(300))
    run(runner, clock)
    run(runner, clock)
    assert seen(runner) == [
        (S.LEARNING, E.NO_ORDER, S.COMPLETE_ONLY),
        (S.COMPLETE_ONLY, E.NO_ORDER, S.COMPLETE_ONLY),
    ]


def test_full_mode_is_complete_only_from_the_start() -> None:
    runner, _, clock = strategy(Listing(Order.NEWEST_FIRST, history(300)), "full")
    assert runner.state is S.COMPLETE_ONLY
    run(runner, clock)
    assert seen(runner) == [
        (S.LEARNING, E.CONFIGURED_FULL, S.COMPLETE_ONLY),
        (S.COMPLETE_ONLY, E.CONFIGURED_FULL, S.COMPLETE_ONLY),
    ]


def test_a_project_too_big_for_a_scrape_syncs_then_goes_incremental() -> None:
    listing = Listing(Order.NEWEST_FIRST, history(4000))
    runner, _, clock = strategy(listing, rate_limit=1.0)
    with pytest.raises(ListingPending):
        run(runner, clock)
    background_done(runner)
    run(runner, clock)
    assert seen(runner) == [
        (S.LEARNING, E.TOO_BIG, S.SYNCING),
        (S.SYNCING, E.SYNCED, S.INCREMENTAL),
    ]
    runner.close()


def test_a_background_listing_a_purge_broke_is_read_again() -> None:
    listing = Listing(Order.NEWEST_FIRST, history(4000))
    purged: list[str] = []

    def purge_once(seconds: float) -> None:
        if not purged:
            purged.append(listing.tasks[0].task_id)
            listing.remove(purged[0])

    clock = FakeClock()
    store = TaskStore("p1", SeriesSettings(), started_at=0)
    runner = ListingStrategy(
        listing, store, ListingSettings(), SeriesSettings(), rate_limit=1.0, clock=clock, pace=purge_once
    )
    with pytest.raises(ListingPending):
        run(runner, clock)
    background_done(runner)
    with pytest.raises(ListingPending):
        run(runner, clock)
    assert seen(runner)[-1] == (S.SYNCING, E.SYNC_BROKEN, S.SYNCING)
    runner.close()


class Down(Listing):
    """Answers 503 to every page after the first ``up`` calls."""

    up = 1

    def page(self, request: PageRequest) -> Page:
        if self.calls >= self.up:
            self.calls += 1
            raise ServerError("HTTP 503 APIGW.0613: busy")
        return super().page(request)


def test_a_background_listing_that_api_errors_end_starts_over() -> None:
    listing = Down(Order.NEWEST_FIRST, history(4000))
    runner, _, clock = strategy(listing, rate_limit=1.0)
    with pytest.raises(ListingPending):
        run(runner, clock)
    background_done(runner)
    listing.up = 10**9
    with pytest.raises(ListingPending):
        run(runner, clock)  # failed (ten rounds of 503s): listed again, which is too big again
    assert seen(runner)[1:] == [
        (S.SYNCING, E.SYNC_FAILED, S.LEARNING),
        (S.LEARNING, E.TOO_BIG, S.SYNCING),
    ]
    runner.close()


def test_a_big_project_in_no_order_falls_back_to_complete_listings() -> None:
    runner, _, clock = strategy(unordered(4000), rate_limit=1.0)
    with pytest.raises(ListingPending):
        run(runner, clock)
    background_done(runner)
    run(runner, clock)
    assert seen(runner) == [
        (S.LEARNING, E.TOO_BIG, S.SYNCING),
        (S.SYNCING, E.SYNC_UNORDERED, S.COMPLETE_ONLY),
        (S.COMPLETE_ONLY, E.NO_ORDER, S.COMPLETE_ONLY),
    ]


def test_a_rejected_pass_learns_again_in_the_same_scrape() -> None:
    listing = Listing(Order.NEWEST_FIRST, history(1000))
    runner, _, clock = strategy(listing)
    run(runner, clock)
    listing.remove(listing.tasks[0].task_id)
    run(runner, clock)
    assert seen(runner)[1:] == [
        (S.INCREMENTAL, E.PASS_REJECTED, S.LEARNING),
        (S.LEARNING, E.ORDER_LEARNED, S.INCREMENTAL),
    ]


def test_two_passes_out_of_time_learn_again() -> None:
    listing = Slow(Order.NEWEST_FIRST, history(3000))
    runner, _, clock = strategy(listing)
    run(runner, clock)
    top = max(task.created for task in listing.tasks)
    for _ in range(700):
        listing.add(top + 1)
    for _ in range(2):
        with pytest.raises(DeadlineExceeded):
            run(runner, clock)
    assert seen(runner)[-1] == (S.INCREMENTAL, E.BACKLOG, S.LEARNING)


def reconciling(listing: Listing) -> tuple[ListingStrategy, TaskStore, FakeClock]:
    runner, store, clock = strategy(listing, reconcile=60.0)
    run(runner, clock)
    clock.sleep(61)
    run(runner, clock)  # due: starts the background listing beside the passes
    background_done(runner)
    return runner, store, clock


def test_a_reconciliation_taken_over_stays_incremental() -> None:
    listing = Listing(Order.NEWEST_FIRST, history(2000))
    runner, store, clock = reconciling(listing)
    run(runner, clock)
    assert seen(runner)[-1] == (S.INCREMENTAL, E.SYNCED, S.INCREMENTAL)
    assert store.view().listing.reconciliations == 1
    runner.close()


def test_a_reconciliation_that_api_errors_end_leaves_the_passes_serving() -> None:
    listing = Down(Order.NEWEST_FIRST, history(2000))
    listing.up = 10**9
    runner, store, clock = strategy(listing, reconcile=60.0)
    run(runner, clock)
    clock.sleep(61)
    listing.up = listing.calls + 6  # the pass of this scrape, and no more
    run(runner, clock)
    background_done(runner)
    listing.up = 10**9
    run(runner, clock)
    assert (S.INCREMENTAL, E.SYNC_FAILED, S.INCREMENTAL) in seen(runner)
    assert runner.state is S.INCREMENTAL and store.view().up
    runner.close()


def test_a_reconciliation_that_finds_no_order_learns_again() -> None:
    listing = Listing(Order.NEWEST_FIRST, history(2000))
    clock = FakeClock()

    def turn_round(seconds: float) -> None:
        listing.order = Order.OLDEST_FIRST  # under the background listing, after its first round

    store = TaskStore("p1", SeriesSettings(), started_at=0)
    runner = ListingStrategy(
        listing,
        store,
        ListingSettings(reconcile_interval=60.0),
        SeriesSettings(),
        clock=clock,
        pace=turn_round,
    )
    run(runner, clock)
    clock.sleep(61)
    run(runner, clock)
    background_done(runner)
    run(runner, clock)  # takes the failure over, then learns the new order in the same scrape
    assert seen(runner)[-2:] == [
        (S.INCREMENTAL, E.SYNC_UNORDERED, S.LEARNING),
        (S.LEARNING, E.ORDER_LEARNED, S.INCREMENTAL),
    ]
    assert store.view().listing.fallbacks == {"order_changed": 1}
    runner.close()


def test_an_api_that_becomes_ordered_goes_incremental() -> None:
    listing = unordered(300)
    runner, _, clock = strategy(listing)
    run(runner, clock)
    listing.tasks = sorted(listing.tasks, key=lambda task: task.created)
    listing.order = Order.NEWEST_FIRST
    run(runner, clock)
    assert seen(runner)[-1] == (S.COMPLETE_ONLY, E.ORDER_LEARNED, S.INCREMENTAL)


def test_an_unordered_project_that_grows_too_big_syncs() -> None:
    listing = unordered(300)
    runner, _, clock = strategy(listing, rate_limit=1.0)
    run(runner, clock)
    for serial in range(4000):
        listing.tasks.append(make(10_000 + serial, SUCCEED, listing.tasks[0].created + serial))
    with pytest.raises(ListingPending):
        run(runner, clock)
    assert seen(runner)[-1] == (S.COMPLETE_ONLY, E.TOO_BIG, S.SYNCING)
    runner.close()


def test_an_event_the_table_does_not_name_is_a_defect() -> None:
    runner, _, _ = strategy(Listing(Order.NEWEST_FIRST, history(10)))
    with pytest.raises(RuntimeError, match="no transition from learning on: an incremental pass failed"):
        runner._move(Event.PASS_REJECTED, "fallback")


def test_every_state_can_be_left_or_is_meant_to_be_kept() -> None:
    sources = {state for state, _ in TRANSITIONS}
    assert sources == set(State)
    assert all(isinstance(following, State) for following in TRANSITIONS.values())


def test_passes_go_on_while_tasks_arrive() -> None:
    rng = random.Random(5)
    listing = Listing(Order.OLDEST_FIRST, history(2000))
    runner, _, clock = strategy(listing)
    for _ in range(4):
        step(listing, rng, arrivals=10)
        run(runner, clock)
    assert runner.state is S.INCREMENTAL


# once: a deadline that fits the project ------------------------------------------------------


class Recording(Listing):
    """Remembers the deadline each round of pages was read under."""

    def __init__(self, order: Order, tasks: list) -> None:  # type: ignore[type-arg]
        super().__init__(order, tasks)
        self.deadlines: list[float] = []

    def stream_pages(self, requests, deadline):  # type: ignore[no-untyped-def]
        self.deadlines.append(deadline())
        yield from super().stream_pages(requests, deadline)


def fitted(listing: Listing, rate_limit: float = 20.0) -> tuple[ListingStrategy, FakeClock]:
    clock = FakeClock()
    store = TaskStore("p1", SeriesSettings(), started_at=0)
    settings = ListingSettings(mode="full", fit_deadline=True)
    runner = ListingStrategy(listing, store, settings, SeriesSettings(), rate_limit=rate_limit, clock=clock)
    return runner, clock


def test_once_fits_its_deadline_to_the_project_at_the_rate_limit() -> None:
    listing = Recording(Order.NEWEST_FIRST, history(5000))
    runner, clock = fitted(listing)
    runner.run(Deadline(clock() + 900.0))
    # The first page under the longest wait; the rest under 50 pages at 20/s, twice, plus 10 s.
    assert listing.deadlines[0] == clock() + 900.0
    assert listing.deadlines[1:] == [clock() + 2 * 50 / 20 + 10]


def test_once_says_which_flag_to_set_when_the_project_cannot_fit() -> None:
    runner, clock = fitted(Listing(Order.NEWEST_FIRST, history(5000)), rate_limit=1.0)
    with pytest.raises(DeadlineExceeded) as raised:
        runner.run(Deadline(clock() + 60.0))
    assert str(raised.value) == (
        "listing 5000 tasks takes about 110s at --api.rate-limit 1, more than the 60s left: "
        "set --scrape.timeout 110s, or a higher --api.rate-limit if the quota allows"
    )


# A complete listing interrupted goes on in the next scrape ------------------------------------


class ThrottledAfter(Listing):
    """Answers 429 once ``allowed`` pages have been answered, until ``allowed`` is raised."""

    allowed = 10**9

    def page(self, request: PageRequest) -> Page:
        if self.calls >= self.allowed:
            from exporter.cloud.errors import ThrottledError

            raise ThrottledError("HTTP 429 APIGW.0308: throttled")
        return super().page(request)


def test_a_complete_listing_throttled_midway_goes_on_in_the_next_scrape() -> None:
    rng = random.Random(8)
    listing = ThrottledAfter(Order.NEWEST_FIRST, history(3000))
    listing.allowed = 12
    runner, store, clock = strategy(listing)
    with pytest.raises(Exception, match="429"):
        run(runner, clock)
    step(listing, rng, arrivals=15)
    listing.allowed = 10**9
    listing.calls = 0
    run(runner, clock)
    view = store.view()
    assert view.up and view.snapshot is not None
    assert dict(view.snapshot.counts) == {**dict.fromkeys(view.snapshot.counts, 0), **listing.counts()}
    assert view.snapshot.reported_total == len(listing.tasks)
    # The 18 pages not read yet and a pass to the present: not the 30 pages again.
    assert listing.calls < 30
    runner.close()


# Reconciliation as of one moment ----------------------------------------------------------------


def test_reconciliation_is_counted_while_tasks_arrive() -> None:
    rng = random.Random(3)
    listing = Listing(Order.NEWEST_FIRST, history(2000))
    listing.on_page = lambda: step(listing, rng, arrivals=1)  # a task arrives after every answer
    runner, store, clock = reconciling(listing)
    run(runner, clock)
    health = store.view().listing
    assert (health.reconciliations, health.reconciliation_mismatches) == (1, 0)
    assert health.last_agreement == 1_900_000_000.0
    runner.close()


def test_reconciliation_counts_a_difference_deep_in_the_history_while_tasks_arrive() -> None:
    rng = random.Random(3)
    listing = Listing(Order.NEWEST_FIRST, history(2000))
    runner, store, clock = strategy(listing, reconcile=60.0)
    run(runner, clock)
    old = listing.tasks[10]
    listing.tasks[10] = old._replace(status="CANCEL" if old.status == SUCCEED else SUCCEED)
    listing.on_page = lambda: step(listing, rng, arrivals=1)
    clock.sleep(61)
    run(runner, clock)
    background_done(runner)
    run(runner, clock)
    health = store.view().listing
    assert (health.reconciliations, health.reconciliation_mismatches) == (1, 1)
    runner.close()


def test_an_empty_project_goes_on_learning() -> None:
    listing = Listing(Order.NEWEST_FIRST, [])
    runner, _, clock = strategy(listing, "incremental")
    run(runner, clock)
    listing.tasks = history(300)
    run(runner, clock)  # incremental mode does not give up on an order nothing has shown yet
    assert seen(runner) == [
        (S.LEARNING, E.NO_EVIDENCE, S.LEARNING),
        (S.LEARNING, E.ORDER_LEARNED, S.INCREMENTAL),
    ]


def test_a_project_in_no_order_that_shows_no_step_stays_on_complete_listings() -> None:
    listing = unordered(300)
    runner, _, clock = strategy(listing)
    run(runner, clock)
    listing.tasks = listing.tasks[:1]
    run(runner, clock)
    assert seen(runner)[-1] == (S.COMPLETE_ONLY, E.NO_EVIDENCE, S.COMPLETE_ONLY)


class RepeatsOnce(Listing):
    """A page takes 0.1 s; the first complete listing's second page comes back empty (as when tasks
    were removed), so that attempt fails and the next one adds up."""

    def __init__(self, order: Order, tasks: list, clock: FakeClock) -> None:  # type: ignore[type-arg]
        super().__init__(order, tasks)
        self.clock = clock
        self.spoiled = False

    def page(self, request: PageRequest) -> Page:
        self.clock.sleep(0.1)
        page = super().page(request)
        if request.offset == 100 and not self.spoiled:
            self.spoiled = True
            return Page(page.offset, page.total, [], 0)
        return page


def test_once_lists_again_within_its_fitted_deadline() -> None:
    clock = FakeClock()
    listing = RepeatsOnce(Order.NEWEST_FIRST, history(1000), clock)
    store = TaskStore("p1", SeriesSettings(), started_at=0)
    settings = ListingSettings(mode="full", fit_deadline=True)
    runner = ListingStrategy(listing, store, settings, SeriesSettings(), rate_limit=20.0, clock=clock)
    runner.run(Deadline(clock() + 900.0))  # the deadline fitted by the first attempt holds for the second
    assert store.view().up and listing.spoiled


def test_a_reconciliation_that_outlives_the_passes_is_taken_over_after_they_fell_back() -> None:
    listing = Listing(Order.NEWEST_FIRST, history(2000))
    gate = threading.Event()
    clock = FakeClock()
    store = TaskStore("p1", SeriesSettings(), started_at=0)
    settings = ListingSettings(reconcile_interval=60.0)
    runner = ListingStrategy(
        listing, store, settings, SeriesSettings(), clock=clock, pace=lambda _: gate.wait(10)
    )
    run(runner, clock)
    clock.sleep(61)
    run(runner, clock)  # starts the reconciliation, held after its first round
    # The API loses its order: the next pass is rejected, and the complete listing shows none.
    listing.order = Order.OLDEST_FIRST
    listing.tasks = sorted(listing.tasks, key=lambda task: task.task_id[::-1])
    with contextlib.suppress(Exception):
        run(runner, clock)
    assert runner.state is S.COMPLETE_ONLY and runner.background is not None
    gate.set()
    background_done(runner)
    run(runner, clock)  # takes the failed reconciliation over in complete_only: no internal error
    assert (S.COMPLETE_ONLY, E.SYNC_UNORDERED, S.COMPLETE_ONLY) in seen(runner)
    assert store.view().up
    runner.close()


@pytest.mark.parametrize("state", [S.LEARNING, S.COMPLETE_ONLY])
@pytest.mark.parametrize("event", [E.SYNCED, E.SYNC_BROKEN, E.SYNC_FAILED, E.SYNC_UNORDERED])
def test_a_background_listing_can_be_taken_over_in_any_state_it_outlives(state: State, event: Event) -> None:
    # A reconciliation starts in incremental; the passes may have fallen back by the time it ends.
    assert (state, event) in TRANSITIONS


# Found by review ----------------------------------------------------------------------------------


def test_an_open_task_that_moves_on_between_the_two_passes_of_a_reconciliation_is_no_mismatch() -> None:
    listing = Listing(Order.NEWEST_FIRST, history(500))
    runner, store, clock = strategy(listing, reconcile=60.0)
    run(runner, clock)
    clock.sleep(61)
    run(runner, clock)
    background_done(runner)
    victim = next(iter(listing.open()))
    passes = 0
    real_pass = runner._raw_pass

    def finish_between(*args):  # type: ignore[no-untyped-def]
        nonlocal passes
        passes += 1
        if passes == 2:  # the live state's pass, after the complete listing's
            listing.set(victim, SUCCEED)
        return real_pass(*args)

    runner._raw_pass = finish_between  # type: ignore[method-assign]
    run(runner, clock)
    health = store.view().listing
    assert (health.reconciliations, health.reconciliation_mismatches) == (1, 0)
    runner.close()


def test_full_mode_does_not_publish_a_listing_begun_in_an_earlier_scrape() -> None:
    rng = random.Random(4)
    listing = ThrottledAfter(Order.NEWEST_FIRST, history(1000))
    listing.allowed = 3
    runner, store, clock = strategy(listing, "full")
    with pytest.raises(Exception, match="429"):
        run(runner, clock)
    step(listing, rng, arrivals=150)
    listing.allowed = 10**9
    run(runner, clock)
    view = store.view()
    assert view.snapshot is not None and view.snapshot.reported_total == len(listing.tasks)


def test_a_fallback_too_big_for_the_scrape_waits_for_the_reconciliation_already_reading() -> None:
    listing = Listing(Order.NEWEST_FIRST, history(4000))
    gate = threading.Event()
    clock = FakeClock()
    store = TaskStore("p1", SeriesSettings(), started_at=0)
    settings = ListingSettings(reconcile_interval=60.0)
    runner = ListingStrategy(
        listing, store, settings, SeriesSettings(), rate_limit=1.0, clock=clock, pace=lambda _: gate.wait(10)
    )
    runner.run(Deadline(clock() + 300.0))  # 40 pages fit 300 s at 1/s: in the scrape
    clock.sleep(61)
    runner.run(Deadline(clock() + 300.0))  # starts the reconciliation, held after its first round
    reconciliation = runner.background
    listing.remove(listing.tasks[0].task_id)  # the next pass is rejected
    with pytest.raises(ListingPending):
        run(runner, clock)  # 30 s: too short for the complete listing, which goes to the background
    assert runner.background is reconciliation  # not a second one beside it
    gate.set()
    runner.close()
