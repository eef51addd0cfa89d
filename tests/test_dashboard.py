"""The Grafana dashboard: portable (datasource and project are variables, no data source UID), every
panel has a unit, every query parses and reads only metrics the exporter serves, and the panels users
need are there. The open-task joins are run by promtool against sample series."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mixin.dashboard import panels
from tests.test_rules import (
    CONTRACT_METRICS,
    PROMETHEUS_METRICS,
    RECORDING_RULES,
    ROOT,
    alerting_rules,
    doc_anchors,
    metric_names,
    recorded_names,
    run_promtool,
)

DASHBOARD = ROOT / "grafana" / "dashboards" / "vod-exporter.json"
PROVISIONED_DASHBOARD = ROOT / "grafana" / "provisioning" / "dashboards" / "vod-exporter.json"
PROVISIONED_DATASOURCES = ROOT / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
DATASOURCE_REF = {"type": "prometheus", "uid": "${datasource}"}

# A value for every variable the queries use, as Grafana would interpolate it ("All" selected):
# whoever runs the queries outside Grafana substitutes these.
GRAFANA_VARIABLE_VALUES = {"project_id": ".*", "region": ".*", "job": ".*", "__rate_interval": "1m"}

# Metrics without a project_id label: they cannot be filtered by project.
UNSCOPED_METRICS = PROMETHEUS_METRICS | {
    "huaweicloud_vod_api_requests_total",
    "huaweicloud_vod_api_request_duration_seconds_bucket",
}

# Title -> (panel type, unit, metrics it must read).
REQUIRED_PANELS: dict[str, tuple[str, str, set[str]]] = {
    "Tasks by status now": ("stat", "short", {"huaweicloud_vod_editing_tasks"}),
    "Tasks created and finished per minute": (
        "timeseries",
        "cpm",
        {"huaweicloud_vod_editing_tasks_created_total", "huaweicloud_vod_editing_tasks_finished_total"},
    ),
    "Task success ratio against the objective": (
        "timeseries",
        "percentunit",
        {"project_id:vod_editing_tasks_success:ratio_rate1h", "project_id:vod_slo_success_objective:ratio"},
    ),
    "Tasks finished within 10 minutes against the objective": (
        "timeseries",
        "percentunit",
        {
            "project_id:vod_editing_tasks_under_latency_target:ratio_rate1h",
            "project_id:vod_slo_latency_objective:ratio",
        },
    ),
    "Finished-task duration (p50, p90, p99)": (
        "timeseries",
        "s",
        {"huaweicloud_vod_editing_finished_task_duration_seconds_bucket"},
    ),
    "Open tasks: WAITING backlog and PROCESSING": ("timeseries", "short", {"huaweicloud_vod_editing_tasks"}),
    "Oldest open task age": (
        "timeseries",
        "s",
        {"huaweicloud_vod_editing_oldest_task_created_timestamp_seconds"},
    ),
    "Open tasks": (
        "table",
        "s",
        {
            "huaweicloud_vod_editing_task_info",
            "huaweicloud_vod_editing_task_status",
            "huaweicloud_vod_editing_task_progress_ratio",
            "huaweicloud_vod_editing_task_created_timestamp_seconds",
        },
    ),
    "Longest-open tasks": (
        "bargauge",
        "s",
        {"huaweicloud_vod_editing_task_duration_seconds", "huaweicloud_vod_editing_task_status"},
    ),
    "Exporter target": ("stat", "none", {"up"}),
    "Last listing": ("stat", "none", {"huaweicloud_vod_up"}),
    "Since the last successful listing": ("stat", "s", {"huaweicloud_vod_last_success_timestamp_seconds"}),
    "Listing duration": ("timeseries", "s", {"huaweicloud_vod_scrape_duration_seconds"}),
    "API requests by code": ("timeseries", "reqps", {"huaweicloud_vod_api_requests_total"}),
    "API throttling": ("timeseries", "percentunit", {"huaweicloud_vod_api_requests_total"}),
    "Failed listings by reason": ("timeseries", "cpm", {"huaweicloud_vod_scrape_errors_total"}),
    "Per-task series left out": ("stat", "short", {"huaweicloud_vod_editing_task_series_dropped"}),
}


def load_dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def panel_by_title(title: str) -> dict[str, Any]:
    (panel,) = [p for p in panels(load_dashboard()) if p["title"] == title]
    return panel


def dashboard_expressions() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every query of the dashboard, as written in it."""
    return [(p["title"], t["expr"]) for p in panels(load_dashboard()) for t in p["targets"]]


