"""The ways the simulated API misbehaves on purpose, and the dice that decide when.

``FaultSettings`` says how often; ``FaultInjector`` decides for each request, from a random stream
seeded like the world, so a test that sets a share gets the same sequence every run. Faults apply
to the task listing only: the IAM endpoints always answer straight. ``RequestQuota`` is an
account's request rate, shared by its projects.
"""

from __future__ import annotations

import json
import math
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from exporter.config import ConfigError
from exporter.simulator.world import ScheduledTask


@dataclass(frozen=True)
class FaultSettings:
    latency: float = 0.0  # seconds added to every listing answer
    latency_jitter: float = 0.0  # up to this many seconds more, uniformly drawn
    rate_limit: float = 0.0  # listing requests per second before 429 APIGW.0308; 0 means no limit
    error_rate: float = 0.0  # share of listing requests answered 500 APIGW.0601 or 503 APIGW.0613
    reset_rate: float = 0.0  # share of listing requests whose connection is reset without an answer
    malformed_body_rate: float = 0.0  # share of 200 answers whose body is not the documented JSON
    malformed_record_rate: float = 0.0  # share of records, in 200 answers, that are not valid records
    drift: int = 0  # tasks created after each page is served, shifting the pages after it

    def __post_init__(self) -> None:
        for option, value in (("--latency", self.latency), ("--latency-jitter", self.latency_jitter)):
            if value < 0 or not math.isfinite(value):
                raise ConfigError(f"{option} must be 0 or more seconds")
        if self.rate_limit < 0 or not math.isfinite(self.rate_limit):
            raise ConfigError("--rate-limit must be 0 (no limit) or a positive number of requests per second")
        shares = (
            ("--error-rate", self.error_rate),
            ("--reset-rate", self.reset_rate),
            ("--malformed-body-rate", self.malformed_body_rate),
            ("--malformed-record-rate", self.malformed_record_rate),
        )
        for option, share in shares:
            if not 0 <= share <= 1:
                raise ConfigError(f"{option} must be a share between 0 and 1")
        if self.drift < 0:
            raise ConfigError("--drift must be 0 or more tasks per page")


class RequestQuota:
    """A token bucket: ``rate`` requests per second, with a burst of one second's worth.

    The real gateway counts calls per tenant per time window and answers 429 beyond it; a bucket
    gives the same answer for a client that goes too fast, without window-edge artefacts.
    """

    def __init__(self, rate: float, clock: Callable[[], float]) -> None:
        self.rate = rate
        self._clock = clock
        self._capacity = max(1.0, rate)
        self._tokens = self._capacity
        self._last = clock()
        self._lock = threading.Lock()

    def take(self) -> bool:
        if self.rate <= 0:
            return True
        with self._lock:
            now = self._clock()
            self._tokens = min(self._capacity, self._tokens + max(0.0, now - self._last) * self.rate)
            self._last = now
            if self._tokens >= 1:
                self._tokens -= 1
                return True
            return False


# Bodies a broken proxy or backend might send with a 200: cut-off JSON, an HTML page, and JSON of
# the wrong shape. Each must end a listing as a bad response, never as data.
_HTML_PAGE = b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"


class FaultInjector:
    """Rolls the dice for one request at a time; safe to share between request threads."""

    def __init__(self, settings: FaultSettings, *, seed: int) -> None:
        self.settings = settings
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def _roll(self) -> float:
        with self._lock:
            return self._rng.random()

    def delay(self) -> float:
        settings = self.settings
        if settings.latency_jitter <= 0:
            return settings.latency
        return settings.latency + self._roll() * settings.latency_jitter

    def resets(self) -> bool:
        return self.settings.reset_rate > 0 and self._roll() < self.settings.reset_rate

    def server_error(self) -> int | None:
        """500 or 503 (in equal shares) for a request chosen to fail, else ``None``."""
        if self.settings.error_rate <= 0:
            return None
        with self._lock:
            if self._rng.random() >= self.settings.error_rate:
                return None
            return 500 if self._rng.random() < 0.5 else 503

    def corrupt_body(self, body: bytes) -> tuple[bytes, str] | None:
        """``(body, content type)`` replacing a good listing body, or ``None`` to leave it be."""
        if self.settings.malformed_body_rate <= 0:
            return None
        with self._lock:
            if self._rng.random() >= self.settings.malformed_body_rate:
                return None
            kind = self._rng.randrange(3)
        if kind == 0:
            return body[: len(body) // 2], "application/json"
        if kind == 1:
            return _HTML_PAGE, "text/html"
        return b'{"total":"unknown","tasks":{}}', "application/json"

    def records(self, tasks: Sequence[ScheduledTask], at: float) -> list[bytes]:
        """The tasks' records, some of them broken as ``malformed_record_rate`` says."""
        rate = self.settings.malformed_record_rate
        if rate <= 0:
            return [task.record(at) for task in tasks]
        out = []
        for task in tasks:
            with self._lock:
                broken = self._rng.random() < rate
                kind = self._rng.randrange(4) if broken else 0
            out.append(_broken_record(task, at, kind) if broken else task.record(at))
        return out


def _broken_record(task: ScheduledTask, at: float, kind: int) -> bytes:
    """A record the exporter must skip and count: no id, a non-integer progress, a time that is not
    RFC 3339, or not an object at all."""
    fields = task.fields(at)
    if kind == 0:
        del fields["task_id"]
    elif kind == 1:
        fields["progress"] = f"{fields['progress']}%"
    elif kind == 2:
        fields["create_time"] = fields["create_time"].replace("-", "/").replace("T", " ").rstrip("Z")
    else:
        return json.dumps(task.task_id).encode()
    return json.dumps(fields, separators=(",", ":")).encode()
