"""The editing-task record and the page it comes in: parsing and validation of the API's answer.

A record that cannot be trusted raises ``InvalidTask``; the caller skips and counts it, so one
bad record never breaks a scrape nor turns into a wrong number. A body that is not the documented
JSON raises ``InvalidPage``. Validation happens here, where a record enters, so that every later
stage (the store, the collector, the exposition) can take a ``Task`` at its word.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from exporter.timestamps import parse_timestamp

log = logging.getLogger(__name__)

WAITING = "WAITING"
PROCESSING = "PROCESSING"
SUCCEED = "SUCCEED"
FAILED = "FAILED"
CANCEL = "CANCEL"

KNOWN_STATUSES = (WAITING, PROCESSING, SUCCEED, FAILED, CANCEL)
OPEN_STATUSES = frozenset({WAITING, PROCESSING})
FINISHED_STATUSES = frozenset({SUCCEED, FAILED, CANCEL})

# A status the API adds one day keeps its own name, but only so many of them do: a hostile or
# broken upstream sending thousands of distinct statuses must not make thousands of series. The
# most frequent ones keep their names; the tasks of the rest are counted under ``OTHER_STATUS``
# (lower case, unlike the API's statuses; one spelled exactly "other" would share the bucket).
MAX_UNKNOWN_STATUSES = 10
OTHER_STATUS = "other"
# Distinct unknown statuses told apart while counting; past that, their tasks go straight to
# OTHER_STATUS, so memory stays bounded whatever the API sends.
_UNKNOWN_STATUS_MEMORY = 1000

# Real ids are 32 hex characters and statuses a word; these bounds only keep a hostile record from
# turning into a huge label value.
MAX_ID_LENGTH = 256
MAX_STATUS_LENGTH = 64
# Editing tasks exist since the 2010s; a time outside this range is a broken record, not a task
# that is 56 years old or ends in 9999 (either would skew every age and duration).
EARLIEST_TIME = 946_684_800.0  # 2000-01-01T00:00:00Z
LATEST_TIME = 4_102_444_800.0  # 2100-01-01T00:00:00Z


class StatusCounts:
    """Tasks per status: every known status, 0 included, and unknown ones within bounds."""

    def __init__(self) -> None:
        self._known: Counter[str] = Counter(dict.fromkeys(KNOWN_STATUSES, 0))
        self._unknown: Counter[str] = Counter()  # tasks per unknown status, up to the memory
        self._overflow = 0  # tasks whose unknown status came past that memory

    def add(self, status: str, count: int = 1) -> None:
        if status in self._known:
            self._known[status] += count
        elif status in self._unknown or len(self._unknown) < _UNKNOWN_STATUS_MEMORY:
            self._unknown[status] += count
        else:
            self._overflow += count

    def capped(self) -> dict[str, int]:
        """At most ``MAX_UNKNOWN_STATUSES`` unknown statuses by name: the most frequent, then by
        name, so that the choice does not depend on the order tasks were counted in. The other
        unknown statuses' tasks go to ``OTHER_STATUS``."""
        ranked = sorted(self._unknown.items(), key=lambda item: (-item[1], item[0]))
        counts = dict(self._known)
        counts.update(ranked[:MAX_UNKNOWN_STATUSES])
        other = self._overflow + sum(count for _, count in ranked[MAX_UNKNOWN_STATUSES:])
        if other:
            counts[OTHER_STATUS] = counts.get(OTHER_STATUS, 0) + other
        return counts

    def nonzero(self) -> dict[str, int]:
        """``capped()`` without the statuses no task has."""
        return {status: count for status, count in self.capped().items() if count}


class InvalidTask(ValueError):
    """A record that is skipped and counted in ``huaweicloud_vod_editing_tasks_invalid``."""


class InvalidPage(ValueError):
    """A 200 body that is not the documented JSON: the listing cannot be used."""


class Task(NamedTuple):
    # A named tuple rather than a frozen dataclass: one is made per record per listing, and a
    # frozen dataclass's __init__ costs several times more.
    task_id: str
    asset_id: str
    status: str
    progress: int
    created: float
    ended: float | None

    @property
    def is_open(self) -> bool:
        # A status the API may add one day counts as open until the task has an end time.
        return self.status in OPEN_STATUSES or (self.status not in FINISHED_STATUSES and self.ended is None)

    def duration(self, now: float) -> float:
        """Seconds from creation to end (or to ``now`` while open); never negative."""
        end = self.ended if self.ended is not None else now
        return max(0.0, end - self.created)


