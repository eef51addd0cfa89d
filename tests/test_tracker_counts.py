"""FinishedTaskTracker: each task created and finished while the exporter watches is counted
exactly once, whatever the listings look like, and its memory forgets on time."""

from __future__ import annotations

from collections import Counter

from exporter.store import FinishedTaskTracker, TrackerPass
from exporter.tasks import Task

STARTED = 1_800_000_000.0
RETENTION = 3600.0


def task(name: str, status: str, created: float, ended: float | None = None) -> Task:
    return Task(name, "", status, 0, created, ended)


def tracker() -> FinishedTaskTracker:
    return FinishedTaskTracker(started_at=STARTED, retention=RETENTION)


def listing(watcher: FinishedTaskTracker, now: float, *tasks: Task, commit: bool = True) -> TrackerPass:
    staged = watcher.begin(now)
    for each in tasks:
        watcher.observe(staged, each)
    if commit:
        watcher.commit(staged)
    return staged


def ended(staged: TrackerPass) -> list[str]:
    return [each.task_id for each in staged.ended]


def test_three_tasks_finishing_over_successive_passes_count_three() -> None:
    watcher = tracker()
    created = STARTED + 50
    done = {
        "A": task("A", "SUCCEED", created, STARTED + 150),
        "B": task("B", "FAILED", created, STARTED + 250),
        "C": task("C", "CANCEL", created, STARTED + 350),
    }
    # One listing every 100 s; by the listing at STARTED + 100 * step, ``step - 1`` tasks are done.
    passes = [
        listing(
            watcher,
            STARTED + 100 * step,
            *(
                done[name] if index < step - 1 else task(name, "PROCESSING", created)
                for index, name in enumerate("ABC")
            ),
        )
        for step in (1, 2, 3, 4)
    ]
    assert [ended(staged) for staged in passes] == [[], ["A"], ["B"], ["C"]]
    assert Counter(each.status for staged in passes for each in staged.ended) == {
        "SUCCEED": 1,
        "FAILED": 1,
        "CANCEL": 1,
    }
    assert [staged.created for staged in passes] == [3, 0, 0, 0]
    assert watcher.remembered == 3 + 3  # counted as created, counted as finished; none open


def test_a_task_seen_finished_in_many_passes_is_counted_once() -> None:
    watcher = tracker()
    done = task("A", "SUCCEED", STARTED + 10, STARTED + 20)
    passes = [listing(watcher, STARTED + 100 * step, done) for step in range(1, 6)]
    assert [len(staged.ended) for staged in passes] == [1, 0, 0, 0, 0]
    assert [staged.created for staged in passes] == [1, 0, 0, 0, 0]


def test_a_task_seen_late_is_counted_once() -> None:
    # Created and ended before the previous listing, which did not show it yet.
    watcher = tracker()
    late = task("L", "FAILED", STARTED + 100, STARTED + 500)
    first = listing(watcher, STARTED + 1000, task("X", "WAITING", STARTED + 900))
    second = listing(watcher, STARTED + 2000, task("X", "WAITING", STARTED + 900), late)
    third = listing(watcher, STARTED + 3000, task("X", "WAITING", STARTED + 900), late)
    assert [ended(staged) for staged in (first, second, third)] == [[], ["L"], []]
    assert [staged.created for staged in (first, second, third)] == [1, 1, 0]


def test_a_task_that_came_and_went_between_listings_counts_as_created_and_finished() -> None:
    watcher = tracker()
    listing(watcher, STARTED + 100)
    staged = listing(watcher, STARTED + 200, task("A", "CANCEL", STARTED + 120, STARTED + 150))
    assert (ended(staged), staged.created) == (["A"], 1)


