"""Which listing a scrape runs, and what it leaves in the store (docs/incremental-listing.md).

- ``full`` mode, or an order not (yet) known: a complete listing in the scrape, as the exporter
  always did. It also teaches the order.
- A known order and trusted ``KnownTasks``: an incremental pass. Any surprise discards it, counts
  the fallback, and hands over to a complete listing.
- A complete listing too big for a scrape's deadline runs in the background (``SyncByAge``),
  paced under a share of the request rate, across scrapes; until it is done scrapes answer up 0
  with its progress. The same background listing reconciles the incremental state now and then.

The store gets a ``Snapshot`` and the tracker's events either way, so the collector cannot tell
which strategy made them, except from the listing metrics this module reports.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Generator, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Protocol

from exporter.cloud.errors import AuthError, DeadlineExceeded
from exporter.config import ListingSettings, SeriesSettings
from exporter.failures import InconsistentListing, ListingFailed
from exporter.known import KnownTasks, Order
from exporter.listing.complete import KnownTasksBuilder
from exporter.listing.incremental import PassRejected, PassResult, run_pass
from exporter.listing.sync import SyncByAge
from exporter.store import ListingFacts, SeriesPicker, TaskStore, snapshot_of_known
from exporter.tasks import Page, PageRequest, Task

log = logging.getLogger(__name__)

Deadline = Callable[[], float]

FULL, INCREMENTAL, SYNC = "full", "incremental", "sync"
_BACKGROUND_ROUND_SECONDS = 60.0
_PASS_TIMEOUTS_BEFORE_FALLBACK = 2
# A background listing that tasks removed while it read is read again this many times in a row.
_BACKGROUND_RESTARTS = 3
_ORDER_REASONS = frozenset({"order_changed", "order_unknown"})
# A background round that fails (429, 5xx, network) is read again after a pause growing from the
# first to the max; after this many failures in a row the listing gives up.
_BACKGROUND_ROUND_RETRIES = 10
_BACKGROUND_RETRY_FIRST = 2.0
_BACKGROUND_RETRY_MAX = 60.0


class PageSource(Protocol):
    """What the strategies need of the API client."""

    def iter_pages(self, deadline: Deadline) -> Generator[Page, None, None]: ...

    def fetch_pages(self, requests: Sequence[PageRequest], deadline: Deadline) -> list[Page]: ...

    def fetch_tasks(self, task_ids: Sequence[str], deadline: Deadline) -> dict[str, Page]: ...


class ListingPending(Exception):
    """No snapshot yet, and no failure either: a complete listing is running in the background."""

    def __init__(self, detail: str, progress: float) -> None:
        super().__init__(detail)
        self.progress = progress


class _Discarded(InconsistentListing):
    """An incremental pass whose checks failed: nothing it read is published."""


class OrderUnknown(ListingFailed):
    """``--listing.mode incremental`` and the API's order could not be learned."""

    reason = "order_unknown"


@dataclass
class _Background:
    """A complete listing by age index on a thread of its own."""

    reconciling: bool
    thread: threading.Thread | None = None
    sync: SyncByAge | None = None  # once the order to read by is known
    known: KnownTasks | None = None
    recent: tuple[Task, ...] = ()
    calls: int = 0
    error: Exception | None = None
    done: bool = False


