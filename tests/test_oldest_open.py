"""The oldest open task per status, and which tasks get per-task series under the cap."""

from __future__ import annotations

import pytest

from exporter.config import SeriesSettings
from exporter.store import OldestOpen, SeriesPicker
from exporter.tasks import Task

NOW = 2_000_000_000.0


def task(number: int, status: str, created: float, ended: float | None = None) -> Task:
    return Task(f"task-{number}", f"asset-{number}", status, 0, created, ended)


def oldest_of(*tasks: Task) -> dict[str, float]:
    oldest = OldestOpen()
    for each in tasks:
        oldest.add(each)
    return oldest.times()


# OldestOpen


def test_nothing_open_gives_no_times() -> None:
    assert oldest_of() == {}


@pytest.mark.parametrize("place", [0, 1, 2])
@pytest.mark.parametrize("status", ["WAITING", "PROCESSING"])
def test_the_oldest_task_is_kept_wherever_it_is_offered(status: str, place: int) -> None:
    others = [task(1, status, 500.0), task(2, status, 300.0)]
    others.insert(place, task(3, status, 100.0))
    assert oldest_of(*others) == {status: 100.0}


def test_waiting_and_processing_are_kept_apart() -> None:
    assert oldest_of(
        task(1, "PROCESSING", 400.0),
        task(2, "WAITING", 300.0),
        task(3, "PROCESSING", 200.0),
        task(4, "WAITING", 350.0),
    ) == {"WAITING": 300.0, "PROCESSING": 200.0}


@pytest.mark.parametrize("status", ["SUCCEED", "FAILED", "CANCEL", "PAUSED", "other"])
def test_other_statuses_are_ignored(status: str) -> None:
    assert oldest_of(task(1, status, 10.0)) == {}
    assert oldest_of(task(1, "WAITING", 500.0), task(2, status, 10.0, 20.0)) == {"WAITING": 500.0}


def test_a_tie_keeps_the_same_time() -> None:
    assert oldest_of(task(1, "WAITING", 100.0), task(2, "WAITING", 100.0)) == {"WAITING": 100.0}


def test_the_times_are_a_copy() -> None:
    oldest = OldestOpen()
    oldest.add(task(1, "WAITING", 100.0))
    oldest.times()["WAITING"] = 0.0
    assert oldest.times() == {"WAITING": 100.0}


# SeriesPicker


def picker(max_series: int = 1000, max_finished_age: float = 3600.0, enabled: bool = True) -> SeriesPicker:
    settings = SeriesSettings(enabled=enabled, max_series=max_series, max_finished_age=max_finished_age)
    return SeriesPicker(settings, NOW)


def picked_ids(series: SeriesPicker, counts: dict[str, int] | None = None) -> tuple[list[str], int]:
    tasks, dropped = series.picked(
        counts if counts is not None else {"WAITING": 1, "PROCESSING": 1, "SUCCEED": 1}
    )
    return [each.task_id for each in tasks], dropped


def test_open_tasks_come_before_finished_ones_oldest_first() -> None:
    series = picker()
    series.offer(task(1, "SUCCEED", NOW - 100, NOW - 10))
    series.offer(task(2, "PROCESSING", NOW - 50))
    series.offer(task(3, "WAITING", NOW - 500))
    series.offer(task(4, "PROCESSING", NOW - 200))
    assert picked_ids(series) == (["task-3", "task-4", "task-2", "task-1"], 0)


def test_finished_tasks_come_newest_ended_first() -> None:
    series = picker()
    series.offer(task(1, "SUCCEED", NOW - 3000, NOW - 300))
    series.offer(task(2, "SUCCEED", NOW - 100, NOW - 50))
    series.offer(task(3, "SUCCEED", NOW - 4000, NOW - 3500))
    assert picked_ids(series) == (["task-2", "task-1", "task-3"], 0)


