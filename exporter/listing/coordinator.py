"""Runs listings: one at a time, shared by overlapping scrapes, reused for a while, held off after failures.

Two Prometheus replicas scraping the same exporter, or a slow listing overlapped by the next
scrape, must not double the API bill: a scrape that arrives while a listing is in flight waits for
that listing instead of starting its own. Each scrape waits only until its own deadline, and no
scrape's deadline can end a listing that another scrape still waits for:

- a listing runs in a thread of its own; its deadline is the latest deadline of the scrapes waiting
  on it (a scrape that joins with a later one extends it), capped by ``listing_timeout`` from its
  start. The client re-reads it, so a listing only times out when every waiter has given up.
- with ``min_refresh_interval`` set, the listing's result is served to the scrapes of the next
  interval, so they count as waiters too: the listing runs to its cap whatever the scrape that
  started it announced. A scrape announcing a timeout of 0 then answers ``up 0`` itself, and
  the listing it started serves everybody else; without the interval it starts none.

API calls are the scarce resource, and anyone who reaches ``/metrics`` can ask for a listing. So:

- a listing that succeeded is reused for ``min_refresh_interval`` after it ends: at most one
  listing per interval, whatever the scrapers do;
- a listing that failed is not reused as if it were fresh: the next one may start
  ``FAILURE_RETRY`` seconds later, doubling while failures go on, up to the interval;
- after an authentication failure no call is made for ``AUTH_HOLD_OFF`` seconds, doubling up to
  ``AUTH_HOLD_OFF_MAX``: five failed AK/SK authentications in a row lock the key for five
  minutes, for every other user of that key too. Scrapes meanwhile answer ``up 0``, reason ``auth``.

A success ends every back-off.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone

from exporter.cloud.errors import AuthError
from exporter.config import ListingSettings
from exporter.deadline import Deadline, DeadlineExceeded
from exporter.failures import ListingFailed
from exporter.listing.reading import PageSource
from exporter.listing.strategy import ListingPending, ListingStrategy
from exporter.store import TaskStore

log = logging.getLogger(__name__)

FAILURE_RETRY = 5.0  # seconds before listing again after a failure; doubles up to the interval
AUTH_HOLD_OFF = 60.0  # seconds without API calls after an auth failure; doubles up to the max
AUTH_HOLD_OFF_MAX = 300.0  # as long as the lock five failures would cause
OUTCOME_GRACE = 0.1  # seconds a scrape waits past its deadline for a listing ending at that deadline
INTERNAL = "internal"  # the reason of a listing that failed on a defect of the exporter's own


class _Listing:
    """One listing in flight, and how long the scrapes waiting on it are prepared to wait."""

    def __init__(self, number: int, started: float, cap: float) -> None:
        self.number = number
        self.started = started
        self.cap = cap
        self.deadline = Deadline(started)  # raised by every waiter; read by the client on every check
        self.done = threading.Event()
        self.published = False  # its result (success or failure) is in the store

    def wait_until(self, deadline: float) -> None:
        """Called under the coordinator's lock: a waiter joins with its deadline."""
        self.deadline.extend_to(min(deadline, self.cap))


