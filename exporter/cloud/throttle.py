"""The request-rate limit: a token bucket that also slows down when the API says 429.

VOD's flow control counts calls per tenant per minute, shared by everything that uses the
account. The bucket keeps one exporter from spending the quota in a burst; after a 429 the rate is
halved and then earned back a little with every request that succeeds.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from exporter.cloud.errors import DeadlineExceeded, SlowedDown

# With no configured limit the first 429 still needs a rate to halve: start from this one.
_UNLIMITED_FALLBACK_RATE = 20.0
_MIN_RATE = 0.5
_RECOVERY_FACTOR = 1.05
# Requests in flight when the API starts to throttle all come back 429: one halving per this
# window, not one per answer.
_THROTTLE_WINDOW = 2.0


class RateLimiter:
    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._configured = rate if rate > 0 else math.inf
        self._rate = self._configured
        self._burst = float(max(1, burst))
        self._tokens = self._burst
        self._clock = clock
        self._sleep = sleep
        self._updated = clock()
        self._calm_until = -math.inf
        self._lock = threading.Lock()

    @property
    def rate(self) -> float:
        """Requests per second allowed now (``inf`` when unlimited)."""
        return self._rate

    def acquire(self, deadline: float, cancelled: threading.Event | None = None) -> None:
        """Wait for a request slot; raises ``DeadlineExceeded`` if it would come after ``deadline``
        or ``cancelled`` is set while waiting (the listing it was for has ended)."""
        with self._lock:
            if math.isinf(self._rate):
                return
            now = self._clock()
            self._refill(now)
            wait = 0.0 if self._tokens >= 1 else (1 - self._tokens) / self._rate
            if now + wait > deadline:
                if self._rate < self._configured:
                    raise SlowedDown("slowed down by 429s: the next request would miss the deadline")
                raise DeadlineExceeded("the request-rate limit leaves no slot before the scrape deadline")
            # Take the token now, even if it is only due later: the next caller queues behind us.
            self._tokens -= 1
        if wait <= 0:
            return
        if cancelled is None:
            self._sleep(wait)
        elif cancelled.wait(wait):
            with self._lock:
                self._tokens += 1  # not spent: give it back
            raise DeadlineExceeded("the listing ended while this request waited for a slot")

    def throttled(self) -> None:
        """The API answered 429: halve the rate (once per throttling window)."""
        with self._lock:
            now = self._clock()
            if now < self._calm_until:
                return
            self._calm_until = now + _THROTTLE_WINDOW
            # Settle what was earned at the old rate first, so that none of it is credited again
            # at the new one.
            self._refill(now)
            current = _UNLIMITED_FALLBACK_RATE if math.isinf(self._rate) else self._rate
            self._rate = max(_MIN_RATE, current / 2)
            self._tokens = min(self._tokens, 0.0)

    def _refill(self, now: float) -> None:
        if not math.isinf(self._rate):
            self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now

    def succeeded(self) -> None:
        """A request went through: earn back some of the rate lost to 429s."""
        if self._rate >= self._configured:
            return
        with self._lock:
            self._rate *= _RECOVERY_FACTOR
            if self._rate >= self._configured or self._rate > 10 * _UNLIMITED_FALLBACK_RATE:
                self._rate = self._configured
