"""One listing at a time: overlapping scrapes share it, a recent one is reused, failures are counted."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator

import httpx
import pytest
import respx

from exporter.cloud.client import VodClient
from exporter.cloud.errors import AuthError, ServerError
from exporter.config import ApiSettings, ScrapeSettings, SeriesSettings
from exporter.deadline import DeadlineExceeded
from exporter.listing.coordinator import FAILURE_RETRY, ListingCoordinator
from exporter.store import StoreView, TaskStore
from exporter.tasks import Page, PageRequest, parse_page
from tests.conftest import TASKS_URL, FakeClock, body, record, wait_for


@pytest.fixture(autouse=True)
def all_logs(caplog: pytest.LogCaptureFixture) -> None:
    """Every record reaches caplog, whatever level an earlier test's command configured."""
    caplog.set_level(logging.DEBUG, logger="exporter")


class OnePageSource:
    """A listing's first page from ``first_page``; any other page asked for is empty (a page that
    the API's total says should hold tasks: the listing fails, as when tasks are removed)."""

    def first_page(self, deadline: Callable[[], float]) -> Iterator[Page]:
        raise NotImplementedError

    def stream_pages(self, requests: Iterable[PageRequest], deadline: Callable[[], float]) -> Iterator[Page]:
        total = 0
        for request in requests:
            if request.offset == 0:
                for page in self.first_page(deadline):
                    total = page.total
                    yield page
            else:
                yield Page(request.offset, total, [], 0)


class FakeClient(OnePageSource):
    """Serves one page per listing; can hold a listing open until released."""

    def __init__(self, *, hold: threading.Event | None = None, error: Exception | None = None) -> None:
        self.hold = hold
        self.error = error
        self.started = threading.Event()
        self.calls = 0

    def first_page(self, deadline: float) -> Iterator[Page]:
        self.calls += 1
        self.started.set()
        if self.hold is not None:
            self.hold.wait(10)
        if self.error is not None:
            raise self.error
        yield parse_page(0, body([record(1, "WAITING")]))


def coordinator(
    client: FakeClient, clock: FakeClock | None = None, min_refresh: float = 0.0
) -> ListingCoordinator:
    store = TaskStore("p1", SeriesSettings(), started_at=0)
    kwargs = {"clock": clock} if clock else {}
    return ListingCoordinator(client, store, min_refresh_interval=min_refresh, **kwargs)  # type: ignore[arg-type]


def test_overlapping_scrapes_share_one_listing() -> None:
    hold = threading.Event()
    client = FakeClient(hold=hold)
    runner = coordinator(client)
    deadline = time.monotonic() + 30
    leader = threading.Thread(target=runner.refresh, args=(deadline,))
    leader.start()
    assert client.started.wait(10)
    # Each follower joins here, while the listing is surely still held (refresh is join, then
    # wait): joining from the threads could come after the listing ended, and start another.
    joined = [runner.join(deadline) for _ in range(3)]
    followers = [threading.Thread(target=runner.wait, args=(listing, deadline)) for listing in joined]
    for thread in followers:
        thread.start()
    hold.set()
    for thread in [leader, *followers]:
        thread.join(10)
        assert not thread.is_alive()
    assert client.calls == 1 and runner.listings == 1
    assert runner._store.view().up


def test_a_follower_gives_up_waiting_at_its_own_deadline() -> None:
    hold = threading.Event()
    client = FakeClient(hold=hold)
    runner = coordinator(client)
    leader = threading.Thread(target=runner.refresh, args=(time.monotonic() + 30,))
    leader.start()
    try:
        assert client.started.wait(10)
        started = time.monotonic()
        assert runner.refresh(started + 0.05) is False  # returns although the listing still runs
        assert runner._store.view().snapshot is None
    finally:
        hold.set()
        leader.join(10)
    assert client.calls == 1


def test_min_refresh_interval_serves_the_last_listing() -> None:
    clock = FakeClock()
    client = FakeClient()
    runner = coordinator(client, clock, min_refresh=30)
    runner.refresh(clock() + 10)
    clock.sleep(29)
    runner.refresh(clock() + 10)
    assert client.calls == 1
    clock.sleep(2)
    runner.refresh(clock() + 10)
    assert client.calls == 2


