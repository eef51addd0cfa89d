"""The exporter's side of a benchmark: listings through its real code path, in a process of its own.

Builds ``Exporter`` against the simulator at ``--url`` with AK/SK signing (keys from the
environment) and runs ``--listings`` listings with ``coordinator.refresh``. After each, it asks
the exporter's own ``/metrics`` WSGI app for the exposition, as Prometheus asks for it and as
plain text, to time the rendering apart from the listing. Then it reads every page once more and
times parsing and aggregation alone, which no network wait blurs. Prints one JSON object on stdout.

    python -m benchmarks.scrape_exporter --url http://127.0.0.1:PORT --project-id P --listings 3
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import httpx

from benchmarks.measured_process import (
    PAGE_SIZE,
    PROMETHEUS_ACCEPT,
    count_samples,
    credentials_from_environment,
    emit,
    peak_rss_bytes,
    speed_probe_seconds,
)
from exporter.app import Exporter
from exporter.cloud.api_metrics import ApiRequestStats
from exporter.cloud.auth import AkSkAuth
from exporter.cloud.client import OPERATION
from exporter.cloud.credentials import AkSkCredentials
from exporter.config import ApiSettings, Config, ScrapeSettings
from exporter.listing.fold import ListingFold
from exporter.listing.reading import CompleteListing
from exporter.store import TaskStore
from exporter.tasks import parse_page

# Parsing is timed over at least this many tasks, so that small listings give steady figures.
PARSE_ROUNDS_TASKS = 50_000
MIN_PARSE_ROUNDS = 3
# Long enough for 1,000 pages at 100 ms with the lowest concurrency the harness offers.
LISTING_TIMEOUT = 600.0
# The plain text format, for comparison with what Prometheus asks for.
TEXT_ACCEPT = "text/plain;version=0.0.4"
# The exporter reuses a listing for this long (its minimum refresh interval), so that /metrics
# fetched right after a measured listing renders that listing instead of listing again.
REUSE_SECONDS = 3600.0

StartResponse = Callable[..., Callable[[bytes], object]]
MetricsApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class ListingFailed(RuntimeError):
    pass


class JumpingClock:
    """``time.monotonic``, moved past the reuse interval before each measured listing."""

    def __init__(self) -> None:
        self._offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self._offset

    def jump(self) -> None:
        self._offset += 2 * REUSE_SECONDS


def measure_listing(exporter: Exporter, clock: JumpingClock, app: MetricsApp) -> dict[str, Any]:
    clock.jump()
    calls_before = _calls(exporter.api_stats)
    latency_before = _latency(exporter.api_stats)
    cpu_started, started = time.process_time(), time.perf_counter()
    exporter.coordinator.refresh(clock() + LISTING_TIMEOUT)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    view = exporter.store.view()
    if not view.up or view.snapshot is None:
        raise ListingFailed(f"the listing failed: {view.last_error}")
    calls = _calls(exporter.api_stats) - calls_before
    latency_after = _latency(exporter.api_stats)
    requests = latency_after[1] - latency_before[1]
    mean_request = (latency_after[0] - latency_before[0]) / requests if requests else 0.0
    as_prometheus_asks = measure_render(exporter, app, PROMETHEUS_ACCEPT)
    as_text = measure_render(exporter, app, TEXT_ACCEPT)
    return {
        "tasks": view.snapshot.reported_total,
        "series_tasks": len(view.snapshot.series_tasks),
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "api_calls": calls,
        "mean_request_seconds": mean_request,
        "content_type": as_prometheus_asks["content_type"],
        "render_seconds": as_prometheus_asks["seconds"],
        "render_cpu_seconds": as_prometheus_asks["cpu_seconds"],
        "exposition_bytes": as_prometheus_asks["bytes"],
        "samples": as_prometheus_asks["samples"],
        "text_render_seconds": as_text["seconds"],
        "text_exposition_bytes": as_text["bytes"],
        "text_samples": as_text["samples"],
    }


def measure_render(exporter: Exporter, app: MetricsApp, accept: str) -> dict[str, Any]:
    """``GET /metrics`` through the exporter's WSGI app, serving the listing just made."""
    listings = exporter.coordinator.listings
    answer: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, headers: list[tuple[str, str]], *_: object) -> Callable[[bytes], object]:
        answer.append((status, headers))
        return lambda _data: None

    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics", "QUERY_STRING": "", "HTTP_ACCEPT": accept}
    cpu_started, started = time.process_time(), time.perf_counter()
    body = b"".join(app(environ, start_response))
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    if exporter.coordinator.listings != listings:
        raise ListingFailed("fetching /metrics listed again: the rendering cannot be timed apart")
    (status, headers), *_ = answer
    if not status.startswith("200"):
        raise ListingFailed(f"/metrics answered {status}")
    return {
        "seconds": wall,
        "cpu_seconds": cpu,
        "bytes": len(body),
        "samples": count_samples(body),
        "content_type": dict(headers).get("Content-Type", ""),
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
        listing = CompleteListing(ListingFold(), store, time.time())
        decode = parse = fold = 0.0
        for index, body in enumerate(bodies):
            t0 = time.thread_time()
            json.loads(body)
            t1 = time.thread_time()
            page = parse_page(index * PAGE_SIZE, body)
            t2 = time.thread_time()
            for task in listing.fold.add(page):
                listing.observe(task)
            t3 = time.thread_time()
            decode, parse, fold = decode + (t1 - t0), parse + (t2 - t1), fold + (t3 - t2)
        t4 = time.thread_time()
        listing.snapshot(listing.fold.result())
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
        scrape=ScrapeSettings(timeout=LISTING_TIMEOUT, min_refresh_interval=REUSE_SECONDS),
    )
    rss_at_start = peak_rss_bytes()
    probe_at_start = speed_probe_seconds()
    clock = JumpingClock()
    exporter = Exporter(config, AkSkCredentials(access_key, secret_key), clock=clock)
    try:
        app: MetricsApp = exporter.wsgi_app()
        listings = [measure_listing(exporter, clock, app) for _ in range(args.listings)]
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
