"""The Prometheus rules: promtool accepts them, their unit tests pass, every alert is tested firing and
not firing and has a runbook entry, and every expression reads only metrics the exporter serves."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
RULES_DIR = ROOT / "prometheus" / "rules"
RECORDING_RULES = RULES_DIR / "vod-exporter-recording.yml"
ALERTING_RULES = RULES_DIR / "vod-exporter-alerts.yml"
UNIT_TESTS_DIR = ROOT / "prometheus" / "tests"
DOCS = ROOT / "docs" / "dashboards-and-alerts.md"

SLI_WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")


def _histogram(name: str) -> set[str]:
    return {f"{name}_bucket", f"{name}_sum", f"{name}_count"}


# The exporter's metric contract (the design's "Metric contract" table): the only names the rules and
# the dashboard may read, besides what the recording rules define.
CONTRACT_METRICS = frozenset(
    {
        "huaweicloud_vod_up",
        "huaweicloud_vod_target_info",
        "huaweicloud_vod_scrape_duration_seconds",
        "huaweicloud_vod_last_success_timestamp_seconds",
        "huaweicloud_vod_scrape_errors_total",
        "huaweicloud_vod_api_requests_total",
        *_histogram("huaweicloud_vod_api_request_duration_seconds"),
        "huaweicloud_vod_editing_tasks",
        "huaweicloud_vod_editing_tasks_reported",
        "huaweicloud_vod_editing_tasks_invalid",
        "huaweicloud_vod_editing_oldest_task_created_timestamp_seconds",
        "huaweicloud_vod_editing_task_info",
        "huaweicloud_vod_editing_task_status",
        "huaweicloud_vod_editing_task_progress_ratio",
        "huaweicloud_vod_editing_task_created_timestamp_seconds",
        "huaweicloud_vod_editing_task_ended_timestamp_seconds",
        "huaweicloud_vod_editing_task_duration_seconds",
        "huaweicloud_vod_editing_task_series_dropped",
        "huaweicloud_vod_editing_tasks_created_total",
        "huaweicloud_vod_editing_tasks_finished_total",
        *_histogram("huaweicloud_vod_editing_finished_task_duration_seconds"),
        "huaweicloud_vod_editing_tasks_tracked",
        # How listings are made (docs/incremental-listing.md, "Metrics").
        "huaweicloud_vod_listing_mode",
        "huaweicloud_vod_listing_order",
        "huaweicloud_vod_listing_calls",
        "huaweicloud_vod_listing_fallbacks_total",
        "huaweicloud_vod_listing_sync_progress_ratio",
        "huaweicloud_vod_listing_reconciliations_total",
        "huaweicloud_vod_listing_reconciliation_mismatches_total",
        # Credentials that expire (README, "Authentication").
        "huaweicloud_vod_credentials_expiry_timestamp_seconds",
        "huaweicloud_vod_credentials_renewal_failures_total",
        # Reloads of the targets file (README, "Many projects and regions").
        "huaweicloud_vod_config_last_reload_successful",
        "huaweicloud_vod_config_last_reload_success_timestamp_seconds",
    }
)
# Series Prometheus writes itself for every scrape target.
PROMETHEUS_METRICS = frozenset({"up", "scrape_duration_seconds"})

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACES = re.compile(r"\{[^}]*\}")
_BRACKETS = re.compile(r"\[[^\]]*\]")
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w:.$])[A-Za-z_:][\w:]*")
_KEYWORDS = frozenset({"and", "or", "unless", "offset", "bool", "inf", "nan"})


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (function names, keywords and labels left out)."""
    text = _STRING.sub('""', expr)
    text = _BRACES.sub("", text)
    text = _BRACKETS.sub("", text)
    text = _LABEL_LIST.sub("", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        is_call = text[match.end() :].lstrip().startswith("(")
        if not is_call and match.group(0).lower() not in _KEYWORDS:
            names.add(match.group(0))
    return names


def promtool() -> str:
    """The promtool binary; the test is skipped, saying why, where it is not installed."""
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed here (Debian package 'prometheus'); CI installs it")
    return path


def run_promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *map(str, args)], capture_output=True, text=True, timeout=120, check=False, cwd=ROOT
    )


def rule_groups(path: Path) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load(path.read_text())["groups"]
    return groups


def all_rules() -> list[dict[str, Any]]:
    return [
        rule for path in (RECORDING_RULES, ALERTING_RULES) for g in rule_groups(path) for rule in g["rules"]
    ]


def alerting_rules() -> list[dict[str, Any]]:
    return [rule for rule in all_rules() if "alert" in rule]


def recorded_names() -> set[str]:
    return {rule["record"] for rule in all_rules() if "record" in rule}