def test_without_min_refresh_every_scrape_lists() -> None:
    client = FakeClient()
    runner = coordinator(client)
    for _ in range(3):
        runner.refresh(time.monotonic() + 10)
    assert client.calls == 3


def test_a_failed_listing_is_counted_by_reason() -> None:
    runner = coordinator(FakeClient(error=DeadlineExceeded("too slow")))
    runner.refresh(time.monotonic() + 10)
    view = runner._store.view()
    assert not view.up and view.errors == {"timeout": 1}
    assert view.last_error == ("timeout", "too slow")


class DriftingClient(OnePageSource):
    """The first ``drifts`` listings lose a task to drift; later ones add up."""

    def __init__(self, drifts: int) -> None:
        self.drifts = drifts
        self.calls = 0

    def first_page(self, deadline: float) -> Iterator[Page]:
        self.calls += 1
        records = [record(1, "WAITING"), record(2, "WAITING")]
        total = 3 if self.calls <= self.drifts else 2
        yield parse_page(0, body(records, total=total))


def test_a_drifted_listing_is_done_again_once() -> None:
    client = DriftingClient(drifts=1)
    store = TaskStore("p1", SeriesSettings(), started_at=0)
    runner = ListingCoordinator(client, store)  # type: ignore[arg-type]
    runner.refresh(time.monotonic() + 10)
    assert client.calls == 2
    view = store.view()
    assert view.up and view.errors == {}


def test_drifting_twice_in_a_row_is_inconsistent() -> None:
    client = DriftingClient(drifts=2)
    store = TaskStore("p1", SeriesSettings(), started_at=0)
    runner = ListingCoordinator(client, store)  # type: ignore[arg-type]
    runner.refresh(time.monotonic() + 10)
    assert client.calls == 2
    assert store.view().errors == {"inconsistent": 1}


def test_drift_retries_can_be_switched_off() -> None:
    client = DriftingClient(drifts=1)
    store = TaskStore("p1", SeriesSettings(), started_at=0)
    runner = ListingCoordinator(client, store, drift_retries=0)  # type: ignore[arg-type]
    runner.refresh(time.monotonic() + 10)
    assert client.calls == 1 and store.view().errors == {"inconsistent": 1}


def test_close_waits_for_the_listing_in_flight_and_starts_no_more() -> None:
    hold = threading.Event()
    client = FakeClient(hold=hold)
    runner = coordinator(client)
    leader = threading.Thread(target=runner.refresh, args=(time.monotonic() + 30,))
    leader.start()
    assert client.started.wait(10)
    closer = threading.Thread(target=runner.close, args=(30,))
    closer.start()
    closer.join(0.2)
    assert closer.is_alive()  # still waiting for the listing
    hold.set()
    closer.join(10)
    leader.join(10)
    assert not closer.is_alive() and runner._store.view().up
    assert runner.refresh(time.monotonic() + 10) is False
    assert client.calls == 1


def test_a_drift_retry_that_could_not_finish_in_time_is_not_started() -> None:
    clock = FakeClock()

    class SlowDriftingClient(DriftingClient):
        def first_page(self, deadline: float) -> Iterator[Page]:
            clock.sleep(4)  # each listing takes 4 s
            yield from super().first_page(deadline)

    client = SlowDriftingClient(drifts=1)
    store = TaskStore("p1", SeriesSettings(), started_at=0)
    runner = ListingCoordinator(client, store, clock=clock)  # type: ignore[arg-type]
    runner.refresh(clock() + 6)  # 2 s left after the first attempt: too little for a second
    assert client.calls == 1 and store.view().errors == {"inconsistent": 1}


def listing_over(pages: Callable[[int], bytes], settings: ApiSettings) -> tuple[StoreView, int]:
    """One listing by the real client (over respx) into a real store; the view and the calls made."""
    client = VodClient(settings, httpx.Client())
    store = TaskStore(settings.project_id, SeriesSettings(), started_at=0)
    runner = ListingCoordinator(client, store)
    with respx.mock() as mock:
        route = mock.get(TASKS_URL).mock(
            side_effect=lambda request: httpx.Response(200, content=pages(int(request.url.params["offset"])))
        )
        runner.refresh(time.monotonic() + 30)
    client.close()
    return store.view(), route.call_count


