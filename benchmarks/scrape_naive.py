"""The naive baseline: how an exporter written in an afternoon would list the same tasks.

Sequential pages (signed with the same AK/SK code), each decoded into dicts and kept, then one
labelled ``Gauge`` per metric in a fresh registry, with series for every task (no cap), rendered
as prometheus_client's own ``/metrics`` app would answer Prometheus. Run in a process of its
own, against the same simulator as the exporter. Prints one JSON object on stdout, shaped like
``benchmarks.scrape_exporter``'s.

    python -m benchmarks.scrape_naive --url http://127.0.0.1:PORT --project-id P --listings 1
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from datetime import datetime
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.exposition import choose_encoder

from benchmarks.measured_process import (
    PAGE_SIZE,
    PROMETHEUS_ACCEPT,
    count_samples,
    credentials_from_environment,
    emit,
    peak_rss_bytes,
    speed_probe_seconds,
)
from exporter.cloud.auth import AkSkAuth

STATUSES = ("WAITING", "PROCESSING", "SUCCEED", "FAILED", "CANCEL")


def _seconds(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def list_tasks(http: httpx.Client, url: str, project_id: str) -> tuple[list[dict[str, Any]], int]:
    """Every task record, page after page; and the number of requests made."""
    path = f"{url}/v1/{project_id}/asset/editing/tasks"
    tasks: list[dict[str, Any]] = []
    offset, total, calls = 0, 1, 0
    while offset < total:
        response = http.get(path, params={"offset": offset, "limit": PAGE_SIZE})
        calls += 1
        response.raise_for_status()
        document = response.json()
        total = document["total"]
        tasks.extend(document["tasks"])
        offset += PAGE_SIZE
    return tasks, calls


def fill_registry(project_id: str, tasks: list[dict[str, Any]]) -> CollectorRegistry:
    registry = CollectorRegistry()
    pt = ["project_id", "task_id"]
    per_status = Gauge(
        "naive_editing_tasks", "Tasks per status.", ["project_id", "status"], registry=registry
    )
    info = Gauge("naive_task_info", "A task.", ["project_id", "task_id", "asset_id"], registry=registry)
    status = Gauge("naive_task_status", "Its status.", ["project_id", "task_id", "status"], registry=registry)
    progress = Gauge("naive_task_progress_ratio", "Its progress.", pt, registry=registry)
    created = Gauge("naive_task_created_timestamp_seconds", "Its create_time.", pt, registry=registry)
    duration = Gauge("naive_task_duration_seconds", "Its duration.", pt, registry=registry)
    counts = Counter(task["status"] for task in tasks)
    for name in STATUSES:
        per_status.labels(project_id, name).set(counts[name])
    now = time.time()
    for task in tasks:
        task_id = task["task_id"]
        started = _seconds(task["create_time"])
        ended = _seconds(task["end_time"]) if task.get("end_time") else now
        info.labels(project_id, task_id, task["asset_id"]).set(1)
        status.labels(project_id, task_id, task["status"]).set(1)
        progress.labels(project_id, task_id).set(task["progress"] / 100)
        created.labels(project_id, task_id).set(started)
        duration.labels(project_id, task_id).set(ended - started)
    return registry


def measure_listing(http: httpx.Client, url: str, project_id: str) -> dict[str, Any]:
    cpu_started, started = time.process_time(), time.perf_counter()
    tasks, calls = list_tasks(http, url, project_id)
    registry = fill_registry(project_id, tasks)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    encoder, content_type = choose_encoder(PROMETHEUS_ACCEPT)
    render_cpu_started, render_started = time.process_time(), time.perf_counter()
    exposition = encoder(registry)
    render_wall = time.perf_counter() - render_started
    render_cpu = time.process_time() - render_cpu_started
    return {
        "tasks": len(tasks),
        "series_tasks": len(tasks),
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "api_calls": calls,
        "content_type": content_type,
        "render_seconds": render_wall,
        "render_cpu_seconds": render_cpu,
        "exposition_bytes": len(exposition),
        "samples": count_samples(exposition),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", required=True, help="The simulator's address.")
    parser.add_argument("--project-id", required=True)
    parser.add_argument("--listings", type=int, default=1)
    args = parser.parse_args(argv)

    access_key, secret_key = credentials_from_environment()
    rss_at_start = peak_rss_bytes()
    probe_at_start = speed_probe_seconds()
    with httpx.Client(auth=AkSkAuth(access_key, secret_key)) as http:
        listings = [measure_listing(http, args.url, args.project_id) for _ in range(args.listings)]
    emit(
        {
            "listings": listings,
            "rss_at_start_bytes": rss_at_start,
            "peak_rss_bytes": peak_rss_bytes(),
            "speed_probe_seconds": [probe_at_start, speed_probe_seconds()],
        }
    )


if __name__ == "__main__":
    main()
