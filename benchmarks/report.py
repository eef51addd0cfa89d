"""From raw measurements to the figures the issue asks for: summaries, the table, the targets.

Pure functions over the JSON the measured processes print, so a saved result can be re-read.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks.measured_process import PAGE_SIZE

MB = 1_000_000

# The targets of the issue. They are measured and reported, never asserted by a timed test.
WALL_TO_BOUND_TARGET = 1.25
WALL_TARGET_TASKS = 10_000
WALL_TARGET_LATENCIES = (0.02, 0.1)
PARSE_AND_FOLD_TARGET_US = 10.0
# prometheus_client's writers are used as they are; this is their budget for one exposition.
RENDER_TARGET_MS = 100.0
RSS_GROWTH_TARGET_BYTES = 30 * MB
SPEEDUP_TARGET = 5.0
SPEEDUP_TASKS, SPEEDUP_LATENCY = 10_000, 0.02
PROCESS_START_TARGET_SECONDS = 0.3


def pages_for(tasks: int) -> int:
    """Requests a full listing costs: an empty listing still takes one."""
    return max(1, math.ceil(tasks / PAGE_SIZE))


def lower_bound(latency: float, pages: int, concurrency: int) -> float:
    """The first page alone (it tells the total), then the rest ``concurrency`` at a time."""
    return latency * (1 + math.ceil((pages - 1) / concurrency))


def summarize_side(raw: dict[str, Any]) -> dict[str, Any]:
    """Medians over one side's listings (render per sample: the best); each listing is kept too."""
    listings: list[dict[str, Any]] = raw["listings"]
    tasks = max(1, listings[-1]["tasks"])

    def median(key: str) -> float:
        return float(statistics.median(listing[key] for listing in listings))

    def median_of(values: Sequence[float]) -> float:
        return statistics.median(values)

    return {
        "repetitions": len(listings),
        "listing_wall_seconds": median("wall_seconds"),
        "listing_wall_seconds_min": min(listing["wall_seconds"] for listing in listings),
        "render_seconds": median("render_seconds"),
        # As the exporter's client timed its requests (the baseline does not time them).
        "mean_request_seconds": median("mean_request_seconds")
        if "mean_request_seconds" in listings[0]
        else None,
        "scrape_wall_seconds": median_of([x["wall_seconds"] + x["render_seconds"] for x in listings]),
        "api_calls": [listing["api_calls"] for listing in listings],
        "cpu_seconds_per_1000_tasks": median_of(
            [(x["cpu_seconds"] + x["render_cpu_seconds"]) * 1000 / tasks for x in listings]
        ),
        "listing_cpu_us_per_task": median_of([x["cpu_seconds"] * 1e6 / tasks for x in listings]),
        # The best listing: other work on a shared machine only ever adds time.
        "render_us_per_sample": min([x["render_seconds"] * 1e6 / max(1, x["samples"]) for x in listings]),
        "content_type": listings[-1]["content_type"],
        # The exporter also renders the plain text format; the baseline does not.
        "text_render_us_per_sample": min(
            [x["text_render_seconds"] * 1e6 / max(1, x["text_samples"]) for x in listings]
        )
        if "text_render_seconds" in listings[0]
        else None,
        "samples": listings[-1]["samples"],
        "series_tasks": listings[-1]["series_tasks"],
        "exposition_bytes": listings[-1]["exposition_bytes"],
        "rss_at_start_bytes": raw["rss_at_start_bytes"],
        "peak_rss_bytes": raw["peak_rss_bytes"],
        # The slowest of the process' speed probes: higher than usual means a slowed machine.
        "speed_probe_seconds": max(raw["speed_probe_seconds"]),
        "listings": listings,
    }


def summarize_configuration(
    *,
    tasks: int,
    latency: float,
    concurrency: int,
    exporter: dict[str, Any],
    baseline: dict[str, Any] | None,
    baseline_skipped: str | None,
) -> dict[str, Any]:
    pages = pages_for(tasks)
    bound = lower_bound(latency, pages, concurrency)
    side = summarize_side(exporter)
    side["parse_and_fold"] = exporter["parse_and_fold"]
    naive = summarize_side(baseline) if baseline is not None else None
    return {
        "tasks": tasks,
        "latency_seconds": latency,
        "concurrency": concurrency,
        "pages": pages,
        "expected_api_calls": pages,
        "lower_bound_seconds": bound,
        "wall_to_bound_ratio": side["listing_wall_seconds"] / bound if bound > 0 else None,
        "exporter": side,
        "baseline": naive,
        "baseline_skipped": baseline_skipped,
        "speedup": naive["scrape_wall_seconds"] / side["scrape_wall_seconds"] if naive else None,
    }


