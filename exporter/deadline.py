"""When a listing must be done: one type from the coordinator down to the rate limiter.

A listing's deadline is a moment on the monotonic clock that its owner may move while the listing
runs: a scrape that joins a listing in flight with a later deadline extends it, and a shutdown
brings it forward. So nothing under it keeps a copy: the strategy, the fold's rounds, the client's
workers and the rate limiter all call it for the moment as it is now. A scrape's own deadline is a
fixed moment (``Deadline.at``) that joins the listing's.
"""

from __future__ import annotations

from exporter.failures import ListingFailed


class DeadlineExceeded(ListingFailed):
    """The listing could not finish before its deadline."""

    reason = "timeout"


class Deadline:
    __slots__ = ("_at",)

    def __init__(self, at: float) -> None:
        self._at = at

    def __call__(self) -> float:
        """The moment, on the monotonic clock, as it is now."""
        return self._at

    def __repr__(self) -> str:
        return f"Deadline({self():.3f})"

    def extend_to(self, at: float) -> None:
        """Later, never sooner: a scrape that joins with a later deadline."""
        self._at = max(self._at, at)

    def bring_forward(self, at: float) -> None:
        """Sooner, never later: a shutdown."""
        self._at = min(self._at, at)

    def sooner(self, at: float) -> Deadline:
        """This deadline, but never later than ``at``: it still follows every move of this one."""
        return _Sooner(self, at)


class _Sooner(Deadline):
    __slots__ = ("_outer",)

    def __init__(self, outer: Deadline, at: float) -> None:
        super().__init__(at)
        self._outer = outer

    def __call__(self) -> float:
        return min(self._outer(), self._at)
