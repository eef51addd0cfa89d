"""The command as a user meets it: one-line errors with exit 2, env configuration, ``once``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import respx

from exporter import __version__
from exporter.cli import main
from tests.conftest import ENDPOINT, PROJECT, TASKS_URL, body, error_body, record

BASE = ["--region", "cn-north-4", "--project-id", PROJECT]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith(("HUAWEICLOUD_SDK_", "VOD_EXPORTER_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))  # no SDK credentials file


@pytest.fixture
def aksk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUAWEICLOUD_SDK_AK", "AKEXAMPLE")
    monkeypatch.setenv("HUAWEICLOUD_SDK_SK", "very-secret-sk")


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(args)
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["--version"], capsys)
    assert code == 0 and __version__ in out


def test_help_documents_defaults_and_env_vars(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["serve", "--help"], capsys)
    assert code == 0
    for text in (
        "--web.listen-address",
        ":9881",
        "VOD_EXPORTER_WEB_LISTEN_ADDRESS",
        "--api.rate-limit",
        "20.0",
    ):
        assert text in out
    assert "--sk" not in out and "secret" not in out.lower()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["serve", "--no-such-flag"], "--no-such-flag"),
        (["serve", *BASE, "--api.timeout", "soon"], "--api.timeout: 'soon' is not a duration"),
        (["serve", *BASE, "--api.concurrency", "0"], "--api.concurrency must be between 1 and 64"),
        (["serve", *BASE, "--api.rate-limit", "nan"], "--api.rate-limit must be 0"),
        (["serve", *BASE, "--web.listen-address", "9881"], "--web.listen-address: '9881' is not host:port"),
        (
            ["serve", "--project-id", PROJECT],
            "set --region (e.g. cn-north-4), or --endpoint and --iam-endpoint",
        ),
        (["serve", *BASE, "--endpoint", "ftp://x"], "--endpoint: 'ftp://x' is not an http(s) URL"),
        (["serve", "--region", "cn-north-4"], "set --project-id"),
        (["serve", *BASE, "--tasks.duration-buckets", "60,10"], "strictly increasing"),
        (["once", "--region", "Mars", "--project-id", PROJECT], "is not a Huawei Cloud region"),
        (
            ["once", "--region", "cn-north-4", "--project-id", "my-project"],
            "--project-id: 'my-project' is not a project id (32 hex characters",
        ),
        (
            ["once", "--region", "cn-north-4", "--project-id", PROJECT.upper()],
            "is not a project id (32 hex characters",
        ),
    ],
)
@pytest.mark.usefixtures("aksk")
def test_bad_configuration_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, out, err = run(args, capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("vod-exporter: error: ")
    assert message in err
    assert out == ""


def test_missing_credentials_name_what_to_set(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["once", *BASE], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "HUAWEICLOUD_SDK_AK" in err


@pytest.mark.usefixtures("aksk")
def test_options_come_from_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VOD_EXPORTER_API_CONCURRENCY", "0")
    code, _, err = run(["serve", *BASE], capsys)
    assert code == 2 and "--api.concurrency" in err


@pytest.mark.usefixtures("aksk")
def test_once_prints_the_exposition_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with respx.mock() as mock:
        route = mock.get(TASKS_URL).respond(200, content=body([record(1, "WAITING"), record(2, "SUCCEED")]))
        code, out, err = run(["once", *BASE], capsys)
    assert code == 0, err
    assert f'huaweicloud_vod_up{{project_id="{PROJECT}"}} 1.0' in out
    assert f'huaweicloud_vod_editing_tasks{{project_id="{PROJECT}",status="WAITING"}} 1.0' in out
    request = route.calls[0].request
    assert request.headers["Authorization"].startswith("SDK-HMAC-SHA256 Access=AKEXAMPLE, ")
    assert request.headers["X-Project-Id"] == PROJECT
    assert "very-secret-sk" not in out + err


@pytest.mark.usefixtures("aksk")
def test_once_with_rejected_credentials_exits_1_with_the_reason(capsys: pytest.CaptureFixture[str]) -> None:
    with respx.mock() as mock:
        route = mock.get(TASKS_URL).respond(
            401, content=error_body("APIGW.0301", "Incorrect IAM authentication information")
        )
        code, out, err = run(["once", *BASE, "--endpoint", ENDPOINT], capsys)
    assert code == 1
    assert route.call_count == 1  # a 401 is never retried
    assert err.count("\n") == 1
    assert "listing failed (auth)" in err and "APIGW.0301" in err
    assert f'huaweicloud_vod_up{{project_id="{PROJECT}"}} 0.0' in out


@pytest.mark.usefixtures("aksk")
def test_once_escapes_control_characters_in_the_upstream_message(capsys: pytest.CaptureFixture[str]) -> None:
    forged = "denied\nvod-exporter: listing succeeded\x1b[1A"
    with respx.mock() as mock:
        mock.get(TASKS_URL).respond(403, content=error_body("APIGW.0302", forged))
        code, _, err = run(["once", *BASE, "--endpoint", ENDPOINT], capsys)
    assert code == 1
    assert err.count("\n") == 1 and "\x1b" not in err
    assert "denied\\nvod-exporter: listing succeeded\\x1b[1A" in err


def test_a_config_error_is_one_line_whatever_the_value(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(["serve", *BASE, "--auth.token-file", str(tmp_path / "no\nsuch")], capsys)
    assert code == 2 and err.count("\n") == 1 and "no\\nsuch" in err


@pytest.mark.usefixtures("aksk")
def test_once_against_an_unreachable_endpoint_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    with respx.mock() as mock:
        mock.get(TASKS_URL).mock(side_effect=httpx.ConnectError("connection refused"))
        code, _, err = run(["once", *BASE, "--api.retries", "0"], capsys)
    assert code == 1 and "listing failed (network)" in err


def test_the_installed_command_starts() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "--version"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0 and __version__ in result.stdout


@pytest.mark.parametrize("command", ["serve", "once", "demo"])
def test_every_option_is_documented_in_the_readme(command: str) -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    from exporter.cli import cli

    for param in cli.commands[command].params:
        for flag in param.opts + param.secondary_opts:
            if flag.startswith("--") and flag != "--help":
                assert f"`{flag}`" in readme, f"{flag} of {command} is missing from the README"
