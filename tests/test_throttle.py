from __future__ import annotations

import math

import pytest

from exporter.cloud.errors import DeadlineExceeded, ThrottledError
from exporter.cloud.throttle import RateLimiter
from tests.conftest import FakeClock


def limiter(rate: float, burst: int = 1) -> tuple[RateLimiter, FakeClock]:
    clock = FakeClock()
    return RateLimiter(rate, burst, clock=clock, sleep=clock.sleep), clock


def test_requests_are_spaced_by_the_rate() -> None:
    bucket, clock = limiter(10, burst=2)
    start = clock()
    for _ in range(12):
        bucket.acquire(deadline=start + 100)
    assert clock() - start == pytest.approx(1.0)  # 2 from the burst, then 10 at 10/s


def test_no_limit_never_waits() -> None:
    bucket, clock = limiter(0)
    for _ in range(1000):
        bucket.acquire(deadline=clock())
    assert math.isinf(bucket.rate)


def test_a_burst_of_429s_halves_the_rate_once() -> None:
    bucket, clock = limiter(20)
    for _ in range(4):  # four requests in flight all come back 429
        bucket.throttled()
    assert bucket.rate == 10
    clock.sleep(2.5)
    bucket.throttled()
    assert bucket.rate == 5


def test_the_rate_is_earned_back_after_429s() -> None:
    bucket, _ = limiter(20)
    bucket.throttled()
    for _ in range(100):
        bucket.succeeded()
    assert bucket.rate == 20


def test_a_429_without_a_configured_limit_still_slows_down() -> None:
    bucket, _ = limiter(0)
    bucket.throttled()
    assert bucket.rate == 10


def test_a_slot_after_the_deadline_is_reported_by_its_cause() -> None:
    bucket, clock = limiter(1)
    bucket.acquire(deadline=clock() + 10)
    with pytest.raises(DeadlineExceeded):
        bucket.acquire(deadline=clock() + 0.5)
    slowed, slowed_clock = limiter(1)
    slowed.acquire(deadline=slowed_clock() + 10)
    slowed.throttled()
    with pytest.raises(ThrottledError):
        slowed.acquire(deadline=slowed_clock() + 0.5)


def test_a_halving_is_not_undone_by_time_earned_at_the_old_rate() -> None:
    bucket, clock = limiter(10, burst=4)
    for _ in range(4):
        bucket.acquire(deadline=clock() + 100)
    clock.sleep(1.0)  # earns 10 tokens at the old rate (capped at the burst of 4)...
    bucket.throttled()  # ...which the 429 says were not there to spend
    start = clock()
    bucket.acquire(deadline=clock() + 100)
    assert clock() - start == pytest.approx(0.2)  # one slot at the halved rate, 5/s


def test_the_first_429_without_a_limit_starts_from_an_empty_bucket() -> None:
    bucket, clock = limiter(0)
    clock.sleep(30)
    bucket.throttled()
    start = clock()
    bucket.acquire(deadline=clock() + 100)
    assert clock() - start == pytest.approx(0.1)


def test_a_cancelled_wait_ends_at_once_and_gives_its_slot_back() -> None:
    import threading

    bucket, clock = limiter(1)
    bucket.acquire(deadline=clock() + 100)
    cancelled = threading.Event()
    cancelled.set()
    with pytest.raises(DeadlineExceeded, match="listing ended"):
        bucket.acquire(deadline=clock() + 100, cancelled=cancelled)
    start = clock()
    bucket.acquire(deadline=clock() + 100)
    assert clock() - start == pytest.approx(1.0)  # only the one slot it was queued for
