"""Counts and latencies of every HTTP attempt against the API: the quota bill.

``CountingTransport`` sits under both HTTP clients (VOD and IAM), so every attempt is counted in
this one place: retries, the resend after a token renewal, and attempts that got no answer. The
collector renders it as ``huaweicloud_vod_api_requests_total`` and
``huaweicloud_vod_api_request_duration_seconds``.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

import httpx

from exporter.histogram import BucketCounts, HistogramSnapshot

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# A request extension (``extensions={OPERATION_EXTENSION: "iam_projects"}``) that counts one
# request under another operation than its client's, so one IAM client serves several IAM calls.
OPERATION_EXTENSION = "vod_exporter.operation"


class ApiRequestStats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[tuple[str, str]] = Counter()
        self._latencies: dict[str, BucketCounts] = {}

    def observe(self, operation: str, code: str, seconds: float) -> None:
        """``code`` is the HTTP status, or ``network_error`` / ``timeout`` when there was none."""
        with self._lock:
            self._requests[(operation, code)] += 1
            if operation not in self._latencies:
                self._latencies[operation] = BucketCounts(LATENCY_BUCKETS)
            self._latencies[operation].observe(seconds)

    def requests(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(self._requests)

    def latencies(self) -> dict[str, HistogramSnapshot]:
        with self._lock:
            return {operation: counts.snapshot() for operation, counts in self._latencies.items()}


class CountingTransport(httpx.BaseTransport):
    """Records each request that passes through: its status, or ``timeout`` / ``network_error``,
    under ``operation`` or the one the request names in ``OPERATION_EXTENSION``.

    Latency is measured to the response headers; the body is read by the caller.
    """

    def __init__(
        self,
        inner: httpx.BaseTransport,
        stats: ApiRequestStats,
        operation: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._inner = inner
        self._stats = stats
        self._operation = operation
        self._clock = clock

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        operation = request.extensions.get(OPERATION_EXTENSION, self._operation)
        started = self._clock()
        try:
            response = self._inner.handle_request(request)
        except httpx.TimeoutException:
            self._stats.observe(operation, "timeout", self._clock() - started)
            raise
        except httpx.TransportError:
            self._stats.observe(operation, "network_error", self._clock() - started)
            raise
        self._stats.observe(operation, str(response.status_code), self._clock() - started)
        return response

    def close(self) -> None:
        self._inner.close()
