"""Which listing a scrape runs, and what it leaves in the store (docs/incremental-listing.md).

The strategy is a state machine with one transition table (``TRANSITIONS``):

- ``learning``: no trusted ``KnownTasks``. A complete listing in the scrape (the fold) learns the
  order from the pages it reads; one too big for the scrape goes to the background (``syncing``).
- ``syncing``: a complete listing runs in the background (``background.BackgroundListing``);
  scrapes answer up 0 with its progress until it is done and brought to the present.
- ``incremental``: a known order and trusted ``KnownTasks``: incremental passes. Any surprise
  discards the pass, counts the fallback and goes back to ``learning`` in the same scrape. Now and
  then a background listing reconciles the state, while the passes go on serving.
- ``complete_only``: ``--listing.mode full``, or an API whose order is not by create_time (or
  cannot be read in the background): a complete listing in every scrape.

Every complete listing, in the scrape or in the background, and every pass end in ``KnownTasks``,
and ``known.snapshot_of`` makes the one snapshot the store takes.
"""

from __future__ import annotations

import enum
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from exporter.config import FIT_SLACK, ListingSettings, SeriesSettings
from exporter.deadline import Deadline, DeadlineExceeded
from exporter.failures import InconsistentListing, ListingFailed
from exporter.listing.background import BackgroundListing, Pacing, SyncedListing
from exporter.listing.fold import ListingFold
from exporter.listing.incremental import PassResult, run_pass
from exporter.listing.known import HeadEntry, KnownTasks, Order, PassRejected, series_of, snapshot_of
from exporter.listing.reading import CompleteListing, PageSource, read_round, read_to_end
from exporter.store import ListingFacts, TaskStore
from exporter.tasks import Page, PageRequest, Task

log = logging.getLogger(__name__)

FULL, INCREMENTAL, SYNC = "full", "incremental", "sync"
_PASS_TIMEOUTS_BEFORE_FALLBACK = 2
# A background listing that tasks removed while it read is read again this many times in a row.
_BACKGROUND_RESTARTS = 3
_ORDER_REASONS = frozenset({"order_changed", "order_unknown"})
_TRANSITIONS_KEPT = 16
# How long ``close`` waits for a background listing's round to end, unless told otherwise.
_CLOSE_SECONDS = 5.0


class State(enum.Enum):
    LEARNING = "learning"
    SYNCING = "syncing"
    INCREMENTAL = "incremental"
    COMPLETE_ONLY = "complete_only"


class Event(enum.Enum):
    ORDER_LEARNED = "a complete listing showed the order"
    NO_ORDER = "a complete listing showed no order by create_time"
    NO_EVIDENCE = "a complete listing showed no step in create_time to learn an order from"
    TOO_BIG = "the first page showed a listing too big for the scrape"
    SYNCED = "a background listing was brought to the present"
    SYNC_BROKEN = "tasks removed while a background listing read broke it"
    SYNC_FAILED = "an API error or a defect ended a background listing"
    SYNC_UNORDERED = "a background listing found no order to read by"
    PASS_REJECTED = "an incremental pass failed a check"
    BACKLOG = "incremental passes ran out of time twice in a row"
    CONFIGURED_FULL = "--listing.mode full"


