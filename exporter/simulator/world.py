"""The simulated editing tasks: who exists, and what each one looks like at a given moment.

Every task gets a fixed schedule when it is created (wait, process, end with an outcome), so its
status, progress and ``end_time`` at time ``t`` are a function of that schedule and ``t`` alone.
A listing at ``t`` is therefore a pure function of the seed, the start time, the calls made (added
and deleted tasks, order changes) and ``t``: cheap to compute, deterministic, and exactly what the
tests compare the exporter's output against.

Tasks come from three sources, each drawing from its own random stream so that one never shifts
another: the population that exists at start (spread over ``history``), arrivals at
``arrival_rate`` per second after start, and tasks added on demand (``add_task``, used to make
listings drift while a client pages through them). Both the history and the arrivals come in bursts
of tasks that share one ``create_time`` second (``burst_size`` on average), as a pipeline that
submits a batch does.

Histories of a million tasks are held compactly: a task is its *serial* (its place in creation
order) and a row in a few typed columns, 26 bytes, instead of an object. Its ids are computed
from the serial by an invertible mix, so a ``task_id`` query finds the serial in O(1). A task
object (``ScheduledTask``) is made only for the records a page or a query returns.

Listing order (``order``, changeable with ``set_order``), over the tasks that exist at ``t``:

- ``newest-first``: ``create_time`` descending;
- ``oldest-first``: ``create_time`` ascending;
- ``unordered``: grouped by the first two hex digits of ``task_id`` (00 to ff), oldest first
  within a group: stable from one call to the next, but not by ``create_time``, and new tasks land
  all through the listing.

Ties on ``create_time`` are common (a burst shares a second). With ``tie_order`` ``stable`` they are
broken by creation order: ``oldest-first`` lists the first-created of a second first, ``newest-first``
is its exact reverse. With ``shuffled``, as a real API may do, each answer (each ``page`` call) lists
every second's tasks in a fresh order, drawn from a stream seeded by ``seed`` and advanced once per
answer, so a run is repeatable; the seconds themselves stay in ``order``. Only the seconds a page
touches are shuffled, so it costs the same in a million-task world. ``unordered`` has no ties to
reorder. The ground truth (``records``, ``tasks``, ``position``) keeps the stable order.

A task exists at ``t`` from its ``create_time`` second on, unless it was purged (``purge_after``:
created more than that many seconds before ``t``) or deleted (``delete_task``) by then.
"""

from __future__ import annotations

import math
import random
import sys
import threading
import time
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from exporter.config import ConfigError
from exporter.tasks import CANCEL, FAILED, KNOWN_STATUSES, PROCESSING, SUCCEED, WAITING, Task

NEWEST_FIRST = "newest-first"
OLDEST_FIRST = "oldest-first"
UNORDERED = "unordered"
ORDERS = (NEWEST_FIRST, OLDEST_FIRST, UNORDERED)
STABLE = "stable"
SHUFFLED = "shuffled"
TIE_ORDERS = (STABLE, SHUFFLED)

