"""One listing at a time: overlapping scrapes share it, a recent one is reused, failures are counted."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from exporter.cloud.client import Page, parse_page
from exporter.cloud.errors import DeadlineExceeded
from exporter.config import SeriesSettings
from exporter.listing.coordinator import ListingCoordinator
from exporter.store import TaskStore
from tests.conftest import FakeClock, body, record


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