def test_a_total_the_pages_do_not_bear_out_stops_paging_at_once(api_settings: ApiSettings) -> None:
    def pages(offset: int) -> bytes:
        return body([record(i) for i in range(100)] if offset == 0 else [], total=1_000_000)

    view, calls = listing_over(pages, api_settings)
    assert not view.up and view.errors == {"inconsistent": 1}
    assert view.last_error is not None and "empty although the API reported 1000000" in view.last_error[1]
    # The first page, then at most one window of concurrent pages: not 10,000 calls.
    assert calls <= 1 + 2 * api_settings.concurrency


def test_pages_that_repeat_the_same_tasks_are_inconsistent_within_a_few_calls(
    api_settings: ApiSettings,
) -> None:
    # A total of 10^6 over the same 100 tasks on every page: not a timeout after 160 calls.
    same = body([record(i) for i in range(100)], total=10**6)
    view, calls = listing_over(lambda offset: same, api_settings)
    assert not view.up and view.errors == {"inconsistent": 1}
    assert view.last_error is not None and "one task listed at two age indices" in view.last_error[1]
    assert calls <= 1 + 2 * api_settings.concurrency


def test_a_total_beyond_what_a_listing_holds_is_refused_at_the_first_page(api_settings: ApiSettings) -> None:
    same = body([record(i) for i in range(100)], total=10**9)
    view, calls = listing_over(lambda offset: same, api_settings)
    assert view.errors == {"inconsistent": 1} and calls == 2  # the first page, listed again once
    assert view.last_error == (
        "inconsistent",
        "the API reports 1000000000 tasks, more than a listing holds (20000000)",
    )


# --- each scrape waits up to its own deadline (a joining scrape inherits no one's deadline) -------