def interpolate(expr: str) -> str:
    return re.sub(r"\$(\w+)", lambda m: GRAFANA_VARIABLE_VALUES[m.group(1)], expr)


def variable(name: str) -> dict[str, Any]:
    (found,) = [v for v in load_dashboard()["templating"]["list"] if v["name"] == name]
    return found


def _objects(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _objects(value)
    elif isinstance(node, list):
        for item in node:
            yield from _objects(item)


def test_dashboard_uses_the_current_schema_and_has_a_stable_uid() -> None:
    dashboard = load_dashboard()
    assert dashboard["schemaVersion"] >= 39
    assert dashboard["uid"] == "vod-exporter"
    assert dashboard.get("id") is None  # an id would tie the file to one Grafana database


def test_datasource_is_a_variable_and_no_uid_is_hard_coded() -> None:
    datasource = variable("datasource")
    assert datasource["type"] == "datasource" and datasource["query"] == "prometheus"
    dashboard = load_dashboard()
    for panel in panels(dashboard):
        assert panel["datasource"] == DATASOURCE_REF, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE_REF, panel["title"]
    references = [obj["datasource"] for obj in _objects(dashboard) if isinstance(obj.get("datasource"), dict)]
    assert references and all(ref == DATASOURCE_REF for ref in references)


def test_dashboard_imports_grafana_com_style_with_a_datasource_input() -> None:
    dashboard = load_dashboard()
    (datasource_input,) = dashboard["__inputs"]
    assert datasource_input["name"] == "DS_PROMETHEUS"
    assert (datasource_input["type"], datasource_input["pluginId"]) == ("datasource", "prometheus")
    # Import replaces ${DS_PROMETHEUS} with the data source chosen; the variable carries it to the panels.
    assert variable("datasource")["current"]["value"] == "${DS_PROMETHEUS}"
    assert json.dumps(dashboard).count("${DS_PROMETHEUS}") == 1
    required = {(r["type"], r["id"]) for r in dashboard["__requires"]}
    panel_types = {("panel", p["type"]) for p in panels(dashboard)}
    assert {("grafana", "grafana"), ("datasource", "prometheus")} | panel_types == required


def test_provisioned_copy_is_the_dashboard_with_the_provisioned_data_source() -> None:
    provisioned = json.loads(PROVISIONED_DASHBOARD.read_text())
    (datasource,) = yaml.safe_load(PROVISIONED_DATASOURCES.read_text())["datasources"]
    imported = load_dashboard()
    del imported["__inputs"], imported["__requires"]
    currents = []
    for dashboard in (provisioned, imported):
        (variable_,) = [v for v in dashboard["templating"]["list"] if v["name"] == "datasource"]
        currents.append(variable_.pop("current"))
    assert currents[0] == {"selected": True, "text": datasource["name"], "value": datasource["uid"]}
    assert provisioned == imported


@pytest.mark.parametrize(
    ("name", "definition"),
    [
        ("job", 'label_values(huaweicloud_vod_up{job="vod-exporter"}, job)'),
        ("region", 'label_values(huaweicloud_vod_target_info{job=~"$job"}, region)'),
        (
            "project_id",
            'label_values(huaweicloud_vod_target_info{job=~"$job", region=~"$region"}, project_id)',
        ),
    ],
)
def test_job_region_and_project_are_multi_select_variables_each_narrowing_the_next(
    name: str, definition: str
) -> None:
    found = variable(name)
    assert found["type"] == "query" and found["datasource"] == DATASOURCE_REF
    assert found["multi"] is True and found["includeAll"] is True
    assert found["definition"] == definition
    # "All" must mean the values found, not ".*", or the region would not narrow the panels.
    assert "allValue" not in found


def test_every_raw_metric_selector_follows_the_job_variable() -> None:
    selector = re.compile(r"(?<![\w:])([A-Za-z_:][\w:]*)(\{[^}]*\})?")
    for title, expr in dashboard_expressions():
        for name in metric_names(expr) - recorded_names():
            for match in selector.finditer(expr):
                if match.group(1) == name:
                    assert 'job=~"$job"' in (match.group(2) or ""), f"{title}: {name}"


def test_every_panel_links_to_its_runbook_section() -> None:
    from mixin.config import load

    base = load().runbook_base_url
    for panel in panels(load_dashboard()):
        (link,) = panel["links"]
        page, _, anchor = link["url"].partition("#")
        assert page == base and anchor in doc_anchors(), panel["title"]


def test_oldest_open_task_age_shows_the_alerts_threshold() -> None:
    from mixin.config import load

    threshold = load().thresholds.oldest_processing_task_age_seconds
    (alert,) = [r for r in alerting_rules() if r["alert"] == "VodTaskProcessingTooLong"]
    assert alert["expr"].endswith(f"> {threshold:g}")
    defaults = panel_by_title("Oldest open task age")["fieldConfig"]["defaults"]
    assert defaults["thresholds"]["steps"][-1] == {"color": "red", "value": threshold}
    assert defaults["custom"]["thresholdsStyle"]["mode"] == "dashed"


def test_every_panel_has_a_unit_and_a_description() -> None:
    for panel in panels(load_dashboard()):
        assert panel["fieldConfig"]["defaults"].get("unit"), panel["title"]
        assert panel.get("description"), panel["title"]


def test_required_panels_are_present_with_their_unit_and_metrics() -> None:
    by_title = {p["title"]: p for p in panels(load_dashboard())}
    for title, (kind, unit, metrics) in REQUIRED_PANELS.items():
        assert title in by_title, f"missing panel {title!r}"
        panel = by_title[title]
        assert panel["type"] == kind, title
        assert panel["fieldConfig"]["defaults"]["unit"] == unit, title
        read = set().union(*(metric_names(t["expr"]) for t in panel["targets"]))
        assert metrics <= read, f"{title} does not read {metrics - read}"


def test_duration_panel_shows_p50_p90_p99_from_the_histogram() -> None:
    panel = panel_by_title("Finished-task duration (p50, p90, p99)")
    quantiles = [re.findall(r"^histogram_quantile\(([\d.]+),", t["expr"]) for t in panel["targets"]]
    assert quantiles == [["0.5"], ["0.9"], ["0.99"]]


def test_panels_do_not_overlap() -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in load_dashboard()["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_every_expression_reads_only_contract_metrics_or_recorded_rules() -> None:
    known = CONTRACT_METRICS | PROMETHEUS_METRICS | recorded_names()
    for title, expr in dashboard_expressions():
        assert metric_names(expr), f"{title}: {expr!r} reads no metric"
        assert metric_names(expr) <= known, f"{title} reads unknown metrics {metric_names(expr) - known}"


def test_every_project_scoped_selector_follows_the_project_variable() -> None:
    selector = re.compile(r"(?<![\w:])([A-Za-z_:][\w:]*)(\{[^}]*\})?")
    for title, expr in dashboard_expressions():
        for name in metric_names(expr) - UNSCOPED_METRICS:
            for match in selector.finditer(expr):
                if match.group(1) == name:
                    assert 'project_id=~"$project_id"' in (match.group(2) or ""), f"{title}: {name}"


def test_expressions_use_only_variables_with_known_values() -> None:
    defined = {v["name"] for v in load_dashboard()["templating"]["list"]}
    for title, expr in dashboard_expressions():
        for name in re.findall(r"\$(\w+)", expr):
            assert name in GRAFANA_VARIABLE_VALUES, f"{title}: ${name}"
            assert name in defined or name.startswith("__"), f"{title}: ${name} is not a dashboard variable"


def test_every_expression_parses(tmp_path: Path) -> None:
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{n}:check", "expr": interpolate(expr)}
                    for n, (_, expr) in enumerate(dashboard_expressions())
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(rules))
    result = run_promtool("check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_open_tasks_table_shows_progress_bar_age_and_asset() -> None:
    panel = panel_by_title("Open tasks")
    assert all(t["instant"] and t["format"] == "table" for t in panel["targets"])
    assert [t["id"] for t in panel["transformations"]] == ["merge", "organize"]
    renamed = panel["transformations"][1]["options"]["renameByName"]
    assert {"asset_id": "Asset", "Value #A": "Progress", "Value #B": "Age"}.items() <= renamed.items()
    overrides = {
        o["matcher"]["options"]: {p["id"]: p["value"] for p in o["properties"]}
        for o in panel["fieldConfig"]["overrides"]
    }
    assert overrides["Progress"]["unit"] == "percentunit"
    assert overrides["Progress"]["custom.cellOptions"]["type"] == "gauge"
    assert (overrides["Progress"]["min"], overrides["Progress"]["max"]) == (0, 1)
    assert overrides["Age"]["unit"] == "s"


def _task_series(task: str, status: str, progress: float, created: int) -> list[dict[str, str]]:
    labels = f'job="vod-exporter", instance="e:9881", project_id="p1", task_id="{task}"'
    return [
        {
            "series": f'huaweicloud_vod_editing_task_info{{{labels}, asset_id="asset-{task}"}}',
            "values": "1x10",
        },
        {"series": f'huaweicloud_vod_editing_task_status{{{labels}, status="{status}"}}', "values": "1x10"},
        {"series": f"huaweicloud_vod_editing_task_progress_ratio{{{labels}}}", "values": f"{progress}x10"},
        {
            "series": f"huaweicloud_vod_editing_task_created_timestamp_seconds{{{labels}}}",
            "values": f"{created}x10",
        },
        {
            "series": f"huaweicloud_vod_editing_task_duration_seconds{{{labels}}}",
            # As the exporter writes it while the task is open: now - create_time.
            "values": f"{-created}+60x10",
        },
    ]


def _row(task: str, status: str, value: float) -> dict[str, Any]:
    labels = (
        f'{{job="vod-exporter", instance="e:9881", project_id="p1", task_id="{task}", '
        f'asset_id="asset-{task}", status="{status}"}}'
    )
    return {"labels": labels, "value": value}


def _row_without_asset(task: str, status: str, value: float) -> dict[str, Any]:
    labels = (
        f'{{job="vod-exporter", instance="e:9881", project_id="p1", task_id="{task}", status="{status}"}}'
    )
    return {"labels": labels, "value": value}


def test_open_task_queries_join_the_per_task_series(tmp_path: Path) -> None:
    """At 10 minutes: one row per open task with its asset and status; finished tasks left out."""
    (progress_query, age_query) = [t["expr"] for t in panel_by_title("Open tasks")["targets"]]
    (longest_query,) = [t["expr"] for t in panel_by_title("Longest-open tasks")["targets"]]
    unit_test = {
        "rule_files": [str(RECORDING_RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    *_task_series("t-processing", "PROCESSING", 0.4, created=-300),
                    *_task_series("t-waiting", "WAITING", 0, created=0),
                    *_task_series("t-succeeded", "SUCCEED", 1, created=-900),
                ],
                "promql_expr_test": [
                    {
                        "expr": interpolate(progress_query),
                        "eval_time": "10m",
                        "exp_samples": [
                            _row("t-processing", "PROCESSING", 0.4),
                            _row("t-waiting", "WAITING", 0),
                        ],
                    },
                    {
                        "expr": interpolate(age_query),
                        "eval_time": "10m",
                        "exp_samples": [
                            _row("t-processing", "PROCESSING", 900),
                            _row("t-waiting", "WAITING", 600),
                        ],
                    },
                    {
                        "expr": interpolate(longest_query),
                        "eval_time": "10m",
                        "exp_samples": [
                            _row_without_asset("t-processing", "PROCESSING", 900),
                            _row_without_asset("t-waiting", "WAITING", 600),
                        ],
                    },
                ],
            }
        ],
    }
    path = tmp_path / "open-tasks.test.yml"
    path.write_text(yaml.safe_dump(unit_test))
    result = run_promtool("test", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("title", ["Open tasks", "Longest-open tasks"])
def test_open_task_panels_are_instant_queries(title: str) -> None:
    assert all(t["instant"] and not t["range"] for t in panel_by_title(title)["targets"])


def test_every_panel_is_described_in_the_docs() -> None:
    docs = (ROOT / "docs" / "dashboards-and-alerts.md").read_text()
    for panel in panels(load_dashboard()):
        assert f"\n| {panel['title']} |" in docs, panel["title"]
