"""Histogram bookkeeping shared by API latency and finished-task durations: counts per bucket
(``le`` is inclusive, as Prometheus has it) and a sum. Callers hold their own lock."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class HistogramSnapshot:
    bounds: tuple[float, ...]
    bucket_counts: tuple[int, ...]  # per bucket, not cumulative; the last one is +Inf
    total: float

    @property
    def count(self) -> int:
        return sum(self.bucket_counts)


class BucketCounts:
    def __init__(self, bounds: Sequence[float]) -> None:
        self._bounds = tuple(bounds)
        self._counts = [0] * (len(self._bounds) + 1)
        self._total = 0.0

    def observe(self, value: float) -> None:
        self._counts[bisect.bisect_left(self._bounds, value)] += 1
        self._total += value

    def snapshot(self) -> HistogramSnapshot:
        return HistogramSnapshot(self._bounds, tuple(self._counts), self._total)
