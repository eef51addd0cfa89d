"""Each check of an incremental pass (docs/incremental-listing.md, "The incremental pass", 4.
Verify) fails for its own reason: one change upstream, the exact reason and detail it is counted
under. The reasons are the labels of huaweicloud_vod_listing_fallbacks_total, so a change that
counts a surprise under another reason is a change users see."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from exporter.listing.incremental import run_pass
from exporter.listing.known import KnownTasks, Order, PassRejected
from exporter.tasks import PROCESSING
from tests.fake_listing import Listing, history

Change = Callable[[Listing, KnownTasks], None]


def rejection(change: Change, *, open_at: tuple[int, ...] = ()) -> tuple[str, str]:
    """The reason and detail of the pass after ``change``, newest first, 2,000 tasks (and tasks
    open at ``open_at``, oldest first, so that the plan reads down to them)."""
    tasks = history(2000)
    for index in open_at:
        tasks[index] = tasks[index]._replace(status=PROCESSING, progress=50, ended=None)
    listing = Listing(Order.NEWEST_FIRST, tasks)
    known = listing.complete()
    change(listing, known)
    with pytest.raises(PassRejected) as raised:
        run_pass(known, listing.pages, listing.lookups)
    return raised.value.reason, str(raised.value)


def renamed(listing: Listing, index: int) -> str:
    """The task at ``index`` (oldest first) turns into another one at the same place."""
    old = listing.tasks[index].task_id
    listing.tasks[index] = listing.tasks[index]._replace(task_id="f" * 32)
    return old


def test_a_total_that_fell_is_removed() -> None:
    assert rejection(lambda listing, _: listing.remove(listing.tasks[0].task_id)) == (
        "removed",
        "the total fell from 2000 to 1999",
    )


def test_a_known_task_at_another_place_in_the_head_is_anchor_moved() -> None:
    reason, detail = rejection(lambda listing, _: renamed(listing, 1950))
    assert reason == "anchor_moved"
    assert detail == (
        f"age index 1950 holds {'f' * 32!r}, not {history(2000)[1950].task_id!r}: the order changed or "
        "tasks were removed"
    )


def test_a_youngest_task_that_left_the_young_end_is_young_end() -> None:
    old = history(2000)[-1].task_id
    assert rejection(lambda listing, _: renamed(listing, 1999)) == (
        "young_end",
        f"task {old} left the youngest tasks",
    )


def test_an_open_task_below_the_head_that_is_not_at_its_age_is_open_task_missing() -> None:
    # Ten tasks open 310 to 400 ages deep: four pages read them more cheaply than ten queries, so
    # the window reaches below the 300 ages the head keeps.
    deep = tuple(range(1600, 1691, 10))
    old = history(2000)[1650].task_id
    assert rejection(lambda listing, _: renamed(listing, 1650), open_at=deep) == (
        "open_task_missing",
        f"open task {old} is not at age index 1650",
    )


def test_an_open_task_asked_for_by_id_that_is_gone_is_task_deleted() -> None:
    def replace_deepest_open(listing: Listing, known: KnownTasks) -> None:
        age = min(age for age, _ in known.open.values())
        renamed(listing, age)

    reason, detail = rejection(replace_deepest_open)
    assert reason == "task_deleted"
    assert detail.startswith("open task ") and detail.endswith(" is gone")


def test_one_task_listed_twice_is_duplicate() -> None:
    assert rejection(lambda listing, _: listing.tasks.append(listing.tasks[-5])) == (
        "duplicate",
        "one task was listed at two age indices",
    )


def test_a_finished_task_that_opened_again_is_status_reverted() -> None:
    def reopen(listing: Listing, known: KnownTasks) -> None:
        index = next(
            i
            for i in range(len(listing.tasks) - 1, 0, -1)
            if not listing.tasks[i].is_open and listing.tasks[i].task_id not in known.open
        )
        listing.tasks[index] = listing.tasks[index]._replace(status=PROCESSING, ended=None)

    reason, detail = rejection(reopen)
    assert reason == "status_reverted"
    assert detail.endswith("had finished as SUCCEED, now PROCESSING") or detail.endswith(
        "had finished as FAILED, now PROCESSING"
    )
