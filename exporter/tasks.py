"""The editing-task record: parsing and validation of one entry of the API's ``tasks`` array.

A record that cannot be trusted raises ``InvalidTask``; the caller skips and counts it, so one
bad record never breaks a scrape nor turns into a wrong number.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import NamedTuple

WAITING = "WAITING"
PROCESSING = "PROCESSING"
SUCCEED = "SUCCEED"
FAILED = "FAILED"
CANCEL = "CANCEL"

KNOWN_STATUSES = (WAITING, PROCESSING, SUCCEED, FAILED, CANCEL)
_KNOWN = frozenset(KNOWN_STATUSES)
OPEN_STATUSES = frozenset({WAITING, PROCESSING})
FINISHED_STATUSES = frozenset({SUCCEED, FAILED, CANCEL})

_MAX_STATUS_LENGTH = 32
_STATUS_UNSAFE = re.compile(r"[^A-Z0-9_]")


class InvalidTask(ValueError):
    """A record that is skipped and counted in ``huaweicloud_vod_editing_tasks_invalid``."""


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


def parse_task(raw: object) -> Task:
    # Exact type checks (``type(x) is str``) are both faster than isinstance on this hot path and
    # stricter where it matters: a JSON true is not a progress of 1.
    if type(raw) is not dict:
        raise InvalidTask("record is not an object")
    get = raw.get
    task_id = get("task_id")
    if type(task_id) is not str or not task_id:
        raise InvalidTask("missing task_id")
    asset_id = get("asset_id", "")
    if type(asset_id) is not str:
        if asset_id is not None:
            raise InvalidTask(f"task {task_id}: asset_id is not a string")
        asset_id = ""
    status = get("status")
    if type(status) is not str or not status:
        raise InvalidTask(f"task {task_id}: missing status")
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
        created = parse_timestamp(created_text)
        ended = parse_timestamp(end_text) if end_text else None
    except ValueError as error:
        raise InvalidTask(f"task {task_id}: {error}") from None
    if status not in _KNOWN:
        status = sanitize_status(status)
    return Task(task_id, asset_id, status, progress, created, ended)


def sanitize_status(status: str) -> str:
    """Known statuses pass as they are; an unknown one keeps its name in a label-safe form."""
    if status in KNOWN_STATUSES:
        return status
    cleaned = _STATUS_UNSAFE.sub("_", status.strip().upper())[:_MAX_STATUS_LENGTH]
    return cleaned or "UNKNOWN"


_RFC3339 = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(\.\d+)?([Zz]|[+-]\d\d:\d\d)",
    re.ASCII,
)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_NAIVE_EPOCH = datetime(1970, 1, 1)


def parse_timestamp(text: str) -> float:
    """Seconds since the epoch for an RFC 3339 time (``Z``, offsets and fractions).

    Raises ``ValueError`` for anything else, including impossible dates.
    """
    # Finished tasks come back with the same times in every listing: a bounded memo makes a
    # repeat about six times cheaper. Emptied when full, so it never holds more than ~3 MB; that
    # covers projects of up to ~16,000 tasks, and costs larger ones nothing measurable.
    seconds = _PARSED.get(text)
    if seconds is None:
        seconds = _parse_timestamp(text)
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[text] = seconds
    return seconds


_PARSED: dict[str, float] = {}
_PARSED_MAX = 32_768


def _parse_timestamp(text: str) -> float:
    # Fast path for the form the API sends (2020-09-01T18:50:20Z), about three times faster than
    # the general one: datetime's C parser on the ASCII text, which also rejects impossible dates.
    if (
        len(text) == 20
        and text[19] == "Z"
        and text[10] == "T"
        and text[4] == "-"
        and text[7] == "-"
        and text[13] == ":"
        and text[16] == ":"
        and text.isascii()
    ):
        try:
            return (datetime.fromisoformat(text[:19]) - _NAIVE_EPOCH).total_seconds()
        except ValueError:
            raise ValueError(f"time {text!r} is not a valid date and time") from None
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError(f"time {text!r} is not RFC 3339")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, zone = match.group(7), match.group(8)
    if zone in ("Z", "z"):
        offset = timedelta(0)
    else:
        sign = -1 if zone[0] == "-" else 1
        zone_hours, zone_minutes = int(zone[1:3]), int(zone[4:6])
        if zone_hours > 23 or zone_minutes > 59:
            raise ValueError(f"time {text!r} has an impossible offset")
        offset = sign * timedelta(hours=zone_hours, minutes=zone_minutes)
    try:
        moment = datetime(year, month, day, hour, minute, second, tzinfo=timezone(offset))
    except ValueError:
        raise ValueError(f"time {text!r} is not a valid date and time") from None
    seconds = (moment - _EPOCH).total_seconds()
    return seconds + float(fraction) if fraction else seconds