def test_tasks_that_finished_before_the_exporter_started_are_not_counted() -> None:
    watcher = tracker()
    staged = listing(
        watcher,
        STARTED + 10,
        task("old", "SUCCEED", STARTED - 1000, STARTED - 500),
        task("older", "FAILED", STARTED - 90_000, STARTED - 80_000),
    )
    again = listing(watcher, STARTED + 20, task("old", "SUCCEED", STARTED - 1000, STARTED - 500))
    assert (ended(staged), staged.created, ended(again), again.created) == ([], 0, [], 0)
    assert watcher.remembered == 0


def test_a_task_created_before_the_start_and_first_seen_finished_is_not_counted() -> None:
    # It may have ended after the start, but the exporter never saw it open: not watched.
    watcher = tracker()
    staged = listing(watcher, STARTED + 10, task("A", "SUCCEED", STARTED - 100, STARTED + 5))
    assert (ended(staged), staged.created, watcher.remembered) == ([], 0, 0)


def test_a_task_open_at_the_start_counts_when_it_finishes_but_not_as_created() -> None:
    watcher = tracker()
    opened = listing(watcher, STARTED + 10, task("A", "PROCESSING", STARTED - 100))
    finished = listing(watcher, STARTED + 20, task("A", "SUCCEED", STARTED - 100, STARTED + 15))
    assert (opened.created, ended(opened)) == (0, [])
    assert (finished.created, ended(finished)) == (0, ["A"])


def test_a_task_created_exactly_at_the_start_counts_one_created_just_before_does_not() -> None:
    watcher = tracker()
    staged = listing(
        watcher,
        STARTED + 10,
        task("at", "WAITING", STARTED),
        task("before", "WAITING", STARTED - 0.5),
    )
    assert staged.created_ids == {"at": STARTED + RETENTION}


def test_a_task_created_exactly_at_the_start_and_first_seen_finished_counts() -> None:
    watcher = tracker()
    staged = listing(watcher, STARTED + 10, task("A", "SUCCEED", STARTED, STARTED + 5))
    assert (ended(staged), staged.created) == (["A"], 1)


def test_a_task_first_seen_finished_exactly_one_retention_after_its_end_counts() -> None:
    watcher = tracker()
    staged = listing(watcher, STARTED + 20 + RETENTION, task("A", "SUCCEED", STARTED + 10, STARTED + 20))
    # Created more than one retention ago: too old to count as created.
    assert (ended(staged), staged.created) == (["A"], 0)


def test_a_task_first_seen_exactly_one_retention_after_its_creation_counts_as_created() -> None:
    watcher = tracker()
    staged = listing(watcher, STARTED + 10 + RETENTION, task("A", "WAITING", STARTED + 10))
    assert staged.created == 1
    later = listing(tracker(), STARTED + 10.5 + RETENTION, task("A", "WAITING", STARTED + 10))
    assert later.created == 0


def test_a_task_seen_open_in_many_passes_is_created_once() -> None:
    watcher = tracker()
    passes = [listing(watcher, STARTED + 100 * step, task("A", "WAITING", STARTED + 1)) for step in (1, 2, 3)]
    assert [staged.created for staged in passes] == [1, 0, 0]


def test_a_task_missing_from_one_listing_still_counts_when_it_finishes() -> None:
    # Created before the start, so only the memory of it being open can make it count.
    watcher = tracker()
    listing(watcher, STARTED + 10, task("A", "WAITING", STARTED - 100))
    listing(watcher, STARTED + 20)
    staged = listing(watcher, STARTED + 30, task("A", "FAILED", STARTED - 100, STARTED + 25))
    assert ended(staged) == ["A"]
    assert watcher.remembered == 1  # only its "finished" memory: it was never counted as created


def test_a_pass_that_is_not_committed_counts_nothing_and_the_next_one_counts() -> None:
    watcher = tracker()
    listing(watcher, STARTED + 10, task("A", "WAITING", STARTED + 1))
    failed = listing(watcher, STARTED + 20, task("A", "SUCCEED", STARTED + 1, STARTED + 15), commit=False)
    retried = listing(watcher, STARTED + 30, task("A", "SUCCEED", STARTED + 1, STARTED + 15))
    after = listing(watcher, STARTED + 40, task("A", "SUCCEED", STARTED + 1, STARTED + 15))
    assert [ended(staged) for staged in (failed, retried, after)] == [["A"], ["A"], []]
    assert watcher.remembered == 2  # created and finished; no longer open


