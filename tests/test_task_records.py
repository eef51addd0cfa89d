"""Records as a real API may send them, through ``parse_task`` and ``parse_page``: each rule of
the validation pinned by its own test, with the exact outcome, and the status counts' choices."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from exporter.tasks import (
    EARLIEST_TIME,
    KNOWN_STATUSES,
    LATEST_TIME,
    InvalidPage,
    InvalidTask,
    StatusCounts,
    Task,
    parse_page,
    parse_task,
)
from tests.conftest import record

CREATED = "2026-11-28T09:00:00Z"
CREATED_AT = 1_795_856_400.0  # CREATED in seconds since the epoch
TASK = "task-000001"


def rejection(raw: Any) -> str:
    with pytest.raises(InvalidTask) as caught:
        parse_task(raw)
    return str(caught.value)


def page_rejection(content: bytes) -> str:
    with pytest.raises(InvalidPage) as caught:
        parse_page(0, content)
    return str(caught.value)


# Optional and null fields


def test_a_record_without_progress_has_progress_0() -> None:
    data = record(1, "WAITING")
    del data["progress"]
    assert parse_task(data) == Task(TASK, "asset-000001", "WAITING", 0, CREATED_AT, None)


def test_a_null_asset_id_becomes_the_empty_string() -> None:
    assert parse_task(record(1, "WAITING", asset_id=None)).asset_id == ""


def test_a_missing_asset_id_becomes_the_empty_string() -> None:
    data = record(1, "WAITING")
    del data["asset_id"]
    assert parse_task(data).asset_id == ""


def test_an_empty_asset_id_is_kept_empty() -> None:
    assert parse_task(record(1, "WAITING", asset_id="")).asset_id == ""


def test_a_null_end_time_leaves_the_task_without_an_end() -> None:
    assert parse_task(record(1, "PROCESSING", end_time=None)).ended is None


def test_an_empty_end_time_leaves_the_task_without_an_end() -> None:
    data = record(1, "PROCESSING")
    data["end_time"] = ""
    assert parse_task(data).ended is None


def test_the_end_time_is_read() -> None:
    task = parse_task(record(1, "SUCCEED", end_time="2026-11-28T09:05:00Z"))
    assert task.ended == CREATED_AT + 300


def test_progress_bounds_0_and_100_are_accepted() -> None:
    assert parse_task(record(1, "PROCESSING", progress=0)).progress == 0
    assert parse_task(record(1, "PROCESSING", progress=100)).progress == 100


def test_a_non_ascii_but_valid_text_is_kept() -> None:
    task = parse_task(record(1, "\u00c9TAPE", task_id="t\u00e2che", asset_id="r\u00e9sum\u00e9"))
    assert (task.task_id, task.asset_id, task.status) == ("t\u00e2che", "r\u00e9sum\u00e9", "\u00c9TAPE")


def test_the_given_time_parser_reads_both_times() -> None:
    read: list[str] = []

    def parse_time(text: str) -> float:
        read.append(text)
        return EARLIEST_TIME + len(read)

    task = parse_task(record(1, "SUCCEED", end_time="2026-11-28T09:05:00Z"), parse_time)
    assert read == [CREATED, "2026-11-28T09:05:00Z"]
    assert (task.created, task.ended) == (EARLIEST_TIME + 1, EARLIEST_TIME + 2)


# Durations


def test_a_task_that_ended_when_it_was_created_lasted_0_seconds() -> None:
    task = parse_task(record(1, "SUCCEED", end_time=CREATED))
    assert task.ended == task.created == CREATED_AT
    assert task.duration(now=CREATED_AT + 500) == 0.0
    assert not task.is_open


def test_a_finished_task_lasts_until_its_end_whatever_now_is() -> None:
    task = parse_task(record(1, "SUCCEED", end_time="2026-11-28T09:05:00Z"))
    assert task.duration(now=CREATED_AT + 10_000) == 300.0
    assert task.duration(now=0.0) == 300.0


def test_an_end_before_the_creation_is_kept_but_lasts_0_seconds() -> None:
    # Clock skew between the API's hosts: the record is valid, its duration is clamped.
    task = parse_task(record(1, "FAILED", create_time="2026-11-28T09:05:00Z", end_time=CREATED))
    assert task.ended == CREATED_AT
    assert task.created == CREATED_AT + 300
    assert task.duration(now=CREATED_AT + 900) == 0.0


def test_an_open_task_lasts_until_now() -> None:
    task = parse_task(record(1, "PROCESSING"))
    assert task.duration(now=CREATED_AT + 42.5) == 42.5


def test_an_open_task_seen_before_its_creation_lasts_0_seconds() -> None:
    task = parse_task(record(1, "WAITING"))
    assert task.duration(now=CREATED_AT - 60) == 0.0


# Open or not


@pytest.mark.parametrize("status", ["WAITING", "PROCESSING"])
def test_waiting_and_processing_are_open_even_with_an_end_time(status: str) -> None:
    data = record(1, status)
    data["end_time"] = "2026-11-28T09:05:00Z"
    assert parse_task(data).is_open


@pytest.mark.parametrize("status", ["SUCCEED", "FAILED", "CANCEL"])
def test_finished_statuses_are_not_open_even_without_an_end_time(status: str) -> None:
    assert not parse_task(record(1, status, end_time=None)).is_open


def test_an_unknown_status_without_an_end_time_is_open() -> None:
    assert parse_task(record(1, "PAUSED")).is_open


def test_an_unknown_status_with_an_end_time_is_not_open() -> None:
    data = record(1, "ARCHIVED")
    data["end_time"] = "2026-11-28T09:05:00Z"
    assert not parse_task(data).is_open


# Validation: one rule per test, with its message


@pytest.mark.parametrize("raw", ["a string", ["a", "list"], None, 3])
def test_a_record_that_is_not_an_object(raw: Any) -> None:
    assert rejection(raw) == "record is not an object"


@pytest.mark.parametrize("task_id", [None, "", 7])
def test_a_record_without_a_usable_task_id(task_id: Any) -> None:
    assert rejection(record(1, task_id=task_id)) == "missing task_id"


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("task_id", "missing task_id"),
        ("status", f"task {TASK}: missing status"),
        ("create_time", f"task {TASK}: missing create_time"),
    ],
)
def test_a_record_without_a_required_key(field: str, message: str) -> None:
    data = record(1)
    del data[field]
    assert rejection(data) == message


@pytest.mark.parametrize("letter", ["A", "\u00e9"])  # ASCII, and text only the full check reads
@pytest.mark.parametrize(("field", "limit"), [("task_id", 256), ("asset_id", 256), ("status", 64)])
def test_a_text_at_its_length_limit_is_accepted(field: str, limit: int, letter: str) -> None:
    assert getattr(parse_task(record(1, **{field: letter * limit})), field) == letter * limit


@pytest.mark.parametrize(("field", "limit"), [("task_id", 256), ("asset_id", 256), ("status", 64)])
def test_a_text_past_its_length_limit(field: str, limit: int) -> None:
    assert rejection(record(1, **{field: "A" * (limit + 1)})) == (
        f"{field} is longer than {limit} characters"
    )


@pytest.mark.parametrize(("field", "limit"), [("task_id", 256), ("asset_id", 256), ("status", 64)])
def test_a_non_ascii_text_past_its_length_limit(field: str, limit: int) -> None:
    assert rejection(record(1, **{field: "\u00e9" * (limit + 1)})) == (
        f"{field} is longer than {limit} characters"
    )


@pytest.mark.parametrize("field", ["task_id", "asset_id", "status"])
def test_a_lone_surrogate_in_a_label_text(field: str) -> None:
    assert rejection(record(1, **{field: "a\ud800"})) == f"{field} is not valid Unicode"


@pytest.mark.parametrize("asset_id", [3, ["a"], True])
def test_an_asset_id_that_is_not_a_string(asset_id: Any) -> None:
    assert rejection(record(1, asset_id=asset_id)) == f"task {TASK}: asset_id is not a string"


@pytest.mark.parametrize("status", [None, "", "   ", 5])
def test_a_record_without_a_usable_status(status: Any) -> None:
    assert rejection(record(1, status=status)) == f"task {TASK}: missing status"


@pytest.mark.parametrize(
    ("progress", "shown"),
    [(-1, "-1"), (101, "101"), (50.5, "50.5"), (100.0, "100.0"), (True, "True"), ("50", "'50'")],
)
def test_a_progress_that_is_not_an_integer_0_to_100(progress: Any, shown: str) -> None:
    assert rejection(record(1, "PROCESSING", progress=progress)) == (
        f"task {TASK}: progress {shown} is not an integer 0-100"
    )


def test_a_null_progress_is_rejected() -> None:
    # Unlike a null asset_id, which is read as "": a present but null progress is not 0.
    data = record(1, "WAITING")
    data["progress"] = None
    assert rejection(data) == f"task {TASK}: progress None is not an integer 0-100"


@pytest.mark.parametrize("create_time", [None, 1_795_856_400])
def test_a_create_time_that_is_not_a_string(create_time: Any) -> None:
    assert rejection(record(1, create_time=create_time)) == f"task {TASK}: missing create_time"


@pytest.mark.parametrize("end_time", [12, ["2026-11-28T09:05:00Z"]])
def test_an_end_time_that_is_not_a_string(end_time: Any) -> None:
    data = record(1, "SUCCEED")
    data["end_time"] = end_time
    assert rejection(data) == f"task {TASK}: end_time is not a string"


def test_a_create_time_that_is_not_rfc3339() -> None:
    assert rejection(record(1, create_time="yesterday")) == f"task {TASK}: time 'yesterday' is not RFC 3339"


def test_an_end_time_that_is_not_a_real_date() -> None:
    assert rejection(record(1, "SUCCEED", end_time="2026-99-28T09:05:00Z")) == (
        f"task {TASK}: time '2026-99-28T09:05:00Z' is not a valid date and time"
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("2000-01-01T00:00:00Z", EARLIEST_TIME), ("2099-12-31T23:59:59Z", LATEST_TIME - 1)],
)
@pytest.mark.parametrize("field", ["create_time", "end_time"])
def test_the_first_and_last_second_of_the_range_are_accepted(field: str, text: str, seconds: float) -> None:
    data = record(1, "SUCCEED", create_time="2050-01-01T00:00:00Z", end_time="2050-01-01T00:00:00Z")
    data[field] = text
    task = parse_task(data)
    assert (task.created if field == "create_time" else task.ended) == seconds


# Pages


def test_a_page_keeps_its_offset_total_and_tasks_in_order() -> None:
    page = parse_page(200, json.dumps({"total": 250, "tasks": [record(2), record(1)]}).encode())
    assert (page.offset, page.total, page.invalid, page.invalid_at) == (200, 250, 0, ())
    assert [task.task_id for task in page.tasks] == ["task-000002", "task-000001"]
    assert page.records() == page.tasks


def test_a_page_without_tasks_is_empty() -> None:
    page = parse_page(0, b'{"total": 0}')
    assert (page.tasks, page.invalid, page.total) == ([], 0, 0)


def test_a_page_counts_its_malformed_records_by_place() -> None:
    page = parse_page(0, json.dumps({"total": 5, "tasks": ["junk", record(1), {}, record(2), 3]}).encode())
    assert [task.task_id for task in page.tasks] == ["task-000001", "task-000002"]
    assert (page.invalid, page.invalid_at) == (3, (0, 2, 4))
    assert [task and task.task_id for task in page.records()] == [
        None,
        "task-000001",
        None,
        "task-000002",
        None,
    ]


def test_a_page_logs_why_it_skipped_a_record(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="exporter.tasks"):
        parse_page(0, json.dumps({"total": 1, "tasks": [record(1, progress=101)]}).encode())
    assert caplog.messages == [
        f"skipping a malformed record: task {TASK}: progress 101 is not an integer 0-100"
    ]


def test_a_page_reads_times_with_the_given_parser() -> None:
    page = parse_page(0, json.dumps({"total": 1, "tasks": [record(1, "WAITING")]}).encode(), lambda _: 1e9)
    assert page.tasks[0].created == 1e9


@pytest.mark.parametrize("content", [b"", b"not json", b"{", b"\xff"])
def test_a_body_that_is_not_json(content: bytes) -> None:
    assert page_rejection(content) == "the body is not JSON"


@pytest.mark.parametrize("content", [b"[]", b"3", b"null", b'"text"'])
def test_a_body_that_is_not_an_object(content: bytes) -> None:
    assert page_rejection(content) == "the body is not a JSON object"


@pytest.mark.parametrize(
    ("content", "shown"),
    [
        (b'{"tasks": []}', "None"),
        (b'{"total": -1, "tasks": []}', "-1"),
        (b'{"total": "3", "tasks": []}', "'3'"),
        (b'{"total": true, "tasks": []}', "True"),
        (b'{"total": 2.0, "tasks": []}', "2.0"),
    ],
)
def test_a_total_that_is_not_a_count(content: bytes, shown: str) -> None:
    assert page_rejection(content) == f"'total' is {shown}, not a count"


def test_a_total_of_0_is_a_count() -> None:
    assert parse_page(0, b'{"total": 0, "tasks": []}').total == 0


@pytest.mark.parametrize("tasks", [b"{}", b"null", b'"tasks"'])
def test_tasks_that_are_not_a_list(tasks: bytes) -> None:
    assert page_rejection(b'{"total": 1, "tasks": ' + tasks + b"}") == "'tasks' is not a list"


# Status counts


def unknown_counts(**tasks_per_status: int) -> StatusCounts:
    counts = StatusCounts()
    for status, count in tasks_per_status.items():
        counts.add(status, count)
    return counts


def test_every_known_status_is_counted_with_0_included() -> None:
    counts = StatusCounts()
    counts.add("SUCCEED")
    counts.add("SUCCEED")
    counts.add("WAITING", 5)
    assert counts.capped() == {"WAITING": 5, "PROCESSING": 0, "SUCCEED": 2, "FAILED": 0, "CANCEL": 0}
    assert counts.nonzero() == {"WAITING": 5, "SUCCEED": 2}


def test_ten_unknown_statuses_keep_their_names() -> None:
    counts = unknown_counts(**{f"S{index:02d}": 1 for index in range(10)})
    capped = counts.capped()
    assert sorted(set(capped) - set(KNOWN_STATUSES)) == [f"S{index:02d}" for index in range(10)]
    assert "other" not in capped


def test_the_eleventh_unknown_status_goes_to_other_least_frequent_first() -> None:
    counts = unknown_counts(**{f"S{index:02d}": 20 - index for index in range(11)})
    capped = counts.capped()
    assert {status: capped[status] for status in capped if status not in KNOWN_STATUSES} == {
        **{f"S{index:02d}": 20 - index for index in range(10)},
        "other": 10,
    }


def test_unknown_statuses_tied_in_count_are_chosen_by_name() -> None:
    # Added in reverse order of name: the choice must not depend on the order of counting.
    counts = unknown_counts(**{f"S{index:02d}": 3 for index in reversed(range(12))}, RARE=1, FREQUENT=9)
    capped = counts.capped()
    assert {status: capped[status] for status in capped if status not in KNOWN_STATUSES} == {
        "FREQUENT": 9,
        **{f"S{index:02d}": 3 for index in range(9)},
        "other": 3 + 3 + 3 + 1,
    }


def test_a_status_named_other_shares_the_overflow() -> None:
    counts = unknown_counts(**{f"S{index:02d}": 5 for index in range(10)}, other=4, LAST=2)
    capped = counts.capped()
    # "other" (4) is the eleventh by count, LAST (2) the twelfth: both overflow, into one bucket.
    assert capped["other"] == 6
    assert counts.nonzero() == {"other": 6, **{f"S{index:02d}": 5 for index in range(10)}}


def test_a_status_named_other_within_the_cap_keeps_its_count_plus_the_overflow() -> None:
    counts = unknown_counts(other=50, **{f"S{index:02d}": 5 for index in range(10)})
    # other and S00..S08 keep their names; S09 overflows and joins "other".
    assert counts.capped()["other"] == 55
    assert "S09" not in counts.capped()


def test_statuses_past_the_memory_overflow_into_other() -> None:
    counts = StatusCounts()
    for index in range(1000):
        counts.add(f"U{index:04d}", 2)
    counts.add("LATE-1", 7)  # past the 1000 remembered: not told apart any more
    counts.add("LATE-2")
    counts.add("U0000")  # remembered: still counted under its own name
    capped = counts.capped()
    assert capped["U0000"] == 3
    assert capped["other"] == 2 * 1000 - 2 - 2 * 9 + 7 + 1
    assert "LATE-1" not in capped
    assert sum(capped.values()) == 2 * 1000 + 7 + 1 + 1