COLUMNS = (
    ("N", ">7"),
    ("L ms", ">5"),
    ("C", ">2"),
    ("calls", ">5"),
    ("wall s", ">7"),
    ("req ms", ">6"),
    ("bound s", ">7"),
    ("ratio", ">5"),
    ("CPU s/1k", ">8"),
    ("parse+fold µs/task", ">18"),
    ("render µs/sample", ">16"),
    ("text µs/sample", ">14"),
    ("samples", ">7"),
    ("expo KB", ">7"),
    ("RSS MB", ">6"),
    ("naive s", ">7"),
    ("naive MB", ">8"),
    ("speedup", ">7"),
    ("probe ms", ">8"),
)


def _fixed(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table_row(configuration: dict[str, Any]) -> list[str]:
    side, naive = configuration["exporter"], configuration["baseline"]
    calls = side["api_calls"]
    return [
        str(configuration["tasks"]),
        f"{configuration['latency_seconds'] * 1000:g}",
        str(configuration["concurrency"]),
        str(max(calls)) if min(calls) == max(calls) else f"{min(calls)}-{max(calls)}",
        _fixed(side["scrape_wall_seconds"], 3),
        _fixed(side["mean_request_seconds"] * 1000 if side["mean_request_seconds"] is not None else None, 1),
        _fixed(configuration["lower_bound_seconds"], 3),
        _fixed(configuration["wall_to_bound_ratio"], 2),
        _fixed(side["cpu_seconds_per_1000_tasks"], 3),
        _fixed(side["parse_and_fold"]["parse_and_fold_us_per_task"], 2),
        _fixed(side["render_us_per_sample"], 2),
        _fixed(side["text_render_us_per_sample"], 2),
        str(side["samples"]),
        _fixed(side["exposition_bytes"] / 1000, 0),
        _fixed(side["peak_rss_bytes"] / MB, 1),
        _fixed(naive["scrape_wall_seconds"], 3) if naive else "skipped",
        _fixed(naive["peak_rss_bytes"] / MB, 0) if naive else "-",
        _fixed(configuration["speedup"], 1),
        _fixed(side["speed_probe_seconds"] * 1000, 1),
    ]


def format_table(configurations: Sequence[dict[str, Any]]) -> str:
    """A Markdown table: readable on a terminal, and pasted as is into docs/benchmarks.md."""
    header = "| " + " | ".join(f"{name:{align}}" for name, align in COLUMNS) + " |"
    rule = "|" + "|".join("-" * (len(f"{name:{align}}") + 1) + ":" for name, align in COLUMNS) + "|"
    rows = [
        "| "
        + " | ".join(f"{cell:{align}}" for cell, (_, align) in zip(table_row(c), COLUMNS, strict=True))
        + " |"
        for c in configurations
    ]
    return "\n".join([header, rule, *rows])


@dataclass(frozen=True)
class TargetOutcome:
    target: str
    measured: str
    met: bool | None  # None: not measured in this run

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.target, "measured": self.measured, "met": self.met}


def _by(configurations: Sequence[dict[str, Any]], tasks: int, latency: float) -> list[dict[str, Any]]:
    return [c for c in configurations if c["tasks"] == tasks and math.isclose(c["latency_seconds"], latency)]


def evaluate_targets(
    configurations: Sequence[dict[str, Any]], process_start: dict[str, Any] | None
) -> list[TargetOutcome]:
    return [
        _wall_target(configurations),
        _calls_target(configurations),
        _parse_target(configurations),
        _render_target(configurations),
        _rss_target(configurations),
        _speedup_target(configurations),
        _start_target(process_start),
    ]


def _wall_target(configurations: Sequence[dict[str, Any]]) -> TargetOutcome:
    target = f"wall ≤ {WALL_TO_BOUND_TARGET}x lower bound at N=10k, L=20/100 ms"
    chosen = [c for latency in WALL_TARGET_LATENCIES for c in _by(configurations, WALL_TARGET_TASKS, latency)]
    if not chosen:
        return TargetOutcome(target, "not measured", None)
    parts = [
        f"{c['wall_to_bound_ratio']:.2f}x (L={c['latency_seconds'] * 1000:g} ms, C={c['concurrency']})"
        for c in chosen
    ]
    met = all(c["wall_to_bound_ratio"] <= WALL_TO_BOUND_TARGET for c in chosen)
    return TargetOutcome(target, ", ".join(parts), met)


def _calls_target(configurations: Sequence[dict[str, Any]]) -> TargetOutcome:
    target = "API calls = ceil(N/100) on every listing"
    if not configurations:
        return TargetOutcome(target, "not measured", None)
    wrong = [
        f"N={c['tasks']}: {c['exporter']['api_calls']} (expected {c['expected_api_calls']})"
        for c in configurations
        if any(calls != c["expected_api_calls"] for calls in c["exporter"]["api_calls"])
    ]
    listings = sum(len(c["exporter"]["api_calls"]) for c in configurations)
    return TargetOutcome(target, "; ".join(wrong) or f"exact on all {listings} listings", not wrong)


