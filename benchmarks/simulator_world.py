"""What the simulator's world costs at the sizes the incremental-listing benchmarks use.

For each history size, in a fresh process of its own (so RSS is the world's alone): the time to
build the world and its memory per task; the time to serve one page of 100 records (the world's
part of an answer, rendering included) at the head, the middle and the tail, in each order; a
``task_id`` lookup; and the ground truth a benchmark asks for after every scrape (``total``,
``counts`` and ``open_tasks``), with simulated time stepped 15 s at a time. Run from the
repository root:

    python -m benchmarks.simulator_world                   # 200k and 1M tasks
    python -m benchmarks.simulator_world --tasks 50000 --json out.json

It prints a Markdown table; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from exporter.simulator.world import ORDERS, World, WorldSettings

START = 1_790_000_000.0
SCRAPE_INTERVAL = 15.0


def issue_world(tasks: int, *, order: str = ORDERS[0], seed: int = 1) -> WorldSettings:
    """The busy pipeline of the incremental-listing targets: about 1.8 new tasks a second in bursts
    sharing a second, about 500 open with lifetimes of 0.5 to 11 minutes, 3 stuck deep in the
    history, which spans as long as the arrivals would take to make it."""
    return WorldSettings(
        tasks=tasks,
        seed=seed,
        order=order,
        arrival_rate=1.8,
        burst_size=3.0,
        wait_mean=30.0,
        duration_median=210.0,
        duration_sigma=0.55,
        history=tasks / 1.8,
        stuck_tasks=3,
    )


def _rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _median_ms(action: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def measure(tasks: int, *, scrapes: int = 240, repeat: int = 30) -> dict[str, Any]:
    """Every figure for one history size, measured in this process."""
    before = _rss_bytes()
    started = time.perf_counter()
    world = World(issue_world(tasks), start=START, clock=lambda: START)
    build_seconds = time.perf_counter() - started
    held = _rss_bytes() - before

    pages: dict[str, dict[str, float]] = {}
    for order in ORDERS:
        started = time.perf_counter()
        world.set_order(order)
        switch = time.perf_counter() - started
        figures = {"set_order_ms": switch * 1000}
        for name, offset in (("head", 0), ("middle", tasks // 2), ("tail", tasks - 100)):

            def one_page(offset: int = offset) -> object:
                return [task.record(START) for task in world.page(offset, 100, START)[1]]

            figures[f"page_{name}_ms"] = _median_ms(one_page, repeat)
        pages[order] = figures
    world.set_order(ORDERS[0])

    deep = world.page(tasks - 1, 1, START)[1][0].task_id
    find_ms = _median_ms(lambda: world.find(deep, START), repeat * 10)

    truth_times, open_counts = [], []
    for step in range(1, scrapes + 1):
        at = START + step * SCRAPE_INTERVAL
        started = time.perf_counter()
        world.total(at)
        world.counts(at)
        open_now = world.open_tasks(at)
        truth_times.append(time.perf_counter() - started)
        open_counts.append(len(open_now))
    return {
        "tasks": tasks,
        "build_seconds": build_seconds,
        "rss_bytes_per_task": held / tasks,
        "rss_mb": _rss_bytes() / 2**20,
        "pages": pages,
        "find_ms": find_ms,
        "truth_ms_median": statistics.median(truth_times) * 1000,
        "truth_ms_max": max(truth_times) * 1000,
        "open_tasks_median": statistics.median(open_counts),
        "simulated_seconds": scrapes * SCRAPE_INTERVAL,
    }


def _table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| tasks | build | RSS per task | RSS | page head / middle / tail, newest-first | oldest-first "
        "| unordered (switch) | `task_id` | truth per scrape (max) | open |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        page = {
            order: f"{p['page_head_ms']:.2f} / {p['page_middle_ms']:.2f} / {p['page_tail_ms']:.2f} ms"
            for order, p in r["pages"].items()
        }
        lines.append(
            f"| {r['tasks']:,} | {r['build_seconds']:.2f} s | {r['rss_bytes_per_task']:.0f} B "
            f"| {r['rss_mb']:.0f} MB | {page['newest-first']} | {page['oldest-first']} "
            f"| {page['unordered']} ({r['pages']['unordered']['set_order_ms'] / 1000:.2f} s) "
            f"| {r['find_ms'] * 1000:.0f} µs | {r['truth_ms_median']:.1f} ms ({r['truth_ms_max']:.1f} ms) "
            f"| {r['open_tasks_median']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.simulator_world",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--tasks", default="200000,1000000", help="history sizes, comma-separated")
    parser.add_argument("--json", help="also write every figure to this file")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)  # one size, in this process
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(measure(args.child)))
        return
    results = []
    for tasks in (int(part) for part in args.tasks.split(",") if part.strip()):
        command = [sys.executable, "-m", "benchmarks.simulator_world", "--child", str(tasks)]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results.append(json.loads(output))
    print(_table(results))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=2)


if __name__ == "__main__":
    main()
