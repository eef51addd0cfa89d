"""How many 100-task pages per second the simulator serves, signed with AK/SK, latency 0.

The simulator runs as ``vod-exporter simulate`` in its own process (as in the demo), so the
clients do not share its interpreter lock; each client is a process holding one keep-alive
connection and signing every request, as the exporter does. Run from the repository root:

    python benchmarks/simulator_page_rate.py [--tasks 20000] [--clients 2] [--seconds 10]

It prints the rate and the latency percentiles; nothing is asserted.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import random
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from exporter.cloud import signing

PROJECT_ID = "0123456789abcdef0123456789abcdef"
ACCESS_KEY = "BENCHMARKACCESSKEY00"
SECRET_KEY = "benchmark-secret-key-not-a-real-one"
PAGE_SIZE = 100
URL_IN_LOG = re.compile(r"listening on (http://[\d.]+:\d+)")


def start_simulator(tasks: int) -> tuple[subprocess.Popen[str], str]:
    env = {
        **os.environ,
        "HUAWEICLOUD_SDK_AK": ACCESS_KEY,
        "HUAWEICLOUD_SDK_SK": SECRET_KEY,
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
    }
    args = [sys.executable, "-m", "exporter.simulator.command", "--project-id", PROJECT_ID]
    args += ["--tasks", str(tasks), "--web.listen-address", "127.0.0.1:0"]
    process = subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        match = URL_IN_LOG.search(line)
        if match:
            return process, match.group(1)
        if not line and process.poll() is not None:
            break
    process.kill()
    raise SystemExit("the simulator did not start")


def client(url: str, total: int, stop_at: float, results: multiprocessing.Queue[list[float]]) -> None:
    host = url.removeprefix("http://")
    connection = http.client.HTTPConnection(host)
    path = f"/v1/{PROJECT_ID}/asset/editing/tasks"
    pages = max(1, total // PAGE_SIZE)
    rng = random.Random(os.getpid())
    latencies = []
    while time.monotonic() < stop_at:
        query = [("limit", str(PAGE_SIZE)), ("offset", str(rng.randrange(pages) * PAGE_SIZE))]
        date = signing.format_sdk_date(datetime.now(timezone.utc))
        authorization = signing.authorization(
            ACCESS_KEY, SECRET_KEY, "GET", path, query, {"Host": host, "X-Sdk-Date": date}
        )
        started = time.perf_counter()
        connection.request(
            "GET",
            f"{path}?limit={PAGE_SIZE}&offset={query[1][1]}",
            headers={"X-Sdk-Date": date, "Authorization": authorization},
        )
        response = connection.getresponse()
        body = response.read()
        if response.status != 200 or body.count(b'"task_id"') != PAGE_SIZE:
            raise SystemExit(f"unexpected answer {response.status}: {body[:200]!r}")
        latencies.append(time.perf_counter() - started)
    results.put(latencies)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=20000)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()

    process, url = start_simulator(args.tasks)
    try:
        results: multiprocessing.Queue[list[float]] = multiprocessing.Queue()
        stop_at = time.monotonic() + args.seconds
        workers = [
            multiprocessing.Process(target=client, args=(url, args.tasks, stop_at, results))
            for _ in range(args.clients)
        ]
        for worker in workers:
            worker.start()
        latencies = sorted(x for _ in workers for x in results.get())
        for worker in workers:
            worker.join()
    finally:
        process.terminate()
        process.wait(10)

    def percentile(share: float) -> float:
        return latencies[min(len(latencies) - 1, int(share * len(latencies)))] * 1000

    print(
        f"{len(latencies) / args.seconds:.0f} pages/s of {PAGE_SIZE} tasks "
        f"({args.clients} clients, {args.tasks} tasks, {args.seconds:g} s); "
        f"latency p50 {percentile(0.5):.2f} ms, p99 {percentile(0.99):.2f} ms"
    )


if __name__ == "__main__":
    main()