def unit_test_files() -> list[Path]:
    return sorted(UNIT_TESTS_DIR.glob("*.yml"))


def test_rule_directory_holds_exactly_the_recording_and_alerting_files() -> None:
    assert sorted(RULES_DIR.glob("*.yml")) == sorted([RECORDING_RULES, ALERTING_RULES])


def test_promtool_accepts_the_rule_files() -> None:
    result = run_promtool("check", "rules", RECORDING_RULES, ALERTING_RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == 2


def test_promtool_unit_tests_pass() -> None:
    files = unit_test_files()
    assert files, "no promtool unit tests in prometheus/tests"
    result = run_promtool("test", "rules", *files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_example_prometheus_config_loads_both_rule_files() -> None:
    result = run_promtool("check", "config", ROOT / "prometheus" / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    for path in (RECORDING_RULES, ALERTING_RULES):
        assert str(path.relative_to(ROOT)) in result.stdout


def test_every_alert_is_unit_tested_both_firing_and_not_firing() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for path in unit_test_files():
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {rule["alert"] for rule in alerting_rules()}
    assert names - firing == set(), "alerts never tested firing"
    assert names - silent == set(), "alerts never tested staying silent"


def doc_anchors() -> set[str]:
    """The anchors of the headings of the runbook page, as GitHub makes them."""
    return {
        re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in DOCS.read_text().splitlines()
        if line.startswith("#")
    }


def test_every_alert_has_severity_summary_description_and_an_absolute_runbook_url() -> None:
    from mixin.config import load

    base = load().runbook_base_url
    assert base.startswith("https://") and base.endswith("/docs/dashboards-and-alerts.md")
    for rule in alerting_rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        annotations = rule["annotations"]
        assert annotations["summary"].strip() and annotations["description"].strip(), name
        page, _, anchor = annotations["runbook_url"].partition("#")
        assert page == base, name
        assert anchor == name.lower() and anchor in doc_anchors(), f"{name}: no runbook section '# {name}'"


def test_every_expression_reads_only_contract_metrics_or_recorded_rules() -> None:
    known = CONTRACT_METRICS | PROMETHEUS_METRICS | recorded_names()
    for rule in all_rules():
        unknown = metric_names(rule["expr"]) - known
        assert unknown == set(), f"{rule.get('alert') or rule.get('record')} reads unknown metrics {unknown}"


def test_both_slis_are_recorded_over_every_window() -> None:
    expected = {
        f"project_id:vod_editing_tasks_{sli}:ratio_rate{window}"
        for sli in ("success", "under_latency_target")
        for window in SLI_WINDOWS
    }
    assert expected <= recorded_names()


def test_latency_sli_counts_the_10_minute_bucket() -> None:
    # 600 must be one of the exporter's bucket boundaries (its default buckets include it).
    latency_rules = [r for r in all_rules() if "under_latency_target" in r.get("record", "")]
    assert latency_rules
    for rule in latency_rules:
        assert 'le=~"600(\\\\.0)?"' in rule["expr"], rule["record"]


def test_objectives_are_set_once_and_nowhere_in_the_alerts() -> None:
    recording = RECORDING_RULES.read_text()
    assert recording.count("vector(0.99)") == 1
    assert recording.count("vector(0.95)") == 1
    alerts = ALERTING_RULES.read_text()
    assert "0.99" not in alerts and "0.95" not in alerts


def test_no_expression_names_the_scrape_job_but_through_the_configured_selector(tmp_path: Path) -> None:
    """With another selector, every series the rules read is selected by it, and the default's job
    name appears nowhere."""
    from mixin import generate
    from mixin.config import load

    config = tmp_path / "config.yml"
    default = (ROOT / "mixin" / "config.yml").read_text()
    config.write_text(
        default.replace("""selector: 'job="vod-exporter"'""", """selector: 'job="vod", env="prod"'""")
    )
    rendered = generate.render(load(config))
    for path in (generate.RECORDING, generate.ALERTS):
        for group in yaml.safe_load(rendered[path])["groups"]:
            for rule in group["rules"]:
                expr = rule["expr"]
                assert "vod-exporter" not in expr, rule
                raw = metric_names(expr) - recorded_names()
                for name in raw:
                    for match in re.finditer(rf"(?<![\w:]){re.escape(name)}(\{{[^}}]*\}})?", expr):
                        assert 'job="vod", env="prod"' in (match.group(1) or ""), (rule, name)


def _finished(project: str, status: str, values: str) -> dict[str, str]:
    labels = f'job="vod-exporter", instance="e:9881", project_id="{project}", status="{status}"'
    return {"series": f"huaweicloud_vod_editing_tasks_finished_total{{{labels}}}", "values": values}


def _duration(project: str, suffix: str, values: str, le: str | None = None) -> dict[str, str]:
    labels = f'job="vod-exporter", instance="e:9881", project_id="{project}", status="SUCCEED"'
    if le is not None:
        labels += f', le="{le}"'
    return {
        "series": f"huaweicloud_vod_editing_finished_task_duration_seconds_{suffix}{{{labels}}}",
        "values": values,
    }


def _generated_rules(tmp_path: Path, **objectives: dict[str, Any]) -> tuple[str, str]:
    """The rule files generated from the default configuration with these objectives and a runbook
    elsewhere, written under tmp_path."""
    from mixin import generate
    from mixin.config import load

    raw = yaml.safe_load((ROOT / "mixin" / "config.yml").read_text())
    raw["objectives"].update(objectives)
    raw["runbook_base_url"] = "https://docs.example.org/vod/runbook.html"
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump(raw))
    generate.write(load(config), tmp_path)
    return str(tmp_path / generate.RECORDING), str(tmp_path / generate.ALERTS)


def _slow_burn(sli: str, project: str, burn: str) -> dict[str, Any]:
    if sli == "success":
        description = (
            f"Editing tasks of project {project} fail often enough to burn the task-success error budget "
            f"at {burn} times the sustainable rate (over 1 d and 2 h above 3, or over 3 d and 6 h above 1)."
        )
        summary = f"VOD editing tasks of project {project} fail more than the objective allows"
    else:
        description = (
            f"More editing tasks of project {project} take longer than the latency target (10 minutes "
            "from creation to end) than the objective allows: the latency error budget burns at "
            f"{burn} times the sustainable rate (over 1 d and 2 h above 3, or over 3 d and 6 h above 1)."
        )
        summary = f"VOD editing tasks of project {project} are slower than the objective allows"
    alert = f"VodTask{sli.capitalize()}BudgetBurnSlow"
    return {
        "exp_labels": {"severity": "warning", "slo": f"task-{sli}", "project_id": project},
        "exp_annotations": {
            "summary": summary,
            "description": description,
            "runbook_url": f"https://docs.example.org/vod/runbook.html#{alert.lower()}",
        },
    }


def test_per_project_objectives_change_when_alerts_fire_for_that_project_only(tmp_path: Path) -> None:
    """With the same error ratios: 0.5% failures are a slow burn for a project held to 99.9% but
    within budget at the default 99%; 20% slow tasks are a slow burn at the default 95% but
    acceptable for a project held to 50%."""
    recording, alerts = _generated_rules(
        tmp_path,
        success={"default": 0.99, "projects": {"p-strict": 0.999}},
        latency={"default": 0.95, "projects": {"p-lenient": 0.5}},
    )
    case = {
        "interval": "1m",
        "input_series": [
            _finished("p-strict", "SUCCEED", "0+199x200"),
            _finished("p-strict", "FAILED", "0+1x200"),
            _finished("p-default", "SUCCEED", "0+199x200"),
            _finished("p-default", "FAILED", "0+1x200"),
            _duration("p-lenient", "bucket", "0+8x200", le="600.0"),
            _duration("p-lenient", "count", "0+10x200"),
            _duration("p-default", "bucket", "0+8x200", le="600.0"),
            _duration("p-default", "count", "0+10x200"),
        ],
        "alert_rule_test": [
            {
                "alertname": "VodTaskSuccessBudgetBurnSlow",
                "eval_time": "60m",
                "exp_alerts": [_slow_burn("success", "p-strict", "5.0")],
            },
            {
                "alertname": "VodTaskLatencyBudgetBurnSlow",
                "eval_time": "60m",
                "exp_alerts": [_slow_burn("latency", "p-default", "4.0")],
            },
        ],
    }
    unit_test = {"rule_files": [recording, alerts], "evaluation_interval": "1m", "tests": [case]}
    test_file = tmp_path / "objectives.test.yml"
    test_file.write_text(yaml.safe_dump(unit_test))
    result = run_promtool("test", "rules", test_file)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'sum by (status) (huaweicloud_vod_editing_tasks{project_id=~"$project_id"})',
            {"huaweicloud_vod_editing_tasks"},
        ),
        (
            "a * on (job, task_id) group_left (asset_id) b and c offset 30m == 1",
            {"a", "b", "c"},
        ),
        ("histogram_quantile(0.9, sum by (le) (rate(x_bucket[$__rate_interval]))) > 1e3", {"x_bucket"}),
        ("time() - vector(0.99) / on () group_left () vod:objective:ratio", {"vod:objective:ratio"}),
    ],
)
def test_metric_names_finds_selected_metrics_only(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names
