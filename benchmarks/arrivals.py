"""Listings while tasks arrive: how often a complete listing succeeds, what it costs, and whether
what it publishes is exact as of one moment.

The simulator runs as ``vod-exporter simulate`` in a process of its own, on the real clock, with
tasks arriving at ``--arrival-rate`` per second; the exporter runs at its default flags, in a
process of its own too:

- **once**: ``vod-exporter once`` against projects of each size, listed newest-first and
  oldest-first, with tasks arriving at each rate, ``--repeat`` times each;
- **shuffled**: the same with ``--tie-order shuffled`` (tasks sharing a second in a fresh order in
  every answer), with no arrivals and with each rate;
- **serve**: ``vod-exporter serve --config.file`` with two projects on one set of keys, tasks
  arriving at ``--serve-rate`` in each, scraped ``--serve-scrapes`` times, ``--serve-interval`` apart.

Exactness. A simulated world is a function of its options and its start time (which the simulator
logs), so this process rebuilds each project's world and asks it about any moment. A listing that
publishes ``editing_tasks_reported`` R is exact if it covered the tasks that existed at one moment
when the total was R: with arrivals only (no deletions, no purge), the R oldest tasks. Its counts
by status must then be those tasks' statuses, except that a task whose status changed while the
listing ran may be counted under any status it had meanwhile. The listing ran within a window
known from outside (the process' run, or up to the scrape's answer) narrowed by the exporter's own
``last_success_timestamp_seconds`` less ``scrape_duration_seconds``; a second of slack is added on
either side. A total outside what the window allows, or counts that no such assignment explains
(a task counted twice, one missed, a wrong status), is not exact.

Run from the repository root:

    python -m benchmarks.arrivals                       # K=5: about 40 minutes on 2 cores
    python -m benchmarks.arrivals --repeat 3 --jobs 2 --json out.json
    python -m benchmarks.arrivals --parts once --sizes 5000 --rates 5 --orders newest-first --repeat 1

It prints Markdown tables; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from itertools import combinations
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.measured_process import child_environment, credentials_environment, serving_exporter
from benchmarks.run import list_of
from benchmarks.simulator_process import SimulatorProcess
from exporter.simulator.command import simulate, world_settings
from exporter.simulator.world import NEWEST_FIRST, OLDEST_FIRST, SHUFFLED, STABLE, ScheduledTask, World
from exporter.tasks import PROCESSING

PROJECT_ID = "0123456789abcdef0123456789abcdef"
SECOND_PROJECT_ID = "fedcba9876543210fedcba9876543210"
PARTS = ("once", "shuffled", "serve")
ONCE_TIMEOUT = 300.0  # a run at the default 30 s scrape timeout ends long before this
SCRAPE_TIMEOUT = 10.0  # what Prometheus announces with each scrape
SLACK = 1.0  # seconds either side of a listing's window
FAILURE = re.compile(r"listing failed[^(]*\((\w+)\)")


# ------------------------------------------------------------------------------------------------
# Exactness


@dataclass(frozen=True)
class Verdict:
    exact: bool
    changed: int  # tasks of the covered set whose status changed within the window
    detail: str = ""  # what differed, when not exact


def judge(world: World, reported: int, published: Mapping[str, int], low: float, high: float) -> Verdict:
    """Whether ``published`` counts and ``reported`` total are exact as of one moment in
    ``[low, high]`` (see the module's docstring). Sound only for worlds that gain tasks and never
    lose any (no deletions, no purge), which is what this benchmark simulates."""
    least, most = world.total(low), world.total(high)
    if not least <= reported <= most:
        return Verdict(False, 0, f"total {reported} outside {least}..{most} within the window")
    covered = sorted(world.records(high), key=lambda task: task.sort_key)[:reported]
    fixed: Counter[str] = Counter()
    changing: Counter[frozenset[str]] = Counter()
    at_end: Counter[str] = Counter()
    for task in covered:
        at_end[task.status(high)] += 1
        passed = statuses_between(task, low, high)
        if len(passed) == 1:
            fixed.update(passed)
        else:
            changing[passed] += 1
    changed = sum(changing.values())
    wrong = unexplained(published, fixed, changing)
    if wrong:
        shown = {status: count for status, count in sorted(published.items()) if count}
        return Verdict(
            False, changed, f"{wrong}: published {shown}, truth at the end {dict(sorted(at_end.items()))}"
        )
    return Verdict(True, changed)


def statuses_between(task: ScheduledTask, low: float, high: float) -> frozenset[str]:
    """Every status the task had at some moment in ``[low, high]``: statuses only move forward
    (WAITING, PROCESSING from ``started``, the outcome from ``ended``), so the ends and the start
    of processing, if it falls between, are all there is to look at."""
    passed = {task.status(low), task.status(high)}
    if task.started is not None and low < task.started < high:
        passed.add(PROCESSING if task.started < task.ended else task.outcome)
    return frozenset(passed)


def unexplained(
    published: Mapping[str, int], fixed: Mapping[str, int], changing: Mapping[frozenset[str], int]
) -> str:
    """Why no assignment of each changing task to one of its statuses tops ``fixed`` up to
    ``published``; "" when one exists. By Hall's theorem one exists exactly when the totals agree
    and every set of statuses needs no more tasks than can go to it."""
    statuses = sorted(set(published) | set(fixed) | {s for kind in changing for s in kind})
    need = {status: published.get(status, 0) - fixed.get(status, 0) for status in statuses}
    short = [status for status, count in need.items() if count < 0]
    if short:
        return f"fewer {', '.join(short)} than tasks that had that status throughout"
    if sum(need.values()) != sum(changing.values()):
        return f"{sum(published.values())} counted, {sum(fixed.values()) + sum(changing.values())} covered"
    for size in range(1, len(statuses)):
        for chosen in combinations(statuses, size):
            demand = sum(need[status] for status in chosen)
            supply = sum(count for kind, count in changing.items() if kind.intersection(chosen))
            if demand > supply:
                return f"{demand} more {'/'.join(chosen)} than tasks that changed into them ({supply})"
    return ""


def rebuild_worlds(simulator: SimulatorProcess) -> dict[str, World]:
    """Each project's world, as the simulator process has it: the same options, the logged start."""
    params = simulate.make_context("simulate", simulator.simulate_arguments()).params
    first = world_settings(params)
    projects = (simulator.project_id, *simulator.more_projects)
    return {
        project_id: World(replace(first, seed=first.seed + index), start=simulator.world_starts[project_id])
        for index, project_id in enumerate(projects)
    }


# ------------------------------------------------------------------------------------------------
# What the exporter published


@dataclass
class Exposition:
    up: dict[str, bool] = field(default_factory=dict)
    reported: dict[str, int] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    last_success: dict[str, float] = field(default_factory=dict)
    duration: dict[str, float] = field(default_factory=dict)
    errors: dict[str, dict[str, float]] = field(default_factory=dict)  # project: reason: failed listings
    api_calls: int = 0

    def window(self, project_id: str, earliest: float, latest: float) -> tuple[float, float]:
        """The moments the project's published listing can have read pages at, with slack."""
        low = earliest
        if project_id in self.last_success and project_id in self.duration:
            low = max(low, self.last_success[project_id] - self.duration[project_id])
        return low - SLACK, latest + SLACK


def parse_exposition(text: str) -> Exposition:
    found = Exposition()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels, value = sample.name.removeprefix("huaweicloud_vod_"), sample.labels, sample.value
            project = labels.get("project_id", "")
            if name == "up":
                found.up[project] = value == 1
            elif name == "editing_tasks":
                found.counts.setdefault(project, {})[labels["status"]] = int(value)
            elif name == "editing_tasks_reported":
                found.reported[project] = int(value)
            elif name == "last_success_timestamp_seconds":
                found.last_success[project] = value
            elif name == "scrape_duration_seconds":
                found.duration[project] = value
            elif name == "scrape_errors_total":
                found.errors.setdefault(project, {})[labels["reason"]] = value
            elif name == "api_requests_total":
                found.api_calls += int(value)
    return found


def check(found: Exposition, world: World, project_id: str, earliest: float, latest: float) -> Verdict | None:
    """The verdict on the project's published listing; None when it published none (up 0)."""
    if not found.up.get(project_id) or project_id not in found.reported:
        return None
    low, high = found.window(project_id, earliest, latest)
    return judge(world, found.reported[project_id], found.counts.get(project_id, {}), low, high)


# ------------------------------------------------------------------------------------------------
# vod-exporter once


@dataclass(frozen=True)
class Setup:
    part: str  # "once" or "shuffled"
    tasks: int
    order: str
    rate: float
    tie_order: str = STABLE

    def world_options(self) -> list[str]:
        return ["--order", self.order, "--arrival-rate", f"{self.rate:g}", "--tie-order", self.tie_order]


def run_once(url: str, keys: dict[str, str], world: World) -> dict[str, Any]:
    args = [sys.executable, "-m", "exporter", "once", "--project-id", PROJECT_ID]
    args += ["--endpoint", url, "--iam-endpoint", url]
    began, started = time.time(), time.perf_counter()
    try:
        done = subprocess.run(
            args,
            env=child_environment(keys),
            capture_output=True,
            text=True,
            timeout=ONCE_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"exit": None, "wall_seconds": ONCE_TIMEOUT, "failure": "killed", "api_calls": None}
    wall, ended = time.perf_counter() - started, time.time()
    found = parse_exposition(done.stdout)
    failure = FAILURE.search(done.stderr)
    verdict = check(found, world, PROJECT_ID, began, ended) if done.returncode == 0 else None
    return {
        "exit": done.returncode,
        "wall_seconds": wall,
        "listing_seconds": found.duration.get(PROJECT_ID),
        "api_calls": found.api_calls,
        "failure": failure.group(1) if failure else ("" if done.returncode == 0 else done.stderr[-300:]),
        "reported": found.reported.get(PROJECT_ID),
        "exact": None if verdict is None else verdict.exact,
        "changed_in_window": None if verdict is None else verdict.changed,
        "wrong": "" if verdict is None else verdict.detail,
    }


def measure_setup(setup: Setup, repeat: int, access_key: str, secret_key: str) -> dict[str, Any]:
    keys = credentials_environment(access_key, secret_key)
    simulator = SimulatorProcess(
        project_id=PROJECT_ID,
        tasks=setup.tasks,
        latency=0.0,
        access_key=access_key,
        secret_key=secret_key,
        world_options=setup.world_options(),
    )
    with simulator:
        world = rebuild_worlds(simulator)[PROJECT_ID]
        runs = [run_once(simulator.url, keys, world) for _ in range(repeat)]
    return {"setup": asdict(setup), "runs": runs}


def setups(
    parts: Sequence[str], sizes: Sequence[int], orders: Sequence[str], rates: Sequence[float]
) -> list[Setup]:
    chosen = []
    if "once" in parts:
        chosen += [Setup("once", n, order, rate) for n in sizes for order in orders for rate in rates]
    if "shuffled" in parts:
        shuffled_rates = [0.0, *(rate for rate in rates if rate > 0)]
        chosen += [
            Setup("shuffled", n, order, rate, SHUFFLED)
            for n in sizes
            for order in orders
            for rate in shuffled_rates
        ]
    return chosen


# ------------------------------------------------------------------------------------------------
# vod-exporter serve, two projects on one set of keys


def targets_file(path: Path, url: str, project_ids: Sequence[str]) -> None:
    lines = ["targets:"]
    for project_id in project_ids:
        lines.append(
            f"  - {{region: cn-north-4, project_id: '{project_id}', endpoint: '{url}', "
            f"iam_endpoint: '{url}', credentials: simulated}}"
        )
    lines += ["credentials:", "  simulated: {ak_env: HUAWEICLOUD_SDK_AK, sk_env: HUAWEICLOUD_SDK_SK}", ""]
    path.write_text("\n".join(lines))


def measure_serve(
    tasks: int, rate: float, scrapes: int, interval: float, access_key: str, secret_key: str
) -> dict[str, Any]:
    keys = credentials_environment(access_key, secret_key)
    projects = (PROJECT_ID, SECOND_PROJECT_ID)
    simulator = SimulatorProcess(
        project_id=PROJECT_ID,
        more_projects=projects[1:],
        tasks=tasks,
        latency=0.0,
        access_key=access_key,
        secret_key=secret_key,
        world_options=["--arrival-rate", f"{rate:g}"],
    )
    rows: list[dict[str, Any]] = []
    with simulator, tempfile.TemporaryDirectory() as folder:
        worlds = rebuild_worlds(simulator)
        path = Path(folder) / "targets.yml"
        targets_file(path, simulator.url, projects)
        launched = time.time()
        headers = {"X-Prometheus-Scrape-Timeout-Seconds": f"{SCRAPE_TIMEOUT:g}", "Accept": "text/plain"}
        with (
            serving_exporter(["--config.file", str(path), "--log.level", "warning"], keys) as (url, _),
            httpx.Client(timeout=SCRAPE_TIMEOUT + 5, headers=headers) as http,
        ):
            first = time.monotonic()
            previous: dict[str, float] = {}
            failed: dict[str, dict[str, float]] = {}
            for index in range(scrapes):
                # Paced, not waiting for anything: the next scrape is due at a fixed offset.
                time.sleep(max(0.0, first + index * interval - time.monotonic()))
                began = time.perf_counter()
                response = http.get(f"{url}/metrics")
                ended = time.time()
                response.raise_for_status()
                found = parse_exposition(response.text)
                row: dict[str, Any] = {"scrape": index + 1, "wall_seconds": time.perf_counter() - began}
                row["api_calls"] = found.api_calls
                for project_id in projects:
                    verdict = check(found, worlds[project_id], project_id, launched, ended)
                    success = found.last_success.get(project_id, 0.0)
                    errors = found.errors.get(project_id, {})
                    before = failed.get(project_id, {})
                    row[project_id] = {
                        "up": found.up.get(project_id, False),
                        "fresh": success > 0 and success != previous.get(project_id),
                        "errors": sorted(reason for reason, n in errors.items() if n > before.get(reason, 0)),
                        "exact": None if verdict is None else verdict.exact,
                        "wrong": "" if verdict is None else verdict.detail,
                    }
                    previous[project_id] = success
                    failed[project_id] = errors
                rows.append(row)
    return {"tasks": tasks, "rate": rate, "interval": interval, "projects": list(projects), "scrapes": rows}


# ------------------------------------------------------------------------------------------------
# Figures


def _median_max(values: Sequence[float]) -> str:
    return f"{statistics.median(values):.4g} / {max(values):.4g}" if values else "-"


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    runs = result["runs"]
    succeeded = [run for run in runs if run["exit"] == 0]
    failures = Counter(run["failure"] for run in runs if run["exit"] != 0)
    return {
        "runs": len(runs),
        "exit_0": len(succeeded),
        "exact": sum(1 for run in succeeded if run["exact"]),
        "listing_seconds": [run["listing_seconds"] for run in runs if run.get("listing_seconds") is not None],
        "api_calls": [run["api_calls"] for run in runs if run["api_calls"] is not None],
        "failures": dict(failures),
    }


def once_table(results: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| ties | tasks | order | arrivals/s | exit 0 | listing s: median / max | API calls: median / max "
        "| exact (of exit 0) | failures |",
        "|---|---:|---|---:|---:|---|---|---|---|",
    ]
    for result in results:
        setup, summary = result["setup"], summarize(result)
        failures = ", ".join(f"{reason} {count}x" for reason, count in summary["failures"].items()) or "-"
        exact = f"{summary['exact']}/{summary['exit_0']}" if summary["exit_0"] else "-"
        lines.append(
            f"| {setup['tie_order']} | {setup['tasks']:,} | {setup['order']} | {setup['rate']:g} "
            f"| {summary['exit_0']}/{summary['runs']} | {_median_max(summary['listing_seconds'])} "
            f"| {_median_max(summary['api_calls'])} | {exact} | {failures} |"
        )
    return "\n".join(lines)


def serve_table(result: dict[str, Any]) -> str:
    projects = result["projects"]
    head = " | ".join(f"{p[:6]}… up / new success / exact / failed as" for p in projects)
    lines = [f"| scrape | {head} | API calls so far |", "|---:|" + "---|" * len(projects) + "---:|"]
    marks = {True: "yes", False: "NO", None: "-"}
    for row in result["scrapes"]:
        cells = " | ".join(
            f"{int(row[p]['up'])} / {marks[row[p]['fresh']]} / {marks[row[p]['exact']]} / "
            f"{','.join(row[p]['errors']) or '-'}"
            for p in projects
        )
        lines.append(f"| {row['scrape']} | {cells} | {row['api_calls']} |")
    later = [row[p] for row in result["scrapes"][1:] for p in projects]
    exact = sum(1 for cell in later if cell["exact"])
    lines.append(f"\nFrom the second scrape on: {exact} of {len(later)} target-scrapes up and exact.")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# Driver


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.arrivals",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--parts", type=list_of(str), default=list(PARTS), help=f"of {', '.join(PARTS)}")
    parser.add_argument("--sizes", type=list_of(int), default=[5000, 30000], help="tasks at start, per setup")
    parser.add_argument("--orders", type=list_of(str), default=[NEWEST_FIRST, OLDEST_FIRST])
    parser.add_argument("--rates", type=list_of(float), default=[1.0, 5.0, 20.0], help="arrivals per second")
    parser.add_argument("--repeat", type=int, default=5, help="K: runs of vod-exporter once per setup")
    parser.add_argument(
        "--jobs", type=int, default=1, help="setups measured at once, each with its simulator"
    )
    parser.add_argument("--serve-tasks", type=int, default=5000, help="tasks at start in each served project")
    parser.add_argument("--serve-rate", type=float, default=1.0, help="arrivals per second in each")
    parser.add_argument("--serve-scrapes", type=int, default=6)
    parser.add_argument("--serve-interval", type=float, default=2.0, help="seconds between scrapes")
    parser.add_argument("--json", help="also write every run's figures to this file")
    args = parser.parse_args(argv)
    if set(args.parts) - set(PARTS):
        parser.error(f"--parts: choose among {', '.join(PARTS)}")
    if set(args.orders) - {NEWEST_FIRST, OLDEST_FIRST}:
        parser.error(f"--orders: choose among {NEWEST_FIRST}, {OLDEST_FIRST}")
    if not all(0 < n <= 1_000_000 for n in [*args.sizes, args.serve_tasks]):
        parser.error("--sizes and --serve-tasks must be between 1 and 1000000")
    if not all(0 <= rate <= 1000 and math.isfinite(rate) for rate in [*args.rates, args.serve_rate]):
        parser.error("--rates and --serve-rate must be between 0 and 1000 per second")
    if not (1 <= args.repeat <= 100 and 1 <= args.jobs <= 16 and 1 <= args.serve_scrapes <= 100):
        parser.error("--repeat and --serve-scrapes must be 1 to 100, --jobs 1 to 16")
    if not 0 <= args.serve_interval <= 60:
        parser.error("--serve-interval must be 0 to 60 seconds")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    access_key, secret_key = "BENCH" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30)
    started = time.monotonic()

    def one(setup: Setup) -> dict[str, Any]:
        progress(
            f"{setup.part}: {setup.tasks:,} tasks, {setup.order}, {setup.rate:g}/s, ties {setup.tie_order}"
        )
        return measure_setup(setup, args.repeat, access_key, secret_key)

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(one, setups(args.parts, args.sizes, args.orders, args.rates)))
    served = None
    if "serve" in args.parts:
        progress(f"serve: 2 projects of {args.serve_tasks:,} tasks, {args.serve_rate:g}/s each")
        served = measure_serve(
            args.serve_tasks, args.serve_rate, args.serve_scrapes, args.serve_interval, access_key, secret_key
        )
    if results:
        print(f"`vod-exporter once`, default flags, {args.repeat} runs per row\n")
        print(once_table(results))
    if served is not None:
        print(
            f"\n`vod-exporter serve --config.file`, two projects, one key, {served['interval']:g} s apart\n"
        )
        print(serve_table(served))
    print(f"\nTotal run time: {time.monotonic() - started:.0f} s on {os.cpu_count()} CPUs")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"once": results, "serve": served}, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
