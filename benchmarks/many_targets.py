"""Many targets in one process: does one scrape of ten targets take as long as the slowest alone,
and does memory grow linearly with the targets?

Starts ten simulators (frozen worlds of ``--tasks`` tasks, each its own project, each in a process
of its own, at latency ``--latency``), then in a fresh exporter process each
(``benchmarks/scrape_targets.py``) lists 1, 5 and 10 of them in one scrape. The ten-target process
first times each target alone. Prints a table and the issue's targets, met or missed:

- ten targets list concurrently in one scrape within 1.5x the time of the slowest single target;
- memory grows linearly with the targets (peak RSS for 1, 5 and 10 targets).

``--targets N`` runs 1, N/2 and N targets instead (the test runs 2).

    python -m benchmarks.many_targets                 # 10 x 1k tasks at 20 ms: about a minute
    python -m benchmarks.many_targets --latency 0.1 --json out.json
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from benchmarks.measured_process import credentials_environment, run_measured
from benchmarks.simulator_process import SimulatorProcess

TARGET_RATIO = 1.5
MB = 1024 * 1024


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.many_targets", description=__doc__)
    parser.add_argument("--tasks", type=int, default=1000, help="tasks per target")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds per API request")
    parser.add_argument("--concurrency", type=int, default=4, help="pages at once, per target")
    parser.add_argument("--listings", type=int, default=3, help="scrapes per case (the median is kept)")
    parser.add_argument("--targets", type=int, default=10, help="the most targets: 1, half and all are run")
    parser.add_argument("--json", type=Path, help="write every figure here")
    return parser.parse_args(argv)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    access_key, secret_key = "BENCH" + secrets.token_hex(6).upper(), secrets.token_urlsafe(24)
    counts = sorted({1, args.targets // 2, args.targets} - {0})
    with ExitStack() as stack:
        simulators = []
        for index in range(args.targets):
            simulator = SimulatorProcess(
                project_id=f"{index + 1:032x}",
                tasks=args.tasks,
                latency=args.latency,
                access_key=access_key,
                secret_key=secret_key,
                seed=index + 1,
            )
            stack.enter_context(simulator)
            simulator.warm_up()
            simulators.append(simulator)
        cases = []
        for count in counts:
            command = ["--listings", str(args.listings), "--concurrency", str(args.concurrency)]
            for simulator in simulators[:count]:
                command += ["--url", simulator.url, "--project-id", simulator.project_id]
            if count == args.targets:
                command.append("--single")
            case = run_measured(
                "benchmarks.scrape_targets", command, credentials_environment(access_key, secret_key), 900
            )
            cases.append(case)
            print(f"  {count:>2} targets: {case['together_seconds']:.3f} s", file=sys.stderr, flush=True)
    return {"tasks": args.tasks, "latency": args.latency, "concurrency": args.concurrency, "cases": cases}


def report(results: dict[str, Any]) -> str:
    cases = results["cases"]
    lines = [
        f"{results['tasks']} tasks per target, {results['latency'] * 1000:g} ms per request, "
        f"concurrency {results['concurrency']} per target",
        "",
        "| targets | listing s | listing CPU s | scrape s | samples "
        "| peak RSS MB | RSS per added target MB |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    first = cases[0]
    for case in cases:
        extra = case["targets"] - first["targets"]
        per_target = (case["rss_bytes"] - first["rss_bytes"]) / extra / MB if extra else float("nan")
        lines.append(
            f"| {case['targets']} | {case['together_seconds']:.3f} | {case['together_cpu_seconds']:.3f} | "
            f"{case['scrape_seconds']:.3f} | "
            f"{case['samples']} | "
            f"{case['rss_bytes'] / MB:.1f} | {'' if not extra else f'{per_target:.2f}'} |"
        )
    most = cases[-1]
    slowest = max(most["single_seconds"])
    ratio = most["together_seconds"] / slowest
    met = "met" if ratio <= TARGET_RATIO else "MISSED"
    lines += [
        "",
        f"slowest single target {slowest:.3f} s (each alone: "
        + ", ".join(f"{s:.3f}" for s in most["single_seconds"])
        + ")",
        f"{most['targets']} targets listed in one scrape {most['together_seconds']:.3f} s = "
        f"{ratio:.2f}x the slowest (target <= {TARGET_RATIO}x): {met}",
        f"with the rendering of {most['samples']} samples: {most['scrape_seconds']:.3f} s",
        f"every target up: {all(case['all_up'] for case in cases)}",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    results = measure(args)
    print(report(results))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
