"""The mixin's configuration: read from YAML once, validated, and frozen.

YAML rather than a Python module: it is the language the rule files are already written in, a user
keeps their copy next to their own Prometheus configuration, and loading it runs no code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

DEFAULT_CONFIG = Path(__file__).resolve().parent / "config.yml"

_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ConfigError(Exception):
    """A configuration a user must fix; the message is one line that says what and where."""


@dataclass(frozen=True)
class Objective:
    """The objective of one SLI: a default, and overrides for some project ids."""

    default: float
    projects: Mapping[str, float]


@dataclass(frozen=True)
class Thresholds:
    oldest_processing_task_age_seconds: float
    waiting_backlog_tasks: float
    throttled_ratio: float
    listing_success_ratio: float
    credentials_expiry_seconds: float


@dataclass(frozen=True)
class MixinConfig:
    selector: str
    aggregation_labels: tuple[str, ...]
    success_objective: Objective
    latency_objective: Objective
    thresholds: Thresholds
    runbook_base_url: str

    def matchers(self, *extra: str) -> str:
        """The selector and further matchers, ready to go between a metric's braces."""
        return ", ".join(m for m in (self.selector, *extra) if m)

    def by(self, *labels: str) -> str:
        """The labels an aggregation keeps: those given, then the configured ones."""
        kept = [*labels, *(label for label in self.aggregation_labels if label not in labels)]
        return ", ".join(kept)

    def runbook_url(self, alert: str) -> str:
        return f"{self.runbook_base_url}#{alert.lower()}"


def load(path: Path = DEFAULT_CONFIG) -> MixinConfig:
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(
            f"{path}: cannot read the mixin configuration: {error}".replace("\n", " ")
        ) from None
    try:
        return parse(raw)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def parse(raw: Any) -> MixinConfig:
    top = _mapping(
        raw,
        "the file",
        {"selector", "aggregation_labels", "objectives", "thresholds", "runbook_base_url"},
    )
    selector = top["selector"]
    if not isinstance(selector, str) or any(c in selector for c in "{}"):
        raise ConfigError("selector: label matchers without braces, such as 'job=\"vod-exporter\"'")
    labels = top["aggregation_labels"]
    if not isinstance(labels, list) or not all(isinstance(x, str) and _LABEL.fullmatch(x) for x in labels):
        raise ConfigError("aggregation_labels: a list of label names, such as [cluster, env]")
    if "project_id" in labels:
        raise ConfigError("aggregation_labels: project_id is always kept; list only the others")
    objectives = _mapping(top["objectives"], "objectives", {"success", "latency"})
    thresholds = _mapping(
        top["thresholds"],
        "thresholds",
        {f for f in Thresholds.__dataclass_fields__},
    )
    for name, value in thresholds.items():
        _number(value, f"thresholds.{name}", low=0, high=None)
    _number(thresholds["throttled_ratio"], "thresholds.throttled_ratio", low=0, high=1)
    _number(thresholds["listing_success_ratio"], "thresholds.listing_success_ratio", low=0, high=1)
    return MixinConfig(
        selector=selector.strip(),
        aggregation_labels=tuple(labels),
        success_objective=_objective(objectives["success"], "objectives.success"),
        latency_objective=_objective(objectives["latency"], "objectives.latency"),
        thresholds=Thresholds(**thresholds),
        runbook_base_url=_absolute_url(top["runbook_base_url"]),
    )


def _mapping(raw: Any, where: str, keys: set[str]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping with {', '.join(sorted(keys))}")
    unknown = set(raw) - keys
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    missing = keys - set(raw)
    if missing:
        raise ConfigError(f"{where}: missing key(s) {', '.join(sorted(missing))}")
    return raw


def _number(value: Any, where: str, *, low: float, high: float | None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if value <= low or (high is not None and value >= high):
        bounds = f"between {low} and {high}" if high is not None else f"above {low}"
        raise ConfigError(f"{where}: {value} must lie strictly {bounds}")
    return float(value)


def _objective(raw: Any, where: str) -> Objective:
    section = _mapping(raw, where, {"default", "projects"})
    projects = section["projects"] or {}
    if not isinstance(projects, dict):
        raise ConfigError(f"{where}.projects: a mapping of project id to objective")
    for project in projects:
        # YAML reads an all-digit id as a number, which would drop its leading zeros.
        if not isinstance(project, str):
            raise ConfigError(
                f"{where}.projects: quote the project id {project!r}, so YAML keeps it as written"
            )
    return Objective(
        default=_number(section["default"], f"{where}.default", low=0, high=1),
        projects={
            project: _number(value, f"{where}.projects.{project}", low=0, high=1)
            for project, value in sorted(projects.items())
        },
    )


def _absolute_url(raw: Any) -> str:
    parts = urlsplit(raw) if isinstance(raw, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment:
        raise ConfigError(
            f"runbook_base_url: an absolute http(s) address of the runbook page, without #, got {raw!r}"
        )
    return str(raw).rstrip("/")
