"""An in-memory VOD listing for the listing strategies' tests: tasks in the API's order, what it
answers to pages and task_id queries, and how it changes between (or during) passes."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Sequence

from exporter.listing.fold import ListingFold
from exporter.listing.known import KnownTasks, Order
from exporter.tasks import FAILED, PROCESSING, SUCCEED, WAITING, Page, PageRequest, Task

T0 = 1_800_000_000.0


class Listing:
    """The API as a list in its order, plus what it answers; mutated between (or during) passes."""

    def __init__(self, order: Order, tasks: Sequence[Task]) -> None:
        self.order = order
        self.tasks: list[Task] = []  # oldest first; the API's order is applied when paging
        for task in sorted(tasks, key=lambda t: t.created):
            self.tasks.append(task)
        self.calls = 0
        self.added = 0
        self.on_page: Callable[[], None] | None = None  # runs after each page is answered

    def listed(self) -> list[Task]:
        return self.tasks[::-1] if self.order is Order.NEWEST_FIRST else list(self.tasks)

    def page(self, request: PageRequest) -> Page:
        self.calls += 1
        listed = self.listed()
        page = Page(request.offset, len(listed), listed[request.offset : request.offset + request.limit], 0)
        if self.on_page is not None:
            self.on_page()
        return page

    def pages(self, requests: Sequence[PageRequest]) -> list[Page]:
        return [self.page(request) for request in requests]

    def lookups(self, task_ids: Sequence[str]) -> dict[str, Page]:
        self.calls += len(task_ids)
        by_id = {task.task_id: task for task in self.tasks}
        return {
            task_id: Page(0, 1, [by_id[task_id]], 0) if task_id in by_id else Page(0, 0, [], 0)
            for task_id in task_ids
        }

    def add(self, created: float, status: str = WAITING) -> Task:
        self.added += 1
        task = make(1_000_000 + self.added, status, created)
        # A new task is listed above (newest first) or after (oldest first) every task of its
        # second: the API's tie order, whatever it is, is stable.
        self.tasks.append(task)
        return task

    def set(self, task_id: str, status: str, progress: int = 100) -> None:
        for index, task in enumerate(self.tasks):
            if task.task_id == task_id:
                ended = None if status in (WAITING, PROCESSING) else task.created + 60
                self.tasks[index] = task._replace(status=status, progress=progress, ended=ended)

    def remove(self, task_id: str) -> None:
        self.tasks = [task for task in self.tasks if task.task_id != task_id]

    def counts(self) -> Counter[str]:
        return Counter(task.status for task in self.tasks)

    def open(self) -> dict[str, Task]:
        return {task.task_id: task for task in self.tasks if task.is_open}

    # The client's interface, as the listing strategy uses it.

    def stream_pages(
        self, requests: Iterable[PageRequest], deadline: Callable[[], float]
    ) -> Generator[Page, None, None]:
        for request in requests:
            yield self.page(request)

    def fetch_pages(self, requests: Sequence[PageRequest], deadline: Callable[[], float]) -> list[Page]:
        return self.pages(requests)

    def fetch_tasks(self, task_ids: Sequence[str], deadline: Callable[[], float]) -> dict[str, Page]:
        return self.lookups(task_ids)

    def complete(self) -> KnownTasks:
        """What a complete listing of it now knows (the calls it takes are not counted)."""
        calls = self.calls
        fold = ListingFold(self.order)
        while requests := fold.next_requests(100):
            for request in requests:
                fold.add(self.page(request))
        self.calls = calls
        return fold.result()


def make(serial: int, status: str, created: float) -> Task:
    ended = None if status in (WAITING, PROCESSING) else created + 30
    return Task(f"{serial:032x}", f"a{serial:031x}", status, 0 if ended is None else 100, created, ended)


def history(count: int, *, deep_open: int = 2, young_open: int = 40, seed: int = 1) -> list[Task]:
    """``count`` tasks a few seconds apart (bursts share a second), the youngest ``young_open``
    mostly open, and ``deep_open`` stuck in PROCESSING far back."""
    rng = random.Random(seed)
    tasks = []
    moment = T0
    for serial in range(count):
        if rng.random() < 0.6:
            moment += rng.choice((1, 2, 3))
        young = serial >= count - young_open * 2
        status = (
            rng.choice((WAITING, PROCESSING, SUCCEED)) if young else rng.choice((SUCCEED, SUCCEED, FAILED))
        )
        tasks.append(make(serial, status, moment))
    for serial in rng.sample(range(count // 10, count // 2), deep_open):
        tasks[serial] = tasks[serial]._replace(status=PROCESSING, progress=40, ended=None)
    return tasks


def assert_exact(known: KnownTasks, listing: Listing) -> None:
    assert known.counts() == listing.counts()
    assert {task_id: task for task_id, (_, task) in known.open.items()} == listing.open()
    assert known.total == len(listing.tasks)


def step(listing: Listing, rng: random.Random, arrivals: int) -> None:
    """Some time passes: tasks arrive (bursts in one second), open tasks move on."""
    top = max(task.created for task in listing.tasks)
    for _ in range(arrivals):
        top += rng.choice((0, 0, 1))
        listing.add(top, rng.choice((WAITING, PROCESSING)))
    for task_id, task in list(listing.open().items()):
        roll = rng.random()
        if roll < 0.2:
            listing.set(task_id, rng.choice((SUCCEED, FAILED)))
        elif roll < 0.4 and task.status == WAITING:
            listing.set(task_id, PROCESSING, progress=10)