def test_the_open_memory_keeps_a_task_for_the_retention_after_it_was_last_seen() -> None:
    watcher = tracker()
    listing(watcher, STARTED + 100, task("A", "WAITING", STARTED - 50))
    assert watcher.remembered == 1
    listing(watcher, STARTED + 100 + RETENTION)  # last seen exactly one retention ago: kept
    assert watcher.remembered == 1
    listing(watcher, STARTED + 101 + RETENTION)
    assert watcher.remembered == 0
    # Forgotten: its end no longer counts (it was created before the start).
    staged = listing(watcher, STARTED + 102 + RETENTION, task("A", "SUCCEED", STARTED - 50, STARTED + 200))
    assert ended(staged) == []


def test_the_created_and_finished_memories_keep_a_task_for_the_retention_after_its_times() -> None:
    watcher = tracker()
    listing(watcher, STARTED + 200, task("B", "SUCCEED", STARTED + 50, STARTED + 100))
    assert watcher.remembered == 2
    listing(watcher, STARTED + 50 + RETENTION)  # created one retention ago: still remembered
    assert watcher.remembered == 2
    listing(watcher, STARTED + 51 + RETENTION)
    assert watcher.remembered == 1
    listing(watcher, STARTED + 100 + RETENTION)  # ended one retention ago: still remembered
    assert watcher.remembered == 1
    listing(watcher, STARTED + 101 + RETENTION)
    assert watcher.remembered == 0


def test_a_task_forgotten_after_the_retention_is_not_counted_again() -> None:
    watcher = tracker()
    done = task("B", "SUCCEED", STARTED + 50, STARTED + 100)
    first = listing(watcher, STARTED + 200, done)
    later = listing(watcher, STARTED + 200 + RETENTION, done)
    assert (ended(first), ended(later), later.created) == (["B"], [], 0)
    assert watcher.remembered == 0


def test_a_finished_task_without_an_end_time_is_dated_by_its_creation() -> None:
    watcher = tracker()
    first = listing(watcher, STARTED + 200, task("A", "SUCCEED", STARTED + 100))
    assert first.finished_ids == {"A": STARTED + 100 + RETENTION}
    # Past its creation's retention it is forgotten, and does not qualify again.
    later = listing(watcher, STARTED + 101 + RETENTION, task("A", "SUCCEED", STARTED + 100))
    assert (ended(first), ended(later), watcher.remembered) == (["A"], [], 0)


def test_a_task_first_seen_finished_past_the_retention_is_not_counted() -> None:
    watcher = tracker()
    staged = listing(watcher, STARTED + 101 + RETENTION, task("A", "SUCCEED", STARTED + 100))
    assert (ended(staged), staged.created, watcher.remembered) == ([], 0, 0)


def test_a_task_ended_long_before_its_close_is_remembered_until_the_next_pass() -> None:
    # Seen open, then missing for an hour, then finished an hour ago: it counts (it was open),
    # and its memory lasts at least to this listing, not to a time already past.
    watcher = tracker()
    listing(watcher, STARTED + 10, task("A", "WAITING", STARTED - 100))
    now = STARTED + 10 + RETENTION
    staged = listing(watcher, now, task("A", "SUCCEED", STARTED - 100, STARTED + 5))
    assert ended(staged) == ["A"]
    assert staged.finished_ids == {"A": now}
    assert watcher.remembered == 1
    again = listing(watcher, now + 1, task("A", "SUCCEED", STARTED - 100, STARTED + 5))
    assert (ended(again), watcher.remembered) == ([], 0)