class ListingStrategy:
    def __init__(
        self,
        client: PageSource,
        store: TaskStore,
        settings: ListingSettings,
        series: SeriesSettings,
        *,
        page_size: int = 100,
        concurrency: int = 4,
        rate_limit: float = 20.0,
        drift_retries: int = 1,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        pace: Callable[[float], object] | None = None,
    ) -> None:
        self._client = client
        self._store = store
        self._settings = settings
        self._series = series
        self._page_size = page_size
        self._concurrency = concurrency
        self._rate_limit = rate_limit
        self._drift_retries = drift_retries
        self._clock = clock
        self._wall_clock = wall_clock
        self._known: KnownTasks | None = None  # trusted: the incremental passes start from it
        self._recent: tuple[Task, ...] = ()  # recently finished tasks, for per-task series
        self._order = Order.UNKNOWN
        self._reason = "learning"  # why the next listing is of its kind
        # A background listing by age index failed on the order: complete listings stay in the
        # scrape, as before incremental listing, however long they take (exact, or a timeout).
        self._no_background = False
        self._pass_timeouts = 0  # incremental passes in a row that ran out of time
        self._background_restarts = 0  # background listings in a row that tasks removed broke
        self._last_complete = clock()
        self._background: _Background | None = None
        self._stopping = threading.Event()
        # How the background listing waits between rounds; returns at once when stopping.
        self._pace = pace or self._stopping.wait

    def run(self, deadline: Deadline) -> None:
        """One listing for the scrapes waiting; its result goes to the store.

        Raises ``ListingFailed`` (nothing published) or ``ListingPending`` (a background listing
        is not done yet).
        """
        started = self._clock()
        if self._settings.mode == FULL:
            self._complete(deadline, started, reason="configured")
            return
        background = self._background
        if background is not None and background.done:
            self._background = None
            if self._adopt(background, deadline, started):
                return
        if self._known is not None:
            self._incremental(deadline, started)
            return
        if self._background is not None:
            raise self._pending()
        if self._settings.mode == INCREMENTAL and self._reason == "order_unknown":
            raise OrderUnknown("the API's order could not be learned: incremental passes are impossible")
        self._complete(deadline, started, reason=self._reason)

    def stop(self) -> None:
        """Start nothing more: no drift retry, no background round."""
        self._stopping.set()

    def close(self) -> None:
        self._stopping.set()
        background = self._background
        if background is not None and background.thread is not None:
            background.thread.join(5.0)

    # Complete listing in the scrape ------------------------------------------------------------

    def _complete(self, deadline: Deadline, started: float, reason: str) -> None:
        attempt, calls = 0, 0
        while True:
            attempt_started = self._clock()
            builder = self._store.start_listing(self._wall_clock())
            learner = KnownTasksBuilder()
            # A page that cannot belong to a real listing (builder.add) ends it at once; only a
            # listing that read every page and did not add up (drift) is worth another attempt.
            with closing(self._client.iter_pages(deadline)) as pages:
                for page in pages:
                    calls += 1
                    if page.offset == 0 and self._goes_to_background(page, deadline):
                        self._start_background(None, reconciling=False)
                        raise self._pending()
                    builder.add(page)
                    learner.add(page)
            try:
                snapshot = builder.finish()
                break
            except InconsistentListing as error:
                # Listing again only pays if it can finish: with less time left than this attempt
                # took, it would end as a timeout and hide the drift.
                took = self._clock() - attempt_started
                out_of_time = deadline() - self._clock() < took
                if self._stopping.is_set() or attempt >= self._drift_retries or out_of_time:
                    raise
                attempt += 1
                log.info("listing again: %s", error)
        known = learner.finish(snapshot.reported_total)
        self._order = known.order
        self._last_complete = self._clock()
        if known.order is not Order.UNKNOWN and self._settings.mode != FULL:
            self._known = known
            self._recent = tuple(task for task in snapshot.series_tasks if not task.is_open)
            self._reason = "order_verified"
            self._no_background = False
        elif self._settings.mode != FULL:
            self._reason = "order_unknown"
        self._store.record_success(
            snapshot,
            builder.tracker_pass,
            self._clock() - started,
            ListingFacts(mode=FULL, reason=reason, order=known.order.value, calls=calls),
        )

    def _goes_to_background(self, first: Page, deadline: Deadline) -> bool:
        """Whether the rest of a complete listing could not finish by the deadline at the rate
        limit: then it goes to the background at once, not after a wasted scrape."""
        if self._settings.mode == FULL or self._no_background or self._rate_limit <= 0:
            return False
        remaining_pages = max(0, math.ceil(first.total / self._page_size) - 1)
        return remaining_pages / self._rate_limit > deadline() - self._clock()

    # Incremental pass --------------------------------------------------------------------------

    def _incremental(self, deadline: Deadline, started: float) -> None:
        known = self._known
        assert known is not None
        try:
            result, calls = self._pass(known, deadline)
        except _Discarded:
            # Nothing the pass read is trusted: list everything, in this scrape when it fits
            # (a purge at every scrape then costs complete listings, not every other scrape).
            self._complete(deadline, started, reason="fallback")
            return
        except DeadlineExceeded:
            # A backlog bigger than a scrape can read (the exporter was down, a huge burst) would
            # time out again and again from the same known tasks: after a second time, list
            # everything instead, which goes to the background when it is that big.
            self._pass_timeouts += 1
            if self._pass_timeouts >= _PASS_TIMEOUTS_BEFORE_FALLBACK:
                self._pass_timeouts = 0
                self._known = None
                self._reason = "fallback"
                self._store.record_fallback("timeout")
            raise
        self._pass_timeouts = 0
        self._publish(result, calls, started, INCREMENTAL)
        if (
            self._background is None
            and self._clock() - self._last_complete >= self._settings.reconcile_interval
        ):
            self._start_background(known.order, reconciling=True)

    def _raw_pass(self, known: KnownTasks, deadline: Deadline) -> tuple[PassResult, int]:
        return run_pass(
            known,
            lambda requests: self._client.fetch_pages(requests, deadline),
            lambda task_ids: self._client.fetch_tasks(task_ids, deadline),
            self._page_size,
        )

    def _pass(self, known: KnownTasks, deadline: Deadline) -> tuple[PassResult, int]:
        """One incremental pass; a rejected one is counted, distrusts what is known, and raises
        ``_Discarded`` (an ``InconsistentListing``)."""
        try:
            return self._raw_pass(known, deadline)
        except PassRejected as rejection:
            self._known = None
            self._reason = "fallback"
            self._store.record_fallback(rejection.reason)
            log.warning(
                "incremental pass discarded, listing everything again: %s",
                rejection,
                extra={"reason": rejection.reason},
            )
            raise _Discarded(f"incremental pass discarded: {rejection}") from None

    def _publish(self, result: PassResult, calls: int, started: float, mode: str) -> None:
        now = self._wall_clock()
        known = self._known = result.known
        cutoff = now - self._series.max_finished_age
        finished_now = [task for task in result.seen if not task.is_open]
        self._recent = _recent_finished((*self._recent, *finished_now), cutoff, self._series.max_series)
        tracker_pass = self._store.begin_tracking(now)
        for task in result.seen:
            self._store.observe(tracker_pass, task)
        snapshot = snapshot_of_known(known, self._recent, self._series, now)
        self._store.record_success(
            snapshot,
            tracker_pass,
            self._clock() - started,
            ListingFacts(mode=mode, reason="order_verified", order=known.order.value, calls=calls),
        )

    # Background complete listing ---------------------------------------------------------------

    def _start_background(self, order: Order | None, *, reconciling: bool) -> None:
        background = _Background(reconciling=reconciling)
        background.thread = threading.Thread(
            target=self._sync, args=(background, order), name="listing-sync", daemon=True
        )
        self._background = background
        background.thread.start()

    def _sync(self, background: _Background, order: Order | None) -> None:
        """The background thread: probe the order when none is known, then read by age index,
        paced to a share of the request rate, until complete or stopped."""
        try:
            order = order or self._probe_order()
            sync = background.sync = SyncByAge(order, self._page_size)
            picker = SeriesPicker(self._series, self._wall_clock())
            pause = (
                0.0 if self._rate_limit <= 0 else 1.0 / (self._rate_limit * self._settings.sync_rate_share)
            )
            failures = 0
            while not sync.done and not self._stopping.is_set():
                requests = sync.next_requests(self._concurrency)
                round_started = self._clock()
                try:
                    pages = self._client.fetch_pages(requests, self._round_deadline())
                except AuthError:
                    raise  # retrying would only bring the key closer to its lock
                except ListingFailed as error:
                    # 429s, 5xx, a network outage: the round is read again later, so that a
                    # passing fault does not throw away what a long listing has read so far.
                    failures += 1
                    if failures > _BACKGROUND_ROUND_RETRIES:
                        raise
                    log.info("background listing round failed, trying again: %s", error)
                    self._pace(min(_BACKGROUND_RETRY_MAX, _BACKGROUND_RETRY_FIRST * 2 ** (failures - 1)))
                    continue
                failures = 0
                for page in pages:
                    for task in sync.add(page):
                        picker.offer(task)
                # Paced: the round's calls at the background share of the rate.
                self._pace(max(0.0, len(requests) * pause - (self._clock() - round_started)))
            background.calls = sync.calls
            if sync.done:
                background.known = sync.known()
                background.recent = tuple(task for task in picker.tasks() if not task.is_open)
        except Exception as error:  # noqa: BLE001 - whatever ends the thread, API error or defect, is handed to the scrape that adopts it, which logs it; a thread that died silently would leave every scrape pending
            background.error = error
        finally:
            background.done = True

    def _round_deadline(self) -> Deadline:
        """A background round is bounded by a deadline of its own, not by any scrape's: long
        enough for the retries of a page, short enough that a stuck API ends the round."""
        end = self._clock() + _BACKGROUND_ROUND_SECONDS
        return lambda: end

    def _probe_order(self) -> Order:
        """Two calls: the first and the last page. Newest first if the first is younger."""
        (first,) = self._client.fetch_pages([PageRequest(0, self._page_size)], self._round_deadline())
        last_offset = max(0, first.total - self._page_size)
        (last,) = self._client.fetch_pages(
            [PageRequest(last_offset, self._page_size)], self._round_deadline()
        )
        if first.tasks and last.tasks:
            head, tail = first.tasks[0].created, last.tasks[-1].created
            if head > tail:
                return Order.NEWEST_FIRST
            if head < tail:
                return Order.OLDEST_FIRST
        raise PassRejected("order_unknown", "the first and the last page tell no order")

    def _adopt(self, background: _Background, deadline: Deadline, started: float) -> bool:
        """Take over a finished background listing; whether it published a snapshot.

        It is brought to the present by an incremental pass, and wins over the incremental state
        where they differ (reconciliation): the difference is counted. A pass that an API error
        or the deadline ends leaves the listing to the next scrape: it is not read again.
        """
        error = background.error
        known = background.known
        if error is None and known is not None:
            try:
                result, calls = self._raw_pass(known, deadline)
            except PassRejected as rejection:
                error = rejection
            except ListingFailed:
                self._background = background  # the next scrape tries again
                raise
        if error is not None or known is None:
            self._background_failed(background, error)
            return False
        live = self._known
        if background.reconciling and live is not None:
            try:
                current, live_calls = self._raw_pass(live, deadline)
            except PassRejected:
                self._store.note_reconciliation(mismatch=True)  # the incremental state was off
            else:
                calls += live_calls
                if current.known.total == result.known.total:
                    self._store.note_reconciliation(mismatch=_differ(current.known, result.known))
        self._recent = background.recent
        self._last_complete = self._clock()
        self._order = result.known.order
        self._reason = "order_verified"
        self._background_restarts = 0
        self._publish(result, calls + background.calls, started, SYNC)
        return True

    def _background_failed(self, background: _Background, error: Exception | None) -> None:
        reason = getattr(error, "reason", "internal")
        log.warning("background complete listing failed: %s", error, extra={"reason": reason})
        if not isinstance(error, PassRejected):
            return  # an API error after its retries, or a defect: a first sync starts over
        self._store.record_fallback(error.reason)
        if error.reason in _ORDER_REASONS:
            # The API is not in the order it was read by: there is no listing that tasks arriving
            # meanwhile cannot break, so none in the background either.
            self._order = Order.UNKNOWN
            self._reason = "order_unknown"
            self._no_background = True
            return
        # Tasks removed (or moved) while it read: read again, a few times, then give up on the
        # background (complete listings in the scrape, exact or out of time).
        self._background_restarts += 1
        if self._background_restarts > _BACKGROUND_RESTARTS:
            self._no_background = True
        elif background.reconciling and self._known is not None:
            return  # the incremental state stays; the next reconciliation comes in its time
        elif background.sync is not None:
            self._start_background(background.sync.order, reconciling=background.reconciling)

    def _pending(self) -> ListingPending:
        background = self._background
        progress = background.sync.progress if background is not None and background.sync is not None else 0.0
        return ListingPending(
            f"a complete listing is running in the background ({progress:.0%} done)", progress
        )


def _differ(live: KnownTasks, complete: KnownTasks) -> bool:
    """Whether the incremental state and a complete listing brought to the same moment disagree:
    counts by status, or which tasks are open and how far they are."""
    live_open = {task_id: task for task_id, (_, task) in live.open.items()}
    complete_open = {task_id: task for task_id, (_, task) in complete.open.items()}
    return live.counts() != complete.counts() or live_open != complete_open


def _recent_finished(tasks: Sequence[Task], cutoff: float, most: int) -> tuple[Task, ...]:
    """The most recently finished tasks that still qualify for per-task series, each once."""
    latest: dict[str, Task] = {}
    for task in tasks:
        if task.ended is not None and task.ended >= cutoff:
            latest[task.task_id] = task
    return tuple(sorted(latest.values(), key=lambda task: task.ended or 0.0, reverse=True)[:most])
