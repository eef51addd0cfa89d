"""Reading a fold's rounds from the API: what ``ListingFold.next_wanted`` asks for is fetched, each
answer is folded as it arrives, and every task listed for the first time goes to the caller (the
finished-task tracker and the series picker, which ``CompleteListing`` holds). Used by the complete
listing in the scrape and by the background listing, which paces its rounds.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Sequence
from contextlib import closing
from typing import Protocol

from exporter.deadline import Deadline
from exporter.listing.fold import ListingFold, Wanted
from exporter.listing.known import KnownTasks, PassRejected, snapshot_of
from exporter.store import SeriesPicker, Snapshot, TaskStore
from exporter.tasks import Page, PageRequest, Task

# Rounds in a row that add nothing to a listing before it is given up: an API that repeats or
# omits pages would otherwise be asked again until the deadline.
_STALLED_ROUNDS = 3


class PageSource(Protocol):
    """What the listings need of the API client."""

    def stream_pages(
        self, requests: Iterable[PageRequest], deadline: Deadline
    ) -> Generator[Page, None, None]: ...

    def fetch_pages(self, requests: Sequence[PageRequest], deadline: Deadline) -> list[Page]: ...

    def fetch_tasks(self, task_ids: Sequence[str], deadline: Deadline) -> dict[str, Page]: ...


def read_round(
    fold: ListingFold,
    source: PageSource,
    wanted: Iterable[Wanted],
    deadline: Deadline,
    on_task: Callable[[Task], None],
) -> None:
    """One round: the pages wanted, each placed as of the latest total when it is sent, and folded
    as it arrives."""
    requests = (fold.locate(each) for each in wanted)
    with closing(source.stream_pages(requests, deadline)) as pages:
        for page in pages:
            for task in fold.add(page):
                on_task(task)


def read_to_end(
    fold: ListingFold, source: PageSource, deadline: Deadline, on_task: Callable[[Task], None], most: int
) -> None:
    """Rounds until the fold is complete. Raises ``PassRejected`` when it cannot be, and what the
    client raises (API errors, the deadline)."""
    stalled = 0
    while True:
        if not fold.has_more():
            return
        wanted = fold.next_wanted(most)
        changes = fold.changes
        read_round(fold, source, wanted, deadline, on_task)
        stalled = stalled + 1 if fold.changes == changes else 0
        if stalled >= _STALLED_ROUNDS:
            raise PassRejected(
                "inconsistent",
                f"{stalled} rounds of pages added nothing to the listing: the API repeats or omits pages",
            )


class CompleteListing:
    """One complete listing on its way into the store: the fold, the finished-task tracker's events
    and the per-task series picked from every task it listed. ``observe`` takes each task the fold
    hands on; ``snapshot`` makes the snapshot of its result, by the one function that counts."""

    def __init__(self, fold: ListingFold, store: TaskStore, now: float) -> None:
        self.fold = fold
        self.now = now
        self.tracker = store.begin_tracking(now)
        self._store = store
        self._picker = SeriesPicker(store.settings, now)

    def observe(self, task: Task) -> None:
        self._store.observe(self.tracker, task)
        self._picker.offer(task)

    def recent(self) -> tuple[Task, ...]:
        """The recently finished tasks it listed, for per-task series."""
        return tuple(task for task in self._picker.tasks() if not task.is_open)

    def snapshot(self, known: KnownTasks) -> Snapshot:
        return snapshot_of(known, self._picker, self.now)
