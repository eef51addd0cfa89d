from __future__ import annotations

import calendar
import time
from typing import Any

import pytest

from exporter.tasks import InvalidPage, InvalidTask, Task, parse_page, parse_task
from exporter.timestamps import parse_timestamp
from tests.conftest import body, record


def epoch(text: str) -> int:
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2020-09-01T18:50:20Z", epoch("2020-09-01T18:50:20Z")),
        ("2020-09-01t18:50:20z", epoch("2020-09-01T18:50:20Z")),
        ("2020-09-01T18:50:20.250Z", epoch("2020-09-01T18:50:20Z") + 0.25),
        ("2020-09-01T20:50:20+02:00", epoch("2020-09-01T18:50:20Z")),
        ("2020-09-01T18:20:20-00:30", epoch("2020-09-01T18:50:20Z")),
        ("2024-02-29T00:00:00Z", epoch("2024-02-29T00:00:00Z")),
        ("1970-01-01T00:00:00Z", 0),
    ],
)
def test_parse_timestamp_accepts_rfc3339(text: str, expected: float) -> None:
    assert parse_timestamp(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2020-09-01",
        "2020-09-01T18:50:20",  # no zone: ambiguous
        "2020-13-01T18:50:20Z",
        "2023-02-29T00:00:00Z",
        "2020-09-01T24:00:00Z",
        "2020-09-01T18:60:00Z",
        "2020-09-01T18:50:60Z",
        "2020-09-01T18:50:20+25:00",
        "2020-09-01T18:5a:20Z",
        "2020-0\uff19-01T18:50:20Z",  # a full-width digit
        "yesterday",
    ],
)
def test_parse_timestamp_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(text)


def test_parse_task_reads_every_field() -> None:
    task = parse_task(
        record(1, "SUCCEED", create_time="2026-11-28T09:00:00Z", end_time="2026-11-28T09:05:00Z")
    )
    assert task == Task(
        "task-000001",
        "asset-000001",
        "SUCCEED",
        100,
        epoch("2026-11-28T09:00:00Z"),
        epoch("2026-11-28T09:05:00Z"),
    )
    assert not task.is_open
    assert task.duration(now=0) == 300


def test_open_task_duration_runs_to_now() -> None:
    task = parse_task(record(1, "PROCESSING", progress=40))
    assert task.is_open and task.ended is None
    assert task.duration(now=task.created + 90) == 90


def test_end_before_create_never_gives_a_negative_duration() -> None:
    task = parse_task(
        record(1, "SUCCEED", create_time="2026-11-28T09:05:00Z", end_time="2026-11-28T09:00:00Z")
    )
    assert task.duration(now=0) == 0


@pytest.mark.parametrize(
    "broken",
    [
        "not a dict",
        {"asset_id": "a", "status": "WAITING", "progress": 0, "create_time": "2026-11-28T09:00:00Z"},
        record(1, task_id=""),
        record(1, task_id=7),
        record(1, status=None),
        record(1, progress=101),
        record(1, progress=-1),
        record(1, progress=50.5),
        record(1, progress=True),
        record(1, progress="50"),
        record(1, create_time="yesterday"),
        record(1, create_time=None),
        record(1, end_time="2026-99-28T09:05:00Z"),
        record(1, end_time=12),
        record(1, asset_id=3),
    ],
)
def test_malformed_records_are_rejected(broken: Any) -> None:
    with pytest.raises(InvalidTask):
        parse_task(broken)


def test_missing_asset_id_is_tolerated() -> None:
    data = record(1)
    del data["asset_id"]
    assert parse_task(data).asset_id == ""


@pytest.mark.parametrize("raw", ["PAUSED", "re-queued", "FOO-BAR", "FOO_BAR", "\u00fcber", "Stage 2"])
def test_unknown_statuses_keep_their_exact_name(raw: str) -> None:
    # A label value may be any UTF-8 string: sanitising merged FOO-BAR with FOO_BAR and made
    # \u00fcber _BER.
    assert parse_task(record(1, raw)).status == raw


@pytest.mark.parametrize("field", ["task_id", "asset_id", "status", "create_time", "end_time"])
def test_a_lone_surrogate_makes_the_record_invalid(field: str) -> None:
    # json.loads turns "a\ud800" into a str that cannot be encoded as UTF-8: as a label value it
    # made every /metrics answer 500.
    data = record(1, "SUCCEED")
    data[field] = "a\ud800"
    with pytest.raises(InvalidTask):
        parse_task(data)


@pytest.mark.parametrize(("field", "length"), [("task_id", 257), ("asset_id", 257), ("status", 65)])
def test_overlong_identifiers_make_the_record_invalid(field: str, length: int) -> None:
    data = record(1)
    data[field] = "A" * length
    with pytest.raises(InvalidTask):
        parse_task(data)
    data[field] = "A" * (length - 1)
    assert parse_task(data)


@pytest.mark.parametrize(
    "text",
    [
        "1969-12-31T23:59:59Z",
        "1970-01-01T00:00:00Z",
        "1999-12-31T23:59:59Z",
        "9999-12-31T23:59:59Z",
        "2100-01-01T00:00:00Z",
    ],
)
@pytest.mark.parametrize("field", ["create_time", "end_time"])
def test_times_outside_the_plausible_range_make_the_record_invalid(field: str, text: str) -> None:
    data = record(1, "SUCCEED")
    data[field] = text
    with pytest.raises(InvalidTask) as caught:
        parse_task(data)
    assert str(caught.value) == "task task-000001: a time outside 2000-2099"


def test_unknown_status_is_open_until_it_has_an_end_time() -> None:
    assert parse_task(record(1, "PAUSED", end_time=None)).is_open
    archived = record(1, "ARCHIVED")
    archived["end_time"] = "2026-11-28T09:05:00Z"
    assert not parse_task(archived).is_open


def test_parse_page_counts_malformed_records_and_keeps_the_rest() -> None:
    page = parse_page(0, body([record(1), {"task_id": "x"}, "junk", record(2)], total=4))
    assert [t.task_id for t in page.tasks] == ["task-000001", "task-000002"]
    assert page.invalid == 2 and page.total == 4


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not json",
        b"[]",
        b'{"tasks": []}',
        b'{"total": -1, "tasks": []}',
        b'{"total": "3", "tasks": []}',
        b'{"total": true, "tasks": []}',
        b'{"total": 1, "tasks": {}}',
    ],
)
def test_parse_page_rejects_a_malformed_body(content: bytes) -> None:
    with pytest.raises(InvalidPage):
        parse_page(0, content)


def test_a_page_knows_where_each_valid_task_stood() -> None:
    page = parse_page(200, body([{"task_id": "x"}, record(1), "junk", record(2)], total=4))
    assert [task and task.task_id for task in page.records()] == [None, "task-000001", None, "task-000002"]
    assert page.invalid_at == (0, 2)
