"""Renders the shipped files from a configuration, and writes or checks them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from mixin import dashboard, rules
from mixin.config import MixinConfig
from tools import prometheusrule

RECORDING = Path("prometheus/rules/vod-exporter-recording.yml")
ALERTS = Path("prometheus/rules/vod-exporter-alerts.yml")
IMPORTABLE_DASHBOARD = Path("grafana/dashboards/vod-exporter.json")
PROVISIONED_DASHBOARD = Path("grafana/provisioning/dashboards/vod-exporter.json")
PROMETHEUS_RULE = prometheusrule.OUTPUT.relative_to(prometheusrule.ROOT)
# The data source grafana/provisioning/datasources/prometheus.yml provisions.
PROVISIONED_DATASOURCE = ("prometheus", "Prometheus")


class _RulesDumper(yaml.SafeDumper):
    """Multi-line PromQL as literal blocks and long texts folded, so the files read like hand-written
    ones; lists indented under their key, as promtool's documentation writes them."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else ">" if len(value) > 80 and " " in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_RulesDumper.add_representer(str, _string)


def _yaml(header: str, groups: list[dict[str, Any]]) -> str:
    body = yaml.dump({"groups": groups}, Dumper=_RulesDumper, sort_keys=False, width=110, allow_unicode=True)
    return header + body


def _json(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def render(config: MixinConfig) -> dict[Path, str]:
    """Every generated file: its path in the repository, and its text."""
    recording, alerting = rules.recording_groups(config), rules.alerting_groups(config)
    return {
        RECORDING: _yaml(rules.RECORDING_HEADER, recording),
        ALERTS: _yaml(rules.ALERTS_HEADER, alerting),
        IMPORTABLE_DASHBOARD: _json(dashboard.importable(config)),
        PROVISIONED_DASHBOARD: _json(dashboard.provisioned(config, *PROVISIONED_DATASOURCE)),
        # The Prometheus Operator's copy of the same groups, in the order of the rule files' names.
        PROMETHEUS_RULE: prometheusrule.render(prometheusrule.prometheus_rule([*alerting, *recording])),
    }


def write(config: MixinConfig, output: Path) -> list[Path]:
    written = []
    for relative, text in render(config).items():
        path = output / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written


def stale(config: MixinConfig, output: Path) -> list[Path]:
    """The files under output that differ from what the configuration generates."""
    return [
        relative
        for relative, text in render(config).items()
        if not (output / relative).is_file() or (output / relative).read_text() != text
    ]
