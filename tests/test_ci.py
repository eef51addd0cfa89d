"""CI's oldest-versions leg pins every requirement in pyproject.toml to its lower bound."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).parent.parent

pytest.importorskip("tomllib", reason="the script needs Python 3.11+; CI runs it on the newest")


def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "lowest_constraints", ROOT / ".ci" / "lowest_constraints.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    script().main(list(argv))
    return capsys.readouterr().out


def test_every_requirement_is_pinned_to_its_lower_bound(capsys: pytest.CaptureFixture[str]) -> None:
    import tomllib

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = pyproject["project"]
    requirements = [
        *pyproject["build-system"]["requires"],
        *project["dependencies"],
        *(r for extra in project["optional-dependencies"].values() for r in extra),
    ]
    pins = run(capsys).splitlines()
    assert len(pins) == len(requirements)
    for requirement, pin in zip(requirements, pins, strict=True):
        # An upper bound may follow the lower one (waitress>=3.0,<4): the pin is the lower.
        # A marker stays with its pin (tomli>=2.0.1 ; python_version < "3.11").
        found = re.fullmatch(r"([\w.-]+)>=([\w.]+)(?:,<[\w.]+)?\s*(;.*)?", requirement)
        name, bound, marker = found.groups()  # type: ignore[union-attr]
        assert pin == f"{name}=={bound}" + (f" {marker}" if marker else "")


def test_the_oldest_python_comes_from_requires_python(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "--python").strip() == "3.10"


def test_a_requirement_without_a_lower_bound_is_refused() -> None:
    with pytest.raises(SystemExit, match="no lower bound"):
        script().lowest_pins(["httpx<1"])


def test_markers_are_kept() -> None:
    assert script().lowest_pins(['tomli>=2 ; python_version < "3.11"']) == [
        'tomli==2 ; python_version < "3.11"'
    ]