_MAX_PROCESSING_SECONDS = 86400
_MAX_WAIT_SECONDS = 2**31 - 1  # the wait column is 32-bit
# A share of cancellations happen before processing starts (the user gives up on a queued task).
_CANCEL_WHILE_WAITING = 0.4
# The end of a task that never ends: far beyond any moment anyone asks about.
NEVER = 2**62
# Stuck tasks report progress as if they needed a week, so it creeps (a point every 1.7 h) and
# stops at 99: open for days, yet still moving now and then, as a task stuck in a retry loop does.
_STUCK_PLANNED_SECONDS = 7 * 86400
_OUTCOMES = (SUCCEED, FAILED, CANCEL)
_NOT_STARTED = -1  # in the wait column: cancelled while still waiting


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
    frozen: bool = False  # the clock stands still at start: every listing is the same (ties aside)
    order: str = NEWEST_FIRST  # one of ORDERS
    burst_size: float = 1.0  # mean tasks created in the same second, geometrically distributed
    stuck_tasks: int = 0  # tasks of the start population stuck in PROCESSING, spread over history
    stuck_ends_after: float = 0.0  # seconds after start when stuck tasks succeed; 0: never
    purge_after: float = 0.0  # tasks created longer ago than this are gone; 0: never
    tie_order: str = STABLE  # one of TIE_ORDERS: tasks sharing a second by creation, or shuffled per answer

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
        _check_order(self.order)
        if not 1 <= self.burst_size <= 10_000:
            raise ConfigError("--burst-size must be between 1 and 10000 tasks")
        if not 0 <= self.stuck_tasks <= self.tasks:
            raise ConfigError("--stuck-tasks must be between 0 and --tasks")
        if self.stuck_ends_after < 0 or not math.isfinite(self.stuck_ends_after):
            raise ConfigError("--stuck-ends-after must be 0 (never) or more seconds")
        if self.purge_after < 0 or not math.isfinite(self.purge_after):
            raise ConfigError("--purge-after must be 0 (never) or more seconds")
        if self.tie_order not in TIE_ORDERS:
            raise ConfigError(f"--tie-order must be one of {', '.join(TIE_ORDERS)}, not {self.tie_order!r}")


def _check_order(order: str) -> None:
    if order not in ORDERS:
        raise ConfigError(f"--order must be one of {', '.join(ORDERS)}, not {order!r}")


@lru_cache(maxsize=8192)
def format_time(seconds: int) -> str:
    """RFC 3339 in UTC, as the API writes it: ``2020-09-01T18:50:20Z``.

    Cached: a page's tasks share a few seconds, and a burst shares one."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


class ScheduledTask:
    """One task and its whole future. Times are whole seconds since the epoch, as the API has them.

    ``started`` is ``None`` for a task cancelled while it was still waiting; ``ended`` is ``NEVER``
    for a stuck task that never ends. Made on demand from the world's columns: a view, not state.
    """

    __slots__ = (
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
        """The record's JSON. Ids are hex and statuses and times are plain ASCII: nothing here
        needs JSON escaping."""
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


# --- ids: an invertible 64-bit mix of the serial ---------------------------------------------------

_MASK = 2**64 - 1
_MIX_1 = 0xBF58476D1CE4E5B9  # splitmix64's finaliser: odd multipliers, so each step is invertible
_MIX_2 = 0x94D049BB133111EB
_UNMIX_1 = pow(_MIX_1, -1, 2**64)
_UNMIX_2 = pow(_MIX_2, -1, 2**64)


def _mix(value: int) -> int:
    value ^= value >> 30
    value = (value * _MIX_1) & _MASK
    value ^= value >> 27
    value = (value * _MIX_2) & _MASK
    return value ^ (value >> 31)


def _unshift(value: int, shift: int) -> int:
    """The inverse of ``x ^ (x >> shift)``: each round recovers ``shift`` more top bits."""
    result = value
    for _ in range(64 // shift):
        result = value ^ (result >> shift)
    return result


def _unmix(value: int) -> int:
    value = _unshift(value, 31)
    value = (value * _UNMIX_2) & _MASK
    value = _unshift(value, 27)
    value = (value * _UNMIX_1) & _MASK
    return _unshift(value, 30)


class _Ids:
    """A task's ``task_id`` and ``asset_id`` from its serial, and the serial back from a ``task_id``.

    The id's first 16 hex digits are a keyed bijection of the serial, so they decode to it; the
    other 16 (and the asset id) only make the ids look as random as the real API's."""

    def __init__(self, rng: random.Random) -> None:
        self._keys = tuple(rng.getrandbits(64) for _ in range(4))

    def head(self, serial: int) -> int:
        return _mix(serial ^ self._keys[0])

    def task_id(self, serial: int) -> str:
        return f"{self.head(serial):016x}{_mix(serial ^ self._keys[1]):016x}"

    def asset_id(self, serial: int) -> str:
        return f"{_mix(serial ^ self._keys[2]):016x}{_mix(serial ^ self._keys[3]):016x}"

    def serial(self, task_id: str) -> int | None:
        """The serial whose id this is, or ``None``: not checked against the tasks that exist."""
        if len(task_id) != 32:
            return None
        try:
            head = int(task_id[:16], 16)
        except ValueError:
            return None
        serial = _unmix(head & _MASK) ^ self._keys[0]
        # int() accepts signs, "0x" and "_"; only the exact spelling we hand out is a match.
        return serial if self.task_id(serial) == task_id else None


