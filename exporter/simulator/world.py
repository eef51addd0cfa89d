"""The simulated editing tasks: who exists, and what each one looks like at a given moment.

Every task gets a fixed schedule when it is created (wait, process, end with an outcome), so its
status, progress and ``end_time`` at time ``t`` are a function of that schedule and ``t`` alone.
A listing at ``t`` is therefore a pure function of the seed, the start time and ``t``: cheap to
compute, deterministic, and exactly what the tests compare the exporter's output against.

Tasks come from three sources, each drawing from its own random stream so that one never shifts
another: the population that exists at start (spread over ``history``), arrivals at
``arrival_rate`` per second after start, and tasks added on demand (``add_task``, used to make
listings drift while a client pages through them).
"""

from __future__ import annotations

import math
import random
import sys
import threading
import time
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from exporter.config import ConfigError
from exporter.tasks import CANCEL, FAILED, KNOWN_STATUSES, PROCESSING, SUCCEED, WAITING, Task

_MAX_PROCESSING_SECONDS = 86400
# A share of cancellations happen before processing starts (the user gives up on a queued task).
_CANCEL_WHILE_WAITING = 0.4


@dataclass(frozen=True)
class WorldSettings:
    """What the simulated project looks like. Shares need not sum to 1; they are weights."""

    tasks: int = 1000  # tasks that exist at start
    seed: int = 0
    arrival_rate: float = 0.0  # new tasks per second after start
    succeed_share: float = 0.85
    failed_share: float = 0.10
    cancel_share: float = 0.05
    wait_mean: float = 20.0  # seconds in WAITING, exponentially distributed
    duration_median: float = 120.0  # seconds of PROCESSING, log-normally distributed
    duration_sigma: float = 0.8
    history: float = 3600.0  # the start population was created over this many seconds before start
    frozen: bool = False  # the clock stands still at start: every listing is identical

    def __post_init__(self) -> None:
        if self.tasks < 0:
            raise ConfigError("--tasks must be 0 or more")
        if self.arrival_rate < 0 or not math.isfinite(self.arrival_rate):
            raise ConfigError("--arrival-rate must be 0 or a positive number of tasks per second")
        shares = (self.succeed_share, self.failed_share, self.cancel_share)
        if any(share < 0 or not math.isfinite(share) for share in shares) or sum(shares) <= 0:
            raise ConfigError(
                "--succeed-share, --failed-share and --cancel-share must be >= 0 with a positive sum"
            )
        if self.wait_mean < 0 or not math.isfinite(self.wait_mean):
            raise ConfigError("--wait-mean must be 0 or more seconds")
        if self.duration_median < 1 or not math.isfinite(self.duration_median):
            raise ConfigError("--duration-median must be at least 1s")
        if not 0 <= self.duration_sigma <= 5:
            raise ConfigError("--duration-sigma must be between 0 and 5")
        if self.history < 0 or not math.isfinite(self.history):
            raise ConfigError("--history must be 0 or more seconds")