def parse_task(raw: object, parse_time: Callable[[str], float] = parse_timestamp) -> Task:
    """One record as a ``Task``; ``parse_time`` may be a memoised ``parse_timestamp``."""
    # Exact type checks (``type(x) is str``) are both faster than isinstance on this hot path and
    # stricter where it matters: a JSON true is not a progress of 1.
    if type(raw) is not dict:
        raise InvalidTask("record is not an object")
    get = raw.get
    task_id = get("task_id")
    if type(task_id) is not str or not task_id:
        raise InvalidTask("missing task_id")
    # The checks of _check_text are called only for the rare text that is long or not ASCII:
    # three calls per record were a tenth of its parsing.
    if len(task_id) > MAX_ID_LENGTH or not task_id.isascii():
        _check_text(task_id, "task_id", MAX_ID_LENGTH)
    asset_id = get("asset_id", "")
    if type(asset_id) is not str:
        if asset_id is not None:
            raise InvalidTask(f"task {task_id}: asset_id is not a string")
        asset_id = ""
    if len(asset_id) > MAX_ID_LENGTH or not asset_id.isascii():
        _check_text(asset_id, "asset_id", MAX_ID_LENGTH)
    status = get("status")
    if type(status) is not str or not status.strip():
        raise InvalidTask(f"task {task_id}: missing status")
    if len(status) > MAX_STATUS_LENGTH or not status.isascii():
        _check_text(status, "status", MAX_STATUS_LENGTH)
    progress = get("progress", 0)
    if type(progress) is not int or not 0 <= progress <= 100:
        raise InvalidTask(f"task {task_id}: progress {progress!r} is not an integer 0-100")
    created_text = get("create_time")
    if type(created_text) is not str:
        raise InvalidTask(f"task {task_id}: missing create_time")
    end_text = get("end_time")
    if end_text is not None and type(end_text) is not str:
        raise InvalidTask(f"task {task_id}: end_time is not a string")
    try:
        created = parse_time(created_text)
        ended = parse_time(end_text) if end_text else None
    except ValueError as error:
        raise InvalidTask(f"task {task_id}: {error}") from None
    if not EARLIEST_TIME <= created < LATEST_TIME or (
        ended is not None and not EARLIEST_TIME <= ended < LATEST_TIME
    ):
        raise InvalidTask(f"task {task_id}: a time outside 2000-2099")
    return Task(task_id, asset_id, status, progress, created, ended)


def _check_text(value: str, field: str, max_length: int) -> None:
    if len(value) > max_length:
        raise InvalidTask(f"{field} is longer than {max_length} characters")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            # A lone surrogate ("\ud800" in the JSON): valid JSON, but no UTF-8 string, so it
            # could never be written out as a label value.
            raise InvalidTask(f"{field} is not valid Unicode") from None


@dataclass(frozen=True, slots=True)
class PageRequest:
    """A page to ask for: ``offset`` and ``limit`` as the API takes them."""

    offset: int
    limit: int


@dataclass(frozen=True, slots=True)
class Page:
    offset: int
    total: int
    tasks: list[Task]
    invalid: int  # records on this page skipped as malformed
    invalid_at: tuple[int, ...] = ()  # where on the page they stood: they hold a position too

    def records(self) -> list[Task | None]:
        """Every record of the page in its place; ``None`` where one was malformed."""
        if not self.invalid_at:
            return list(self.tasks)
        records: list[Task | None] = [None] * (len(self.tasks) + self.invalid)
        skipped = set(self.invalid_at)
        tasks = iter(self.tasks)
        for index in range(len(records)):
            if index not in skipped:
                records[index] = next(tasks)
        return records


def parse_page(offset: int, body: bytes, parse_time: Callable[[str], float] = parse_timestamp) -> Page:
    """A 200 body as a ``Page``; malformed records are counted, a malformed body raises ``InvalidPage``."""
    try:
        document = json.loads(body)
    except ValueError:
        raise InvalidPage("the body is not JSON") from None
    if not isinstance(document, dict):
        raise InvalidPage("the body is not a JSON object")
    total, records = document.get("total"), document.get("tasks", [])
    if isinstance(total, bool) or not isinstance(total, int) or total < 0:
        raise InvalidPage(f"'total' is {total!r}, not a count")
    if not isinstance(records, list):
        raise InvalidPage("'tasks' is not a list")
    tasks: list[Task] = []
    invalid_at: list[int] = []
    for index, record in enumerate(records):
        try:
            tasks.append(parse_task(record, parse_time))
        except InvalidTask as error:
            invalid_at.append(index)
            log.debug("skipping a malformed record: %s", error)
    return Page(offset, total, tasks, len(invalid_at), tuple(invalid_at))