def _parse_target(configurations: Sequence[dict[str, Any]]) -> TargetOutcome:
    target = f"parse + aggregate ≤ {PARSE_AND_FOLD_TARGET_US:g} µs/task (CPU)"
    if not configurations:
        return TargetOutcome(target, "not measured", None)
    worst = max(configurations, key=lambda c: c["exporter"]["parse_and_fold"]["parse_and_fold_us_per_task"])
    figures = worst["exporter"]["parse_and_fold"]
    value = figures["parse_and_fold_us_per_task"]
    measured = (
        f"worst {value:.2f} µs at N={worst['tasks']} (parse {figures['parse_us_per_task']:.2f}, "
        f"of which JSON {figures['json_decode_us_per_task']:.2f}; fold {figures['fold_us_per_task']:.2f})"
    )
    return TargetOutcome(target, measured, value <= PARSE_AND_FOLD_TARGET_US)


def _render_target(configurations: Sequence[dict[str, Any]]) -> TargetOutcome:
    target = f"render one exposition ≤ {RENDER_TARGET_MS:g} ms (as Prometheus asks)"
    if not configurations:
        return TargetOutcome(target, "not measured", None)

    def milliseconds(side: dict[str, Any], per_sample: str) -> float:
        return float(side[per_sample] * side["samples"] / 1000)

    worst = max(configurations, key=lambda c: milliseconds(c["exporter"], "render_us_per_sample"))
    side = worst["exporter"]
    value = milliseconds(side, "render_us_per_sample")
    text = max(milliseconds(c["exporter"], "text_render_us_per_sample") for c in configurations)
    measured = (
        f"worst {value:.1f} ms at N={worst['tasks']} ({side['samples']} samples, "
        f"{side['content_type'].split(';')[0]}, {side['render_us_per_sample']:.2f} µs each); "
        f"text format: worst {text:.1f} ms"
    )
    return TargetOutcome(target, measured, value <= RENDER_TARGET_MS)


def _rss_target(configurations: Sequence[dict[str, Any]]) -> TargetOutcome:
    target = f"peak RSS grows ≤ {RSS_GROWTH_TARGET_BYTES // MB} MB from N=1k to N=100k"
    sizes = sorted({c["tasks"] for c in configurations})
    if len(sizes) < 2:
        return TargetOutcome(target, "not measured (needs two sizes)", None)
    smallest, largest = sizes[0], sizes[-1]
    growths = []
    for big in (c for c in configurations if c["tasks"] == largest):
        for small in configurations:
            same_setting = math.isclose(small["latency_seconds"], big["latency_seconds"]) and (
                small["concurrency"] == big["concurrency"]
            )
            if small["tasks"] == smallest and same_setting:
                growths.append(big["exporter"]["peak_rss_bytes"] - small["exporter"]["peak_rss_bytes"])
    if not growths:
        return TargetOutcome(target, "not measured", None)
    worst = max(growths)
    measured = f"worst +{worst / MB:.1f} MB from N={smallest} to N={largest}"
    return TargetOutcome(target, measured, worst <= RSS_GROWTH_TARGET_BYTES)


def _speedup_target(configurations: Sequence[dict[str, Any]]) -> TargetOutcome:
    target = f"≥ {SPEEDUP_TARGET:g}x faster than the naive baseline at N=10k, L=20 ms"
    chosen = [c for c in _by(configurations, SPEEDUP_TASKS, SPEEDUP_LATENCY) if c["speedup"] is not None]
    if not chosen:
        return TargetOutcome(target, "not measured", None)
    measured = ", ".join(f"{c['speedup']:.1f}x (C={c['concurrency']})" for c in chosen)
    return TargetOutcome(target, measured, all(c["speedup"] >= SPEEDUP_TARGET for c in chosen))


def _start_target(process_start: dict[str, Any] | None) -> TargetOutcome:
    target = f"`vod-exporter --version` < {PROCESS_START_TARGET_SECONDS * 1000:g} ms"
    if process_start is None:
        return TargetOutcome(target, "not measured", None)
    best = process_start["best_seconds"]
    runs = len(process_start["runs_seconds"])
    return TargetOutcome(
        target, f"{best * 1000:.0f} ms (best of {runs})", best < PROCESS_START_TARGET_SECONDS
    )


def speed_probes(configurations: Sequence[dict[str, Any]]) -> list[float]:
    return [
        c[side]["speed_probe_seconds"] for c in configurations for side in ("exporter", "baseline") if c[side]
    ]


def format_targets(outcomes: Sequence[TargetOutcome]) -> str:
    verdicts = {True: "met", False: "MISSED", None: "-"}
    lines = ["| target | measured | verdict |", "|---|---|---|"]
    lines += [f"| {o.target} | {o.measured} | {verdicts[o.met]} |" for o in outcomes]
    return "\n".join(lines)