class DeadlineClient(OnePageSource):
    """Pages only when released, giving up (as the real client does) once the deadline it
    re-reads has passed; records that deadline as it finds it."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.release = threading.Event()
        self.started = threading.Event()
        self.deadline: Callable[[], float] | None = None
        self.clock = clock or time.monotonic
        self.calls = 0

    def first_page(self, deadline: Callable[[], float]) -> Iterator[Page]:
        self.calls += 1
        self.deadline = deadline
        self.started.set()
        while not self.release.wait(0.005):
            if self.clock() >= deadline():
                raise DeadlineExceeded("the listing did not finish before the scrape deadline")
        yield parse_page(0, body([record(1, "WAITING")]))


def in_thread(runner: ListingCoordinator, deadline: float) -> tuple[threading.Thread, list[bool]]:
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(runner.refresh(deadline)))
    thread.start()
    return thread, result


def test_a_joining_scrape_with_a_later_deadline_extends_the_listing() -> None:
    client = DeadlineClient()
    runner = coordinator(client)  # type: ignore[arg-type]
    now = time.monotonic()
    short, short_result = in_thread(runner, now + 0.2)
    assert client.started.wait(10)
    long, long_result = in_thread(runner, now + 20)
    wait_for("the later scrape to join", lambda: client.deadline and client.deadline() == now + 20, 10, 0.005)
    short.join(10)
    assert short_result == [False]  # the short scrape answered at its own deadline
    client.release.set()
    long.join(10)
    assert long_result == [True] and runner._store.view().up
    assert client.calls == 1


def test_the_listing_deadline_is_capped_by_the_configured_timeout() -> None:
    clock = FakeClock()
    client = DeadlineClient(clock)
    store = TaskStore("p1", SeriesSettings(), started_at=0)
    runner = ListingCoordinator(client, store, listing_timeout=30, clock=clock)  # type: ignore[arg-type]
    scrapes = [in_thread(runner, clock() + 0.05)[0]]
    assert client.started.wait(10)
    scrapes.append(in_thread(runner, clock() + 120)[0])
    wait_for("the later scrape to join", lambda: client.deadline and client.deadline() > 1_000.05, 10, 0.005)
    assert client.deadline() == 1_000 + 30
    client.release.set()
    for thread in scrapes:
        thread.join(10)


def test_a_scrape_that_cannot_wait_does_not_cut_a_reusable_listing_short() -> None:
    """With a minimum interval the listing's result is served to the scrapes to come, so a scrape
    announcing a timeout of 0 gets up 0 itself but neither fails nor spoils the listing."""
    # A clock that stands still: with a real one, the scrape below could release the listing
    # before it first looked at its deadline, and the test passed without the rule.
    clock = FakeClock()
    client = DeadlineClient(clock)
    runner = coordinator(client, clock, min_refresh=60)  # type: ignore[arg-type]
    assert runner.refresh(clock()) is False
    assert client.started.wait(10)
    client.release.set()
    assert runner.refresh(clock() + 10) is True
    view = runner._store.view()
    assert view.up and view.errors == {}
    assert runner.refresh(clock() + 10) is True
    assert client.calls == 1


def test_a_scrape_announcing_no_time_without_reuse_starts_no_listing_and_counts_no_failure() -> None:
    """Without a minimum interval nobody else is served such a listing, and it could not make a
    single call: starting it would only count a timeout (and log a warning) that no API caused,
    once per request, for anyone who can send the header."""
    client = DeadlineClient()
    runner = coordinator(client)  # type: ignore[arg-type]
    for _ in range(3):
        assert runner.refresh(time.monotonic()) is False
    assert client.calls == 0
    assert runner._store.view().errors == {}
    client.release.set()
    assert runner.refresh(time.monotonic() + 10) is True
    assert client.calls == 1 and runner._store.view().up


# --- the minimum interval: a success is reused, a failure is not served as if fresh -----------


class ScriptedClient(OnePageSource):
    """Fails or succeeds, one listing at a time, as scripted; records when each listing started."""

    def __init__(self, clock: FakeClock, outcomes: list[Exception | None]) -> None:
        self.clock = clock
        self.outcomes = outcomes
        self.started_at: list[float] = []

    @property
    def calls(self) -> int:
        return len(self.started_at)

    def first_page(self, deadline: Callable[[], float]) -> Iterator[Page]:
        self.started_at.append(self.clock())
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if outcome is not None:
            raise outcome
        yield parse_page(0, body([record(1, "WAITING")]))


def test_after_a_failure_the_next_listing_comes_soon_not_after_the_whole_interval() -> None:
    clock = FakeClock()
    client = ScriptedClient(clock, [DeadlineExceeded("slow"), ServerError("HTTP 503")])
    runner = coordinator(client, clock, min_refresh=60)  # type: ignore[arg-type]
    runner.refresh(clock() + 10)
    assert not runner._store.view().up
    clock.sleep(FAILURE_RETRY)
    runner.refresh(clock() + 10)  # fails again: waits twice as long
    clock.sleep(FAILURE_RETRY)
    runner.refresh(clock() + 10)
    assert client.calls == 2 and not runner._store.view().up
    clock.sleep(FAILURE_RETRY)
    runner.refresh(clock() + 10)
    assert client.calls == 3 and runner._store.view().up
    clock.sleep(59)
    runner.refresh(clock() + 10)
    assert client.calls == 3  # a success is reused for the whole interval


def test_the_minimum_interval_bounds_listings_whatever_the_scrapers_do() -> None:
    clock = FakeClock()
    client = ScriptedClient(clock, [ServerError("HTTP 503")] * 1000)
    runner = coordinator(client, clock, min_refresh=ScrapeSettings().min_refresh_interval)  # type: ignore[arg-type]
    for _ in range(3600):  # a scrape every second for an hour, every listing failing
        runner.refresh(clock() + 10)
        clock.sleep(1)
    per_minute = 60 * client.calls / 3600
    assert per_minute <= 60 / ScrapeSettings().min_refresh_interval + 0.2


def test_the_default_minimum_interval_bounds_the_quota() -> None:
    interval = ScrapeSettings().min_refresh_interval
    assert 0 < interval <= 30  # a 30 s or 60 s scrape interval still lists on every scrape
    assert 60 / interval <= 3  # listings a minute, at most, whatever hits /metrics


# --- after an auth failure, hold off: five in a row lock the key ------------------------------


def test_after_an_auth_failure_no_call_is_made_for_a_minute_growing_to_five(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    client = ScriptedClient(clock, [AuthError("HTTP 401 APIGW.0301: bad signature")] * 6)
    runner = coordinator(client, clock)  # type: ignore[arg-type]
    for _ in range(1000):  # a scrape every second
        runner.refresh(clock() + 10)
        view = runner._store.view()
        assert not view.up and view.last_error is not None and view.last_error[0] == "auth"
        clock.sleep(1)
    gaps = [later - earlier for earlier, later in itertools.pairwise(client.started_at)]
    assert gaps == [60, 120, 240, 300]
    assert view.errors == {"auth": 5}  # held-off scrapes are not counted as failed listings
    hold_offs = [r for r in caplog.records if "holding off" in r.getMessage()]
    assert (
        len(hold_offs) == 5 and "300s" in hold_offs[-1].getMessage() and "until" in hold_offs[-1].getMessage()
    )


def test_a_success_resets_the_auth_hold_off() -> None:
    clock = FakeClock()
    error = AuthError("HTTP 401")
    client = ScriptedClient(clock, [error, error, None, error])
    runner = coordinator(client, clock)  # type: ignore[arg-type]
    for step in (60, 120, 1, 1):
        runner.refresh(clock() + 10)
        clock.sleep(step)
    assert client.calls == 4  # 401, 401, success, 401
    clock.sleep(58)
    runner.refresh(clock() + 10)
    assert client.calls == 4
    clock.sleep(1)
    runner.refresh(clock() + 10)
    assert client.calls == 5  # held off a minute again, not four


# --- shutdown ------------------------------------------------------------------------------------


def test_close_ends_the_listing_in_flight_by_its_timeout(caplog: pytest.LogCaptureFixture) -> None:
    client = DeadlineClient()
    runner = coordinator(client)  # type: ignore[arg-type]
    scrape, result = in_thread(runner, time.monotonic() + 30)
    assert client.started.wait(10)
    started = time.monotonic()
    runner.close(timeout=0.2)
    assert time.monotonic() - started < 5
    scrape.join(10)
    assert result == [False]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert runner._store.view().errors == {}  # stopped by shutdown: not a failed listing


class HeldClient(OnePageSource):
    """Holds the listing until released; then fails as the client does when its pool was shut
    down under it, or returns a page that drifted."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.started = threading.Event()
        self.release = threading.Event()
        self.calls = 0

    def first_page(self, deadline: Callable[[], float]) -> Iterator[Page]:
        self.calls += 1
        self.started.set()
        self.release.wait(10)
        if self.error is not None:
            raise self.error
        yield parse_page(0, body([record(1, "WAITING")], total=2))  # one task short: drifted


