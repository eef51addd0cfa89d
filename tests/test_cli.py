"""The command as a user meets it: one-line errors with exit 2, env configuration, ``once``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from exporter import __version__
from exporter.cli import main
from exporter.config import (
    Config,
    ScrapeSettings,
    SeriesSettings,
    WebSettings,
    format_duration,
    parse_duration,
)
from tests.conftest import (
    ENDPOINT,
    PROJECT,
    TASKS_URL,
    body,
    error_body,
    exporter_command,
    free_port,
    is_setting,
    record,
    terminate,
    wait_for,
)

BASE = ["--region", "cn-north-4", "--project-id", PROJECT]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if is_setting(name):
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
        (["serve", "--project-id", PROJECT], "set --region (e.g. cn-north-4), or --endpoint\n"),
        (["serve", *BASE, "--endpoint", "ftp://x"], "--endpoint: 'ftp://x' is not an http(s) URL"),
        (["serve", "--endpoint", ENDPOINT], "set --project-id"),
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


# --- One home for the configuration, with the defaults in one place ---------------------------


def _command_defaults(command: str) -> dict[str, Any]:
    """What the command passes for every option the user leaves out."""
    from exporter.cli import cli

    return dict(cli.commands[command].make_context(command, []).params)


def test_the_command_defaults_are_the_config_defaults() -> None:
    required = {"endpoint": ENDPOINT, "project_id": PROJECT}
    from_dataclasses = Config.from_options(required, {}, needs_iam=False)
    from_command = Config.from_options({**_command_defaults("serve"), **required}, {}, needs_iam=False)
    assert from_command == from_dataclasses
    assert from_dataclasses.scrape == ScrapeSettings()
    assert from_dataclasses.series == SeriesSettings()
    assert from_dataclasses.web == WebSettings()


def test_help_shows_the_config_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(["serve", "--help"], capsys)
    flat = " ".join(out.split())
    min_interval = format_duration(ScrapeSettings().min_refresh_interval)
    assert f"VOD_EXPORTER_SCRAPE_MIN_INTERVAL; default: {min_interval}]" in flat
    assert f"VOD_EXPORTER_SCRAPE_TIMEOUT; default: {format_duration(ScrapeSettings().timeout)}]" in flat
    # The boolean flag shows its value, not its own name.
    assert "default: tasks.per-task-series" not in flat
    assert "VOD_EXPORTER_TASKS_PER_TASK_SERIES; default: (on)]" in flat


@pytest.mark.parametrize(("seconds", "text"), [(30.0, "30s"), (0.5, "500ms"), (0, "0s"), (5400, "1h30m")])
def test_format_duration_is_read_back_by_parse_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text, "--x") == seconds


def test_the_demo_builds_its_config_through_from_options(monkeypatch: pytest.MonkeyPatch) -> None:
    import exporter.demo

    seen: list[dict[str, Any]] = []
    original = Config.from_options.__func__  # type: ignore[attr-defined]

    def spy(cls: type[Config], options: dict[str, Any], *args: Any, **kwargs: Any) -> Config:
        seen.append(dict(options))
        return original(cls, options, *args, **kwargs)  # type: ignore[no-any-return]

    monkeypatch.setattr(Config, "from_options", classmethod(spy))
    demo = exporter.demo.Demo("127.0.0.1", 0)
    try:
        assert seen and seen[0]["endpoint"] == demo.simulator.url
        assert demo.config.scrape.min_refresh_interval == ScrapeSettings().min_refresh_interval
    finally:
        demo.stop()


# --- AK/SK never calls IAM ---------------------------------------------------------------------


@pytest.mark.usefixtures("aksk")
def test_aksk_with_endpoint_needs_no_region_nor_iam_endpoint(capsys: pytest.CaptureFixture[str]) -> None:
    with respx.mock() as mock:
        mock.get(TASKS_URL).respond(200, content=body([record(1, "WAITING")]))
        code, out, err = run(["once", "--endpoint", ENDPOINT, "--project-id", PROJECT], capsys)
    assert code == 0, err
    assert f'huaweicloud_vod_up{{project_id="{PROJECT}"}} 1.0' in out


def test_iam_password_with_endpoint_still_needs_the_iam_endpoint(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VOD_EXPORTER_IAM_PASSWORD", "pw")
    args = ["once", "--endpoint", ENDPOINT, "--project-id", PROJECT, "--auth.method", "iam"]
    code, _, err = run([*args, "--iam.username", "u", "--iam.domain", "d"], capsys)
    assert code == 2 and "set --region (e.g. cn-north-4), or --iam-endpoint" in err


def test_iam_password_without_a_project_id_cannot_look_it_up(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VOD_EXPORTER_IAM_PASSWORD", "pw")
    args = [
        "once",
        "--region",
        "cn-north-4",
        "--auth.method",
        "iam",
        "--iam.username",
        "u",
        "--iam.domain",
        "d",
    ]
    code, _, err = run(args, capsys)
    assert code == 2 and err.count("\n") == 1
    assert "set --project-id" in err and "an IAM password login cannot look it up" in err


# --- the project id found from the region --------------------------------------------------------


def test_a_region_without_a_project_id_leaves_it_to_be_found() -> None:
    config = Config.from_options({"region": "cn-north-4"}, {}, needs_iam=False)
    assert config.api.project_id == ""
    assert config.iam_endpoint == "https://iam.cn-north-4.myhuaweicloud.com"


@pytest.mark.usefixtures("aksk")
def test_once_with_a_region_alone_finds_the_project_at_iam(capsys: pytest.CaptureFixture[str]) -> None:
    projects = {"projects": [{"id": PROJECT, "name": "cn-north-4", "domain_id": "d" * 32, "enabled": True}]}
    with respx.mock() as mock:
        iam = mock.get("https://iam.cn-north-4.myhuaweicloud.com/v3/projects").respond(200, json=projects)
        mock.get(TASKS_URL).respond(200, content=body([record(1, "WAITING")]))
        code, out, err = run(["once", "--region", "cn-north-4"], capsys)
    assert code == 0, err
    assert iam.calls.last.request.url.params["name"] == "cn-north-4"
    assert f'huaweicloud_vod_up{{project_id="{PROJECT}"}} 1.0' in out
    assert 'huaweicloud_vod_api_requests_total{code="200",operation="iam_projects"} 1.0' in out


# --- once --output: a textfile for node_exporter -------------------------------------------------


@pytest.mark.usefixtures("aksk")
def test_once_leaves_out_the_process_and_python_families(capsys: pytest.CaptureFixture[str]) -> None:
    with respx.mock() as mock:
        mock.get(TASKS_URL).respond(200, content=body([record(1, "WAITING")]))
        code, out, _ = run(["once", *BASE], capsys)
    assert code == 0
    names = {line.split()[2] for line in out.splitlines() if line.startswith("# TYPE ")}
    assert names and all(name.startswith("huaweicloud_vod_") for name in names), names


@pytest.mark.usefixtures("aksk")
def test_once_output_writes_the_file_and_nothing_to_stdout(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    target = tmp_path / "textfile" / "vod.prom"
    target.parent.mkdir()
    with respx.mock() as mock:
        mock.get(TASKS_URL).respond(200, content=body([record(1, "WAITING")]))
        code, out, err = run(["once", *BASE, "--output", str(target)], capsys)
    assert code == 0, err
    assert out == ""
    assert f'huaweicloud_vod_up{{project_id="{PROJECT}"}} 1.0' in target.read_text()
    assert [p.name for p in target.parent.iterdir()] == ["vod.prom"]  # no temporary file left
    assert target.stat().st_mode & 0o777 == 0o644  # node_exporter runs as another user


@pytest.mark.usefixtures("aksk")
def test_once_output_replaces_the_file_with_up_0_when_the_listing_fails(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    target = tmp_path / "vod.prom"
    target.write_text(f'huaweicloud_vod_up{{project_id="{PROJECT}"}} 1.0\n')
    with respx.mock() as mock:
        mock.get(TASKS_URL).respond(401, content=error_body("APIGW.0301", "Incorrect IAM authentication"))
        code, out, err = run(["once", *BASE, "--output", str(target)], capsys)
    assert code == 1 and out == ""
    assert "listing failed (auth)" in err
    written = target.read_text()
    assert f'huaweicloud_vod_up{{project_id="{PROJECT}"}} 0.0' in written
    assert f'huaweicloud_vod_scrape_errors_total{{project_id="{PROJECT}",reason="auth"}} 1.0' in written
    assert [p.name for p in tmp_path.iterdir()] == ["vod.prom"]


@pytest.mark.usefixtures("aksk")
def test_once_output_into_a_missing_directory_is_a_config_error_before_any_call(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with respx.mock(assert_all_called=False) as mock:
        route = mock.get(TASKS_URL).respond(200, content=body([]))
        code, _, err = run(["once", *BASE, "--output", str(tmp_path / "nowhere" / "vod.prom")], capsys)
    assert code == 2 and err.count("\n") == 1 and "--output" in err
    assert route.call_count == 0


# --- Unknown VOD_EXPORTER_* variables ----------------------------------------------------------


@pytest.mark.usefixtures("aksk")
def test_unknown_variables_are_named_with_the_nearest_real_one(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VOD_EXPORTER_LOGLEVEL", "debug")
    monkeypatch.setenv("VOD_EXPORTER_API_CONCURENCY", "8")
    monkeypatch.setenv("VOD_EXPORTER_IAM_PASSWORD", "read by the credentials, not an option")
    monkeypatch.setenv("VOD_EXPORTER_AUTH_TOKEN", "also read directly")
    monkeypatch.setenv("VOD_EXPORTER_WEB_LISTEN_ADDRESS", ":9881")  # serve's option: shared env files
    with respx.mock() as mock:
        mock.get(TASKS_URL).respond(200, content=body([]))
        code, _, err = run(["once", *BASE], capsys)
    assert code == 0, err
    warnings = err.splitlines()
    assert len(warnings) == 2, err
    assert "VOD_EXPORTER_API_CONCURENCY" in warnings[0] and "VOD_EXPORTER_API_CONCURRENCY" in warnings[0]
    assert "VOD_EXPORTER_LOGLEVEL" in warnings[1] and "VOD_EXPORTER_LOG_LEVEL" in warnings[1]
    assert all("level=warn" in line for line in warnings)


@pytest.mark.usefixtures("aksk")
def test_a_misspelt_secret_variable_is_named_but_its_value_never_shown(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VOD_EXPORTER_IAM_PASWORD", "hunter2-secret")
    with respx.mock() as mock:
        mock.get(TASKS_URL).respond(200, content=body([]))
        code, _, err = run(["once", *BASE], capsys)
    assert code == 0 and "did you mean VOD_EXPORTER_IAM_PASSWORD?" in err
    assert "hunter2" not in err


# --- Smaller ones --------------------------------------------------------------------------------


@pytest.mark.usefixtures("aksk")
def test_log_level_warning_is_accepted_as_warn(capsys: pytest.CaptureFixture[str]) -> None:
    with respx.mock() as mock:
        mock.get(TASKS_URL).respond(200, content=body([]))
        code, _, err = run(["once", *BASE, "--log.level", "warning"], capsys)
    assert code == 0, err


def test_demo_banner_is_json_lines_with_log_format_json() -> None:
    port = free_port()
    with exporter_command(["demo", f"--web.listen-address=127.0.0.1:{port}", "--log.format=json"]) as process:
        wait_for("the demo to be ready", lambda: _ready(port), 30, 0.05)
        out, err = terminate(process)
    assert process.returncode == 0, err
    lines = [line for line in (out + err).splitlines() if line.strip()]
    messages = [json.loads(line)["msg"] for line in lines]  # every line is JSON
    assert any(f"metrics at http://127.0.0.1:{port}/metrics" in msg for msg in messages)


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/-/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


# --- Dotted flag names, with the old ones as hidden deprecated aliases --------------------------


@pytest.mark.parametrize(
    ("old", "new", "value", "field", "expected"),
    [
        ("--scrape-timeout", "--scrape.timeout", "12s", "timeout", 12.0),
        ("--scrape-timeout-offset", "--scrape.timeout-offset", "2s", "timeout_offset", 2.0),
        ("--min-refresh-interval", "--scrape.min-interval", "55s", "min_refresh_interval", 55.0),
    ],
)
@pytest.mark.usefixtures("aksk")
def test_old_flag_names_still_work_and_warn(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    old: str,
    new: str,
    value: str,
    field: str,
    expected: float,
) -> None:
    seen = _config_seen(monkeypatch)
    with respx.mock() as mock:
        mock.get(TASKS_URL).respond(200, content=body([]))
        code, _, err = run(["once", *BASE, old, value], capsys)
    assert code == 0, err
    assert getattr(seen[0].scrape, field) == expected
    assert err.count("\n") == 1 and "level=warn" in err
    assert f"{old} is deprecated" in err and new in err
    _, help_text, _ = run(["once", "--help"], capsys)
    assert new in help_text and f"{old} " not in help_text


@pytest.mark.usefixtures("aksk")
def test_the_old_min_refresh_interval_variable_still_works_and_warns(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _config_seen(monkeypatch)
    monkeypatch.setenv("VOD_EXPORTER_MIN_REFRESH_INTERVAL", "40s")
    with respx.mock() as mock:
        mock.get(TASKS_URL).respond(200, content=body([]))
        code, _, err = run(["once", *BASE], capsys)
    assert code == 0, err
    assert seen[0].scrape.min_refresh_interval == 40.0
    assert "VOD_EXPORTER_MIN_REFRESH_INTERVAL is deprecated" in err
    assert "VOD_EXPORTER_SCRAPE_MIN_INTERVAL" in err


@pytest.mark.usefixtures("aksk")
def test_the_new_flag_wins_over_its_old_spelling(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _config_seen(monkeypatch)
    with respx.mock() as mock:
        mock.get(TASKS_URL).respond(200, content=body([]))
        code, _, err = run(["once", *BASE, "--scrape.timeout", "9s", "--scrape-timeout", "12s"], capsys)
    assert code == 0, err
    assert seen[0].scrape.timeout == 9.0
    assert "--scrape-timeout is deprecated" in err


def _config_seen(monkeypatch: pytest.MonkeyPatch) -> list[Config]:
    """The configs ``Exporter`` is built with, from here on."""
    import exporter.app

    seen: list[Config] = []
    original = exporter.app.Exporter.__init__

    def spy(self: exporter.app.Exporter, config: Config, *args: Any, **kwargs: Any) -> None:
        seen.append(config)
        original(self, config, *args, **kwargs)

    monkeypatch.setattr(exporter.app.Exporter, "__init__", spy)
    return seen
