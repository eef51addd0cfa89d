"""Benchmark harness: what a scrape costs in API calls, wall time, CPU and memory.

For each number of tasks N and API latency L, starts the simulator (a frozen world, in its own
process), then measures, each in a fresh process of its own against that same simulator:

- the exporter, through its real code path (AK/SK signing, paging over sockets, the store, the
  collector, ``generate_latest``), at each concurrency C;
- a naive baseline: sequential pages into dicts, then labelled ``Gauge``s for every task.

With ``--incremental``, also the incremental-listing cases of ``benchmarks/incremental.py`` at the
issue's sizes (scrapes every 15 s of simulated time, each checked against the simulator's truth).

Prints a table and the issue's targets, met or missed; ``--json`` keeps everything for tracking.
Run from the repository root:

    python -m benchmarks.run                      # the full matrix (about 5 minutes on 2 cores)
    python -m benchmarks.run --incremental --incremental-jobs 4   # and incremental listing: +20 min
    python -m benchmarks.run --quick              # 1k and 10k tasks, 0 and 20 ms, one listing each
    python -m benchmarks.run --tasks 10000 --latency 0.02 --concurrency 2,4,8 --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from benchmarks import incremental, report
from benchmarks.measured_process import REPOSITORY, credentials_environment, run_measured
from benchmarks.process_start import measure_process_start
from benchmarks.simulator_process import SimulatorProcess

PROJECT_ID = "0123456789abcdef0123456789abcdef"
# Rough costs per page and per task on a slow machine: they only choose the number of
# repetitions and whether the naive baseline is worth its time, never a reported figure.
EXPORTER_SECONDS_PER_PAGE = 0.005
BASELINE_SECONDS_PER_PAGE = 0.005
BASELINE_SECONDS_PER_TASK = 60e-6

T = TypeVar("T")


def list_of(convert: Callable[[str], T]) -> Callable[[str], list[T]]:
    def parse(text: str) -> list[T]:
        try:
            values = [convert(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list") from None
        if not values:
            raise argparse.ArgumentTypeError("give at least one value")
        return values

    return parse


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--tasks", type=list_of(int), default=[1000, 10000, 100000], help="N values")
    parser.add_argument(
        "--latency", type=list_of(float), default=[0.0, 0.02, 0.1], help="L values, seconds per request"
    )
    parser.add_argument("--concurrency", type=list_of(int), default=[4], help="C values for the exporter")
    parser.add_argument("--repeat", type=int, default=3, help="listings per configuration, at most")
    parser.add_argument(
        "--budget",
        type=float,
        default=20.0,
        help="seconds of listings per configuration, which caps --repeat for big N (at least one)",
    )
    parser.add_argument(
        "--baseline-budget",
        type=float,
        default=60.0,
        help="skip the naive baseline where one of its listings would take longer (seconds)",
    )
    parser.add_argument("--start-repeat", type=int, default=5, help="runs of `vod-exporter --version`")
    parser.add_argument("--seed", type=int, default=1, help="the simulated world's seed")
    parser.add_argument(
        "--quick", action="store_true", help="--tasks 1000,10000 --latency 0,0.02 --repeat 1 --start-repeat 3"
    )
    parser.add_argument("--json", type=Path, help="write every measurement to this file")
    parser.add_argument(
        "--incremental",
        action="store_true",
        help="also the incremental-listing cases at the issue's sizes (benchmarks/incremental.py)",
    )
    parser.add_argument(
        "--incremental-jobs",
        type=int,
        default=1,
        help="incremental cases run at once (each in its own processes)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.tasks, args.latency, args.repeat, args.start_repeat = [1000, 10000], [0.0, 0.02], 1, 3
    if any(n < 0 for n in args.tasks) or any(not 0 <= lat <= 10 for lat in args.latency):
        parser.error("--tasks must be 0 or more, --latency between 0 and 10 seconds")
    if any(not 1 <= c <= 64 for c in args.concurrency) or args.repeat < 1 or args.start_repeat < 0:
        parser.error("--concurrency must be 1-64, --repeat 1 or more, --start-repeat 0 or more")
    return args


def repetitions(estimate: float, repeat: int, budget: float) -> int:
    return max(1, min(repeat, math.floor(budget / estimate) if estimate > 0 else repeat))


def describe_machine() -> dict[str, Any]:
    def first(path: str, prefix: str) -> str:
        try:
            for line in Path(path).read_text().splitlines():
                if line.startswith(prefix):
                    return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return "unknown"

    return {
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": first("/proc/cpuinfo", "model name"),
        "memory": first("/proc/meminfo", "MemTotal"),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "load_average_at_start": load_average(),
    }


def load_average() -> str:
    """Other work on the machine skews every figure: the load average says how much there was."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def describe_revision() -> str:
    """The commit measured, marked when the exporter's code differs from it."""

    def git(*args: str) -> str:
        completed = subprocess.run(
            ["git", "-C", str(REPOSITORY), *args], capture_output=True, text=True, timeout=10, check=False
        )
        return completed.stdout.strip() if completed.returncode == 0 else ""

    try:
        commit = git("rev-parse", "--short", "HEAD")
        modified = git("status", "--porcelain", "--", "exporter")
    except OSError:
        return "unknown"
    if not commit:
        return "unknown"
    return commit + (" with uncommitted changes under exporter/" if modified else "")


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def measure_configurations(args: argparse.Namespace) -> list[dict[str, Any]]:
    access_key, secret_key = "BENCH" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30)
    keys = credentials_environment(access_key, secret_key)
    configurations = []
    for tasks in args.tasks:
        for latency in args.latency:
            pages = report.pages_for(tasks)
            label = f"N={tasks} L={latency * 1000:g}ms"
            progress(f"{label}: starting the simulator")
            with SimulatorProcess(
                project_id=PROJECT_ID,
                tasks=tasks,
                latency=latency,
                access_key=access_key,
                secret_key=secret_key,
                seed=args.seed,
            ) as simulator:
                if latency == 0:
                    simulator.warm_up()  # with latency, that pass would cost more than it saves
                common = ["--url", simulator.url, "--project-id", PROJECT_ID]
                results = []
                for concurrency in args.concurrency:
                    bound = report.lower_bound(latency, pages, concurrency)
                    estimate = max(bound, pages * EXPORTER_SECONDS_PER_PAGE / concurrency)
                    listings = repetitions(estimate, args.repeat, args.budget)
                    progress(f"{label} C={concurrency}: exporter, {listings} listing(s)")
                    results.append(
                        (
                            concurrency,
                            run_measured(
                                "benchmarks.scrape_exporter",
                                [*common, "--concurrency", str(concurrency), "--listings", str(listings)],
                                keys,
                                timeout=120 + 10 * listings * estimate,
                            ),
                        )
                    )
                estimate = pages * (latency + BASELINE_SECONDS_PER_PAGE) + tasks * BASELINE_SECONDS_PER_TASK
                baseline: dict[str, Any] | None = None
                skipped: str | None = None
                if estimate > args.baseline_budget:
                    skipped = f"a sequential listing would take about {estimate:.0f} s"
                    progress(f"{label}: naive baseline skipped ({skipped})")
                else:
                    listings = repetitions(estimate, args.repeat, args.budget)
                    progress(f"{label}: naive baseline, {listings} listing(s)")
                    baseline = run_measured(
                        "benchmarks.scrape_naive",
                        [*common, "--listings", str(listings)],
                        keys,
                        timeout=120 + 10 * listings * estimate,
                    )
            for concurrency, exporter in results:
                configuration = report.summarize_configuration(
                    tasks=tasks,
                    latency=latency,
                    concurrency=concurrency,
                    exporter=exporter,
                    baseline=baseline,
                    baseline_skipped=skipped,
                )
                configurations.append(configuration)
                progress(report.format_table([configuration]).splitlines()[-1])
    return configurations


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.time()
    machine = describe_machine()
    revision = describe_revision()
    process_start = measure_process_start(args.start_repeat) if args.start_repeat else None
    configurations = measure_configurations(args)
    outcomes = report.evaluate_targets(configurations, process_start)
    listing: list[dict[str, Any]] = []
    if args.incremental:
        listing = incremental.measure_cases(incremental.CASES, max(1, args.incremental_jobs))
    listing_outcomes = incremental.evaluate(listing)
    finished = {**machine, "load_average_at_end": load_average()}
    result: dict[str, Any] = {
        "command": " ".join(["python -m benchmarks.run", *(argv if argv is not None else sys.argv[1:])]),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "revision": revision,
        "duration_seconds": time.time() - started,
        "machine": finished,
        "process_start": process_start,
        "configurations": configurations,
        "targets": [outcome.as_dict() for outcome in outcomes],
        "incremental": {"results": listing, "targets": [o.as_dict() for o in listing_outcomes]},
    }
    print(f"Revision: {revision}")
    print(
        f"Machine: {machine['cpus']} CPUs ({machine['cpu_model']}), {machine['memory']} memory, "
        f"Python {machine['python']}; load average {machine['load_average_at_start']} at start, "
        f"{finished['load_average_at_end']} at end\n"
    )
    print(report.format_table(configurations))
    print()
    print(report.format_targets(outcomes))
    if listing:
        print("\nIncremental listing (calls per scrape, counted at the simulator):\n")
        print(incremental.format_table(listing))
        print()
        print(incremental.format_outcomes(listing_outcomes))
    probes = report.speed_probes(configurations)
    if probes:
        print(
            f"\nSpeed probe (a fixed workload, run in every measured process): {min(probes) * 1000:.1f} to "
            f"{max(probes) * 1000:.1f} ms. Figures from processes with a slow probe were taken on a "
            "machine slowed by other work."
        )
    print(f"\nTotal run time: {result['duration_seconds']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
