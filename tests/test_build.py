"""The version and the git revision that ``--version`` and ``huaweicloud_vod_exporter_build_info`` carry.

The revision comes from ``VOD_EXPORTER_REVISION`` (the image sets it from its build argument), else
from git when the package runs from a checkout of its own repository, else it is ``unknown``.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from exporter import __version__
from exporter.build import ENV_REVISION, UNKNOWN, build_info, revision_from
from exporter.cli import main

ROOT = Path(__file__).resolve().parent.parent
SHA = "0123456789abcdef0123456789abcdef01234567"
needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


@pytest.fixture
def checkout(tmp_path: Path) -> tuple[Path, str]:
    """A git repository holding a package directory, with one commit; returns both."""
    package = tmp_path / "repo" / "exporter"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    git(tmp_path / "repo", "init", "-q")
    git(tmp_path / "repo", "add", ".")
    git(tmp_path / "repo", "commit", "-q", "-m", "one")
    return package, git(tmp_path / "repo", "rev-parse", "HEAD")


def test_the_environment_names_the_revision(tmp_path: Path) -> None:
    assert revision_from({ENV_REVISION: f" {SHA}\n"}, tmp_path) == SHA


@needs_git
def test_the_environment_wins_over_git(checkout: tuple[Path, str]) -> None:
    package, _ = checkout
    assert revision_from({ENV_REVISION: "v0.1.0-3-gabc"}, package) == "v0.1.0-3-gabc"


@needs_git
def test_a_checkout_of_the_package_gives_its_head(checkout: tuple[Path, str]) -> None:
    package, head = checkout
    assert revision_from({}, package) == head
    assert revision_from({ENV_REVISION: "  "}, package) == head  # an empty build argument


@needs_git
def test_another_repository_around_an_installed_package_is_not_its_revision(tmp_path: Path) -> None:
    # A wheel installed into a virtualenv that lives inside some other repository.
    repo = tmp_path / "app"
    package = repo / ".venv" / "lib" / "site-packages" / "exporter"
    package.mkdir(parents=True)
    (repo / "README").write_text("")
    git(repo, "init", "-q")
    git(repo, "add", "README")
    git(repo, "commit", "-q", "-m", "one")
    assert revision_from({}, package) == UNKNOWN


def test_no_git_and_no_variable_is_unknown(tmp_path: Path) -> None:
    assert revision_from({}, tmp_path) == UNKNOWN


def test_git_missing_from_path_is_unknown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert revision_from({}, ROOT / "exporter") == UNKNOWN


@pytest.mark.parametrize("value", ["a b", "x" * 65, 'v1"}', "rev\n2"])
def test_a_variable_that_is_no_revision_is_ignored(tmp_path: Path, value: str) -> None:
    assert revision_from({ENV_REVISION: value}, tmp_path) == UNKNOWN


def test_build_info_carries_the_version_and_this_python() -> None:
    info = build_info()
    assert info.version == __version__
    assert info.python_version == platform.python_version()
    assert info.revision


@pytest.fixture
def revision_variable(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """VOD_EXPORTER_REVISION set for this test, and build_info looked up again around it."""
    monkeypatch.setenv(ENV_REVISION, SHA)
    build_info.cache_clear()
    yield SHA
    build_info.cache_clear()


def test_version_prints_the_revision(revision_variable: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code in (0, None)
    first, second = capsys.readouterr().out.splitlines()
    assert first == f"vod-exporter, version {__version__} (revision: {revision_variable})"
    assert second == f"  python version: {platform.python_version()}"


def test_build_info_metric_has_version_and_revision_labels() -> None:
    from tests.test_collector import fixed_registry

    registry: CollectorRegistry = fixed_registry()
    text = generate_latest(registry).decode()
    info = build_info()
    line = next(line for line in text.splitlines() if line.startswith("huaweicloud_vod_exporter_build_info{"))
    assert f'version="{info.version}"' in line
    assert f'revision="{info.revision}"' in line
    assert f'python_version="{info.python_version}"' in line


def test_the_revision_variable_is_not_reported_as_unknown() -> None:
    from exporter.cli import known_variables

    assert ENV_REVISION in known_variables()
