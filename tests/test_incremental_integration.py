"""Incremental listing over real sockets: the exporter against the simulator, every listing signed
and paged over HTTP, simulated time stepped 15 s a scrape. After each scrape the published counts
by status and every open task's progress must equal the simulator's ground truth at that moment,
whatever the order, the purges, the deletions or an order that breaks mid-run."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import pytest

from benchmarks.incremental import SteppedTime, cheapest_plan
from benchmarks.simulator_world import issue_world
from exporter.app import Exporter
from exporter.cloud.credentials import AkSkCredentials
from exporter.config import ApiSettings, Config, ListingSettings, ScrapeSettings
from exporter.simulator.server import Simulator
from exporter.simulator.world import WorldSettings
from exporter.store import StoreView
from tests.conftest import wait_for

PROJECT = "0123456789abcdef0123456789abcdef"
AK, SK = "INCREMENTALTESTAK", "incremental-test-secret"


def busy(tasks: int, **changes: object) -> WorldSettings:
    """The issue's busy pipeline: ~1.8 new tasks a second in bursts sharing a second, a few
    hundred open, 3 stuck in PROCESSING deep in the history."""
    return replace(issue_world(tasks, seed=5), **changes)  # type: ignore[arg-type]


@contextmanager
def watched(
    world: WorldSettings, *, mode: str = "auto", rate_limit: float = 0.0, scrape_timeout: float = 20.0
) -> Iterator[tuple[Simulator, Exporter, SteppedTime]]:
    time = SteppedTime()
    simulator = Simulator(
        project_id=PROJECT, world_settings=world, access_key=AK, secret_key=SK, world_clock=time
    )
    simulator.start()
    config = Config(
        region="",
        api=ApiSettings(endpoint=simulator.url, project_id=PROJECT, rate_limit=rate_limit),
        iam_endpoint="",
        scrape=ScrapeSettings(timeout=scrape_timeout, min_refresh_interval=0),
        listing=ListingSettings(mode=mode),
    )
    exporter = Exporter(config, AkSkCredentials(AK, SK))
    try:
        yield simulator, exporter, time
    finally:
        exporter.close()
        simulator.stop()


def scrape(exporter: Exporter) -> tuple[StoreView, int]:
    """One scrape's listing; the view it left and the API calls it cost."""
    before = sum(count for (operation, _), count in exporter.api_stats.requests().items())
    view = exporter.list_once()
    after = sum(count for (operation, _), count in exporter.api_stats.requests().items())
    return view, after - before


def assert_exact(view: StoreView, simulator: Simulator, at: float) -> None:
    assert view.up, view.last_error
    assert view.snapshot is not None
    truth = simulator.world.counts(at)
    published = {status: count for status, count in view.snapshot.counts.items() if count}
    assert published == {status: count for status, count in truth.items() if count}
    assert view.snapshot.reported_total == simulator.world.total(at)
    open_truth = {task.task_id: task.progress for task in simulator.world.open_tasks(at)}
    open_published = {task.task_id: task.progress for task in view.snapshot.series_tasks if task.is_open}
    assert open_published == open_truth
    # Every per-task series, recently finished tasks included, shows the task as the API does.
    for task in view.snapshot.series_tasks:
        listed = simulator.world.find(task.task_id, at)
        assert listed is not None and task == listed.as_task(at), task


@pytest.mark.parametrize("order", ["newest-first", "oldest-first"])
def test_every_scrape_is_exact_and_costs_the_activity_not_the_history(order: str) -> None:
    with watched(busy(20_000, order=order)) as (simulator, exporter, time):
        view, calls = scrape(exporter)
        assert_exact(view, simulator, time())
        assert calls == 200  # the first listing is complete: it learns the order
        for _ in range(12):
            previous_open = [task.task_id for task in simulator.world.open_tasks(time())]
            previous_total = simulator.world.total(time())
            time.step(15)
            cheapest = cheapest_plan(simulator, time(), previous_open, previous_total)
            view, calls = scrape(exporter)
            assert_exact(view, simulator, time())
            assert view.listing.last is not None and view.listing.last.mode == "incremental"
            assert view.listing.last.order == order.replace("-", "_")
            # The pass reads the youngest pages holding the new and most open tasks, and asks for
            # the 3 stuck deep by id: about the cheapest plan, not the 200 of a complete listing.
            assert calls <= cheapest + 2, (calls, cheapest)
        assert view.listing.fallbacks == {}


def test_an_unordered_api_is_listed_completely_every_time_and_says_why() -> None:
    with watched(busy(3_000, order="unordered")) as (simulator, exporter, time):
        for _ in range(3):
            view, calls = scrape(exporter)
            assert_exact(view, simulator, time())
            assert calls == math.ceil(simulator.world.total(time()) / 100)
            facts = view.listing.last
            assert facts is not None and (facts.mode, facts.reason, facts.order) == (
                "full",
                "order_unknown" if _ else "learning",
                "unknown",
            )
            time.step(15)


def test_purged_tasks_are_caught_and_counts_are_exact_again_after() -> None:
    # Tasks older than the history are purged as time goes on: the total falls.
    with watched(busy(3_000, purge_after=3_000 / 1.8 + 30)) as (simulator, exporter, time):
        scrape(exporter)
        time.step(60)  # the oldest tasks pass the purge age
        view, _ = scrape(exporter)  # the pass is discarded; a complete listing in the same scrape
        assert_exact(view, simulator, time())
        assert sum(view.listing.fallbacks.values()) == 1
        assert view.listing.last is not None and view.listing.last.reason == "fallback"


def test_a_deleted_open_task_is_caught() -> None:
    with watched(busy(3_000)) as (simulator, exporter, time):
        scrape(exporter)
        stuck = min(simulator.world.open_tasks(time()), key=lambda task: task.created)
        simulator.world.delete_task(stuck.task_id)
        view, _ = scrape(exporter)
        assert set(view.listing.fallbacks) & {"task_deleted", "removed", "anchor_moved"}
        assert_exact(view, simulator, time())


def test_an_order_that_breaks_mid_run_is_caught_and_listing_stays_exact() -> None:
    with watched(busy(3_000)) as (simulator, exporter, time):
        scrape(exporter)
        time.step(15)
        scrape(exporter)
        simulator.world.set_order("unordered")
        time.step(15)
        view, _ = scrape(exporter)
        assert sum(view.listing.fallbacks.values()) == 1
        for _ in range(3):
            view, _ = scrape(exporter)
            assert_exact(view, simulator, time())
            facts = view.listing.last
            assert facts is not None and (facts.mode, facts.order) == ("full", "unknown")
            time.step(15)


def test_a_project_too_big_for_a_scrape_is_synced_in_the_background_then_exact() -> None:
    # 40 pages at 20 calls a second cannot fit a 1.5 s scrape: the first scrape starts a background
    # listing (paced at half the rate), and scrapes answer up 0 with its progress until it is done.
    with watched(busy(4_000), rate_limit=20.0, scrape_timeout=1.5) as (simulator, exporter, time):
        view, _ = scrape(exporter)
        assert not view.up and view.last_error is not None and view.last_error[0] == "syncing"
        assert view.listing.sync_progress is not None
        wait_for(
            "the background listing",
            lambda: exporter.strategy._background is None or exporter.strategy._background.done,
            timeout=120,
        )
        time.step(15)
        view, _ = scrape(exporter)
        assert_exact(view, simulator, time())
        assert view.listing.last is not None and view.listing.last.mode == "sync"
