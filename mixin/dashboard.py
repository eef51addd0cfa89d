"""The Grafana dashboard, built from the panels in dashboard.json and the mixin's configuration.

dashboard.json holds what is the same for everyone: the panels, their queries, layout and display.
This module adds what depends on where the dashboard goes: the data source (a grafana.com import
input, or the provisioned data source), the variables, the runbook links and the alert thresholds.

Written with plain dictionaries: grafana-foundation-sdk, Grafana's typed builders, needs Python 3.11
or later in every release, and the project supports 3.10.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mixin.config import MixinConfig

PANELS = Path(__file__).resolve().parent / "dashboard.json"

DATASOURCE_INPUT = "DS_PROMETHEUS"
DATASOURCE_REF = {"type": "prometheus", "uid": "${datasource}"}
# The oldest Grafana the dashboard is made for (schema 39).
GRAFANA_VERSION = "11.0.0"

# The runbook section each panel links to; panels not listed link to the runbook's start.
RUNBOOK_SECTIONS = {
    "Open tasks: WAITING backlog and PROCESSING": "VodWaitingBacklogGrowing",
    "Oldest open task age": "VodTaskProcessingTooLong",
    "Task success ratio against the objective": "VodTaskSuccessBudgetBurnFast",
    "Tasks finished within 10 minutes against the objective": "VodTaskLatencyBudgetBurnFast",
    "Open tasks": "VodTaskStuckNoProgress",
    "Longest-open tasks": "VodTaskStuckNoProgress",
    "Exporter target": "VodExporterDown",
    "Last listing": "VodListingsFailing",
    "Since the last successful listing": "VodListingsFailing",
    "Failed listings by reason": "VodListingsFailing",
    "API requests by code": "VodApiThrottled",
    "API throttling": "VodApiThrottled",
}
RUNBOOK_START = "runbook"

_PANEL_NAMES = {
    "bargauge": "Bar gauge",
    "stat": "Stat",
    "table": "Table",
    "timeseries": "Time series",
}


def importable(config: MixinConfig) -> dict[str, Any]:
    """For Dashboards → Import and grafana.com: the data source is asked for at import."""
    dashboard = _build(config, datasource_value=f"${{{DATASOURCE_INPUT}}}", datasource_text="Prometheus")
    return {
        "__inputs": [
            {
                "name": DATASOURCE_INPUT,
                "label": "Prometheus",
                "description": "The Prometheus that scrapes vod-exporter and loads its rules",
                "type": "datasource",
                "pluginId": "prometheus",
                "pluginName": "Prometheus",
            }
        ],
        "__requires": _requires(dashboard),
        **dashboard,
    }


def provisioned(config: MixinConfig, datasource_uid: str, datasource_name: str) -> dict[str, Any]:
    """For file provisioning, where no import replaces the input: the provisioned data source."""
    return _build(config, datasource_value=datasource_uid, datasource_text=datasource_name)


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that shows data, including those inside collapsed rows."""
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def _build(config: MixinConfig, *, datasource_value: str, datasource_text: str) -> dict[str, Any]:
    source = json.loads(PANELS.read_text())
    dashboard: dict[str, Any] = copy.deepcopy(source["dashboard"])
    dashboard["templating"] = {"list": _variables(config, datasource_value, datasource_text)}
    dashboard["panels"] = source["panels"]
    for panel in panels(dashboard):
        panel["datasource"] = DATASOURCE_REF
        for target in panel["targets"]:
            target["datasource"] = DATASOURCE_REF
        section = RUNBOOK_SECTIONS.get(panel["title"])
        anchor = config.runbook_url(section) if section else f"{config.runbook_base_url}#{RUNBOOK_START}"
        panel["links"] = [{"title": "Runbook", "url": anchor, "targetBlank": True}]
    _threshold_line(dashboard, "Oldest open task age", config.thresholds.oldest_processing_task_age_seconds)
    _threshold_line(dashboard, "API throttling", config.thresholds.throttled_ratio)
    return dashboard


def _threshold_line(dashboard: dict[str, Any], title: str, value: float) -> None:
    """A dashed red line at the value where the panel's alert fires."""
    (panel,) = [p for p in panels(dashboard) if p["title"] == title]
    defaults = panel["fieldConfig"]["defaults"]
    defaults["thresholds"] = {
        "mode": "absolute",
        "steps": [{"color": "green", "value": None}, {"color": "red", "value": value}],
    }
    defaults["custom"]["thresholdsStyle"] = {"mode": "dashed"}


def _query_variable(name: str, label: str, query: str, description: str) -> dict[str, Any]:
    # No allValue: "All" then stands for the values the query found, so a narrower variable above
    # (the region for the projects) narrows every panel too, where ".*" would match everything.
    return {
        "name": name,
        "label": label,
        "description": description,
        "type": "query",
        "datasource": DATASOURCE_REF,
        "definition": query,
        "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "hide": 0,
        "includeAll": True,
        "multi": True,
        "options": [],
        "refresh": 2,
        "regex": "",
        "skipUrlSync": False,
        "sort": 1,
    }


def _variables(config: MixinConfig, datasource_value: str, datasource_text: str) -> list[dict[str, Any]]:
    return [
        {
            "name": "datasource",
            "label": "Data source",
            "type": "datasource",
            "query": "prometheus",
            "current": {"selected": True, "text": datasource_text, "value": datasource_value},
            "hide": 0,
            "includeAll": False,
            "multi": False,
            "options": [],
            "refresh": 1,
            "regex": "",
            "skipUrlSync": False,
        },
        _query_variable(
            "job",
            "Exporter job",
            f"label_values(huaweicloud_vod_up{{{config.matchers()}}}, job)",
            "The scrape job(s) of the exporter.",
        ),
        _query_variable(
            "region",
            "Region",
            'label_values(huaweicloud_vod_target_info{job=~"$job"}, region)',
            "The Huawei Cloud regions of the exporter's targets.",
        ),
        _query_variable(
            "project_id",
            "Project",
            'label_values(huaweicloud_vod_target_info{job=~"$job", region=~"$region"}, project_id)',
            "The projects of the selected regions.",
        ),
    ]


def _requires(dashboard: dict[str, Any]) -> list[dict[str, str]]:
    kinds = sorted({p["type"] for p in panels(dashboard)})
    return [
        {"type": "grafana", "id": "grafana", "name": "Grafana", "version": GRAFANA_VERSION},
        {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
        *({"type": "panel", "id": kind, "name": _PANEL_NAMES[kind], "version": ""} for kind in kinds),
    ]
