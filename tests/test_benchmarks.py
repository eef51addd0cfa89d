"""The benchmark harness, run end to end at a tiny size: every figure is reported.

No timing is asserted here (the harness measures, it does not judge a shared machine); what is
checked is that each figure is present and sane, and that a listing costs ``ceil(N/100)`` calls.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from collections import Counter
from pathlib import Path

import pytest

from benchmarks import report, run
from exporter.simulator.world import World, WorldSettings
from exporter.tasks import FAILED, KNOWN_STATUSES, PROCESSING, SUCCEED, WAITING

TASKS = 300

CONFIGURATION_FIELDS = {
    "tasks",
    "latency_seconds",
    "concurrency",
    "pages",
    "expected_api_calls",
    "lower_bound_seconds",
    "wall_to_bound_ratio",
    "exporter",
    "baseline",
    "baseline_skipped",
    "speedup",
}
SIDE_FIELDS = {
    "repetitions",
    "listing_wall_seconds",
    "listing_wall_seconds_min",
    "render_seconds",
    "mean_request_seconds",
    "scrape_wall_seconds",
    "api_calls",
    "cpu_seconds_per_1000_tasks",
    "listing_cpu_us_per_task",
    "render_us_per_sample",
    "content_type",
    "text_render_us_per_sample",
    "samples",
    "series_tasks",
    "exposition_bytes",
    "rss_at_start_bytes",
    "peak_rss_bytes",
    "speed_probe_seconds",
    "listings",
}
PARSE_FIELDS = {
    "tasks",
    "rounds",
    "json_decode_us_per_task",
    "parse_us_per_task",
    "fold_us_per_task",
    "parse_and_fold_us_per_task",
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, object], str]:
    output = tmp_path_factory.mktemp("benchmark") / "result.json"
    args = ["--tasks", str(TASKS), "--latency", "0", "--repeat", "1", "--start-repeat", "1"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert run.main([*args, "--json", str(output)]) == 0
    return json.loads(Path(output).read_text()), printed.getvalue()


def test_the_json_has_every_figure(tiny_run: tuple[dict[str, object], str]) -> None:
    result, _ = tiny_run
    assert isinstance(result, dict)
    assert set(result) >= {"command", "revision", "machine", "process_start", "configurations", "targets"}
    machine = result["machine"]
    assert isinstance(machine, dict)
    assert {"cpus", "cpu_model", "memory", "python", "load_average_at_start"} <= set(machine)
    configurations = result["configurations"]
    assert isinstance(configurations, list) and len(configurations) == 1
    (configuration,) = configurations
    assert set(configuration) == CONFIGURATION_FIELDS
    for side in ("exporter", "baseline"):
        assert set(configuration[side]) >= SIDE_FIELDS, side
        assert configuration[side]["samples"] > 0
        assert configuration[side]["exposition_bytes"] > 0
        assert configuration[side]["peak_rss_bytes"] > 0
    # Rendered as Prometheus asks for it, and as plain text (the baseline only as Prometheus asks).
    assert configuration["exporter"]["content_type"] and configuration["baseline"]["content_type"]
    assert configuration["exporter"]["text_render_us_per_sample"] > 0
    assert configuration["baseline"]["text_render_us_per_sample"] is None
    assert set(configuration["exporter"]["parse_and_fold"]) == PARSE_FIELDS
    assert configuration["exporter"]["parse_and_fold"]["tasks"] == TASKS
    assert configuration["speedup"] > 0
    start = result["process_start"]
    assert isinstance(start, dict)
    assert start["best_seconds"] > 0 and "0.1.0" in start["output"]


def test_a_listing_costs_one_call_per_hundred_tasks(tiny_run: tuple[dict[str, object], str]) -> None:
    result, _ = tiny_run
    configurations = result["configurations"]
    assert isinstance(configurations, list)
    (configuration,) = configurations
    assert configuration["expected_api_calls"] == math.ceil(TASKS / 100) == 3
    assert configuration["exporter"]["api_calls"] == [3]
    assert configuration["baseline"]["api_calls"] == [3]
    # Every task arrived: the naive side keeps a series per task, the exporter listed them all.
    assert configuration["exporter"]["listings"][0]["tasks"] == TASKS
    assert configuration["baseline"]["series_tasks"] == TASKS


def test_the_table_and_targets_are_printed(tiny_run: tuple[dict[str, object], str]) -> None:
    _, printed = tiny_run
    assert "| parse+fold µs/task |" in printed
    assert f"|     {TASKS} |" in printed
    assert "| API calls = ceil(N/100) on every listing | exact on all 1 listings | met |" in printed


def test_lower_bound_is_the_first_page_then_rounds_of_concurrent_pages() -> None:
    assert report.pages_for(0) == 1  # an empty listing still costs a call
    assert report.pages_for(10_000) == 100
    assert report.pages_for(10_001) == 101
    assert report.lower_bound(0.1, 1000, 4) == pytest.approx(0.1 * 251)
    assert report.lower_bound(0.02, 100, 4) == pytest.approx(0.02 * 26)
    assert report.lower_bound(0.02, 1, 4) == pytest.approx(0.02)


def _measured(wall: float, calls: int) -> dict[str, object]:
    listing = {
        "tasks": 10_000,
        "series_tasks": 1000,
        "wall_seconds": wall,
        "cpu_seconds": 0.2,
        "api_calls": calls,
        "mean_request_seconds": 0.021,
        "content_type": "application/openmetrics-text; version=1.0.0; charset=utf-8",
        "render_seconds": 0.01,
        "render_cpu_seconds": 0.01,
        "exposition_bytes": 800_000,
        "samples": 5000,
        "text_render_seconds": 0.005,
        "text_exposition_bytes": 800_000,
        "text_samples": 5000,
    }
    parse = {
        "tasks": 10_000,
        "rounds": 5,
        "json_decode_us_per_task": 1.0,
        "parse_us_per_task": 5.0,
        "fold_us_per_task": 1.5,
        "parse_and_fold_us_per_task": 6.5,
    }
    return {
        "listings": [listing],
        "rss_at_start_bytes": 1,
        "peak_rss_bytes": 2,
        "parse_and_fold": parse,
        "speed_probe_seconds": [0.01, 0.01],
    }


def _targets(wall: float, calls: int) -> dict[str, report.TargetOutcome]:
    configuration = report.summarize_configuration(
        tasks=10_000,
        latency=0.02,
        concurrency=4,
        exporter=_measured(wall, calls),
        baseline=None,
        baseline_skipped="not run",
    )
    outcomes = report.evaluate_targets([configuration], None)
    return {outcome.target.split(" ")[0]: outcome for outcome in outcomes}


def test_a_slow_listing_misses_the_wall_time_target() -> None:
    assert _targets(wall=0.6, calls=100)["wall"].met is True  # 0.6 s against 0.52 s
    slow = _targets(wall=0.728, calls=100)["wall"]
    assert slow.met is False
    assert slow.measured == "1.40x (L=20 ms, C=4)"


def test_a_wasted_request_misses_the_api_calls_target() -> None:
    assert _targets(wall=0.6, calls=100)["API"].met is True
    wasted = _targets(wall=0.6, calls=101)["API"]
    assert wasted.met is False
    assert "expected 100" in wasted.measured


def test_targets_not_measured_are_neither_met_nor_missed() -> None:
    outcomes = _targets(wall=0.6, calls=100)
    assert outcomes["≥"].met is None  # no baseline in this run
    assert outcomes["`vod-exporter"].met is None


def test_simulator_world_benchmark_reports_every_figure() -> None:
    from benchmarks import simulator_world

    figures = simulator_world.measure(3000, scrapes=3, repeat=2)
    assert figures["tasks"] == 3000 and figures["build_seconds"] > 0
    assert set(figures["pages"]) == {"newest-first", "oldest-first", "unordered"}
    assert all(value > 0 for page in figures["pages"].values() for value in page.values())
    assert figures["find_ms"] > 0 and figures["truth_ms_median"] > 0
    assert figures["open_tasks_median"] >= 3  # the stuck tasks at least
    assert "| 3,000 |" in simulator_world._table([figures])


@pytest.fixture(scope="module")
def incremental_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, object], str]:
    from benchmarks import incremental

    output = tmp_path_factory.mktemp("incremental") / "result.json"
    cases = "newest-200k,oldest-50k,unordered,disruptions"
    args = ["--cases", cases, "--scale", "0.01", "--scrapes", "7", "--jobs", "4", "--json", str(output)]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert incremental.main(args) == 0
    return json.loads(Path(output).read_text()), printed.getvalue()


def test_incremental_benchmark_reports_calls_beside_the_cheapest_plan(
    incremental_run: tuple[dict[str, object], str],
) -> None:
    result, printed = incremental_run
    results = {r["case"]["name"]: r for r in result["results"]}  # type: ignore[index]
    assert set(results) == {"newest-200k", "oldest-50k", "unordered", "disruptions"}
    for name in ("newest-200k", "oldest-50k"):
        steady = results[name]["steady"]
        assert steady["scrapes"] == 7 and steady["exact"] == 7, name
        # Counted at the simulator, beside the plan no exporter can beat.
        assert steady["calls"]["median"] >= steady["cheapest"]["median"] >= 1, name
        assert steady["complete_calls"]["median"] >= results[name]["case"]["tasks"] / 100
        assert results[name]["peak_rss_bytes"] > 0
        assert results[name]["mode"] == ["incremental", "order_verified"]
    assert results["unordered"]["mode"] == ["full", "order_unknown"]
    listings = [s for s in results["unordered"]["scrapes"] if s["phase"] == "steady"]
    assert all(s["calls"] == s["complete_calls"] for s in listings)
    assert "| newest-200k | 2,000 | newest-first |" in printed


def test_incremental_benchmark_catches_each_disruption(
    incremental_run: tuple[dict[str, object], str],
) -> None:
    result, printed = incremental_run
    (disruptions,) = [r for r in result["results"] if r["case"]["name"] == "disruptions"]  # type: ignore[index]
    events = [s for s in disruptions["scrapes"] if s["event"]]
    assert [s["event"] for s in events] == ["open task deleted", "finished task deleted", "order broken"]
    # Each one discards that scrape's pass (counted) for a complete listing in the same scrape.
    assert all(s["up"] and s["exact"] for s in events)
    assert not any(s["exact"] is False for s in disruptions["scrapes"])
    assert sum(disruptions["fallbacks"].values()) == 3
    verdicts = {t["case"]: t["met"] for t in result["targets"]}  # type: ignore[index]
    assert verdicts["disruptions"] is True
    assert "| disruptions | each disruption caught on the next pass, exact after |" in printed


def test_benchmark_children_never_ask_a_real_metadata_service(monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks.measured_process import child_environment

    monkeypatch.delenv("VOD_EXPORTER_AUTH_METADATA_ENDPOINT")  # as outside the test suite
    assert child_environment({})["VOD_EXPORTER_AUTH_METADATA_ENDPOINT"].startswith("http://127.0.0.1:")


def test_the_many_targets_benchmark_reports_every_figure(tmp_path: Path) -> None:
    from benchmarks import many_targets

    out = tmp_path / "targets.json"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        many_targets.main(["--targets", "2", "--tasks", "150", "--listings", "1", "--json", str(out)])
    results = json.loads(out.read_text())
    one, two = results["cases"]
    assert (one["targets"], two["targets"]) == (1, 2)
    assert one["tasks"] == 150 and two["tasks"] == 300 and one["all_up"] and two["all_up"]
    assert len(two["single_seconds"]) == 2
    # Two pages per listing and target: once alone each, then once together.
    assert one["calls"] == 2 and two["calls"] == 2 * 2 + 2 * 2
    assert one["rss_bytes"] > 0 and two["together_seconds"] > 0
    assert "2 targets listed in one scrape" in printed.getvalue()


# --- benchmarks/arrivals.py: exactness as of one moment, and the run end to end --------------------

ARRIVALS_START = 1_790_000_000.0


@pytest.fixture
def arriving() -> World:
    return World(WorldSettings(tasks=600, seed=5, arrival_rate=2.0, history=900), start=ARRIVALS_START)


def oldest_counts(world: World, reported: int, at: float) -> dict[str, int]:
    """What an exact listing of the ``reported`` oldest tasks publishes if it reads them at ``at``."""
    oldest = sorted(world.records(at), key=lambda task: task.sort_key)[:reported]
    counted = Counter(task.status(at) for task in oldest)
    return {status: counted.get(status, 0) for status in KNOWN_STATUSES}


def test_arrivals_judge_finds_an_exact_listing_exact(arriving: World) -> None:
    from benchmarks.arrivals import judge

    at = ARRIVALS_START + 120
    verdict = judge(arriving, arriving.total(at), arriving.counts(at), at, at)
    assert verdict == judge(
        arriving, arriving.total(at), oldest_counts(arriving, arriving.total(at), at), at, at
    )
    assert verdict.exact and verdict.changed == 0 and not verdict.detail


def test_arrivals_judge_allows_status_changes_within_the_window_only(arriving: World) -> None:
    from benchmarks.arrivals import judge

    low, high = ARRIVALS_START + 120, ARRIVALS_START + 180
    reported = arriving.total(low)  # the total at the listing's first page
    late = oldest_counts(arriving, reported, high)  # the same tasks, their statuses read later
    assert late != arriving.counts(low)
    verdict = judge(arriving, reported, late, low, high)
    assert verdict.exact and verdict.changed > 0
    # Outside a window that short, the same counts are wrong.
    assert not judge(arriving, reported, late, low, low + 1).exact


def test_arrivals_judge_refuses_a_wrong_set_of_tasks(arriving: World) -> None:
    from benchmarks.arrivals import judge

    at = ARRIVALS_START + 120
    reported, counts = arriving.total(at), arriving.counts(at)
    # One old finished task missed and a new waiting one counted twice: the total still agrees.
    swapped = {**counts, SUCCEED: counts[SUCCEED] - 1, WAITING: counts[WAITING] + 1}
    verdict = judge(arriving, reported, swapped, at, at)
    assert not verdict.exact and "WAITING" in verdict.detail
    assert not judge(arriving, reported, {**counts, SUCCEED: counts[SUCCEED] + 1}, at, at).exact
    # A total the project never had within the window.
    assert "outside" in judge(arriving, reported + 5, counts, at, at).detail


def test_arrivals_judge_gives_each_changing_task_one_status() -> None:
    from benchmarks.arrivals import unexplained

    changing = {frozenset({WAITING, PROCESSING}): 1, frozenset({PROCESSING, FAILED}): 1}
    assert unexplained({PROCESSING: 2, SUCCEED: 3}, {SUCCEED: 3}, changing) == ""
    assert unexplained({WAITING: 1, FAILED: 1, SUCCEED: 3}, {SUCCEED: 3}, changing) == ""
    # Totals agree and no status falls short, yet no one task can be both of two WAITINGs.
    assert "WAITING" in unexplained({WAITING: 2, SUCCEED: 3}, {SUCCEED: 3}, changing)


def test_arrivals_benchmark_runs_and_reports_every_scenario(tmp_path: Path) -> None:
    from benchmarks import arrivals

    output = tmp_path / "arrivals.json"
    args = ["--sizes", "250", "--orders", "newest-first", "--rates", "5", "--repeat", "1", "--jobs", "2"]
    args += ["--serve-tasks", "150", "--serve-scrapes", "2", "--serve-interval", "0.2", "--json", str(output)]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert arrivals.main(args) == 0
    result = json.loads(output.read_text())
    assert [(r["setup"]["tie_order"], r["setup"]["rate"]) for r in result["once"]] == [
        ("stable", 5.0),
        ("shuffled", 0.0),
        ("shuffled", 5.0),
    ]
    for once in (once for r in result["once"] for once in r["runs"]):
        assert once["exit"] in (0, 1) and once["api_calls"] >= 3  # 250 tasks: at least 3 pages
        # A successful run is judged; a failed one says why.
        assert isinstance(once["exact"], bool) if once["exit"] == 0 else once["failure"]
    served = result["serve"]
    assert [row["scrape"] for row in served["scrapes"]] == [1, 2]
    for row in served["scrapes"]:
        for project_id in served["projects"]:
            cell = row[project_id]
            assert cell["exact"] is None if not cell["up"] else isinstance(cell["exact"], bool)
    assert "| stable | 250 | newest-first | 5 | " in printed.getvalue()
    assert "From the second scrape on: " in printed.getvalue()
