"""A complete listing too big for a scrape, read on a thread of its own (docs/incremental-listing.md,
"Complete listings"): for the first sync of a big project, after a fallback, and to reconcile.

It is the same fold as every other complete listing, read strictly by one order (minutes of reading
leave no positions to fall back to), with every two neighbouring ages read by one page, and paced
to a share of the request rate so that the scrapes' incremental passes keep theirs. Its result, or
what ended it, is handed over through a ``Future``: the scrape that finds it done takes it over.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

from exporter.cloud.errors import AuthError
from exporter.config import SeriesSettings
from exporter.deadline import Deadline
from exporter.failures import ListingFailed
from exporter.listing.fold import ListingFold, order_of_ends
from exporter.listing.known import KnownTasks, Order, PassRejected
from exporter.listing.reading import PageSource, read_round
from exporter.store import SeriesPicker
from exporter.tasks import PageRequest, Task

log = logging.getLogger(__name__)

# A round is bounded by a deadline of its own, not by any scrape's: long enough for the retries of
# a page, short enough that a stuck API ends the round.
ROUND_SECONDS = 60.0
# A round that fails (429, 5xx, network) is read again after a pause growing from the first to
# the max; after this many failures in a row the listing gives up.
ROUND_RETRIES = 10
RETRY_FIRST = 2.0
RETRY_MAX = 60.0


@dataclass(frozen=True)
class SyncedListing:
    """A background listing that completed: as of its first page's total, not yet brought to the
    present."""

    known: KnownTasks
    recent: tuple[Task, ...]  # recently finished tasks it read, for per-task series
    calls: int


@dataclass(frozen=True)
class Pacing:
    """How a background listing spends the request rate."""

    page_size: int
    concurrency: int
    rate_limit: float  # requests per second for the whole exporter; 0: no limit
    rate_share: float  # of it, for this listing
    clock: Callable[[], float]
    wait: Callable[[float], object]  # pauses; returns at once when the exporter stops


class BackgroundListing:
    def __init__(
        self,
        source: PageSource,
        order: Order | None,
        *,
        reconciling: bool,
        series: SeriesSettings,
        pacing: Pacing,
        now: float,
        stopping: threading.Event,
    ) -> None:
        """``order``: the order to read by; None probes it first (two calls: the first page and
        the last)."""
        self.reconciling = reconciling
        self.order = order
        self.future: Future[SyncedListing] = Future()
        self._source = source
        self._pacing = pacing
        self._picker = SeriesPicker(series, now)
        self._stopping = stopping
        self._fold: ListingFold | None = None
        self._thread = threading.Thread(target=self._run, name="listing-sync", daemon=True)
        self._thread.start()

    @property
    def done(self) -> bool:
        return self.future.done()

    @property
    def error(self) -> BaseException | None:
        """What ended it, once done, if it did not complete."""
        return self.future.exception() if self.future.done() else None

    @property
    def progress(self) -> float:
        fold = self._fold
        return 0.0 if fold is None else fold.progress

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            self.future.set_result(self._read())
        except BaseException as error:  # noqa: BLE001 - whatever ends the thread, API error or defect, is handed to the scrape that takes it over, which logs it; a thread that died silently would leave every scrape pending
            self.future.set_exception(error)

    def _read(self) -> SyncedListing:
        pacing = self._pacing
        order = self.order = self.order or self._probe_order()
        fold = self._fold = ListingFold(
            order, strict=True, page_size=pacing.page_size, link_every_boundary=True
        )
        share = pacing.rate_limit * pacing.rate_share
        pause = 0.0 if share <= 0 else 1.0 / share
        failures = 0
        while fold.has_more():
            wanted = list(fold.next_wanted(pacing.concurrency))
            if self._stopping.is_set():
                raise ListingFailed("the exporter is stopping")
            started = pacing.clock()
            try:
                read_round(fold, self._source, wanted, self._round_deadline(), self._picker.offer)
            except AuthError:
                raise  # retrying would only bring the key closer to its lock
            except ListingFailed as error:
                # 429s, 5xx, a network outage: the round is read again later, so that a passing
                # fault does not throw away what a long listing has read so far.
                failures += 1
                if failures > ROUND_RETRIES:
                    raise
                log.info("background listing round failed, trying again: %s", error)
                pacing.wait(min(RETRY_MAX, RETRY_FIRST * 2 ** (failures - 1)))
                continue
            failures = 0
            # Paced: the round's calls at the background share of the rate.
            pacing.wait(max(0.0, len(wanted) * pause - (pacing.clock() - started)))
        recent = tuple(task for task in self._picker.tasks() if not task.is_open)
        return SyncedListing(fold.result(), recent, fold.calls)

    def _round_deadline(self) -> Deadline:
        return Deadline(self._pacing.clock() + ROUND_SECONDS)

    def _probe_order(self) -> Order:
        """Newest first if the first page's first task is younger than the last page's last."""
        size = self._pacing.page_size
        (first,) = self._source.fetch_pages([PageRequest(0, size)], self._round_deadline())
        last_offset = max(0, first.total - size)
        (last,) = self._source.fetch_pages([PageRequest(last_offset, size)], self._round_deadline())
        order = order_of_ends(first, last)
        if order is None:
            raise PassRejected("order_unknown", "the first and the last page tell no order")
        return order