# --- schedules ---------------------------------------------------------------------------------


class _Scheduler:
    """Draws task schedules from one random stream."""

    def __init__(self, settings: WorldSettings, rng: random.Random) -> None:
        self._settings = settings
        self._rng = rng
        total = settings.succeed_share + settings.failed_share + settings.cancel_share
        self._succeed_below = settings.succeed_share / total
        self._failed_below = (settings.succeed_share + settings.failed_share) / total

    def schedule(self, created: int) -> tuple[int, int, int, int, int]:
        """``(wait, planned, ended, outcome code, end progress)``; wait is ``_NOT_STARTED`` for a
        task cancelled while waiting."""
        rng, settings = self._rng, self._settings
        wait = int(rng.expovariate(1.0 / settings.wait_mean)) if settings.wait_mean > 0 else 0
        wait = min(wait, _MAX_WAIT_SECONDS)
        planned = rng.lognormvariate(math.log(settings.duration_median), settings.duration_sigma)
        planned_seconds = max(1, min(_MAX_PROCESSING_SECONDS, round(planned)))
        roll = rng.random()
        stop_at = rng.uniform(0.05, 0.95)  # where a failure or cancellation interrupts the work
        waiting_cancel = rng.random() < _CANCEL_WHILE_WAITING
        if roll < self._succeed_below:
            return wait, planned_seconds, created + wait + planned_seconds, 0, 100
        if roll < self._failed_below or not waiting_cancel:
            run = max(1, int(planned_seconds * stop_at))
            outcome = 1 if roll < self._failed_below else 2
            return (
                wait,
                planned_seconds,
                created + wait + run,
                outcome,
                min(99, int(100 * run / planned_seconds)),
            )
        return _NOT_STARTED, planned_seconds, created + int(wait * stop_at), 2, 0


def _burst_size(rng: random.Random, mean: float) -> int:
    """Tasks in one burst: geometric on 1, 2, ... with this mean."""
    if mean <= 1:
        return 1
    return 1 + int(math.log(1.0 - rng.random()) / math.log(1.0 - 1.0 / mean))


def _history(settings: WorldSettings, start: float, rng: random.Random) -> array[int]:
    """The start population's create times, ascending, in bursts spread uniformly over history.

    Burst times are drawn already sorted (uniform order statistics, from the last down), so no
    list of a million numbers is ever built or sorted."""
    sizes = array("q")
    remaining = settings.tasks
    while remaining > 0:
        size = min(remaining, _burst_size(rng, settings.burst_size))
        sizes.append(size)
        remaining -= size
    created = array("q", bytes(8 * settings.tasks))
    first = int(start - settings.history)
    span = start - first
    position = settings.tasks
    fraction = 1.0
    for bursts_left in range(len(sizes), 0, -1):
        fraction *= (1.0 - rng.random()) ** (1.0 / bursts_left)
        moment = int(first + fraction * span)
        size = sizes[bursts_left - 1]
        for index in range(position - size, position):
            created[index] = moment
        position -= size
    return created


# --- the world -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Window:
    """The tasks that exist at one moment: serials ``begin <= s < end``, except ``deleted``."""

    begin: int
    end: int
    deleted: tuple[int, ...]  # ascending, all within [begin, end)

    @property
    def size(self) -> int:
        return self.end - self.begin - len(self.deleted)

    def contains(self, serial: int) -> bool:
        return self.begin <= serial < self.end and serial not in self.deleted