S, E = State, Event
TRANSITIONS: dict[tuple[State, Event], State] = {
    (S.LEARNING, E.ORDER_LEARNED): S.INCREMENTAL,
    (S.LEARNING, E.NO_ORDER): S.COMPLETE_ONLY,
    (S.LEARNING, E.NO_EVIDENCE): S.LEARNING,  # no task yet, or all in one second: ask again
    (S.LEARNING, E.TOO_BIG): S.SYNCING,
    (S.LEARNING, E.CONFIGURED_FULL): S.COMPLETE_ONLY,
    (S.SYNCING, E.SYNCED): S.INCREMENTAL,
    (S.SYNCING, E.SYNC_BROKEN): S.SYNCING,  # read again, up to _BACKGROUND_RESTARTS times
    (S.SYNCING, E.SYNC_FAILED): S.LEARNING,
    (S.SYNCING, E.SYNC_UNORDERED): S.COMPLETE_ONLY,
    (S.INCREMENTAL, E.PASS_REJECTED): S.LEARNING,
    (S.INCREMENTAL, E.BACKLOG): S.LEARNING,
    (S.INCREMENTAL, E.SYNCED): S.INCREMENTAL,  # a reconciliation taken over
    (S.INCREMENTAL, E.SYNC_BROKEN): S.INCREMENTAL,  # the passes go on; the next one is due later
    (S.INCREMENTAL, E.SYNC_FAILED): S.INCREMENTAL,
    (S.INCREMENTAL, E.SYNC_UNORDERED): S.LEARNING,
    # A reconciliation still running when the passes fell back: taken over all the same, as the
    # complete listing it is.
    (S.LEARNING, E.SYNCED): S.INCREMENTAL,
    (S.LEARNING, E.SYNC_BROKEN): S.LEARNING,
    (S.LEARNING, E.SYNC_FAILED): S.LEARNING,
    (S.LEARNING, E.SYNC_UNORDERED): S.COMPLETE_ONLY,
    (S.COMPLETE_ONLY, E.SYNCED): S.INCREMENTAL,
    (S.COMPLETE_ONLY, E.SYNC_BROKEN): S.COMPLETE_ONLY,
    (S.COMPLETE_ONLY, E.SYNC_FAILED): S.COMPLETE_ONLY,
    (S.COMPLETE_ONLY, E.SYNC_UNORDERED): S.COMPLETE_ONLY,
    (S.COMPLETE_ONLY, E.ORDER_LEARNED): S.INCREMENTAL,
    (S.COMPLETE_ONLY, E.NO_ORDER): S.COMPLETE_ONLY,
    (S.COMPLETE_ONLY, E.NO_EVIDENCE): S.COMPLETE_ONLY,
    (S.COMPLETE_ONLY, E.TOO_BIG): S.SYNCING,
    (S.COMPLETE_ONLY, E.CONFIGURED_FULL): S.COMPLETE_ONLY,
}
del S, E


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
class _Reading:
    """A complete listing in the scrape, kept when the deadline or an API error interrupts it:
    the next scrape goes on from where it stopped (its pages are placed by age index, so time
    between them does no harm), and brings it to the present."""

    listing: CompleteListing
    started_scrape: int

    @property
    def fold(self) -> ListingFold:
        return self.listing.fold


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
        self.state = State.LEARNING
        # The latest transitions, oldest first: what the log says at debug level, kept for a
        # status page and for tests.
        self.transitions: deque[tuple[State, Event, State]] = deque(maxlen=_TRANSITIONS_KEPT)
        self._reason = "learning"  # why the next listing is of its kind, for listing_mode
        self._known: KnownTasks | None = None  # trusted in ``incremental``: passes start from it
        self._recent: tuple[Task, ...] = ()  # recently finished tasks, for per-task series
        self._order = Order.UNKNOWN  # the order the last complete listing showed
        # A background listing by age index failed on the order: complete listings stay in the
        # scrape, as before incremental listing, however long they take (exact, or a timeout).
        self._no_background = False
        self._pass_timeouts = 0  # incremental passes in a row that ran out of time
        self._background_restarts = 0  # background listings in a row that tasks removed broke
        self._last_complete = clock()
        self._background: BackgroundListing | None = None
        self._reading: _Reading | None = None
        self._scrapes = 0
        self._stopping = threading.Event()
        # How the background listing waits between rounds; returns at once when stopping.
        self._pace = pace or self._stopping.wait
        if settings.mode == FULL:
            self._move(Event.CONFIGURED_FULL, "configured")

    def run(self, deadline: Deadline) -> None:
        """One listing for the scrapes waiting; its result goes to the store.

        Raises ``ListingFailed`` (nothing published) or ``ListingPending`` (a background listing
        is not done yet).
        """
        started = self._clock()
        self._scrapes += 1
        background = self._background
        if background is not None and background.done:
            self._background = None
            if self._take_over(background, deadline, started):
                return
        if self.state is State.INCREMENTAL:
            self._incremental(deadline, started)
        elif self.state is State.SYNCING and self._background is not None:
            raise self._pending()
        elif self._settings.mode == INCREMENTAL and self._reason == "order_unknown":
            raise OrderUnknown("the API's order could not be learned: incremental passes are impossible")
        else:
            self._complete(deadline, started, reason=self._reason)

    def stop(self) -> None:
        """Start nothing more: no retry, no background round."""
        self._stopping.set()

    def close(self, timeout: float = _CLOSE_SECONDS) -> None:
        self._stopping.set()
        background = self._background
        if background is not None:
            background.join(timeout)

    @property
    def background(self) -> BackgroundListing | None:
        """The background listing running or done and not taken over yet."""
        return self._background

    def _move(self, event: Event, reason: str) -> None:
        """The one place the state changes: by the transition table."""
        following = TRANSITIONS.get((self.state, event))
        if following is None:
            raise RuntimeError(f"no transition from {self.state.value} on: {event.value}")
        self.transitions.append((self.state, event, following))
        if following is not self.state:
            log.debug("listing state %s -> %s: %s", self.state.value, following.value, event.value)
        self.state = following
        self._reason = reason

    # Complete listing in the scrape ------------------------------------------------------------

    def _complete(self, deadline: Deadline, started: float, reason: str) -> None:
        attempt = spent = 0
        fitted = False  # once's deadline, fitted to the project by the first attempt, stays for the retry
        while True:
            reading = self._resume_or_start()
            attempt_started = self._clock()
            try:
                if self._read_first_page(reading, deadline):
                    return self._to_background(reading)
                if not fitted:
                    deadline, fitted = self._fitted(deadline, reading.fold), True
                read_to_end(reading.fold, self._client, deadline, reading.listing.observe, most=1 << 30)
                known = reading.fold.result()
            except PassRejected as rejection:
                self._reading = None
                spent += reading.fold.calls
                # Listing again only pays if it can finish: with less time left than this attempt
                # took, it would end as a timeout and hide what failed.
                took = self._clock() - attempt_started
                out_of_time = deadline() - self._clock() < took
                if self._stopping.is_set() or attempt >= self._drift_retries or out_of_time:
                    raise InconsistentListing(str(rejection)) from None
                attempt += 1
                log.info("listing again: %s", rejection)
                continue
            except ListingFailed:
                # 429s, the deadline: the next scrape goes on from here rather than from the start,
                # and brings it to the present. Not in full mode, whose listings are each exact in
                # their own scrape, or a timeout.
                keep = reading.fold.by_age and self._settings.mode != FULL
                self._reading = reading if keep else None
                raise
            break
        self._reading = None
        calls = spent + reading.fold.calls
        resumed = reading.started_scrape != self._scrapes
        if resumed and known.order is not Order.UNKNOWN:
            # Read over several scrapes: exact as of its first page, long ago. Brought to the
            # present like a background listing, and trusted only once it has been.
            self._adopt(SyncedListing(known, reading.listing.recent(), calls), deadline, started, FULL)
            present = self._known
            self._learned(known, reading.fold.contradiction)
            self._known = present
            return
        self._learned(known, reading.fold.contradiction)
        self._store.record_listing(
            reading.listing.snapshot(known),
            reading.listing.tracker,
            self._clock() - started,
            ListingFacts(mode=FULL, reason=reason, order=known.order.value, calls=calls),
            agreed_at=reading.listing.now,
        )

    def _resume_or_start(self) -> _Reading:
        if self._reading is not None:
            return self._reading
        now = self._wall_clock()
        hypothesis = None if self._order is Order.UNKNOWN else self._order
        fold = ListingFold(hypothesis, page_size=self._page_size)
        return _Reading(CompleteListing(fold, self._store, now), self._scrapes)

    def _read_first_page(self, reading: _Reading, deadline: Deadline) -> bool:
        """The first page, when not read yet; whether the rest could not finish by the deadline at
        the rate limit, so that the listing goes to the background at once, not after a wasted
        scrape."""
        fold = reading.fold
        if fold.as_of is not None:
            return False
        read_round(fold, self._client, fold.next_wanted(1), deadline, reading.listing.observe)
        if self.state is State.COMPLETE_ONLY and self._settings.mode == FULL:
            return False
        if self._no_background or self._rate_limit <= 0 or fold.as_of is None:
            return False
        remaining_pages = max(0, math.ceil(fold.as_of / self._page_size) - 1)
        return remaining_pages / self._rate_limit > deadline() - self._clock()

    def _fitted(self, deadline: Deadline, fold: ListingFold) -> Deadline:
        """``once`` with no --scrape.timeout: the deadline the project's size needs at the rate
        limit (twice the calls' time, plus some seconds), or a one-line error that says what to
        set when even the longest wait allowed is too short."""
        if not self._settings.fit_deadline or fold.as_of is None or self._rate_limit <= 0:
            return deadline
        pages = math.ceil(fold.as_of / self._page_size)
        needed = 2 * pages / self._rate_limit + FIT_SLACK
        left = deadline() - self._clock()
        if needed > left:
            raise DeadlineExceeded(
                f"listing {fold.as_of} tasks takes about {needed:.0f}s at --api.rate-limit "
                f"{self._rate_limit:g}, more than the {left:.0f}s left: set --scrape.timeout "
                f"{math.ceil(needed)}s, or a higher --api.rate-limit if the quota allows"
            )
        return deadline.sooner(self._clock() + needed)

    def _to_background(self, reading: _Reading) -> None:
        self._reading = None
        self._move(Event.TOO_BIG, self._reason)
        if self._background is None:
            self._start_background(None, reconciling=False)
        # else: a reconciliation still reads, a complete listing as good as a new one: it serves.
        raise self._pending()

    def _learned(self, known: KnownTasks, contradiction: str | None) -> None:
        """What a complete listing taught: the order, and the state that follows."""
        self._last_complete = self._clock()
        if contradiction is not None and self._order is not Order.UNKNOWN:
            # Not counted as a fallback: no pass was discarded for it (the one that was, if any,
            # counted its own check). listing_order shows it.
            log.warning("the API's order changed: %s", contradiction, extra={"reason": "order_changed"})
        self._order = known.order
        if self._settings.mode == FULL:
            self._move(Event.CONFIGURED_FULL, "configured")
        elif known.order is not Order.UNKNOWN:
            self._known = known
            self._no_background = False
            self._move(Event.ORDER_LEARNED, "order_verified")
        elif contradiction is None:
            # Nothing contradicted an order, nothing showed one either (no task yet, or all in
            # one second): learning goes on, and --listing.mode incremental does not give up.
            self._known = None
            self._move(Event.NO_EVIDENCE, self._reason)
        else:
            self._known = None
            self._move(Event.NO_ORDER, "order_unknown")

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
                self._move(Event.BACKLOG, "fallback")
                self._store.record_fallback("timeout")
            raise
        self._pass_timeouts = 0
        self._publish(result, calls, started, INCREMENTAL)
        if (
            self._background is None
            and self._clock() - self._last_complete >= self._settings.reconcile_interval
        ):
            self._start_background(known.order, reconciling=True)

    def _raw_pass(
        self, known: KnownTasks, deadline: Deadline, reads: _SharedReads | None = None
    ) -> tuple[PassResult, int]:
        if reads is not None:
            return run_pass(known, reads.pages, reads.tasks, self._page_size)
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
            self._move(Event.PASS_REJECTED, "fallback")
            self._store.record_fallback(rejection.reason)
            log.warning(
                "incremental pass discarded, listing everything again: %s",
                rejection,
                extra={"reason": rejection.reason},
            )
            raise _Discarded(f"incremental pass discarded: {rejection}") from None

    def _publish(
        self, result: PassResult, calls: int, started: float, mode: str, *, agreed: bool = False
    ) -> None:
        self._reading = None  # a complete listing left unfinished is older than this one
        now = self._wall_clock()
        known = self._known = result.known
        cutoff = now - self._series.max_finished_age
        finished_now = [task for task in result.seen if not task.is_open]
        self._recent = _recent_finished((*self._recent, *finished_now), cutoff, self._series.max_series)
        tracker_pass = self._store.begin_tracking(now)
        for task in result.seen:
            self._store.observe(tracker_pass, task)
        self._store.record_listing(
            snapshot_of(known, series_of(known, self._recent, self._series, now), now),
            tracker_pass,
            self._clock() - started,
            ListingFacts(mode=mode, reason="order_verified", order=known.order.value, calls=calls),
            agreed_at=now if agreed else None,
        )

    # Background complete listing ---------------------------------------------------------------

    def _start_background(self, order: Order | None, *, reconciling: bool) -> None:
        pacing = Pacing(
            page_size=self._page_size,
            concurrency=self._concurrency,
            rate_limit=self._rate_limit,
            rate_share=self._settings.sync_rate_share,
            clock=self._clock,
            wait=self._pace,
        )
        self._background = BackgroundListing(
            self._client,
            order,
            reconciling=reconciling,
            series=self._series,
            pacing=pacing,
            now=self._wall_clock(),
            stopping=self._stopping,
        )

    def _take_over(self, background: BackgroundListing, deadline: Deadline, started: float) -> bool:
        """Take over a finished background listing; whether it published a snapshot."""
        error = background.error
        if error is not None:
            self._background_failed(background, error)
            return False
        try:
            return self._adopt(background.future.result(), deadline, started, SYNC, background)
        except (ListingFailed, PassRejected):
            raise
        except Exception as defect:
            self._background_failed(background, defect)  # a first sync starts over
            raise

    def _adopt(
        self,
        synced: SyncedListing,
        deadline: Deadline,
        started: float,
        mode: str,
        background: BackgroundListing | None = None,
    ) -> bool:
        """Bring a complete listing to the present with an incremental pass and publish it. When it
        reconciles, the live state is brought to the present too, and both are compared as of the
        same total (docs: "Reconciliation"). A pass that an API error or the deadline ends leaves
        a background listing to the next scrape: it is not read again."""
        live = self._known if background is not None and background.reconciling else None
        # Reconciling, both passes read through one cache: a page or a task both ask for is read
        # once, so an open task that moves on between the two is not taken for a difference.
        reads = _SharedReads(self._client, deadline) if live is not None else None
        try:
            result, calls = self._raw_pass(synced.known, deadline, reads)
        except PassRejected as rejection:
            if background is None:
                raise InconsistentListing(
                    f"bringing the listing to the present failed: {rejection}"
                ) from None
            self._background_failed(background, rejection)
            return False
        except ListingFailed:
            if background is not None:
                self._background = background  # the next scrape tries again
            raise
        if live is not None:
            calls += self._reconcile(live, result.known, deadline, reads)
        self._recent = synced.recent
        self._last_complete = self._clock()
        self._order = result.known.order
        self._background_restarts = 0
        if background is not None:
            self._move(Event.SYNCED, "order_verified")
        self._publish(result, calls + synced.calls, started, mode, agreed=True)
        return True

    def _reconcile(
        self, live: KnownTasks, complete: KnownTasks, deadline: Deadline, reads: _SharedReads | None
    ) -> int:
        """Compare the live state, brought to the present, with a complete listing brought there,
        as of the lower of their two totals; the calls it took beyond the first pass."""
        fetched = 0 if reads is None else reads.fetched
        try:
            current, calls = self._raw_pass(live, deadline, reads)
            if reads is not None:
                calls = reads.fetched - fetched
        except PassRejected:
            self._store.note_reconciliation(mismatch=True)  # the incremental state was off
            return 0
        except ListingFailed:
            return 0  # not compared: the complete listing is published all the same
        moment = min(current.known.total, complete.total)
        ours, theirs = _below(current.known, moment), _below(complete, moment)
        if ours is None or theirs is None:
            log.info("reconciliation not compared: too many tasks arrived between its two passes")
            return calls
        self._store.note_reconciliation(mismatch=ours != theirs)
        if ours != theirs:
            log.warning("reconciliation: the incremental state differed from a complete listing; replaced")
        return calls

    def _background_failed(self, background: BackgroundListing, error: BaseException) -> None:
        reason = getattr(error, "reason", "internal")
        log.warning("background complete listing failed: %s", error, extra={"reason": reason})
        if not isinstance(error, PassRejected):
            # An API error after its retries, or a defect: a first sync starts over.
            self._move(Event.SYNC_FAILED, self._reason)
            return
        self._store.record_fallback(error.reason)
        if error.reason in _ORDER_REASONS:
            # The API is not in the order it was read by: there is no listing that tasks arriving
            # meanwhile cannot break, so none in the background either.
            self._order = Order.UNKNOWN
            self._no_background = True
            self._known = None
            self._move(Event.SYNC_UNORDERED, "order_unknown")
            return
        # Tasks removed (or moved) while it read: read again, a few times, then give up on the
        # background (complete listings in the scrape, exact or out of time).
        self._background_restarts += 1
        if self._background_restarts > _BACKGROUND_RESTARTS:
            self._no_background = True
            self._move(Event.SYNC_FAILED, "fallback")
        elif background.reconciling:
            self._move(Event.SYNC_BROKEN, self._reason)  # the next reconciliation comes in its time
        else:
            self._move(Event.SYNC_BROKEN, self._reason)
            self._start_background(background.order, reconciling=False)

    def _pending(self) -> ListingPending:
        background = self._background
        progress = background.progress if background is not None else 0.0
        return ListingPending(
            f"a complete listing is running in the background ({progress:.0%} done)", progress
        )


