from __future__ import annotations

import math

import pytest

from exporter.cloud.errors import ThrottledError
from exporter.cloud.throttle import RateLimiter
from exporter.deadline import Deadline, DeadlineExceeded
from tests.conftest import FakeClock


def limiter(rate: float, burst: int = 1) -> tuple[RateLimiter, FakeClock]:
    clock = FakeClock()
    return RateLimiter(rate, burst, clock=clock, sleep=clock.sleep), clock


def test_requests_are_spaced_by_the_rate() -> None:
    bucket, clock = limiter(10, burst=2)
    start = clock()
    for _ in range(12):
        bucket.acquire(deadline=Deadline(start + 100))
    assert clock() - start == pytest.approx(1.0)  # 2 from the burst, then 10 at 10/s


def test_no_limit_never_waits() -> None:
    bucket, clock = limiter(0)
    for _ in range(1000):
        bucket.acquire(deadline=Deadline(clock()))
    assert math.isinf(bucket.rate)


def test_a_burst_of_429s_halves_the_rate_once() -> None:
    bucket, clock = limiter(20)
    for _ in range(4):  # four requests in flight all come back 429
        bucket.throttled()
    assert bucket.rate == 10
    clock.sleep(2.5)
    bucket.throttled()
    assert bucket.rate == 5


def test_after_a_429_the_rate_is_earned_back_in_steps_up_to_a_ceiling_below_it() -> None:
    bucket, _ = limiter(20)
    bucket.throttled()
    assert (bucket.rate, bucket.ceiling) == (10, 18)  # halved; recovery stops at 90 % of 20
    bucket.succeeded()
    assert bucket.rate == pytest.approx(10.36)  # a step of 2 % of the ceiling, not 5 % compounding
    for _ in range(21):
        bucket.succeeded()
    assert bucket.rate == pytest.approx(17.92)
    bucket.succeeded()
    assert bucket.rate == 18
    for _ in range(100):
        bucket.succeeded()
    assert bucket.rate == 18  # never back to the rate that drew the 429


def test_the_ceiling_holds_ten_minutes_then_rises_a_quarter() -> None:
    bucket, clock = limiter(40)
    bucket.throttled()
    for _ in range(100):
        bucket.succeeded()
    assert (bucket.rate, bucket.ceiling) == (36, 36)
    clock.sleep(599.0)
    bucket.succeeded()
    assert (bucket.rate, bucket.ceiling) == (36, 36)
    clock.sleep(1.0)
    bucket.succeeded()
    assert bucket.ceiling == 40  # 45, capped at the configured rate
    assert bucket.rate == pytest.approx(36.8)


def test_a_second_429_sets_the_ceiling_below_the_rate_that_drew_it() -> None:
    bucket, clock = limiter(20)
    bucket.throttled()
    for _ in range(100):
        bucket.succeeded()
    clock.sleep(2.5)
    bucket.throttled()  # at 18
    assert (bucket.rate, bucket.ceiling) == (9, pytest.approx(16.2))


def test_a_429_holds_every_slot_for_one_pause_then_spaces_them_at_the_slowed_rate() -> None:
    bucket, clock = limiter(20, burst=4)
    bucket.throttled(pause=3.0)
    start = clock()
    bucket.acquire(deadline=Deadline(start + 100))
    assert clock() - start == pytest.approx(3.1)  # the pause, then one slot at 10/s
    bucket.acquire(deadline=Deadline(start + 100))
    assert clock() - start == pytest.approx(3.2)  # no burst saved up during the pause


def test_the_429s_of_one_episode_share_its_pause() -> None:
    bucket, clock = limiter(20, burst=4)
    start = clock()
    bucket.throttled(pause=3.0)
    for _ in range(3):  # the other requests that were in flight
        bucket.throttled(pause=5.0)
    clock.sleep(2.5)
    bucket.throttled(pause=5.0)  # still before the pause ended: the same episode
    assert bucket.rate == 10
    bucket.acquire(deadline=Deadline(start + 100))
    assert clock() - start == pytest.approx(3.1)
    clock.sleep(1.0)
    bucket.throttled(pause=2.0)  # after the pause: a request sent at the slowed rate, a new episode
    assert bucket.rate == 5