def format_time(seconds: int) -> str:
    """RFC 3339 in UTC, as the API writes it: ``2020-09-01T18:50:20Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


class ScheduledTask:
    """One task and its whole future. Times are whole seconds since the epoch, as the API has them.

    ``started`` is ``None`` for a task cancelled while it was still waiting.
    """

    __slots__ = (
        "_final_record",
        "asset_id",
        "created",
        "end_progress",
        "ended",
        "outcome",
        "planned",
        "serial",
        "started",
        "task_id",
    )

    def __init__(
        self,
        *,
        serial: int,
        task_id: str,
        asset_id: str,
        created: int,
        started: int | None,
        ended: int,
        planned: int,
        outcome: str,
        end_progress: int,
    ) -> None:
        self.serial = serial
        self.task_id = task_id
        self.asset_id = asset_id
        self.created = created
        self.started = started
        self.ended = ended
        self.planned = planned
        self.outcome = outcome
        self.end_progress = end_progress
        self._final_record: bytes | None = None

    @property
    def sort_key(self) -> tuple[int, int]:
        return (self.created, self.serial)

    def status(self, at: float) -> str:
        if at >= self.ended:
            return self.outcome
        if self.started is not None and at >= self.started:
            return PROCESSING
        return WAITING

    def progress(self, at: float) -> int:
        if at >= self.ended:
            return self.end_progress
        if self.started is None or at < self.started:
            return 0
        return min(99, int(100 * (at - self.started) / self.planned))

    def fields(self, at: float) -> dict[str, Any]:
        """The record as the API's JSON has it, in the API's key order."""
        record: dict[str, Any] = {
            "task_id": self.task_id,
            "asset_id": self.asset_id,
            "status": self.status(at),
            "progress": self.progress(at),
            "create_time": format_time(self.created),
        }
        if at >= self.ended:
            record["end_time"] = format_time(self.ended)
        return record

    def record(self, at: float) -> bytes:
        """The record's JSON. A finished task never changes, so its bytes are rendered once."""
        if at >= self.ended:
            cached = self._final_record
            if cached is None:
                cached = self._final_record = self._render(at)
            return cached
        return self._render(at)

    def _render(self, at: float) -> bytes:
        # Ids are hex and statuses and times are plain ASCII: nothing here needs JSON escaping.
        end = f',"end_time":"{format_time(self.ended)}"' if at >= self.ended else ""
        return (
            f'{{"task_id":"{self.task_id}","asset_id":"{self.asset_id}","status":"{self.status(at)}",'
            f'"progress":{self.progress(at)},"create_time":"{format_time(self.created)}"{end}}}'
        ).encode()

    def as_task(self, at: float) -> Task:
        """The record as ``exporter.tasks`` parses it: the ground truth a test compares with."""
        ended = float(self.ended) if at >= self.ended else None
        return Task(
            self.task_id, self.asset_id, self.status(at), self.progress(at), float(self.created), ended
        )


class _Scheduler:
    """Draws task schedules from one random stream."""

    def __init__(self, settings: WorldSettings, rng: random.Random) -> None:
        self._settings = settings
        self._rng = rng
        total = settings.succeed_share + settings.failed_share + settings.cancel_share
        self._succeed_below = settings.succeed_share / total
        self._failed_below = (settings.succeed_share + settings.failed_share) / total

    def schedule(self, serial: int, created: int) -> ScheduledTask:
        rng, settings = self._rng, self._settings
        task_id = f"{rng.getrandbits(128):032x}"
        asset_id = f"{rng.getrandbits(128):032x}"
        wait = int(rng.expovariate(1.0 / settings.wait_mean)) if settings.wait_mean > 0 else 0
        planned = rng.lognormvariate(math.log(settings.duration_median), settings.duration_sigma)
        planned_seconds = max(1, min(_MAX_PROCESSING_SECONDS, round(planned)))
        roll = rng.random()
        stop_at = rng.uniform(0.05, 0.95)  # where a failure or cancellation interrupts the work
        waiting_cancel = rng.random() < _CANCEL_WHILE_WAITING
        started: int | None = created + wait
        if roll < self._succeed_below:
            outcome, ended, end_progress = SUCCEED, created + wait + planned_seconds, 100
        elif roll < self._failed_below or not waiting_cancel:
            outcome = FAILED if roll < self._failed_below else CANCEL
            run = max(1, int(planned_seconds * stop_at))
            ended = created + wait + run
            end_progress = min(99, int(100 * run / planned_seconds))
        else:
            outcome, started, end_progress = CANCEL, None, 0
            ended = created + int(wait * stop_at)
        return ScheduledTask(
            serial=serial,
            task_id=task_id,
            asset_id=asset_id,
            created=created,
            started=started,
            ended=ended,
            planned=planned_seconds,
            outcome=outcome,
            end_progress=end_progress,
        )


