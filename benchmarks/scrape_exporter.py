"""The exporter's side of a benchmark: listings through its real code path, in a process of its own.

Builds ``Exporter`` against the simulator at ``--url`` with AK/SK signing (keys from the
environment), runs ``--listings`` listings with ``coordinator.refresh`` and renders the registry
after each, as a scrape of ``/metrics`` would. Then it reads every page once more and times
parsing and aggregation alone, which no network wait blurs. Prints one JSON object on stdout.

    python -m benchmarks.scrape_exporter --url http://127.0.0.1:PORT --project-id P --listings 3
"""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any

import httpx
from prometheus_client import generate_latest

from benchmarks.measured_process import (
    PAGE_SIZE,
    count_samples,
    credentials_from_environment,
    emit,
    peak_rss_bytes,
    speed_probe_seconds,
)
from exporter.api_metrics import ApiRequestStats
from exporter.app import Exporter
from exporter.auth import AkSkAuth
from exporter.client import OPERATION, parse_page
from exporter.config import ApiSettings, Config, ScrapeSettings
from exporter.credentials import AkSkCredentials
from exporter.store import TaskStore

# Parsing is timed over at least this many tasks, so that small listings give steady figures.
PARSE_ROUNDS_TASKS = 50_000
MIN_PARSE_ROUNDS = 3
# Long enough for 1,000 pages at 100 ms with the lowest concurrency the harness offers.
LISTING_TIMEOUT = 600.0


class ListingFailed(RuntimeError):
    pass


def measure_listing(exporter: Exporter) -> dict[str, Any]:
    calls_before = _calls(exporter.api_stats)
    latency_before = _latency(exporter.api_stats)
    cpu_started, started = time.process_time(), time.perf_counter()
    exporter.coordinator.refresh(time.monotonic() + LISTING_TIMEOUT)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    view = exporter.store.view()
    if not view.up or view.snapshot is None:
        raise ListingFailed(f"the listing failed: {view.last_error}")
    calls = _calls(exporter.api_stats) - calls_before
    latency_after = _latency(exporter.api_stats)
    requests = latency_after[1] - latency_before[1]
    mean_request = (latency_after[0] - latency_before[0]) / requests if requests else 0.0
    render_cpu_started, render_started = time.process_time(), time.perf_counter()
    exposition = generate_latest(exporter.registry)
    render_wall = time.perf_counter() - render_started
    render_cpu = time.process_time() - render_cpu_started
    return {
        "tasks": view.snapshot.reported_total,
        "series_tasks": len(view.snapshot.series_tasks),
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "api_calls": calls,
        "mean_request_seconds": mean_request,
        "render_seconds": render_wall,
        "render_cpu_seconds": render_cpu,
        "exposition_bytes": len(exposition),
        "samples": count_samples(exposition),
    }


def _calls(stats: ApiRequestStats) -> int:
    """Every HTTP attempt the exporter made, IAM included: the quota bill."""
    return sum(stats.requests().values())


def _latency(stats: ApiRequestStats) -> tuple[float, int]:
    """Seconds spent in listing requests, and their number, as the client timed them."""
    histogram = stats.latencies().get(OPERATION)
    return (histogram.total, histogram.count) if histogram is not None else (0.0, 0)


def fetch_pages(url: str, project_id: str, auth: AkSkAuth) -> list[bytes]:
    path = f"{url}/v1/{project_id}/asset/editing/tasks"
    bodies = []
    with httpx.Client(auth=auth) as http:
        offset, total = 0, 1
        while offset < total:
            response = http.get(path, params={"offset": str(offset), "limit": str(PAGE_SIZE)})
            response.raise_for_status()
            bodies.append(response.content)
            total = int(response.json()["total"])
            offset += PAGE_SIZE
    return bodies


def measure_parse_and_fold(store: TaskStore, bodies: list[bytes]) -> dict[str, Any]:
    """CPU time of decoding, validating and folding the pages, with no network wait to blur it.

    Repeated until about ``PARSE_ROUNDS_TASKS`` tasks have been parsed, each round into a fresh
    builder as a listing would; the best round is kept, as other work on the machine only ever
    adds time. ``json.loads`` is timed apart (its result thrown away) to show its share of
    ``parse_page``.
    """
    tasks = sum(body.count(b'"task_id"') for body in bodies)
    rounds = max(MIN_PARSE_ROUNDS, math.ceil(PARSE_ROUNDS_TASKS / max(1, tasks)))
    decodes, parses, folds = [], [], []
    for _ in range(rounds):
        builder = store.start_listing(time.time())
        decode = parse = fold = 0.0
        for index, body in enumerate(bodies):
            t0 = time.thread_time()
            json.loads(body)
            t1 = time.thread_time()
            page = parse_page(index * PAGE_SIZE, body)
            t2 = time.thread_time()
            builder.add(page)
            t3 = time.thread_time()
            decode, parse, fold = decode + (t1 - t0), parse + (t2 - t1), fold + (t3 - t2)
        t4 = time.thread_time()
        builder.finish()
        fold += time.thread_time() - t4
        decodes.append(decode)
        parses.append(parse)
        folds.append(fold)
    per_task = 1e6 / max(1, tasks)
    return {
        "tasks": tasks,
        "rounds": rounds,
        "json_decode_us_per_task": min(decodes) * per_task,
        "parse_us_per_task": min(parses) * per_task,
        "fold_us_per_task": min(folds) * per_task,
        "parse_and_fold_us_per_task": min(p + f for p, f in zip(parses, folds, strict=True)) * per_task,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", required=True, help="The simulator's address.")
    parser.add_argument("--project-id", required=True)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--listings", type=int, default=1)
    args = parser.parse_args(argv)

    access_key, secret_key = credentials_from_environment()
    config = Config(
        region="benchmark",
        api=ApiSettings(
            endpoint=args.url, project_id=args.project_id, concurrency=args.concurrency, rate_limit=0
        ),
        iam_endpoint=args.url,
        scrape=ScrapeSettings(timeout=LISTING_TIMEOUT),
    )
    rss_at_start = peak_rss_bytes()
    probe_at_start = speed_probe_seconds()
    exporter = Exporter(config, AkSkCredentials(access_key, secret_key))
    try:
        listings = [measure_listing(exporter) for _ in range(args.listings)]
        # Read before the parse timing below, which holds every page at once.
        peak_rss = peak_rss_bytes()
        bodies = fetch_pages(args.url, args.project_id, AkSkAuth(access_key, secret_key))
        breakdown = measure_parse_and_fold(exporter.store, bodies)
    finally:
        exporter.close()
    emit(
        {
            "listings": listings,
            "rss_at_start_bytes": rss_at_start,
            "peak_rss_bytes": peak_rss,
            "parse_and_fold": breakdown,
            "speed_probe_seconds": [probe_at_start, speed_probe_seconds()],
        }
    )


if __name__ == "__main__":
    main()
