"""Incremental listing at the issue's sizes: what each scrape costs, and whether it is exact.

Each case runs in a process of its own: the simulator (``issue_world``: about 1.8 new tasks a
second in bursts, about 460 open, 3 stuck deep in the history) serves in that process, and the
exporter runs as ``vod-exporter serve`` at its defaults (20 calls/s, concurrency 4) in a process
of its own, so its peak RSS is its alone. The harness scrapes ``/metrics`` over loopback as
Prometheus would (``X-Prometheus-Scrape-Timeout-Seconds: 10``), and with ``--scrape.min-interval
0`` so that every scrape lists.

Simulated time stands still during a scrape and steps 15 s before the next, so every published
number can be checked against the simulator's ground truth at that moment: counts by status, the
API's total, and every open task's progress. API calls are counted where they arrive, at the
simulator: a scrape's calls are all the exporter made since the scrape before, background listings
included. Beside each, the cheapest plan (docs/incremental-listing.md) from the ground truth.

- **first sync**: a project too big for one scrape is listed in the background; scrapes come every
  15 s of real time meanwhile (the background listing runs on the real clock), each timed against
  the 10 s timeout, until one answers ``up 1``;
- **steady**: then ``--scrapes`` scrapes, back to back in real time (``paced`` cases: 15 s apart,
  so that a background reconciliation on the real clock meets the scrapes it would meet).

Run from the repository root:

    python -m benchmarks.incremental                        # every case, one at a time: 45 minutes
    python -m benchmarks.incremental --jobs 4 --json out.json   # four at a time: 20 minutes
    python -m benchmarks.incremental --cases newest-200k,unordered --scrapes 20

It prints a Markdown table and the targets, met or missed; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.measured_process import (
    MeasuredProcessFailed,
    child_environment,
    credentials_environment,
    serving_exporter,
)
from benchmarks.simulator_world import issue_world
from exporter.listing.incremental import cheapest_calls
from exporter.simulator.server import Simulator
from exporter.tasks import PROCESSING, WAITING

PROJECT_ID = "0123456789abcdef0123456789abcdef"
PAGE_SIZE = 100
SCRAPE_INTERVAL = 15.0
SCRAPE_TIMEOUT = 10.0  # what Prometheus announces; the exporter keeps 0.5 s of it back
RATE_LIMIT = 20.0  # the exporter's default, stated here to compute what a sync takes
SYNC_RATE_SHARE = 0.5
START_TIMEOUT = 60.0

# Targets of the issue; measured and reported, never asserted by a timed test.
MEDIAN_FACTOR, MEDIAN_SLACK = 1.25, 2
MEAN_FACTOR = 1.5
RSS_TARGET_BYTES = 250 * 2**20
DEFAULT_RECONCILE_SECONDS = 6 * 3600.0


@dataclass(frozen=True)
class Case:
    name: str
    tasks: int
    order: str = "newest-first"
    reconcile_interval: str | None = None  # --listing.reconcile-interval; None: the default (6h)
    paced: bool = False  # steady scrapes 15 s apart in real time, not back to back
    disruptions: bool = False  # delete tasks and break the order mid-run (see _disrupt)
    purge: bool = False  # tasks older than the history are purged as time goes on
    scrapes: int = 40
    seed: int = 1


CASES = (
    Case("newest-200k", 200_000),
    Case("newest-200k-reconcile-2m", 200_000, reconcile_interval="2m", paced=True),
    Case("oldest-50k", 50_000, order="oldest-first"),
    Case("newest-1m", 1_000_000),
    # Small enough that a complete listing fits a scrape (100 pages at 20/s): what "as today" is.
    Case("unordered", 10_000, order="unordered", scrapes=20),
    # Too big for a complete listing in a scrape (300 pages at 20/s), as 50k was before.
    Case("unordered-30k", 30_000, order="unordered", scrapes=4),
    Case("disruptions", 10_000, disruptions=True, scrapes=24),
    Case("purge", 10_000, purge=True, scrapes=12),
)
CASE_NAMES = tuple(case.name for case in CASES)


# ------------------------------------------------------------------------------------------------
# One case, in this process


class SteppedTime:
    """The simulator's world clock: still during a scrape, stepped between scrapes. It starts now;
    signatures, tokens and rate limits keep the real clock (a run's steps stay well within the
    gateway's 15 minutes of allowed clock skew only because the gateway checks the real one)."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now

    def step(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Scrape:
    """One scrape as Prometheus saw it, and the truth it is checked against."""

    index: int
    phase: str  # "sync" or "steady"
    event: str  # a disruption made just before it, or ""
    wall_seconds: float
    up: bool
    error: str  # the scrape error reason counted by this scrape, or ""
    calls: int  # requests the simulator received since the scrape before
    complete_calls: int  # what a complete listing costs at this moment: ceil(total / 100)
    listing_calls: int | None  # what the exporter says its last published listing cost
    cheapest: int | None  # None: no known state to compare (first sync, or after a failure)
    mode: str
    mode_reason: str
    order: str
    fallbacks: dict[str, float]
    sync_progress: float | None
    reconciliations: float
    mismatches: float
    exact: bool | None  # None: up 0, nothing to compare
    wrong: str = ""  # what differed, when not exact


@contextmanager
def exporter_process(case: Case, simulator_url: str, keys: dict[str, str]) -> Iterator[tuple[str, int]]:
    """``vod-exporter serve`` against the simulator; yields its URL and process id."""
    options = ["--project-id", PROJECT_ID, "--endpoint", simulator_url]
    options += ["--scrape.min-interval", "0", "--log.level", "warning"]
    if case.reconcile_interval is not None:
        options += ["--listing.reconcile-interval", case.reconcile_interval]
    with serving_exporter(options, keys, START_TIMEOUT) as served:
        yield served


def peak_rss_of(pid: int) -> int:
    """The process' resident-set high-water mark, from /proc (Linux)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


@dataclass
class Exposition:
    up: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    reported: int | None = None
    open_progress: dict[str, int] = field(default_factory=dict)
    errors: dict[str, float] = field(default_factory=dict)
    fallbacks: dict[str, float] = field(default_factory=dict)
    mode: tuple[str, str] = ("", "")
    order: str = ""
    listing_calls: int | None = None
    sync_progress: float | None = None
    reconciliations: float = 0.0
    mismatches: float = 0.0


def parse_exposition(text: str) -> Exposition:
    found = Exposition()
    status: dict[str, str] = {}
    progress: dict[str, int] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            short = name.removeprefix("huaweicloud_vod_")
            if short == "up":
                found.up = value == 1
            elif short == "editing_tasks":
                found.counts[labels["status"]] = int(value)
            elif short == "editing_tasks_reported":
                found.reported = int(value)
            elif short == "editing_task_status":
                status[labels["task_id"]] = labels["status"]
            elif short == "editing_task_progress_ratio":
                progress[labels["task_id"]] = round(value * 100)
            elif short == "scrape_errors_total":
                found.errors[labels["reason"]] = value
            elif short == "listing_fallbacks_total":
                found.fallbacks[labels["reason"]] = value
            elif short == "listing_mode":
                found.mode = (labels["mode"], labels["reason"])
            elif short == "listing_order":
                found.order = labels["order"]
            elif short == "listing_calls":
                found.listing_calls = int(value)
            elif short == "listing_sync_progress_ratio":
                found.sync_progress = value
            elif short == "listing_reconciliations_total":
                found.reconciliations = value
            elif short == "listing_reconciliation_mismatches_total":
                found.mismatches = value
    found.open_progress = {
        task_id: progress[task_id] for task_id, state in status.items() if state in (WAITING, PROCESSING)
    }
    return found


def compare(found: Exposition, simulator: Simulator, at: float) -> str:
    """What the exposition got wrong against the ground truth at ``at``; "" when exact."""
    world = simulator.world
    truth = {status: count for status, count in world.counts(at).items() if count}
    published = {status: count for status, count in found.counts.items() if count}
    wrong = []
    if published != truth:
        wrong.append(f"counts {published} != {truth}")
    if found.reported != world.total(at):
        wrong.append(f"total {found.reported} != {world.total(at)}")
    open_truth = {task.task_id: task.progress for task in world.open_tasks(at)}
    if found.open_progress != open_truth:
        differing = set(found.open_progress.items()) ^ set(open_truth.items())
        wrong.append(f"{len(differing)} open-task entries differ")
    return "; ".join(wrong)


def cheapest_plan(simulator: Simulator, at: float, known_open: Sequence[str], known_total: int) -> int:
    """The fewest calls any correct pass can make at ``at`` from what was true at the scrape
    before: the youngest pages down to some depth, a ``task_id`` query per open task deeper."""
    world = simulator.world
    total = world.total(at)
    newest_first = world.order == "newest-first"
    depths = []
    for task_id in known_open:
        position = world.position(task_id, at)
        if position is not None:  # a deleted task costs no exporter a call to know of
            depths.append(position + 1 if newest_first else total - position)
    return cheapest_calls(depths, new=max(0, total - known_total), page_size=PAGE_SIZE)


class Run:
    """One case: the simulator here, the exporter in its own process, scrapes from here."""

    def __init__(self, case: Case, simulator: Simulator, clock: SteppedTime, url: str) -> None:
        self.case = case
        self.simulator = simulator
        self.clock = clock
        self.url = url
        self.http = httpx.Client(
            timeout=SCRAPE_TIMEOUT + 5,
            headers={"X-Prometheus-Scrape-Timeout-Seconds": f"{SCRAPE_TIMEOUT:g}", "Accept": "text/plain"},
        )
        self.scrapes: list[Scrape] = []
        self._calls_seen = 0
        self._errors: dict[str, float] = {}
        self._known: tuple[list[str], int] | None = None  # open tasks and total at the last exact scrape

    def scrape(self, phase: str, event: str = "") -> Scrape:
        world, at = self.simulator.world, self.clock()
        cheapest = None
        if self._known is not None and world.order != "unordered":
            cheapest = cheapest_plan(self.simulator, at, *self._known)
        started = time.perf_counter()
        response = self.http.get(f"{self.url}/metrics")
        wall = time.perf_counter() - started
        response.raise_for_status()
        calls_now = self.simulator.requests.count("tasks")
        calls, self._calls_seen = calls_now - self._calls_seen, calls_now
        found = parse_exposition(response.text)
        error = ",".join(
            reason for reason, count in found.errors.items() if count > self._errors.get(reason, 0)
        )
        self._errors = found.errors
        wrong = compare(found, self.simulator, at) if found.up else ""
        exact = (not wrong) if found.up else None
        self._known = ([task.task_id for task in world.open_tasks(at)], world.total(at)) if exact else None
        scrape = Scrape(
            index=len(self.scrapes),
            phase=phase,
            event=event,
            wall_seconds=wall,
            up=found.up,
            error=error,
            calls=calls,
            complete_calls=max(1, math.ceil(world.total(at) / PAGE_SIZE)),
            listing_calls=found.listing_calls,
            cheapest=cheapest,
            mode=found.mode[0],
            mode_reason=found.mode[1],
            order=found.order,
            fallbacks={reason: count for reason, count in found.fallbacks.items() if count},
            sync_progress=found.sync_progress,
            reconciliations=found.reconciliations,
            mismatches=found.mismatches,
            exact=exact,
            wrong=wrong,
        )
        self.scrapes.append(scrape)
        return scrape

    def first_sync(self, progress: Callable[[str], None]) -> bool:
        """Scrapes every 15 s of real time until one answers up 1; False if none did in three
        times what the background listing should take (then the run ends there)."""
        background_seconds = self.case.tasks / PAGE_SIZE / (RATE_LIMIT * SYNC_RATE_SHARE)
        give_up = time.monotonic() + 3 * background_seconds + 120
        while True:
            started = time.monotonic()
            scrape = self.scrape("sync")
            if scrape.up:
                return True
            if time.monotonic() > give_up:
                progress(f"{self.case.name}: the first sync did not complete ({scrape.error})")
                return False
            if scrape.sync_progress is not None:
                progress(f"{self.case.name}: syncing, {scrape.sync_progress:.0%}")
            time.sleep(max(0.0, started + SCRAPE_INTERVAL - time.monotonic()))
            self.clock.step(SCRAPE_INTERVAL)

    def steady(self, progress: Callable[[str], None]) -> None:
        for step in range(self.case.scrapes):
            started = time.monotonic()
            self.clock.step(SCRAPE_INTERVAL)
            event = (
                _disrupt(self.simulator, self.clock(), step, self.case.scrapes)
                if self.case.disruptions
                else ""
            )
            scrape = self.scrape("steady", event)
            if step % 10 == 9:
                progress(f"{self.case.name}: {step + 1} scrapes, last {scrape.calls} calls")
            if self.case.paced:
                time.sleep(max(0.0, started + SCRAPE_INTERVAL - time.monotonic()))


def _disrupt(simulator: Simulator, at: float, step: int, scrapes: int) -> str:
    """The disruptions of the issue, spread over the run so each is seen on its own: an open task
    deleted (the oldest, stuck deep), a finished task deleted deep in the history, then the order
    broken for good."""
    world, gap = simulator.world, max(2, scrapes // 4)
    if step == gap:
        stuck = min(world.open_tasks(at), key=lambda task: task.created)
        world.delete_task(stuck.task_id, at)
        return "open task deleted"
    if step == 2 * gap:
        (_, deep) = world.page(world.total(at) // 2, 1, at)
        world.delete_task(deep[0].task_id, at)
        return "finished task deleted"
    if step == 3 * gap:
        world.set_order("unordered")
        return "order broken"
    return ""


def run_case(case: Case, progress: Callable[[str], None]) -> dict[str, Any]:
    access_key, secret_key = "BENCH" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30)
    keys = credentials_environment(access_key, secret_key)
    settings = issue_world(case.tasks, order=case.order, seed=case.seed)
    if case.purge:
        # The oldest tasks pass the purge age after 4 scrapes, and from then on some every step.
        settings = replace(settings, purge_after=settings.history + 4 * SCRAPE_INTERVAL + 1)
    clock = SteppedTime()
    started = time.monotonic()
    simulator = Simulator(
        project_id=PROJECT_ID,
        world_settings=settings,
        access_key=access_key,
        secret_key=secret_key,
        world_clock=clock,
    )
    build_seconds = time.monotonic() - started
    simulator.start()
    try:
        with exporter_process(case, simulator.url, keys) as (url, pid):
            run = Run(case, simulator, clock, url)
            sync_started = time.monotonic()
            synced = run.first_sync(progress)
            sync_seconds = time.monotonic() - sync_started
            if synced:
                run.steady(progress)
            peak_rss = peak_rss_of(pid)
    finally:
        simulator.stop()
    return summarize(case, run.scrapes, sync_seconds, build_seconds, peak_rss)


# ------------------------------------------------------------------------------------------------
# Figures


def _stats(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"median": statistics.median(values), "mean": statistics.fmean(values), "max": max(values)}


def summarize(
    case: Case, scrapes: Sequence[Scrape], sync_seconds: float, build_seconds: float, peak_rss: int
) -> dict[str, Any]:
    sync = [s for s in scrapes if s.phase == "sync"]
    steady = [s for s in scrapes if s.phase == "steady"]
    compared = [s for s in steady if s.cheapest is not None and s.up]
    last = steady[-1] if steady else sync[-1]
    return {
        "case": asdict(case),
        "world_build_seconds": build_seconds,
        "complete_listing_calls": math.ceil(case.tasks / PAGE_SIZE),
        "sync": {
            "completed": any(s.up for s in sync),
            "errors": sorted({s.error for s in sync if s.error}),
            "scrapes": len(sync),
            "seconds": sync_seconds,
            "max_wall_seconds": max(s.wall_seconds for s in sync),
            "past_deadline": sum(1 for s in sync if s.wall_seconds > SCRAPE_TIMEOUT),
            "calls": sum(s.calls for s in sync),
        },
        "steady": {
            "scrapes": len(steady),
            "up": sum(1 for s in steady if s.up),
            "exact": sum(1 for s in steady if s.exact),
            "wrong": sum(1 for s in steady if s.exact is False),
            "max_wall_seconds": max((s.wall_seconds for s in steady), default=0.0),
            "past_deadline": sum(1 for s in steady if s.wall_seconds > SCRAPE_TIMEOUT),
            "calls": _stats([s.calls for s in steady]),
            "complete_calls": _stats([s.complete_calls for s in steady]),
            # The scrapes where a pass ran from an exact state, beside the cheapest plan of each.
            "compared_calls": _stats([s.calls for s in compared]),
            "cheapest": _stats([s.cheapest for s in compared if s.cheapest is not None]),
        },
        "fallbacks": last.fallbacks,
        "reconciliations": last.reconciliations,
        "mismatches": last.mismatches,
        "mode": [last.mode, last.mode_reason],
        "order": last.order,
        "peak_rss_bytes": peak_rss,
        "scrapes": [asdict(s) for s in scrapes],
    }


def amortized_mean(result: dict[str, Any], interval: float = DEFAULT_RECONCILE_SECONDS) -> float | None:
    """The steady mean with a reconciliation every ``interval`` spread over its scrapes: a complete
    listing (``ceil(N/100)`` calls) per ``interval / 15 s`` scrapes."""
    calls = result["steady"]["compared_calls"]
    if calls is None:
        return None
    return float(calls["mean"]) + result["complete_listing_calls"] * SCRAPE_INTERVAL / interval


@dataclass(frozen=True)
class Outcome:
    case: str
    target: str
    measured: str
    met: bool | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(results: Sequence[dict[str, Any]]) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for result in results:
        name, steady = result["case"]["name"], result["steady"]
        case = Case(**result["case"])
        exact = f"{steady['exact']} of {steady['scrapes']} exact, {steady['wrong']} wrong"
        sync = result["sync"]
        if not sync["completed"]:
            reasons = ", ".join(sync["errors"])
            never = f"never: {sync['scrapes']} scrapes over {sync['seconds']:.0f} s, up 0 ({reasons})"
            outcomes.append(Outcome(name, "the first sync completes", never, False))
            continue
        if case.disruptions or case.purge:
            outcomes.append(_disruption_outcome(result))
            continue
        outcomes.append(
            Outcome(
                name, "every scrape after the first sync exact", exact, steady["exact"] == steady["scrapes"]
            )
        )
        if case.order == "unordered":
            listings = [s for s in result["scrapes"] if s["phase"] == "steady"]
            wrong_calls = [s["calls"] for s in listings if s["calls"] != s["complete_calls"]]
            reason = f"mode {result['mode'][0]}, reason {result['mode'][1]}, order {result['order']}"
            outcomes.append(
                Outcome(
                    name,
                    "a complete listing each scrape, the reason visible",
                    f"{reason}; calls = ceil(total/100) on "
                    f"{len(listings) - len(wrong_calls)} of {len(listings)}"
                    + (f"; off: {wrong_calls}" if wrong_calls else ""),
                    not wrong_calls and result["mode"] == ["full", "order_unknown"],
                )
            )
            continue
        calls, cheapest = steady["compared_calls"], steady["cheapest"]
        if calls is None or cheapest is None:
            outcomes.append(Outcome(name, "calls beside the cheapest plan", "no pass compared", False))
            continue
        median_bound = MEDIAN_FACTOR * cheapest["median"] + MEDIAN_SLACK
        outcomes.append(
            Outcome(
                name,
                f"median calls ≤ {MEDIAN_FACTOR}x cheapest + {MEDIAN_SLACK}",
                f"{calls['median']:g} against {median_bound:g} (cheapest {cheapest['median']:g})",
                calls["median"] <= median_bound,
            )
        )
        if case.reconcile_interval is None:
            mean, label = amortized_mean(result), "with a reconciliation every 6 h, amortized"
        else:
            mean, label = calls["mean"], f"measured, reconciling every {case.reconcile_interval}"
        assert mean is not None
        outcomes.append(
            Outcome(
                name,
                f"mean calls ≤ {MEAN_FACTOR}x cheapest ({label})",
                f"{mean:.1f} against {MEAN_FACTOR * cheapest['mean']:.1f} (cheapest {cheapest['mean']:.1f})",
                mean <= MEAN_FACTOR * cheapest["mean"],
            )
        )
        if sync["scrapes"] > 1:
            outcomes.append(
                Outcome(
                    name,
                    f"first sync: no scrape past the {SCRAPE_TIMEOUT:g} s timeout",
                    f"{sync['scrapes']} scrapes over {sync['seconds']:.0f} s, slowest "
                    f"{sync['max_wall_seconds']:.2f} s, {sync['past_deadline']} past it",
                    sync["past_deadline"] == 0 and steady["past_deadline"] == 0,
                )
            )
        if case.tasks >= 1_000_000:
            rss = result["peak_rss_bytes"]
            outcomes.append(
                Outcome(
                    name,
                    f"exporter peak RSS ≤ {RSS_TARGET_BYTES // 2**20} MB",
                    f"{rss / 2**20:.0f} MB",
                    0 < rss <= RSS_TARGET_BYTES,
                )
            )
    return outcomes


def _disruption_outcome(result: dict[str, Any]) -> Outcome:
    """Each disruption caught on the scrape it was made before (a fallback counted there; the
    complete listing that follows fits the same scrape at these sizes), and every scrape that
    answered up 1 exact."""
    name = result["case"]["name"]
    steady = [s for s in result["scrapes"] if s["phase"] == "steady"]
    notes, met = [], True
    before: dict[str, float] = {}
    for scrape in steady:
        new = {r: n - before.get(r, 0) for r, n in scrape["fallbacks"].items() if n > before.get(r, 0)}
        before = scrape["fallbacks"]
        if scrape["event"]:
            caught = bool(new)
            met = met and caught
            notes.append(f"{scrape['event']}: {'caught as ' + ','.join(new) if caught else 'NOT caught'}")
    wrong = sum(1 for s in steady if s["exact"] is False)
    first_purge = next((s for s in steady if s["fallbacks"]), None) if result["case"]["purge"] else None
    if first_purge is not None:
        notes.append(
            f"purge: caught as {','.join(first_purge['fallbacks'])} at scrape {first_purge['index']}"
        )
    down = sum(1 for s in steady if not s["up"])
    notes.append(f"{down} of {len(steady)} scrapes up 0, {wrong} wrong")
    if result["case"]["purge"]:
        met = first_purge is not None
    return Outcome(
        name, "each disruption caught on the next pass, exact after", "; ".join(notes), met and not wrong
    )


def format_table(results: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| case | tasks | order | first sync | exact | calls before | calls after: median / mean / max "
        "| cheapest: median / mean / max | fallbacks | reconciliations | peak RSS |",
        "|---|---:|---|---|---|---:|---|---|---|---|---:|",
    ]
    for r in results:
        case, sync, steady = r["case"], r["sync"], r["steady"]
        slowest = f"slowest {sync['max_wall_seconds']:.2f} s"
        if not sync["completed"]:
            first = f"never: {sync['scrapes']} scrapes, {sync['seconds']:.0f} s, {slowest}"
        elif sync["scrapes"] > 1:
            first = f"{sync['seconds']:.0f} s, {sync['scrapes']} scrapes, {slowest}"
        else:
            first = f"in the first scrape ({sync['max_wall_seconds']:.2f} s)"
        before = steady["complete_calls"]["median"] if steady["scrapes"] else r["complete_listing_calls"]
        calls, cheapest = steady["calls"], steady["cheapest"]
        after = f"{calls['median']:g} / {calls['mean']:.1f} / {calls['max']:g}" if calls else "-"
        best = f"{cheapest['median']:g} / {cheapest['mean']:.1f} / {cheapest['max']:g}" if cheapest else "-"
        fallbacks = ", ".join(f"{reason} {count:g}" for reason, count in r["fallbacks"].items()) or "0"
        lines.append(
            f"| {case['name']} | {case['tasks']:,} | {case['order']} | {first} "
            f"| {steady['exact']}/{steady['scrapes']} | {before:,.0f} "
            f"| {after} | {best} "
            f"| {fallbacks} | {r['reconciliations']:g} ({r['mismatches']:g} mismatched) "
            f"| {r['peak_rss_bytes'] / 2**20:.0f} MB |"
        )
    return "\n".join(lines)


def format_outcomes(outcomes: Sequence[Outcome]) -> str:
    verdicts = {True: "met", False: "MISSED", None: "-"}
    lines = ["| case | target | measured | verdict |", "|---|---|---|---|"]
    lines += [f"| {o.case} | {o.target} | {o.measured} | {verdicts[o.met]} |" for o in outcomes]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# Driver


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def measure_cases(cases: Sequence[Case], jobs: int = 1) -> list[dict[str, Any]]:
    """Each case in a fresh process of its own (its simulator, its exporter), ``jobs`` at once."""

    def one(case: Case) -> dict[str, Any]:
        progress(f"{case.name}: starting ({case.tasks:,} tasks, {case.order})")
        completed = subprocess.run(
            [sys.executable, "-m", "benchmarks.incremental", "--child", json.dumps(asdict(case))],
            env=child_environment({}),
            stdout=subprocess.PIPE,
            stderr=None,  # the child's progress lines go straight to ours
            text=True,
            check=False,
        )
        if completed.returncode != 0:
            raise MeasuredProcessFailed(f"{case.name} exited with {completed.returncode}")
        result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
        return result

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(one, cases))


def select_cases(names: Sequence[str], scrapes: int | None, scale: float = 1.0) -> list[Case]:
    chosen = [case for case in CASES if case.name in names]
    if scrapes is not None:
        chosen = [replace(case, scrapes=scrapes) for case in chosen]
    if scale != 1.0:
        chosen = [replace(case, tasks=max(1000, int(case.tasks * scale))) for case in chosen]
    return chosen


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.incremental",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--cases", default=",".join(CASE_NAMES), help=f"of {', '.join(CASE_NAMES)}")
    parser.add_argument("--scrapes", type=int, help="steady scrapes per case (default: each case's own)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every case's tasks (a quick look)")
    parser.add_argument("--jobs", type=int, default=1, help="cases run at once, each in its own processes")
    parser.add_argument("--json", help="also write every figure, every scrape included, to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # one case, as JSON, run in this process
    args = parser.parse_args(argv)
    names = [part.strip() for part in args.cases.split(",") if part.strip()]
    unknown = set(names) - set(CASE_NAMES)
    if unknown or not names:
        parser.error(f"--cases: choose among {', '.join(CASE_NAMES)}")
    if (args.scrapes is not None and args.scrapes < 1) or args.jobs < 1 or not 0 < args.scale <= 1:
        parser.error("--scrapes and --jobs must be 1 or more, --scale in (0, 1]")
    args.names = names
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child is not None:
        print(json.dumps(run_case(Case(**json.loads(args.child)), progress)))
        return 0
    started = time.monotonic()
    results = measure_cases(select_cases(args.names, args.scrapes, args.scale), args.jobs)
    outcomes = evaluate(results)
    print(format_table(results))
    print()
    print(format_outcomes(outcomes))
    print(f"\nTotal run time: {time.monotonic() - started:.0f} s on {os.cpu_count()} CPUs")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"results": results, "targets": [o.as_dict() for o in outcomes]}, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
