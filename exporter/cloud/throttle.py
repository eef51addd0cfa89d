"""The request-rate limit: a token bucket that also slows down when the API says 429.

VOD's flow control counts calls per tenant per minute, shared by everything that uses the
account. The bucket keeps one exporter from spending the quota in a burst. After a 429 it slows
down additively-increase, multiplicatively-decrease (AIMD), with a memory:

- once per throttling episode (the 429s of requests that were in flight together), the rate is
  halved and every slot waits for one pause (Huawei advises 2-5 s): the whole exporter waits once,
  instead of each request sleeping on its own while the others keep spending the quota;
- the rate is earned back a small step per request that succeeds, but only up to a ceiling just
  below the rate that drew the 429: the quota lies below that rate, so going back to it would
  only draw the next 429, and each costs a pause that a scrape's deadline can ill afford;
- the ceiling is remembered for a while and then raised a little, so that a quota that has grown
  (another client of the account has stopped) is found again, one cautious step at a time.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from exporter.cloud.errors import SlowedDown
from exporter.deadline import Deadline, DeadlineExceeded

# With no configured limit the first 429 still needs a rate to halve: start from this one.
_UNLIMITED_FALLBACK_RATE = 20.0
_MIN_RATE = 0.5
# Requests in flight when the API starts to throttle all come back 429: one halving (and one
# pause) per episode, not one per answer. An episode lasts this long, or to the end of its pause.
_THROTTLE_WINDOW = 2.0
# The quota lies below the rate that drew a 429: recovery stops at this share of it.
_CEILING_SHARE = 0.9
# Earned back per successful request, as a share of the ceiling. Additive, so that the rate
# creeps up to the ceiling (from half of the rate that drew the 429: 23 successes) rather than
# racing past the quota as a compounding 5 % a request did (doubled in 14 requests, under a second).
_RECOVERY_STEP = 0.02
# How long a ceiling holds after the 429 that set it (or its last rise), and how much it rises
# then: a quota that has not changed costs one 429 per probe, one probe per this period at most.
_CEILING_MEMORY = 600.0
_CEILING_RISE = 1.25


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
        self._ceiling = self._configured  # below the configured rate after a 429, for a while
        self._ceiling_set = -math.inf
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

    @property
    def ceiling(self) -> float:
        """The rate that recovery after 429s stops at (the configured rate when none came)."""
        return self._ceiling

    def acquire(self, deadline: Deadline, cancelled: threading.Event | None = None) -> None:
        """Wait for a request slot; raises ``DeadlineExceeded`` if it would come after ``deadline``
        or ``cancelled`` is set while waiting (the listing it was for has ended)."""
        with self._lock:
            if math.isinf(self._rate):
                return
            now = self._clock()
            self._refill(now)
            wait = 0.0 if self._tokens >= 1 else (1 - self._tokens) / self._rate
            if now + wait > deadline():
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

    def longest_pause(self, deadline: Deadline) -> float:
        """How long a pause after a 429 may be for a request at the slowed rate to still start
        before ``deadline`` (negative when none fits)."""
        with self._lock:
            now = self._clock()
            slowed = self._rate if now < self._calm_until else self._slowed_rate()
            return deadline() - now - 1 / slowed

    def throttled(self, pause: float = 0.0) -> None:
        """The API answered 429. The first of an episode halves the rate, remembers a ceiling
        below the rate that drew it, and holds every slot until ``pause`` seconds have passed;
        the rest of the episode's 429s change nothing (their retries queue behind that pause)."""
        with self._lock:
            now = self._clock()
            if now < self._calm_until:
                return
            self._calm_until = now + max(_THROTTLE_WINDOW, pause)
            # Settle what was earned at the old rate first, so that none of it is credited again
            # at the new one.
            self._refill(now)
            drew = _UNLIMITED_FALLBACK_RATE if math.isinf(self._rate) else self._rate
            self._rate = self._slowed_rate()
            self._ceiling = max(self._rate, _CEILING_SHARE * drew)
            self._ceiling_set = now
            # A debt of the pause's worth of slots: the first comes one interval after the pause,
            # the next at the slowed rate, with no burst saved up meanwhile.
            self._tokens = min(self._tokens, 0.0) - pause * self._rate

    def _slowed_rate(self) -> float:
        current = _UNLIMITED_FALLBACK_RATE if math.isinf(self._rate) else self._rate
        return max(_MIN_RATE, current / 2)

    def _refill(self, now: float) -> None:
        if not math.isinf(self._rate):
            self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now

    def succeeded(self) -> None:
        """A request went through: earn back a step of the rate lost to 429s, up to the ceiling."""
        if self._rate >= self._configured:
            return
        with self._lock:
            self._raise_ceiling(self._clock())
            if self._rate >= self._ceiling:
                return
            self._refill(self._clock())  # what was earned so far, at the rate it was earned at
            self._rate = min(self._ceiling, self._rate + _RECOVERY_STEP * self._ceiling)

    def _raise_ceiling(self, now: float) -> None:
        if self._ceiling >= self._configured or now - self._ceiling_set < _CEILING_MEMORY:
            return
        self._ceiling *= _CEILING_RISE
        self._ceiling_set = now
        # Without a configured limit the ceiling has nothing to reach: past ten times the
        # fallback it is lifted.
        if self._ceiling >= self._configured or self._ceiling > 10 * _UNLIMITED_FALLBACK_RATE:
            self._ceiling = self._configured
