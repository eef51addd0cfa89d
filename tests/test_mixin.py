"""The monitoring mixin: the shipped rules and dashboards are exactly what `python -m mixin` makes of
mixin/config.yml, a user's configuration regenerates them in one command, and a bad one is refused
with one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mixin import generate
from mixin.config import ConfigError, load, parse
from tests.test_rules import ROOT

DEFAULT = yaml.safe_load((ROOT / "mixin" / "config.yml").read_text())


def run_mixin(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mixin", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )


def test_shipped_files_are_what_the_default_configuration_generates() -> None:
    stale = generate.stale(load(), ROOT)
    assert stale == [], f"regenerate with `python -m mixin`: {stale}"


def test_check_reports_a_hand_edited_file(tmp_path: Path) -> None:
    generate.write(load(), tmp_path)
    assert run_mixin("--check", "--output", tmp_path).returncode == 0
    alerts = tmp_path / generate.ALERTS
    alerts.write_text(alerts.read_text().replace("> 3600", "> 7200"))
    result = run_mixin("--check", "--output", tmp_path)
    assert result.returncode == 1
    assert str(generate.ALERTS) in result.stderr


def test_one_command_regenerates_everything_from_a_users_configuration(tmp_path: Path) -> None:
    mine = {**DEFAULT, "selector": 'job="media-vod"', "runbook_base_url": "https://wiki.example.org/vod"}
    config = tmp_path / "mine.yml"
    config.write_text(yaml.safe_dump(mine))
    result = run_mixin("--config", config, "--output", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    written = sorted(Path(line).relative_to(tmp_path / "out") for line in result.stdout.split())
    assert written == sorted(generate.render(load()))
    alerts = (tmp_path / "out" / generate.ALERTS).read_text()
    assert 'up{job="media-vod"} == 0' in alerts and "https://wiki.example.org/vod#vodexporterdown" in alerts
    assert 'vod-exporter"' not in alerts


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"selectr": "x"}, "unknown key(s) selectr"),
        ({"selector": '{job="x"}'}, "selector: label matchers without braces"),
        ({"aggregation_labels": ["project_id"]}, "project_id is always kept"),
        ({"aggregation_labels": ["bad-label"]}, "aggregation_labels: a list of label names"),
        ({"runbook_base_url": "docs/dashboards-and-alerts.md"}, "runbook_base_url: an absolute"),
        (
            {
                "objectives": {
                    "success": {"default": 1, "projects": {}},
                    "latency": DEFAULT["objectives"]["latency"],
                }
            },
            "objectives.success.default: 1 must lie strictly between 0 and 1",
        ),
        (
            {
                "objectives": {
                    "success": {"default": 0.99, "projects": {"p1": "high"}},
                    "latency": DEFAULT["objectives"]["latency"],
                }
            },
            "objectives.success.projects.p1: expected a number",
        ),
        (
            {
                "objectives": {
                    "success": {"default": 0.99, "projects": {1234: 0.999}},
                    "latency": DEFAULT["objectives"]["latency"],
                }
            },
            "objectives.success.projects: quote the project id 1234",
        ),
        (
            {"thresholds": {**DEFAULT["thresholds"], "throttled_ratio": 5}},
            "thresholds.throttled_ratio: 5 must lie strictly between 0 and 1",
        ),
    ],
)
def test_a_bad_configuration_is_refused_saying_what_to_fix(change: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse({**DEFAULT, **change})


def test_the_command_refuses_a_bad_file_with_one_line_and_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.yml"
    config.write_text(yaml.safe_dump({**DEFAULT, "runbook_base_url": "/relative"}))
    result = run_mixin("--config", config, "--output", tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and str(config) in result.stderr
    assert not (tmp_path / generate.ALERTS).exists()