def test_the_longest_pause_leaves_one_slot_at_the_slowed_rate_before_the_deadline() -> None:
    bucket, clock = limiter(20)
    assert bucket.longest_pause(Deadline(clock() + 9.5)) == pytest.approx(9.4)  # a slot at 10/s after it
    bucket.throttled(pause=2.0)
    assert bucket.longest_pause(Deadline(clock() + 9.5)) == pytest.approx(9.4)  # the episode's own rate
    assert bucket.longest_pause(Deadline(clock() + 0.05)) < 0


def test_a_wait_for_a_slot_that_would_end_past_the_deadline_is_not_started() -> None:
    bucket, clock = limiter(20)
    bucket.throttled(pause=3.0)
    start = clock()
    with pytest.raises(ThrottledError, match="slowed down by 429s"):
        bucket.acquire(deadline=Deadline(start + 3.0))  # the slot comes at 3.1
    assert clock() == start  # no sleep at all
    bucket.acquire(deadline=Deadline(start + 3.1))  # the slot it did not take is still there
    assert clock() - start == pytest.approx(3.1)


def test_a_429_without_a_configured_limit_still_slows_down() -> None:
    bucket, _ = limiter(0)
    bucket.throttled()
    assert (bucket.rate, bucket.ceiling) == (10, 18)


def test_without_a_configured_limit_the_ceiling_is_lifted_past_ten_times_the_fallback() -> None:
    bucket, clock = limiter(0)
    bucket.throttled()
    ceilings = []
    for _ in range(12):
        clock.sleep(600.0)
        bucket.succeeded()
        ceilings.append(bucket.ceiling)
    assert ceilings[:3] == [22.5, pytest.approx(28.125), pytest.approx(35.15625)]
    assert math.isinf(ceilings[-1])
    assert math.isinf(bucket.rate)


def test_a_slot_after_the_deadline_is_reported_by_its_cause() -> None:
    bucket, clock = limiter(1)
    bucket.acquire(deadline=Deadline(clock() + 10))
    with pytest.raises(DeadlineExceeded):
        bucket.acquire(deadline=Deadline(clock() + 0.5))
    slowed, slowed_clock = limiter(1)
    slowed.acquire(deadline=Deadline(slowed_clock() + 10))
    slowed.throttled()
    with pytest.raises(ThrottledError):
        slowed.acquire(deadline=Deadline(slowed_clock() + 0.5))


def test_a_halving_is_not_undone_by_time_earned_at_the_old_rate() -> None:
    bucket, clock = limiter(10, burst=4)
    for _ in range(4):
        bucket.acquire(deadline=Deadline(clock() + 100))
    clock.sleep(1.0)  # earns 10 tokens at the old rate (capped at the burst of 4)...
    bucket.throttled()  # ...which the 429 says were not there to spend
    start = clock()
    bucket.acquire(deadline=Deadline(clock() + 100))
    assert clock() - start == pytest.approx(0.2)  # one slot at the halved rate, 5/s


def test_the_first_429_without_a_limit_starts_from_an_empty_bucket() -> None:
    bucket, clock = limiter(0)
    clock.sleep(30)
    bucket.throttled()
    start = clock()
    bucket.acquire(deadline=Deadline(clock() + 100))
    assert clock() - start == pytest.approx(0.1)


def test_a_cancelled_wait_ends_at_once_and_gives_its_slot_back() -> None:
    import threading

    bucket, clock = limiter(1)
    bucket.acquire(deadline=Deadline(clock() + 100))
    cancelled = threading.Event()
    cancelled.set()
    with pytest.raises(DeadlineExceeded, match="listing ended"):
        bucket.acquire(deadline=Deadline(clock() + 100), cancelled=cancelled)
    start = clock()
    bucket.acquire(deadline=Deadline(clock() + 100))
    assert clock() - start == pytest.approx(1.0)  # only the one slot it was queued for
