"""One listing at a time: overlapping scrapes share it, a recent one is reused, failures are counted."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import httpx
import respx

from exporter.cloud.client import VodClient
from exporter.cloud.errors import DeadlineExceeded
from exporter.config import ApiSettings, SeriesSettings
from exporter.listing.coordinator import ListingCoordinator
from exporter.store import StoreView, TaskStore
from exporter.tasks import Page, parse_page
from tests.conftest import TASKS_URL, FakeClock, body, record


class FakeClient:
    """Serves one page per listing; can hold a listing open until released."""

    def __init__(self, *, hold: threading.Event | None = None, error: Exception | None = None) -> None:
        self.hold = hold
        self.error = error
        self.started = threading.Event()
        self.calls = 0

    def iter_pages(self, deadline: float) -> Iterator[Page]:
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
    followers = [threading.Thread(target=runner.refresh, args=(deadline,)) for _ in range(3)]
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


def test_an_unexpected_error_does_not_break_the_scrape() -> None:
    runner = coordinator(FakeClient(error=KeyError("surprise")))
    runner.refresh(time.monotonic() + 10)
    view = runner._store.view()
    assert not view.up and view.errors == {"bad_response": 1}


class DriftingClient:
    """The first ``drifts`` listings lose a task to drift; later ones add up."""

    def __init__(self, drifts: int) -> None:
        self.drifts = drifts
        self.calls = 0

    def iter_pages(self, deadline: float) -> Iterator[Page]:
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
        def iter_pages(self, deadline: float) -> Iterator[Page]:
            clock.sleep(4)  # each listing takes 4 s
            yield from super().iter_pages(deadline)

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
    # A total of 10^9 over the same 100 tasks on every page: not a timeout after 160 calls.
    same = body([record(i) for i in range(100)], total=10**9)
    view, calls = listing_over(lambda offset: same, api_settings)
    assert not view.up and view.errors == {"inconsistent": 1}
    assert view.last_error is not None and "hold only tasks already read" in view.last_error[1]
    assert calls <= 1 + 2 * api_settings.concurrency
