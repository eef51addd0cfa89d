"""The exporter's side of the many-targets benchmark, in a process of its own (so its RSS is its own).

Builds one ``Exporter`` with a target per ``--url`` (AK/SK from the environment, no rate limit),
optionally times each target's listing alone (``--single``), then times ``--listings`` scrapes that
list every target at once, as ``/metrics`` does: the listings, and the listings with the rendering.
Prints one JSON object.

    python -m benchmarks.scrape_targets --url URL1 --project-id P1 --url URL2 --project-id P2 --single
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from prometheus_client import generate_latest

from benchmarks.measured_process import (
    count_samples,
    credentials_from_environment,
    emit,
    peak_rss_bytes,
    speed_probe_seconds,
)
from exporter.app import Exporter
from exporter.cloud.credentials import AkSkCredentials
from exporter.config import Config
from exporter.targets import TargetSetup

LISTING_TIMEOUT = 600.0


def setups(urls: list[str], projects: list[str], concurrency: int) -> tuple[TargetSetup, ...]:
    access_key, secret_key = credentials_from_environment()
    credentials = AkSkCredentials(access_key, secret_key)
    made = []
    for url, project in zip(urls, projects, strict=True):
        options = {
            "endpoint": url,
            "project_id": project,
            "rate_limit": 0,
            "concurrency": concurrency,
            "min_refresh_interval": "0s",
            "scrape_timeout": f"{LISTING_TIMEOUT:g}s",
            "listing_mode": "full",  # every scrape a complete listing: the work under test
        }
        # One account: the targets share one quota, as they would in one tenant.
        made.append(TargetSetup(Config.from_options(options, {}, needs_iam=False), credentials, "bench"))
    return tuple(made)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scrape_targets")
    parser.add_argument("--url", action="append", required=True)
    parser.add_argument("--project-id", action="append", required=True)
    parser.add_argument("--listings", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--single", action="store_true", help="time each target alone first")
    args = parser.parse_args()
    targets = setups(args.url, args.project_id, args.concurrency)
    exporter = Exporter(targets[0].config, targets=targets, runtime_metrics=False)
    result: dict[str, Any] = {"targets": len(targets)}
    try:
        if args.single:
            alone = []
            for target in exporter.targets:
                times = []
                for _ in range(args.listings):
                    started = time.perf_counter()
                    assert target.coordinator.refresh(time.monotonic() + LISTING_TIMEOUT)
                    times.append(time.perf_counter() - started)
                alone.append(statistics.median(times))
            result["single_seconds"] = alone
        together, scrapes, cpu, samples = [], [], [], 0
        for _ in range(args.listings):
            started, cpu_started = time.perf_counter(), time.process_time()
            late = exporter.refresh(time.monotonic() + LISTING_TIMEOUT)
            listed = time.perf_counter()
            cpu.append(time.process_time() - cpu_started)
            exposition = generate_latest(exporter.registry)
            together.append(listed - started)
            scrapes.append(time.perf_counter() - started)
            assert not late, late
            samples = count_samples(exposition)
        views = [target.store.view() for target in exporter.targets]
        result.update(
            together_seconds=statistics.median(together),
            # The exporter's CPU (all threads) for listing every target: beside the wall time, it
            # tells a listing that waits on the API from one that waits for a core.
            together_cpu_seconds=statistics.median(cpu),
            scrape_seconds=statistics.median(scrapes),
            all_up=all(view.up for view in views),
            tasks=sum(view.snapshot.reported_total for view in views if view.snapshot is not None),
            samples=samples,
            calls=sum(exporter.api_stats.requests().values()),
            rss_bytes=peak_rss_bytes(),
            probe_seconds=speed_probe_seconds(),
        )
    finally:
        exporter.close()
    emit(result)


if __name__ == "__main__":
    main()