class World:
    """All tasks of the simulated project, ordered newest first as the simulator lists them.

    ``clock`` is read by ``now()`` only; every other method takes the moment explicitly (``at``),
    defaulting to ``now()``, so tests can ask about any time they like.
    """

    def __init__(
        self, settings: WorldSettings, *, start: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.settings = settings
        self.start = float(start)
        self._clock = clock
        self._lock = threading.Lock()
        self._tasks: list[ScheduledTask] = []
        self._keys: list[tuple[int, int]] = []  # sort keys of _tasks, oldest first, for bisect
        seeds = random.Random(settings.seed)
        initial = _Scheduler(settings, random.Random(seeds.getrandbits(64)))
        self._arrivals = _Scheduler(settings, random.Random(seeds.getrandbits(64)))
        self._arrival_clock = random.Random(seeds.getrandbits(64))
        self._added = _Scheduler(settings, random.Random(seeds.getrandbits(64)))
        self._arrival_serial = settings.tasks
        # Tasks added on demand sort before arrivals created in the same second.
        self._added_serial = -1
        self._next_arrival = self._draw_arrival(self.start)

        first = int(self.start - settings.history)
        created = sorted(int(seeds.uniform(first, self.start)) for _ in range(settings.tasks))
        for serial, moment in enumerate(created):
            task = initial.schedule(serial, moment)
            self._tasks.append(task)
            self._keys.append(task.sort_key)

    def now(self) -> float:
        """The world's current time: the clock, or the start time for a frozen world."""
        return self.start if self.settings.frozen else self._clock()

    def page(self, offset: int, limit: int, at: float | None = None) -> tuple[int, list[ScheduledTask]]:
        """``(total, tasks)`` of one page, newest first."""
        moment = self.now() if at is None else at
        with self._lock:
            visible = self._visible(moment)
            end = visible - offset
            if end <= 0:
                return visible, []
            chosen = self._tasks[max(0, end - limit) : end]
        chosen.reverse()
        return visible, chosen

    def find(self, task_id: str, at: float | None = None) -> ScheduledTask | None:
        moment = self.now() if at is None else at
        with self._lock:
            visible = self._visible(moment)
            for task in self._tasks[:visible]:
                if task.task_id == task_id:
                    return task
        return None

    def records(self, at: float | None = None) -> list[ScheduledTask]:
        """Every task that exists at ``at``, newest first."""
        moment = self.now() if at is None else at
        return self.page(0, sys.maxsize, moment)[1]

    def tasks(self, at: float | None = None) -> list[Task]:
        """The ground truth at ``at``: every task as the exporter would parse it, newest first."""
        moment = self.now() if at is None else at
        return [task.as_task(moment) for task in self.records(moment)]

    def total(self, at: float | None = None) -> int:
        moment = self.now() if at is None else at
        with self._lock:
            return self._visible(moment)

    def counts(self, at: float | None = None) -> dict[str, int]:
        """Tasks per status at ``at``; every known status is present, 0 included."""
        moment = self.now() if at is None else at
        counts = dict.fromkeys(KNOWN_STATUSES, 0)
        for task in self.records(moment):
            counts[task.status(moment)] += 1
        return counts

    def finished_between(self, after: float, until: float) -> list[Task]:
        """Tasks whose ``end_time`` lies in ``(after, until]``, as they look once finished."""
        return [task.as_task(until) for task in self.records(until) if after < task.ended <= until]

    def add_task(self, at: float | None = None) -> ScheduledTask:
        """Create a task at ``at`` outside the arrival schedule (a listing that drifts)."""
        moment = self.now() if at is None else at
        with self._lock:
            self._materialize(moment)
            task = self._added.schedule(self._added_serial, math.floor(moment))
            self._added_serial -= 1
            self._insert(task)
        return task

    def _visible(self, moment: float) -> int:
        self._materialize(moment)
        return bisect_right(self._keys, (math.floor(moment), sys.maxsize))

    def _materialize(self, moment: float) -> None:
        """Create the scheduled arrivals up to ``moment`` (arrivals are drawn lazily, in order)."""
        while self._next_arrival <= moment:
            task = self._arrivals.schedule(self._arrival_serial, math.floor(self._next_arrival))
            self._arrival_serial += 1
            self._insert(task)
            self._next_arrival = self._draw_arrival(self._next_arrival)

    def _draw_arrival(self, after: float) -> float:
        rate = self.settings.arrival_rate
        return after + self._arrival_clock.expovariate(rate) if rate > 0 else math.inf

    def _insert(self, task: ScheduledTask) -> None:
        key = task.sort_key
        if not self._keys or key > self._keys[-1]:
            self._tasks.append(task)
            self._keys.append(key)
            return
        position = bisect_right(self._keys, key)
        self._keys.insert(position, key)
        self._tasks.insert(position, task)