def _nth_live(run: Sequence[int], index: int, deleted: Sequence[int]) -> int:
    """The place in ``run`` (ascending serials) of the live serial ``index`` places after
    ``run[index]``'s start, skipping ``deleted`` (ascending serials within the run)."""
    for gone in deleted:
        if index < len(run) and gone <= run[index]:
            index += 1
        else:
            break
    return index


class World:
    """All tasks of the simulated project, listed in the order ``order`` says.

    ``clock`` is read by ``now()`` only; every other method takes the moment explicitly (``at``),
    defaulting to ``now()``, so tests can ask about any time they like. The ground-truth queries
    (``total``, ``counts``, ``open_tasks``, ``find``) cost O(open tasks) plus a C-speed count,
    not a Python loop over the history, for moments from ``start`` on.
    """

    def __init__(
        self, settings: WorldSettings, *, start: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.settings = settings
        self.start = float(start)
        self._clock = clock
        self._lock = threading.Lock()
        self._order = settings.order
        # The columns, indexed by serial (creation order, which is also create_time order), made
        # at their final size for the start population: growing them would leave heap holes.
        size = settings.tasks
        self._ended = array("q", bytes(8 * size))
        self._wait = array("i", bytes(4 * size))
        self._planned = array("i", bytes(4 * size))
        self._outcome = bytearray(size)
        self._end_progress = bytearray(size)
        # Tasks that end after start, by end time: the only ones that can be open at or after
        # start, so open tasks are a suffix of this index (found by bisect, not by a scan).
        self._open_ends = array("q")
        self._open_serials = array("q")
        self._deleted: dict[int, float] = {}  # serial: when
        self._groups: list[array[int]] | None = None  # serials by task_id group, for ``unordered``
        # Its own stream, seeded apart from the others, so shuffling ties shifts nothing else.
        self._tie_stream = (
            random.Random(f"tie-order:{settings.seed}") if settings.tie_order == SHUFFLED else None
        )

        seeds = random.Random(settings.seed)
        initial = _Scheduler(settings, random.Random(seeds.getrandbits(64)))
        self._arrivals = _Scheduler(settings, random.Random(seeds.getrandbits(64)))
        self._arrival_clock = random.Random(seeds.getrandbits(64))
        self._added = _Scheduler(settings, random.Random(seeds.getrandbits(64)))
        self._ids = _Ids(random.Random(seeds.getrandbits(64)))
        # Arrivals are visible from their create_time second, so the first one comes in the
        # second after start: at start exactly ``tasks`` tasks exist.
        self._next_burst = self._draw_burst(math.floor(self.start) + 1.0)

        self._created = _history(settings, self.start, seeds)
        stuck = self._stuck_serials()
        opened: list[tuple[int, int]] = []
        for serial, moment in enumerate(self._created):
            wait, planned, ended, outcome, end_progress = initial.schedule(moment)
            if serial in stuck:
                wait = max(0, min(wait, int(self.start) - moment))
                planned, outcome, end_progress = _STUCK_PLANNED_SECONDS, 0, 100
                ended = (
                    math.floor(self.start + settings.stuck_ends_after) if settings.stuck_ends_after else NEVER
                )
            self._wait[serial], self._planned[serial], self._ended[serial] = wait, planned, ended
            self._outcome[serial], self._end_progress[serial] = outcome, end_progress
            if ended > self.start:
                opened.append((ended, serial))
        opened.sort()
        self._open_ends.extend(ended for ended, _ in opened)
        self._open_serials.extend(serial for _, serial in opened)
        if self._order == UNORDERED:
            self._build_groups()

    # --- settings that change while running ----------------------------------------------------

    @property
    def order(self) -> str:
        return self._order

    def set_order(self, order: str) -> None:
        """List in ``order`` from now on (one of ``ORDERS``): the order breaking mid-run."""
        _check_order(order)
        with self._lock:
            if order == UNORDERED and self._groups is None:
                self._build_groups()
            self._order = order

    def now(self) -> float:
        """The world's current time: the clock, or the start time for a frozen world."""
        return self.start if self.settings.frozen else self._clock()

    # --- what the API answers ----------------------------------------------------------------------

    def page(self, offset: int, limit: int, at: float | None = None) -> tuple[int, list[ScheduledTask]]:
        """``(total, tasks)`` of one page, in the world's order: one answer of the API."""
        moment = self.now() if at is None else at
        return self._page(offset, limit, moment, self._tie_stream)

    def find(self, task_id: str, at: float | None = None) -> ScheduledTask | None:
        """The task with this id if it exists at ``at``, in O(1): what a ``task_id`` query shows."""
        moment = self.now() if at is None else at
        with self._lock:
            serial = self._live_serial(task_id, moment)
            return None if serial is None else self._task(serial)

    def position(self, task_id: str, at: float | None = None) -> int | None:
        """Where the task is in a listing at ``at`` (its offset), or ``None`` if it does not exist."""
        moment = self.now() if at is None else at
        with self._lock:
            serial = self._live_serial(task_id, moment)
            if serial is None:
                return None
            window = self._window(moment)
            rank = serial - window.begin - bisect_left(window.deleted, serial)
            if self._order == OLDEST_FIRST:
                return rank
            if self._order == NEWEST_FIRST:
                return window.size - 1 - rank
            groups = self._groups
            assert groups is not None
            wanted = self._ids.head(serial) >> 56
            before = sum(count for _, _, count, _ in self._group_spans(window)[:wanted])
            group = groups[wanted]
            deleted_before = sum(
                1 for gone in window.deleted if gone < serial and self._group(gone) == wanted
            )
            return before + bisect_left(group, serial) - bisect_left(group, window.begin) - deleted_before

    # --- ground truth ------------------------------------------------------------------------------

    def records(self, at: float | None = None) -> list[ScheduledTask]:
        """Every task that exists at ``at``, in the world's order."""
        moment = self.now() if at is None else at
        return self._page(0, sys.maxsize, moment, None)[1]

    def tasks(self, at: float | None = None) -> list[Task]:
        """The ground truth at ``at``: every task as the exporter would parse it, in listing order."""
        moment = self.now() if at is None else at
        return [task.as_task(moment) for task in self.records(moment)]

    def total(self, at: float | None = None) -> int:
        moment = self.now() if at is None else at
        with self._lock:
            return self._window(moment).size

    def counts(self, at: float | None = None) -> dict[str, int]:
        """Tasks per status at ``at``; every known status is present, 0 included."""
        moment = self.now() if at is None else at
        counts = dict.fromkeys(KNOWN_STATUSES, 0)
        with self._lock:
            window = self._window(moment)
            outcomes = self._outcome
            for code, outcome in enumerate(_OUTCOMES):
                counts[outcome] = outcomes.count(code, window.begin, window.end)
            for serial in window.deleted:
                counts[_OUTCOMES[outcomes[serial]]] -= 1
            for serial in self._open_serials_at(window, moment):
                counts[_OUTCOMES[outcomes[serial]]] -= 1
                wait = self._wait[serial]
                started = wait != _NOT_STARTED and moment >= self._created[serial] + wait
                counts[PROCESSING if started else WAITING] += 1
        return counts

    def open_tasks(self, at: float | None = None) -> list[Task]:
        """Every WAITING or PROCESSING task at ``at``, newest first, as the exporter would parse it."""
        moment = self.now() if at is None else at
        with self._lock:
            serials = sorted(self._open_serials_at(self._window(moment), moment), reverse=True)
            return [self._task(serial).as_task(moment) for serial in serials]

    def finished_between(self, after: float, until: float) -> list[Task]:
        """Tasks whose ``end_time`` lies in ``(after, until]``, as they look once finished."""
        with self._lock:
            window = self._window(until)
            if after >= self.start:
                ends = self._open_ends
                candidates: Sequence[int] = self._open_serials[
                    bisect_right(ends, after) : bisect_right(ends, until)
                ]
            else:
                candidates = range(window.begin, window.end)
            ended = self._ended
            serials = sorted(
                (s for s in candidates if after < ended[s] <= until and window.contains(s)), reverse=True
            )
            return [self._task(serial).as_task(until) for serial in serials]

    # --- changes on demand -------------------------------------------------------------------------

    def add_task(self, at: float | None = None) -> ScheduledTask:
        """Create a task at ``at`` outside the arrival schedule (a listing that drifts)."""
        moment = self.now() if at is None else at
        with self._lock:
            self._materialize(moment)
            created = math.floor(moment)
            if self._created:
                # Serials follow create_time; a late caller's task joins the newest second.
                created = max(created, self._created[-1])
            return self._task(self._append(created, self._added.schedule(created)))

    def delete_task(self, task_id: str, at: float | None = None) -> bool:
        """Delete a task from ``at`` on (it stays in answers about earlier moments). Meant for a
        handful of tasks: each deletion costs every later page a step. False if it did not exist."""
        moment = self.now() if at is None else at
        with self._lock:
            serial = self._live_serial(task_id, moment)
            if serial is None:
                return False
            self._deleted[serial] = moment
            return True

    # --- inside ------------------------------------------------------------------------------------

    def _stuck_serials(self) -> frozenset[int]:
        """Stuck tasks, spread evenly over the start population: deep in any listing order."""
        count, tasks = self.settings.stuck_tasks, self.settings.tasks
        return frozenset((2 * k + 1) * tasks // (2 * count) for k in range(count))

    def _task(self, serial: int) -> ScheduledTask:
        created, wait = self._created[serial], self._wait[serial]
        return ScheduledTask(
            serial=serial,
            task_id=self._ids.task_id(serial),
            asset_id=self._ids.asset_id(serial),
            created=created,
            started=None if wait == _NOT_STARTED else created + wait,
            ended=self._ended[serial],
            planned=self._planned[serial],
            outcome=_OUTCOMES[self._outcome[serial]],
            end_progress=self._end_progress[serial],
        )

    def _live_serial(self, task_id: str, moment: float) -> int | None:
        self._materialize(moment)
        serial = self._ids.serial(task_id)
        if serial is None or serial >= len(self._created):
            return None
        return serial if self._window(moment).contains(serial) else None

    def _window(self, moment: float) -> _Window:
        self._materialize(moment)
        created = self._created
        end = bisect_right(created, math.floor(moment))
        purge_after = self.settings.purge_after
        begin = min(end, bisect_left(created, moment - purge_after)) if purge_after > 0 else 0
        deleted = tuple(
            sorted(
                serial for serial, when in self._deleted.items() if when <= moment and begin <= serial < end
            )
        )
        return _Window(begin, end, deleted)

    def _open_serials_at(self, window: _Window, moment: float) -> list[int]:
        if moment >= self.start:
            candidates: Sequence[int] = self._open_serials[bisect_right(self._open_ends, moment) :]
        else:  # before start, the index does not cover every open task: look at them all
            ended = self._ended
            candidates = [s for s in range(window.begin, window.end) if ended[s] > moment]
        return [serial for serial in candidates if window.contains(serial)]

    def _page(
        self, offset: int, limit: int, moment: float, ties: random.Random | None
    ) -> tuple[int, list[ScheduledTask]]:
        """One page at ``moment``; ``ties``, when given, is the stream that shuffles tied seconds."""
        with self._lock:
            window = self._window(moment)
            size = window.size
            count = max(0, min(limit, size - offset))
            if count == 0:
                return size, []
            if self._order == UNORDERED:
                serials = self._grouped(window, offset, count)
            else:
                rank = offset if self._order == OLDEST_FIRST else size - offset - count
                serials = self._ascending(window, rank, count)
                if ties is not None:
                    serials = self._shuffled_ties(window, rank, serials, random.Random(ties.getrandbits(64)))
                if self._order == NEWEST_FIRST:
                    serials.reverse()
            return size, [self._task(serial) for serial in serials]

    def _shuffled_ties(self, window: _Window, rank: int, serials: list[int], rng: random.Random) -> list[int]:
        """``serials`` (live, ascending, the ``rank``-th on) with each second's tasks in a fresh order.

        A second that runs past either end of the page is shuffled whole and the page takes its
        part of that order: what a real API does when it sorts by ``create_time`` alone."""
        created, begin, end, deleted = self._created, window.begin, window.end, window.deleted
        gone = set(deleted)
        out: list[int] = []
        while len(out) < len(serials):
            second = created[serials[len(out)]]
            low = bisect_left(created, second, begin, end)
            members = [s for s in range(low, bisect_right(created, second, low, end)) if s not in gone]
            rng.shuffle(members)
            skip = rank + len(out) - (low - begin - bisect_left(deleted, low))  # page's start in it
            out.extend(members[skip : skip + len(serials) - len(out)])
        return out

    def _ascending(self, window: _Window, rank: int, count: int) -> list[int]:
        """``count`` live serials in ascending order, from the ``rank``-th (0-based) on."""
        deleted = window.deleted
        run = range(window.begin, window.end)
        serial = run[_nth_live(run, rank, deleted)]
        out: list[int] = []
        while len(out) < count:
            if serial not in deleted:
                out.append(serial)
            serial += 1
        return out

    def _group(self, serial: int) -> int:
        return self._ids.head(serial) >> 56  # the task id's first two hex digits

    def _build_groups(self) -> None:
        groups: list[array[int]] = [array("q") for _ in range(256)]
        for serial in range(len(self._created)):
            groups[self._group(serial)].append(serial)
        self._groups = groups

    def _group_spans(self, window: _Window) -> list[tuple[int, int, int, tuple[int, ...]]]:
        """Per group: ``(first index, last index + 1, live tasks, deleted serials)`` in the window."""
        groups = self._groups
        assert groups is not None
        deleted_by_group: dict[int, list[int]] = {}
        for serial in window.deleted:
            deleted_by_group.setdefault(self._group(serial), []).append(serial)
        spans = []
        for number, group in enumerate(groups):
            low, high = bisect_left(group, window.begin), bisect_left(group, window.end)
            gone = tuple(deleted_by_group.get(number, ()))
            spans.append((low, high, high - low - len(gone), gone))
        return spans

    def _grouped(self, window: _Window, offset: int, count: int) -> list[int]:
        groups = self._groups
        assert groups is not None
        out: list[int] = []
        for number, (low, high, live, gone) in enumerate(self._group_spans(window)):
            if offset >= live:
                offset -= live
                continue
            group = groups[number]
            index = _nth_live(group, low + offset, gone)
            offset = 0
            while index < high and len(out) < count:
                if group[index] not in gone:
                    out.append(group[index])
                index += 1
            if len(out) == count:
                break
        return out

    def _materialize(self, moment: float) -> None:
        """Create the scheduled arrivals up to ``moment``'s second (drawn lazily, in order)."""
        second = math.floor(moment)
        while self._next_burst < second + 1:
            created = math.floor(self._next_burst)
            for _ in range(_burst_size(self._arrival_clock, self.settings.burst_size)):
                self._append(created, self._arrivals.schedule(created))
            self._next_burst = self._draw_burst(self._next_burst)

    def _draw_burst(self, after: float) -> float:
        rate = self.settings.arrival_rate / self.settings.burst_size
        return after + self._arrival_clock.expovariate(rate) if rate > 0 else math.inf

    def _append(self, created: int, schedule: tuple[int, int, int, int, int]) -> int:
        serial = len(self._created)
        wait, planned, ended, outcome, end_progress = schedule
        self._created.append(created)
        self._wait.append(wait)
        self._planned.append(planned)
        self._ended.append(ended)
        self._outcome.append(outcome)
        self._end_progress.append(end_progress)
        if ended > self.start:
            position = bisect_right(self._open_ends, ended)
            self._open_ends.insert(position, ended)
            self._open_serials.insert(position, serial)
        if self._groups is not None:
            self._groups[self._group(serial)].append(serial)
        return serial
