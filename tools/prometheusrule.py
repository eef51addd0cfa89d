"""Write the Kubernetes PrometheusRule from the Prometheus rule files, so the two never drift.

The rule files in ``prometheus/rules/`` are the source: Prometheus loads them as they are, and
``deploy/kubernetes/base/prometheusrule.yaml`` carries exactly their groups for the Prometheus Operator.

    python -m tools.prometheusrule            rewrite deploy/kubernetes/base/prometheusrule.yaml
    python -m tools.prometheusrule --check    exit 1 if it differs from what the rule files give

``prometheus_rule(groups)`` takes the groups as Prometheus reads them: ``python -m mixin``, which
generates the rule files, writes the PrometheusRule from the same groups with it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
RULES_DIR = ROOT / "prometheus" / "rules"
OUTPUT = ROOT / "deploy" / "kubernetes" / "base" / "prometheusrule.yaml"

HEADER = (
    "# Generated from prometheus/rules/*.yml by `python -m tools.prometheusrule`: do not edit.\n"
    "# Change the rule files, run it again, and commit both.\n"
)


def rule_files(rules_dir: Path = RULES_DIR) -> list[Path]:
    """The rule files, in a fixed order (by name) so that the output is stable."""
    return sorted(rules_dir.glob("*.yml"))


def load_groups(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Every group of the given rule files, file by file and in each file's order."""
    groups: list[dict[str, Any]] = []
    for path in paths:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(document, dict) or not isinstance(document.get("groups"), list):
            raise SystemExit(f"{path.name}: not a Prometheus rule file (no top-level 'groups' list)")
        groups.extend(document["groups"])
    return groups


def prometheus_rule(groups: Sequence[dict[str, Any]], name: str = "vod-exporter") -> dict[str, Any]:
    """A monitoring.coreos.com/v1 PrometheusRule holding exactly these rule groups."""
    names = [group["name"] for group in groups]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        # The operator rejects a PrometheusRule whose group names repeat.
        raise SystemExit(f"rule group names must be unique: {', '.join(repeated)}")
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": name},
        "spec": {"groups": list(groups)},
    }


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (PromQL expressions, descriptions) as ``|`` blocks, readable in review."""


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _string)


def render(resource: dict[str, Any]) -> str:
    return HEADER + yaml.dump(resource, Dumper=_BlockDumper, sort_keys=False, width=110, allow_unicode=True)


def generated(rules_dir: Path = RULES_DIR) -> str:
    return render(prometheus_rule(load_groups(rule_files(rules_dir))))


def main(argv: list[str]) -> int:
    text = generated()
    if "--check" in argv:
        if OUTPUT.read_text(encoding="utf-8") != text:
            stale = OUTPUT.relative_to(ROOT)
            print(f"{stale} is out of date: run python -m tools.prometheusrule", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
