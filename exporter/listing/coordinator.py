"""Runs listings: one at a time, shared by overlapping scrapes, optionally reused for a while.

Two Prometheus replicas scraping the same exporter, or a slow listing overlapped by the next
scrape, must not double the API bill: a scrape that arrives while a listing is in flight waits for
that listing instead of starting its own. With ``min_refresh_interval`` set, a scrape that comes
sooner than that after the last listing is served the last listing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from exporter.cloud.client import VodClient
from exporter.failures import InconsistentListing, ListingFailed
from exporter.store import ListingBuilder, Snapshot, TaskStore

log = logging.getLogger(__name__)


class ListingCoordinator:
    def __init__(
        self,
        client: VodClient,
        store: TaskStore,
        *,
        min_refresh_interval: float = 0.0,
        drift_retries: int = 1,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._store = store
        self._min_refresh_interval = min_refresh_interval
        self._drift_retries = drift_retries
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._in_flight: threading.Event | None = None
        self._last_finished: float | None = None
        self._closing = False
        self.listings = 0  # listings started, named in the debug log

    def refresh(self, deadline: float) -> bool:
        """Make the store current: run a listing, join the one in flight, or reuse a recent one.

        Returns by ``deadline`` (a ``clock()`` value) at the latest, and says whether the store
        is current: False when the listing joined outlives this scrape's deadline (it goes on,
        and the scrapes after this one get its result).
        """
        with self._lock:
            if self._closing:
                return False
            recent = (
                self._last_finished is not None
                and self._clock() - self._last_finished < self._min_refresh_interval
            )
            if recent:
                return True
            in_flight = self._in_flight
            if in_flight is None:
                self._in_flight = threading.Event()
                self.listings += 1
        if in_flight is not None:
            return in_flight.wait(timeout=max(0.0, deadline - self._clock()))
        try:
            self._run(deadline)
        finally:
            with self._lock:
                done, self._in_flight = self._in_flight, None
                self._last_finished = self._clock()
            assert done is not None
            done.set()
        return True

    def close(self, timeout: float) -> None:
        """Start no more listings, and give the one in flight up to ``timeout`` seconds to end
        before the client under it is closed."""
        with self._lock:
            self._closing = True
            in_flight = self._in_flight
        if in_flight is not None:
            in_flight.wait(timeout)

    def _run(self, deadline: float) -> None:
        started = self._clock()
        try:
            builder, snapshot = self._list_with_drift_retries(deadline)
        except ListingFailed as error:
            elapsed = self._clock() - started
            self._store.record_failure(error.reason, elapsed, str(error))
            log.warning("listing failed after %.2fs: reason=%s %s", elapsed, error.reason, error)
            return
        except Exception:
            # A defect of ours, not the API's: keep serving (up 0, counted) and leave the traceback
            # in the log, rather than turning every scrape into an HTTP 500.
            self._store.record_failure("bad_response", self._clock() - started, "unexpected error")
            log.exception("listing failed on an unexpected error")
            return
        elapsed = self._clock() - started
        self._store.record_success(snapshot, builder.tracker_pass, elapsed)
        log.debug(
            "listing %d done in %.2fs: %d tasks, %d per-task series",
            self.listings,
            elapsed,
            snapshot.reported_total,
            len(snapshot.series_tasks),
        )

    def _list_with_drift_retries(self, deadline: float) -> tuple[ListingBuilder, Snapshot]:
        """One listing; listed again (up to ``drift_retries`` times, within the deadline) when tasks
        came or went while paging. A busy pipeline drifts now and then; twice in a row is rare."""
        attempt = 0
        while True:
            started = self._clock()
            builder = self._store.start_listing(self._wall_clock())
            for page in self._client.iter_pages(deadline):
                builder.add(page)
            try:
                return builder, builder.finish()
            except InconsistentListing as error:
                # Listing again only pays if it can finish: with less time left than this
                # attempt took, it would end as a timeout and hide the drift.
                took = self._clock() - started
                if attempt >= self._drift_retries or deadline - self._clock() < took:
                    raise
                attempt += 1
                log.info("listing again: %s", error)