def test_an_unknown_open_status_counts_as_open() -> None:
    series = picker(max_series=1)
    series.offer(task(1, "SUCCEED", NOW - 20, NOW - 1))
    series.offer(task(2, "PAUSED", NOW - 10))
    assert picked_ids(series, {"PAUSED": 1, "SUCCEED": 1}) == (["task-2"], 1)


def test_the_cap_keeps_the_oldest_open_tasks_and_counts_the_rest() -> None:
    series = picker(max_series=2)
    for number, age in enumerate([10, 40, 30, 50, 20]):
        series.offer(task(number, "WAITING", NOW - age))
    assert picked_ids(series) == (["task-3", "task-1"], 3)


def test_the_cap_drops_finished_tasks_before_open_ones() -> None:
    series = picker(max_series=2)
    series.offer(task(1, "SUCCEED", NOW - 20, NOW - 1))
    series.offer(task(2, "WAITING", NOW - 5))
    series.offer(task(3, "FAILED", NOW - 20, NOW - 2))
    series.offer(task(4, "PROCESSING", NOW - 1))
    assert picked_ids(series, {"WAITING": 1, "PROCESSING": 1, "SUCCEED": 1, "FAILED": 1}) == (
        ["task-2", "task-4"],
        2,
    )


def test_the_cap_keeps_the_newest_finished_tasks() -> None:
    series = picker(max_series=2)
    for number, ended_ago in enumerate([30, 10, 40, 20]):
        series.offer(task(number, "SUCCEED", NOW - 100, NOW - ended_ago))
    assert picked_ids(series) == (["task-1", "task-3"], 2)


def test_a_tie_at_the_cap_keeps_the_task_offered_first() -> None:
    series = picker(max_series=1)
    series.offer(task(1, "WAITING", NOW - 10))
    series.offer(task(2, "WAITING", NOW - 10))
    assert picked_ids(series) == (["task-1"], 1)


def test_a_cap_of_0_picks_nothing_and_counts_every_candidate() -> None:
    series = picker(max_series=0)
    series.offer(task(1, "WAITING", NOW - 10))
    series.offer(task(2, "SUCCEED", NOW - 10, NOW - 5))
    assert picked_ids(series) == ([], 2)


def test_switched_off_picks_nothing_and_drops_nothing() -> None:
    series = picker(enabled=False)
    series.offer(task(1, "WAITING", NOW - 10))
    series.offer(task(2, "SUCCEED", NOW - 10, NOW - 5))
    assert picked_ids(series) == ([], 0)


def test_finished_tasks_past_the_age_are_not_candidates() -> None:
    series = picker(max_series=1, max_finished_age=600)
    series.offer(task(1, "SUCCEED", NOW - 900, NOW - 600))  # ended exactly at the cutoff: kept
    series.offer(task(2, "SUCCEED", NOW - 900, NOW - 600.5))  # just past it: neither picked nor dropped
    assert picked_ids(series) == (["task-1"], 0)


def test_a_finished_task_without_an_end_time_is_not_a_candidate() -> None:
    series = picker()
    series.offer(task(1, "SUCCEED", NOW - 10))
    assert picked_ids(series) == ([], 0)


def test_open_tasks_are_candidates_whatever_their_age() -> None:
    series = picker(max_finished_age=60)
    series.offer(task(1, "PROCESSING", NOW - 86_400 * 30))
    assert picked_ids(series) == (["task-1"], 0)


def test_a_status_merged_into_other_is_carried_as_other() -> None:
    series = picker()
    series.offer(task(1, "PAUSED", NOW - 10))
    series.offer(task(2, "WAITING", NOW - 5))
    picked, dropped = series.picked({"WAITING": 1, "other": 1})
    assert [(each.task_id, each.status) for each in picked] == [("task-1", "other"), ("task-2", "WAITING")]
    assert picked[0] == task(1, "other", NOW - 10)
    assert dropped == 0


def test_tasks_are_returned_as_offered() -> None:
    series = picker()
    paused = task(1, "PAUSED", NOW - 10)
    series.offer(paused)
    assert series.tasks() == (paused,)
