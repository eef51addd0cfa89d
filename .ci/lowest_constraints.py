"""Print pip constraints that pin every dependency in pyproject.toml to its lower bound.

CI installs the project under these on the oldest Python it supports and runs the checks and
the suite, so every ``>=`` in pyproject.toml is a tested promise rather than a guess. Generated
on each run, they cannot drift from pyproject.toml. A requirement without a lower bound is an
error, since nothing would test it; so is a bound that names no release (pip finds no match).

    python .ci/lowest_constraints.py [PYPROJECT]            constraints for the build and every extra
    python .ci/lowest_constraints.py --python [PYPROJECT]   the oldest Python, from requires-python

Needs Python 3.11+ (tomllib).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import tomllib

# name[extras] specifiers ; marker  (PEP 508 without URLs, which this project does not use)
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*([^;]*?)\s*(;.*)?$")
_LOWER = re.compile(r"(?:>=|~=|==)\s*([0-9][^,\s]*)")


def lower_bound(name: str, specifiers: str) -> str:
    found = _LOWER.search(specifiers)
    if found is None:
        raise SystemExit(f"{name} has no lower bound (>=) in pyproject.toml: give it one")
    return found.group(1)


def lowest_pins(requirements: list[str]) -> list[str]:
    pins = []
    for requirement in requirements:
        match = _REQUIREMENT.match(requirement)
        if match is None:
            raise SystemExit(f"cannot read the requirement {requirement!r}")
        name, specifiers, marker = match.groups()
        pins.append(f"{name}=={lower_bound(name, specifiers)}" + (f" {marker}" if marker else ""))
    return pins


def all_requirements(pyproject: dict[str, object]) -> list[str]:
    project = pyproject["project"]
    build = pyproject.get("build-system", {})
    assert isinstance(project, dict) and isinstance(build, dict)
    # The build backend too: pip builds the project under the same constraints.
    requirements = list(build.get("requires", [])) + list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    return requirements


def main(argv: list[str]) -> None:
    python = "--python" in argv
    paths = [arg for arg in argv if arg != "--python"]
    pyproject = tomllib.loads(Path(paths[0] if paths else "pyproject.toml").read_text())
    if python:
        print(lower_bound("requires-python", pyproject["project"]["requires-python"]))
    else:
        print("\n".join(lowest_pins(all_requirements(pyproject))))


if __name__ == "__main__":
    main(sys.argv[1:])