class _SharedReads:
    """The pages and tasks two passes read, each fetched once: passes compared as of one moment
    see the same records wherever they ask for the same ones."""

    def __init__(self, client: PageSource, deadline: Deadline) -> None:
        self._client = client
        self._deadline = deadline
        self._pages: dict[PageRequest, Page] = {}
        self._tasks: dict[str, Page] = {}
        self.fetched = 0

    def pages(self, requests: Sequence[PageRequest]) -> list[Page]:
        missing = [request for request in dict.fromkeys(requests) if request not in self._pages]
        if missing:
            self._pages.update(zip(missing, self._client.fetch_pages(missing, self._deadline), strict=True))
            self.fetched += len(missing)
        return [self._pages[request] for request in requests]

    def tasks(self, task_ids: Sequence[str]) -> dict[str, Page]:
        missing = [task_id for task_id in dict.fromkeys(task_ids) if task_id not in self._tasks]
        if missing:
            self._tasks.update(self._client.fetch_tasks(missing, self._deadline))
            self.fetched += len(missing)
        return {task_id: self._tasks[task_id] for task_id in task_ids}


@dataclass(frozen=True)
class _Moment:
    """What a listing says of the tasks below one age index: for comparing two listings."""

    counts: dict[str, int]
    open: dict[str, str]  # task_id -> status (progress moves between two reads; it is not compared)


def _below(known: KnownTasks, total: int) -> _Moment | None:
    """``known`` without the tasks of age ``total`` and above, from what its head says of them;
    None when the head does not reach that far down."""
    counts = known.counts()
    open_tasks = {task_id: task.status for task_id, (_, task) in known.open.items()}
    for age in range(total, known.total):
        entry: HeadEntry | None = known.head.get(age)
        if entry is None:
            return None
        if not entry.task_id:
            continue  # a malformed record: counted in neither
        if entry.task_id in open_tasks:
            counts[open_tasks.pop(entry.task_id)] -= 1
        elif entry.finished_status is not None:
            counts[entry.finished_status] -= 1
    return _Moment({status: count for status, count in counts.items() if count}, open_tasks)


def _recent_finished(tasks: Sequence[Task], cutoff: float, most: int) -> tuple[Task, ...]:
    """The most recently finished tasks that still qualify for per-task series, each once."""
    latest: dict[str, Task] = {}
    for task in tasks:
        if task.ended is not None and task.ended >= cutoff:
            latest[task.task_id] = task
    return tuple(sorted(latest.values(), key=lambda task: task.ended or 0.0, reverse=True)[:most])
