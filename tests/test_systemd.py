"""The systemd unit: systemd accepts it, it is hardened, and its secrets come as credentials.

``systemd-analyze verify`` loads the unit as systemd would (unknown keys and system-call groups are
reported there), and ``systemd-analyze security --offline`` scores its sandbox. Neither starts it:
that needs systemd as PID 1, which a test does not have.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from exporter.cli import known_variables
from exporter.cloud.credentials import ENV_CREDENTIALS_FILE

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "deploy" / "systemd" / "vod-exporter.service"
ENV_FILE = ROOT / "deploy" / "systemd" / "vod-exporter.env"
INSTALLED_AT = "/opt/vod-exporter/bin/vod-exporter"

# What the unit must say, directive by directive.
HARDENING = {
    "DynamicUser": "yes",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "SystemCallFilter": "@system-service",
    "SystemCallArchitectures": "native",
    "MemoryDenyWriteExecute": "yes",
    "LockPersonality": "yes",
    "RestrictNamespaces": "yes",
    "RestrictSUIDSGID": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
}
# Variables that hold a secret: never in the unit or its environment file.
SECRET_VARIABLES = ("HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK", "HUAWEICLOUD_SDK_SECURITY_TOKEN")


def directives(text: str) -> dict[str, dict[str, list[str]]]:
    """Each section's keys and all their values in order (systemd lets many keys repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        assert not stripped.endswith("\\"), "continuation lines are not used here"
        if header := re.fullmatch(r"\[(\w+)\]", stripped):
            current = sections.setdefault(header.group(1), {})
            continue
        assert current is not None, f"{stripped!r} before the first section"
        key, sep, value = stripped.partition("=")
        assert sep, f"not key=value: {stripped!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.fixture(scope="module")
def service() -> dict[str, list[str]]:
    return directives(UNIT.read_text())["Service"]


def environment(service: dict[str, list[str]]) -> dict[str, str]:
    pairs = dict(item.partition("=")[::2] for item in service.get("Environment", []))
    return {name: value for name, value in pairs.items()}


def test_the_service_is_hardened(service: dict[str, list[str]]) -> None:
    for key, value in HARDENING.items():
        assert value in service.get(key, []), f"{key}={value} is missing"
    # A later empty assignment would reset a list setting such as the system-call filter.
    for key in ("SystemCallFilter", "RestrictAddressFamilies"):
        assert "" not in service[key], f"an empty {key}= undoes the filter"
    assert "User" not in service and "Group" not in service, "DynamicUser makes the user up"


def test_serve_runs_from_the_virtualenv(service: dict[str, list[str]]) -> None:
    assert service["ExecStart"] == [f"{INSTALLED_AT} serve"]
    assert service["Type"] == ["exec"]
    # Exit 2 is a configuration error: restarting would only add failed authentications.
    assert "2" in service["RestartPreventExitStatus"][0].split()


def test_credentials_are_loaded_as_systemd_credentials(service: dict[str, list[str]]) -> None:
    env = environment(service)
    credentials = dict(item.partition(":")[::2] for item in service["LoadCredential"])
    assert credentials, "the unit loads no credential"
    # Each credential reaches the exporter through a file option pointing into $CREDENTIALS_DIRECTORY.
    pointed_at = {value.removeprefix("%d/") for value in env.values() if value.startswith("%d/")}
    assert set(credentials) == pointed_at
    assert env[ENV_CREDENTIALS_FILE] == "%d/huaweicloud-credentials"
    for source in credentials.values():
        assert source.startswith("/etc/vod-exporter/"), source
    for variable in SECRET_VARIABLES:
        assert variable not in env, f"{variable} in Environment= shows in systemctl show"


def test_the_environment_file_holds_settings_the_exporter_reads_and_no_secret() -> None:
    settings = {}
    for line in ENV_FILE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f"not NAME=value: {line!r}"
            settings[name] = value
    assert not set(SECRET_VARIABLES) & settings.keys()
    known = known_variables() | {"HUAWEICLOUD_SDK_PROJECT_ID"}
    # Commented-out examples too: each must name a real setting.
    mentioned = set(re.findall(r"^#?\s*((?:VOD_EXPORTER|HUAWEICLOUD_SDK)_\w+)=", ENV_FILE.read_text(), re.M))
    assert mentioned <= known, f"unknown settings: {sorted(mentioned - known)}"
    assert settings["VOD_EXPORTER_REGION"]
    unit_variables = set(re.findall(r"\b(VOD_EXPORTER_\w+)=", UNIT.read_text()))
    assert unit_variables <= known, f"unknown settings: {sorted(unit_variables - known)}"


# --- systemd's own checks ----------------------------------------------------------------------------


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd): the unit is not verified")
    return found


def runnable_copy(tmp_path: Path, text: str) -> Path:
    """The unit with ExecStart on this environment's exporter, which verify requires to exist."""
    script = Path(sys.executable).parent / "vod-exporter"
    assert script.is_file(), "the exporter is not installed beside this Python: pip install -e ."
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(INSTALLED_AT, str(script)))
    return copy


def verify(unit: Path) -> list[str]:
    """What ``systemd-analyze verify`` says about this unit (warnings about the host's units left out)."""
    result = subprocess.run(
        [systemd_analyze(), "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    complaints = [line for line in result.stderr.splitlines() if unit.name in line]
    if result.returncode != 0:
        complaints.append(f"exit {result.returncode}: {result.stderr.strip()}")
    return complaints


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    assert verify(runnable_copy(tmp_path, UNIT.read_text())) == []


def test_systemd_analyze_verify_does_catch_mistakes(tmp_path: Path) -> None:
    text = UNIT.read_text().replace("ProtectSystem=strict", "ProtectSytem=strict")
    text = text.replace("SystemCallFilter=@system-service", "SystemCallFilter=@system-servic")
    complaints = verify(runnable_copy(tmp_path, text))
    assert any("ProtectSytem" in line for line in complaints)
    assert any("@system-servic" in line for line in complaints)


def test_the_sandbox_scores_ok(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            systemd_analyze(),
            "security",
            "--offline=yes",
            "--no-pager",
            str(runnable_copy(tmp_path, UNIT.read_text())),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if "--offline" in result.stderr:
        pytest.skip("systemd-analyze security --offline needs systemd 250 or newer")
    score = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert score, result.stdout + result.stderr
    # systemd calls up to 2.0 "OK"; a unit with no hardening scores 9.6 ("UNSAFE").
    assert float(score.group(1)) <= 2.0