def close_while_listing(client: HeldClient, caplog: pytest.LogCaptureFixture) -> ListingCoordinator:
    runner = coordinator(client)  # type: ignore[arg-type]
    scrape, _ = in_thread(runner, time.monotonic() + 30)
    assert client.started.wait(10)
    runner.close(timeout=0)
    client.release.set()
    scrape.join(10)
    wait_for("the listing to end", lambda: runner._in_flight is None, 10, 0.005)
    return runner


def test_a_listing_broken_by_shutdown_is_not_logged_as_an_error(caplog: pytest.LogCaptureFixture) -> None:
    close_while_listing(HeldClient(RuntimeError("cannot schedule new futures after shutdown")), caplog)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_no_drift_retry_after_shutdown_starts(caplog: pytest.LogCaptureFixture) -> None:
    """The drain leaves time enough for a retry (close(timeout=0) would hide the rule behind the
    deadline), and still none starts."""
    client = HeldClient()
    runner = coordinator(client)  # type: ignore[arg-type]
    scrape, _ = in_thread(runner, time.monotonic() + 30)
    assert client.started.wait(10)
    closing = threading.Thread(target=runner.close, args=(10,))
    closing.start()
    wait_for("the shutdown to begin", lambda: runner._closing, 10, 0.005)
    client.release.set()
    closing.join(10)
    scrape.join(10)
    assert client.calls == 1
    assert not [r for r in caplog.records if "listing again" in r.getMessage()]


# --- failures: our own bugs have a reason of their own, and the reason is a log field ---------


def test_an_exporter_bug_is_reason_internal_and_logged_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runner = coordinator(FakeClient(error=KeyError("surprise")))
    runner.refresh(time.monotonic() + 10)
    assert runner._store.view().errors == {"internal": 1}
    (logged,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert logged.exc_info is not None and getattr(logged, "reason", None) == "internal"


def test_a_failed_listing_logs_its_reason_as_a_field(caplog: pytest.LogCaptureFixture) -> None:
    runner = coordinator(FakeClient(error=ServerError("HTTP 503")))
    runner.refresh(time.monotonic() + 10)
    (logged,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert getattr(logged, "reason", None) == "server_error"
    assert logged.getMessage().startswith("listing failed after ") and "HTTP 503" in logged.getMessage()
    assert "reason=" not in logged.getMessage()