class ListingCoordinator:
    def __init__(
        self,
        client: PageSource,
        store: TaskStore,
        *,
        strategy: ListingStrategy | None = None,
        min_refresh_interval: float = 0.0,
        listing_timeout: float = 30.0,
        drift_retries: int = 1,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """``strategy`` decides what each listing reads; by default a complete listing every time,
        listed again up to ``drift_retries`` times when tasks changed while paging."""
        self._strategy = strategy or ListingStrategy(
            client,
            store,
            ListingSettings(mode="full"),
            store.settings,
            drift_retries=drift_retries,
            clock=clock,
            wall_clock=wall_clock,
        )
        self._store = store
        self._min_refresh_interval = min_refresh_interval
        self._listing_timeout = listing_timeout
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._in_flight: _Listing | None = None
        self._thread: threading.Thread | None = None
        self._next_listing_at = float("-inf")  # the store is current until then
        self._failures = 0  # in a row
        self._auth_failures = 0  # in a row, since the last success
        self._closing = False
        self.listings = 0  # listings started, named in the debug log

    def refresh(self, deadline: float) -> bool:
        """Make the store current: start a listing, join the one in flight, or reuse the last.

        Returns by ``deadline`` (a ``clock()`` value) at the latest, and says whether the store
        is current: False when this scrape's deadline came before the listing's end (it goes on
        for the others) or the exporter is shutting down.
        """
        return self.wait(self.join(deadline), deadline)

    def join(self, deadline: float) -> _Listing | bool:
        """``refresh``'s first half, which never blocks: start a listing or join the one in flight
        (what ``wait`` then waits for), or the answer at once. A scrape of many targets joins every
        target's listing first, so they all run at the same time."""
        with self._lock:
            if self._closing:
                return False
            listing = self._in_flight
            if listing is None:
                if self._clock() < self._next_listing_at:
                    return True
                if deadline <= self._clock() and self._min_refresh_interval <= 0:
                    # No time for a single call, and no later scrape would be served the result:
                    # the listing would only count a timeout that no API call caused.
                    return False
                listing = self._start(deadline)
            else:
                listing.wait_until(deadline)
        return listing

    def wait(self, listing: _Listing | bool, deadline: float) -> bool:
        """``refresh``'s second half: whether the store is current by ``deadline``."""
        if isinstance(listing, bool):
            return listing
        if not listing.done.wait(max(0.0, deadline - self._clock())) and listing.deadline() <= deadline:
            # The listing ends at this very deadline too: its outcome, a moment later, is a better
            # answer than "could not wait" (and what ``once`` reports). The offset kept back from
            # Prometheus' timeout leaves room for it.
            listing.done.wait(OUTCOME_GRACE)
        return listing.done.is_set() and listing.published

    def close(self, timeout: float) -> None:
        """Start no more listings, and let the one in flight end within ``timeout`` seconds
        (its deadline is brought forward) before the client under it is closed."""
        with self._lock:
            self._closing = True
            listing, thread = self._in_flight, self._thread
            if listing is not None:
                listing.deadline.bring_forward(self._clock() + timeout)
        self._strategy.stop()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._strategy.close(timeout)

    def _start(self, deadline: float) -> _Listing:
        """Called under the lock."""
        self.listings += 1
        started = self._clock()
        listing = _Listing(self.listings, started, cap=started + self._listing_timeout)
        listing.wait_until(deadline)
        if self._min_refresh_interval > 0:
            listing.wait_until(listing.cap)  # the scrapes of the next interval will be served it
        self._in_flight = listing
        self._thread = threading.Thread(
            target=self._run, args=(listing,), name=f"listing-{listing.number}", daemon=True
        )
        self._thread.start()
        return listing

    def _run(self, listing: _Listing) -> None:
        try:
            self._list(listing)
        finally:
            with self._lock:
                self._in_flight = None
            listing.done.set()

    def _list(self, listing: _Listing) -> None:
        try:
            self._strategy.run(listing.deadline)
        except ListingPending as pending:
            elapsed = self._clock() - listing.started
            self._store.record_pending(elapsed, str(pending), pending.progress)
            with self._lock:
                listing.published = True
            log.info("%s", pending)
            return
        except ListingFailed as error:
            if self._closing and isinstance(error, DeadlineExceeded):
                log.info("listing %d stopped by the shutdown: %s", listing.number, error)
                return
            elapsed = self._clock() - listing.started
            log.warning("listing failed after %.2fs: %s", elapsed, error, extra={"reason": error.reason})
            self._failed(listing, error.reason, elapsed, str(error))
            return
        except Exception as error:
            if self._closing:
                # The client was closed under the listing: the shutdown, not a defect.
                log.info("listing %d stopped by the shutdown: %s", listing.number, error)
                return
            # A defect of ours, not the API's: keep serving (up 0, counted under a reason of its
            # own, so that it fires no bad-API-data alert) and leave the traceback in the log.
            elapsed = self._clock() - listing.started
            log.exception("listing failed on an internal error", extra={"reason": INTERNAL})
            self._failed(listing, INTERNAL, elapsed, f"internal error: {type(error).__name__}")
            return
        elapsed = self._clock() - listing.started
        with self._lock:
            listing.published = True
            self._failures = self._auth_failures = 0
            self._next_listing_at = self._clock() + self._min_refresh_interval
        log.debug("listing %d done in %.2fs", listing.number, elapsed)

    def _failed(self, listing: _Listing, reason: str, elapsed: float, detail: str) -> None:
        self._store.record_failure(reason, elapsed, detail)
        with self._lock:
            listing.published = True
            self._failures += 1
            if reason == AuthError.reason:
                self._auth_failures += 1
                pause = min(AUTH_HOLD_OFF_MAX, AUTH_HOLD_OFF * 2 ** (self._auth_failures - 1))
            else:
                pause = min(self._min_refresh_interval, FAILURE_RETRY * 2 ** (self._failures - 1))
            self._next_listing_at = self._clock() + pause
        if reason == AuthError.reason:
            until = datetime.fromtimestamp(self._wall_clock() + pause, tz=timezone.utc)
            log.warning(
                "authentication failed: holding off API calls for %.0fs, until %s, since five failed "
                "authentications in a row lock the access key for 5 minutes; scrapes answer up 0 meanwhile",
                pause,
                until.strftime("%Y-%m-%dT%H:%M:%SZ"),
                extra={"reason": reason},
            )
        elif pause > 0:
            log.debug("next listing in %.0fs at the earliest", pause)
