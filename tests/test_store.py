"""A complete listing's aggregates as the store publishes them, the per-task cap, and the
finished-task tracker."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import pytest

from exporter.config import SeriesSettings
from exporter.listing.fold import ListingFold
from exporter.listing.known import PassRejected
from exporter.listing.reading import CompleteListing
from exporter.store import Snapshot, TaskStore
from exporter.tasks import KNOWN_STATUSES, MAX_UNKNOWN_STATUSES, OTHER_STATUS, Page, parse_page
from exporter.timestamps import parse_timestamp
from tests.conftest import body, record

NOW = parse_timestamp("2026-11-28T10:00:00Z")
START = parse_timestamp("2026-11-28T09:58:00Z")  # the exporter started two minutes before NOW


def page(records: Sequence[Any], total: int | None = None, offset: int = 0) -> Page:
    return parse_page(offset, body(records, total))


def read(store: TaskStore, pages: Sequence[Page], now: float = NOW) -> CompleteListing:
    """The pages of one listing, fed to a fold as the strategy does, first page first."""
    complete = CompleteListing(ListingFold(), store, now)
    for p in pages:
        for task in complete.fold.add(p):
            complete.observe(task)
    return complete


def listing(store: TaskStore, pages: Sequence[Page], now: float = NOW) -> Snapshot:
    complete = read(store, pages, now)
    snapshot = complete.snapshot(complete.fold.result())
    store.record_listing(snapshot, complete.tracker, 0.1)
    return snapshot


def new_store(**settings: Any) -> TaskStore:
    return TaskStore("p1", SeriesSettings(**settings), started_at=START)


def test_counts_every_status_and_the_oldest_open_tasks() -> None:
    snapshot = listing(
        new_store(),
        [
            page(
                [
                    record(1, "WAITING", create_time="2026-11-28T09:10:00Z"),
                    record(2, "WAITING", create_time="2026-11-28T09:01:00Z"),
                    record(3, "PROCESSING", progress=40, create_time="2026-11-28T09:30:00Z"),
                    record(4, "SUCCEED"),
                    record(5, "PAUSED", end_time=None),
                ],
                total=6,
            ),
            page([{"task_id": "broken"}], total=6, offset=5),
        ],
    )
    assert snapshot.counts == {
        "WAITING": 2,
        "PROCESSING": 1,
        "SUCCEED": 1,
        "FAILED": 0,
        "CANCEL": 0,
        "PAUSED": 1,
    }
    assert snapshot.invalid == 1 and snapshot.reported_total == 6
    assert snapshot.oldest_created == {
        "WAITING": parse_timestamp("2026-11-28T09:01:00Z"),
        "PROCESSING": parse_timestamp("2026-11-28T09:30:00Z"),
    }


def test_a_task_listed_twice_is_a_duplicate() -> None:
    pages = [page([record(1), record(2)], total=3), page([record(2)], total=3, offset=2)]
    with pytest.raises(PassRejected) as raised:
        read(new_store(), pages)  # task 2 shifted onto the next page, in no order: positions
    assert (raised.value.reason, str(raised.value)) == ("duplicate", "one task listed at two age indices")


def test_a_listing_with_an_age_not_read_is_not_complete() -> None:
    complete = read(new_store(), [page([record(1)], total=2)])
    with pytest.raises(RuntimeError, match="the listing is not complete"):
        complete.fold.result()


def test_per_task_series_keep_open_tasks_first_then_the_newest_finished() -> None:
    records = [
        record(1, "PROCESSING", create_time="2026-11-28T09:00:00Z"),
        record(2, "WAITING", create_time="2026-11-28T09:50:00Z"),
        record(3, "SUCCEED", end_time="2026-11-28T09:58:00Z"),
        record(4, "FAILED", end_time="2026-11-28T09:30:00Z"),
        record(5, "SUCCEED", end_time="2026-11-28T08:30:00Z"),  # older than the 1h age: never a candidate
    ]
    snapshot = listing(new_store(max_series=3), [page(records)])
    assert [t.task_id for t in snapshot.series_tasks] == ["task-000001", "task-000002", "task-000003"]
    assert snapshot.series_dropped == 1  # task 4 qualified; task 5 did not


def test_the_cap_prefers_the_oldest_open_tasks() -> None:
    records = [record(i, "PROCESSING", create_time=f"2026-11-28T09:{i:02d}:00Z") for i in range(10)]
    snapshot = listing(new_store(max_series=2), [page(records)])
    assert [t.task_id for t in snapshot.series_tasks] == ["task-000000", "task-000001"]
    assert snapshot.series_dropped == 8


def test_per_task_series_can_be_switched_off() -> None:
    snapshot = listing(new_store(enabled=False), [page([record(1, "WAITING")])])
    assert snapshot.series_tasks == () and snapshot.series_dropped == 0


def test_a_listing_keeps_per_task_records_of_open_tasks_only() -> None:
    pages = [
        page([record(i, "SUCCEED") for i in range(offset, offset + 100)], total=2_000, offset=offset)
        for offset in range(0, 2_000, 100)
    ]
    complete = read(new_store(max_series=5), pages)
    assert complete.fold.result().open == {}
    assert complete.fold.result().finished == {"SUCCEED": 2_000}


# --- the finished-task tracker -------------------------------------------------------------------


def finished(store: TaskStore) -> dict[str, int]:
    return {k: v for k, v in store.view().finished_total.items() if v}


def test_nothing_is_counted_at_start_up() -> None:
    store = new_store()
    listing(
        store,
        [
            page(
                [
                    record(1, "SUCCEED"),
                    record(2, "FAILED"),
                    record(3, "PROCESSING", create_time="2026-11-28T07:00:00Z"),
                ]
            )
        ],
    )
    view = store.view()
    assert finished(store) == {} and view.created_total == 0
    assert all(h.total == 0 for h in view.finished_durations.values())


def test_a_task_seen_open_then_finished_is_counted_once_with_its_duration() -> None:
    store = new_store()
    listing(store, [page([record(1, "PROCESSING", create_time="2026-11-28T07:00:00Z")])])
    done = record(1, "SUCCEED", create_time="2026-11-28T07:00:00Z", end_time="2026-11-28T07:04:00Z")
    listing(store, [page([done])], now=NOW + 60)
    listing(store, [page([done])], now=NOW + 120)
    assert finished(store) == {"SUCCEED": 1}
    histogram = store.view().finished_durations["SUCCEED"]
    assert histogram.total == 240
    assert histogram.bucket_counts[histogram.bounds.index(300.0)] == 1
    assert store.view().created_total == 0  # created before the exporter started


def test_a_task_created_and_finished_between_listings_counts_as_created_and_finished() -> None:
    store = new_store()
    listing(store, [page([])])
    quick = record(7, "FAILED", create_time="2026-11-28T09:59:00Z", end_time="2026-11-28T09:59:30Z")
    listing(store, [page([quick])], now=NOW + 30)
    listing(store, [page([quick])], now=NOW + 60)
    assert finished(store) == {"FAILED": 1}
    assert store.view().created_total == 1


def test_a_late_arrival_is_counted_once() -> None:
    store = new_store()
    listing(store, [page([])], now=NOW)
    # Shows up only now, although it ended before the previous listing.
    late = record(8, "CANCEL", create_time="2026-11-28T09:58:30Z", end_time="2026-11-28T09:59:00Z")
    listing(store, [page([late])], now=NOW + 60)
    listing(store, [page([late])], now=NOW + 120)
    assert finished(store) == {"CANCEL": 1}


def test_a_new_open_task_counts_as_created_once() -> None:
    store = new_store()
    fresh = record(9, "WAITING", create_time="2026-11-28T09:59:00Z")
    listing(store, [page([fresh])])
    listing(store, [page([fresh])], now=NOW + 60)
    assert store.view().created_total == 1


def test_a_negative_duration_is_counted_but_not_observed() -> None:
    store = new_store()
    listing(store, [page([record(1, "PROCESSING", create_time="2026-11-28T09:00:00Z")])])
    skewed = record(1, "SUCCEED", create_time="2026-11-28T09:00:00Z", end_time="2026-11-28T08:59:00Z")
    listing(store, [page([skewed])], now=NOW + 60)
    assert finished(store) == {"SUCCEED": 1}
    assert sum(store.view().finished_durations["SUCCEED"].bucket_counts) == 0


def test_a_failed_listing_changes_no_counter_and_hides_the_snapshot() -> None:
    store = new_store()
    listing(store, [page([record(1, "PROCESSING", create_time="2026-11-28T09:00:00Z")])])
    read(store, [page([record(1, "SUCCEED", create_time="2026-11-28T09:00:00Z")], total=2)], NOW + 60)
    store.record_failure("inconsistent", 0.2, "read 1 of 2")
    view = store.view()
    assert view.snapshot is None and not view.up and view.errors == {"inconsistent": 1}
    assert finished(store) == {}
    # The task is still known as open, so the next good listing counts it.
    listing(store, [page([record(1, "SUCCEED", create_time="2026-11-28T09:00:00Z")])], now=NOW + 120)
    assert finished(store) == {"SUCCEED": 1}


def stamp(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def test_tracker_memory_stays_bounded_by_the_retention() -> None:
    store = new_store(tracker_retention=3600)
    now = NOW
    for round_ in range(48):  # two days of listings, 10 quick tasks finishing every half hour
        now += 1800
        batch = [
            record(round_ * 10 + i, "SUCCEED", create_time=stamp(now - 60), end_time=stamp(now - 30))
            for i in range(10)
        ]
        listing(store, [page(batch)], now=now)
    assert finished(store) == {"SUCCEED": 480}
    # What was created or ended within the last hour (two memories of up to 30), not all 480.
    assert store.view().tracked_tasks <= 60


def test_a_task_missing_from_one_listing_is_neither_created_again_nor_loses_its_end() -> None:
    store = new_store()
    fresh = record(3, "PROCESSING", create_time="2026-11-28T09:59:00Z")
    listing(store, [page([fresh])])
    listing(store, [page([])], now=NOW + 30)  # a consistent listing that does not show it
    done = record(3, "SUCCEED", create_time="2026-11-28T09:59:00Z", end_time="2026-11-28T10:00:50Z")
    listing(store, [page([done])], now=NOW + 60)
    assert store.view().created_total == 1
    assert finished(store) == {"SUCCEED": 1}


def test_an_old_task_missing_once_still_has_its_end_counted() -> None:
    store = new_store()
    old = record(4, "PROCESSING", create_time="2026-11-28T07:00:00Z")
    listing(store, [page([old])])
    listing(store, [page([])], now=NOW + 30)
    done = record(4, "FAILED", create_time="2026-11-28T07:00:00Z", end_time="2026-11-28T10:00:40Z")
    listing(store, [page([done])], now=NOW + 60)
    assert finished(store) == {"FAILED": 1}
    assert store.view().created_total == 0


def test_a_task_run_again_is_created_once() -> None:
    store = new_store()
    states = [
        record(5, "WAITING", create_time="2026-11-28T09:59:00Z"),
        record(5, "FAILED", create_time="2026-11-28T09:59:00Z", end_time="2026-11-28T10:00:10Z"),
        record(5, "PROCESSING", create_time="2026-11-28T09:59:00Z"),
    ]
    for step, state in enumerate(states):
        listing(store, [page([state])], now=NOW + 30 * step)
    assert store.view().created_total == 1
    assert finished(store) == {"FAILED": 1}


def test_a_finished_task_without_an_end_time_is_counted_once() -> None:
    store = new_store(tracker_retention=3600)
    undated = record(6, "CANCEL", create_time="2026-11-28T09:59:00Z", end_time=None)
    for step in range(12):  # three hours of listings every 15 minutes
        listing(store, [page([undated])], now=NOW + 900 * step)
    assert finished(store) == {"CANCEL": 1}


def test_thousands_of_unknown_statuses_make_a_bounded_number_of_series() -> None:
    # 3,000 distinct statuses made 3,005 editing_tasks series; now the ten most frequent keep
    # their names and the rest share one bucket. Pages of 100, as the API sends them.
    records = [record(i, "PAUSED", end_time=None) for i in range(5)]
    records += [record(100 + i, f"STATE-{i:04d}", end_time=None) for i in range(3000)]
    pages = [page(records[i : i + 100], total=len(records), offset=i) for i in range(0, len(records), 100)]
    snapshot = listing(new_store(max_series=5000), pages)
    unknown = {s: n for s, n in snapshot.counts.items() if s not in KNOWN_STATUSES}
    assert len(unknown) == MAX_UNKNOWN_STATUSES + 1
    assert unknown["PAUSED"] == 5 and unknown[OTHER_STATUS] == 3000 - (MAX_UNKNOWN_STATUSES - 1)
    assert sum(snapshot.counts.values()) == len(records)
    # Per-task series carry the same statuses as the counts.
    assert {task.status for task in snapshot.series_tasks} == set(unknown)


def test_which_unknown_statuses_keep_their_name_does_not_depend_on_page_order() -> None:
    records = [record(i, f"S{i % 15:02d}", end_time=None) for i in range(15 * 20)]
    records += [record(1000 + i, "S14", end_time=None) for i in range(5)]
    pages = [page(records[i : i + 100], total=len(records), offset=i) for i in range(0, len(records), 100)]
    forward = listing(new_store(), pages).counts
    backward = listing(new_store(), pages[::-1]).counts
    assert forward == backward
    assert "S14" in forward  # the most frequent is always named
