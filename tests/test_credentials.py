"""Where credentials come from: the SDK's order and names, and one-line errors without secrets."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from exporter.cloud.credentials import (
    AkSkCredentials,
    IamPasswordCredentials,
    OidcCredentials,
    StaticTokenCredentials,
    resolve_credentials,
)
from exporter.config import ConfigError

# Every secret in these tests contains this marker, so one check finds any leak.
SECRET = "s3cr3t-MARKER"


def write_sdk_file(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body, encoding="utf-8")
    return path


def default_sdk_file(home: Path) -> Path:
    return home / ".huaweicloud" / "credentials"


def config_error(*args: object, **kwargs: object) -> str:
    """The message of the ConfigError that ``resolve_credentials`` raises, checked to be one
    line without a secret in it."""
    with pytest.raises(ConfigError) as caught:
        resolve_credentials(*args, **kwargs)  # type: ignore[arg-type]
    message = str(caught.value)
    assert "\n" not in message
    assert SECRET not in message
    return message


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


# --- AK/SK from the environment ----------------------------------------------------------------


def test_environment_ak_sk_with_security_token_and_project(home: Path) -> None:
    env = {
        "HUAWEICLOUD_SDK_AK": "AKENV",
        "HUAWEICLOUD_SDK_SK": f"sk-{SECRET}",
        "HUAWEICLOUD_SDK_SECURITY_TOKEN": f"st-{SECRET}",
        "HUAWEICLOUD_SDK_PROJECT_ID": "proj-env",
    }
    assert resolve_credentials("aksk", env, home=home) == AkSkCredentials(
        access_key="AKENV",
        secret_key=f"sk-{SECRET}",
        security_token=f"st-{SECRET}",
        project_id="proj-env",
    )


def test_environment_wins_over_the_sdk_file_and_is_not_mixed_with_it(home: Path) -> None:
    write_sdk_file(
        default_sdk_file(home),
        "[basic]\nak = AKFILE\nsk = SKFILE\nproject_id = proj-file\nsecurity_token = st-file\n",
    )
    env = {"HUAWEICLOUD_SDK_AK": "AKENV", "HUAWEICLOUD_SDK_SK": "SKENV"}
    creds = resolve_credentials("aksk", env, home=home)
    # The file's project and security token belong to the file's key, not the environment's.
    assert creds == AkSkCredentials(access_key="AKENV", secret_key="SKENV")


def test_complete_environment_does_not_read_a_broken_file(home: Path) -> None:
    env = {
        "HUAWEICLOUD_SDK_AK": "AKENV",
        "HUAWEICLOUD_SDK_SK": "SKENV",
        "HUAWEICLOUD_SDK_CREDENTIALS_FILE": str(home / "missing"),
    }
    assert resolve_credentials("aksk", env, home=home).access_key == "AKENV"  # type: ignore[union-attr]


def test_empty_environment_values_count_as_unset(home: Path) -> None:
    write_sdk_file(default_sdk_file(home), "[basic]\nak = AKFILE\nsk = SKFILE\n")
    env = {"HUAWEICLOUD_SDK_AK": "", "HUAWEICLOUD_SDK_SK": "", "HUAWEICLOUD_SDK_SECURITY_TOKEN": ""}
    creds = resolve_credentials("aksk", env, home=home)
    assert creds == AkSkCredentials(access_key="AKFILE", secret_key="SKFILE")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"HUAWEICLOUD_SDK_SK": SECRET}, "HUAWEICLOUD_SDK_SK is set but HUAWEICLOUD_SDK_AK is not"),
        ({"HUAWEICLOUD_SDK_AK": "AK"}, "HUAWEICLOUD_SDK_AK is set but HUAWEICLOUD_SDK_SK is not"),
    ],
)
def test_half_an_environment_pair_is_named(home: Path, env: dict[str, str], expected: str) -> None:
    assert expected in config_error("aksk", env, home=home)
    assert expected in config_error("auto", env, home=home)


def test_half_an_environment_pair_falls_back_to_the_file_like_the_sdk(
    home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_sdk_file(default_sdk_file(home), "[basic]\nak = AKFILE\nsk = SKFILE\n")
    env = {"HUAWEICLOUD_SDK_AK": "AKENV"}
    with caplog.at_level(logging.WARNING, logger="exporter.cloud.credentials"):
        creds = resolve_credentials("aksk", env, home=home)
    assert creds == AkSkCredentials(access_key="AKFILE", secret_key="SKFILE")
    assert "HUAWEICLOUD_SDK_AK is set but HUAWEICLOUD_SDK_SK is not" in caplog.text
    assert str(default_sdk_file(home)) in caplog.text


@pytest.mark.parametrize("name", ["HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK"])
@pytest.mark.parametrize("method", ["aksk", "auto"])
def test_a_blank_environment_key_is_a_config_error(home: Path, name: str, method: str) -> None:
    # Even with a complete SDK file and a token to fall back on: a blank key is a mistake.
    write_sdk_file(default_sdk_file(home), "[basic]\nak = AKFILE\nsk = SKFILE\n")
    env = {"HUAWEICLOUD_SDK_AK": "AKENV", "HUAWEICLOUD_SDK_SK": SECRET, "VOD_EXPORTER_AUTH_TOKEN": SECRET}
    env[name] = " \t "
    assert config_error(method, env, home=home) == f"{name} is blank: set it, or unset it"


@pytest.mark.parametrize("key", ["ak", "sk"])
def test_a_blank_key_in_the_sdk_file_is_a_config_error(home: Path, key: str) -> None:
    values = {"ak": "AKFILE", "sk": SECRET, key: "   "}
    path = write_sdk_file(default_sdk_file(home), f"[basic]\nak = {values['ak']}\nsk = {values['sk']}\n")
    message = f"{path}: {key} in the [basic] section is blank: set it, or remove it"
    assert config_error("aksk", {}, home=home) == message
    assert config_error("auto", {"VOD_EXPORTER_AUTH_TOKEN": SECRET}, home=home) == message


# --- AK/SK from the SDK credentials file -------------------------------------------------------


def test_default_sdk_file_under_home(home: Path) -> None:
    write_sdk_file(
        default_sdk_file(home),
        "[basic]\nak = AKFILE\nsk = SKFILE\nproject_id = proj-file\nsecurity_token = st-file\n"
        "[global]\nak = OTHER\nsk = OTHER\n",
    )
    assert resolve_credentials("aksk", {}, home=home) == AkSkCredentials(
        access_key="AKFILE", secret_key="SKFILE", security_token="st-file", project_id="proj-file"
    )


def test_credentials_file_variable_replaces_the_default_path(home: Path, tmp_path: Path) -> None:
    write_sdk_file(default_sdk_file(home), "[basic]\nak = AKDEFAULT\nsk = SKDEFAULT\n")
    other = write_sdk_file(tmp_path / "elsewhere.ini", "[basic]\nak = AKOTHER\nsk = SKOTHER\n")
    creds = resolve_credentials("aksk", {"HUAWEICLOUD_SDK_CREDENTIALS_FILE": str(other)}, home=home)
    assert creds == AkSkCredentials(access_key="AKOTHER", secret_key="SKOTHER")


def test_secret_key_with_percent_sign_is_read_verbatim(home: Path) -> None:
    write_sdk_file(default_sdk_file(home), "[basic]\nak = AK\nsk = ab%cd%%ef\n")
    assert resolve_credentials("aksk", {}, home=home) == AkSkCredentials(
        access_key="AK", secret_key="ab%cd%%ef"
    )


def test_missing_file_named_by_the_variable_is_an_error(home: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nope.ini"
    message = config_error("aksk", {"HUAWEICLOUD_SDK_CREDENTIALS_FILE": str(missing)}, home=home)
    assert message == f"HUAWEICLOUD_SDK_CREDENTIALS_FILE: {missing} does not exist"


def test_unreadable_file_is_named(home: Path) -> None:
    path = default_sdk_file(home)
    path.mkdir(parents=True)  # a directory where the file should be: unreadable even for root
    message = config_error("aksk", {}, home=home)
    assert str(path) in message
    assert "cannot read" in message


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_file_without_read_permission_is_named(home: Path) -> None:
    path = write_sdk_file(default_sdk_file(home), f"[basic]\nak = AK\nsk = {SECRET}\n")
    path.chmod(0)
    message = config_error("auto", {}, home=home)
    assert message.startswith(f"the SDK credentials file: cannot read {path}")


def test_malformed_file_names_file_and_line_but_not_its_contents(home: Path) -> None:
    path = write_sdk_file(default_sdk_file(home), f"[basic]\nak = AK\nthis line holds {SECRET}\n")
    message = config_error("aksk", {}, home=home)
    assert message.startswith(f"{path} is not a valid credentials file (line 3)")


def test_file_without_section_before_keys_is_malformed(home: Path) -> None:
    path = write_sdk_file(default_sdk_file(home), f"ak = AK\nsk = {SECRET}\n")
    assert str(path) in config_error("aksk", {}, home=home)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (f"[basic]\nsk = {SECRET}\n", "the [basic] section has sk but no ak"),
        ("[basic]\nak = AK\n", "the [basic] section has ak but no sk"),
        ("[basic]\nproject_id = p\n", "the [basic] section has no ak and sk"),
    ],
)
def test_incomplete_file_says_what_is_missing(home: Path, body: str, expected: str) -> None:
    path = write_sdk_file(default_sdk_file(home), body)
    assert config_error("aksk", {}, home=home) == f"{path}: {expected}"


def test_file_without_basic_section_means_no_ak_sk(home: Path) -> None:
    path = write_sdk_file(default_sdk_file(home), "[global]\nak = AK\nsk = SK\n")
    message = config_error("aksk", {}, home=home)
    assert message.startswith("no AK/SK: set HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK")
    assert str(path) in message


# --- file permissions -------------------------------------------------------------------------


def secret_files(home: Path, tmp_path: Path) -> list[tuple[Path, dict[str, object]]]:
    """Each kind of secret file, written, with the arguments that make ``auto`` read it."""
    sdk_file = write_sdk_file(default_sdk_file(home), f"[basic]\nak = AK\nsk = {SECRET}\n")
    token_file = write_sdk_file(tmp_path / "token", SECRET)
    password_file = write_sdk_file(tmp_path / "password", SECRET)
    iam = {"iam_username": "alice", "iam_domain": "acme", "iam_password_file": password_file}
    return [(sdk_file, {}), (token_file, {"token_file": token_file}), (password_file, iam)]


@pytest.mark.parametrize("kind", [0, 1, 2], ids=["sdk-file", "token-file", "password-file"])
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_a_secret_file_open_to_group_or_others_is_warned_about(
    home: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, kind: int, mode: int
) -> None:
    files = secret_files(home, tmp_path)
    path, arguments = files[kind]
    for other, _ in files:
        other.chmod(0o600)
    if kind:  # only the one file under test is read
        default_sdk_file(home).unlink()
    path.chmod(mode)
    with caplog.at_level(logging.WARNING, logger="exporter.cloud.credentials"):
        resolve_credentials("auto", {}, home=home, **arguments)  # type: ignore[arg-type]
    assert [record.getMessage() for record in caplog.records] == [
        f"{path} is open to group or others (mode {mode:04o}): run chmod 600 {path}"
    ]


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_a_private_secret_file_is_not_warned_about(
    home: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: int
) -> None:
    for path, arguments in secret_files(home, tmp_path):
        path.chmod(mode)
        with caplog.at_level(logging.WARNING, logger="exporter.cloud.credentials"):
            resolve_credentials("auto", {}, home=home, **arguments)  # type: ignore[arg-type]
    assert caplog.records == []


# --- static token ------------------------------------------------------------------------------


def test_token_from_environment_is_stripped(home: Path) -> None:
    creds = resolve_credentials("token", {"VOD_EXPORTER_AUTH_TOKEN": f" {SECRET}\n"}, home=home)
    assert creds == StaticTokenCredentials(token=SECRET, token_file=None)


def test_token_file_is_checked_for_readability(home: Path, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(SECRET)
    creds = resolve_credentials("token", {}, home=home, token_file=token_file)
    assert creds == StaticTokenCredentials(token=None, token_file=token_file)
    missing = tmp_path / "missing-token"
    assert config_error("token", {}, home=home, token_file=missing) == (
        f"--auth.token-file: {missing} does not exist"
    )


def test_token_from_both_places_is_ambiguous(home: Path, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(SECRET)
    message = config_error("token", {"VOD_EXPORTER_AUTH_TOKEN": SECRET}, home=home, token_file=token_file)
    assert message == "set either VOD_EXPORTER_AUTH_TOKEN or --auth.token-file, not both"


def test_token_method_without_a_token(home: Path) -> None:
    assert config_error("token", {}, home=home) == (
        "token authentication needs VOD_EXPORTER_AUTH_TOKEN or --auth.token-file"
    )
    assert "VOD_EXPORTER_AUTH_TOKEN is blank" in config_error(
        "token", {"VOD_EXPORTER_AUTH_TOKEN": "  "}, home=home
    )


# --- IAM password ------------------------------------------------------------------------------


def test_iam_password_from_environment(home: Path) -> None:
    creds = resolve_credentials(
        "iam", {"VOD_EXPORTER_IAM_PASSWORD": SECRET}, home=home, iam_username="alice", iam_domain="acme"
    )
    assert creds == IamPasswordCredentials(username="alice", domain="acme", password=SECRET)


def test_iam_password_file_loses_only_its_line_end(home: Path, tmp_path: Path) -> None:
    password_file = tmp_path / "password"
    password_file.write_text(f" {SECRET} \n")
    creds = resolve_credentials(
        "iam", {}, home=home, iam_username="alice", iam_domain="acme", iam_password_file=password_file
    )
    assert creds == IamPasswordCredentials(username="alice", domain="acme", password=f" {SECRET} ")


def test_iam_names_every_missing_part(home: Path) -> None:
    assert config_error("iam", {}, home=home, iam_username="alice") == (
        "IAM password login needs --iam.domain (or VOD_EXPORTER_IAM_DOMAIN) and "
        "VOD_EXPORTER_IAM_PASSWORD or --iam.password-file"
    )
    assert config_error("iam", {"VOD_EXPORTER_IAM_PASSWORD": SECRET}, home=home, iam_domain="acme") == (
        "IAM password login needs --iam.username (or VOD_EXPORTER_IAM_USERNAME)"
    )


def test_iam_password_file_problems(home: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    names = {"iam_username": "alice", "iam_domain": "acme"}
    assert "is empty" in config_error("iam", {}, home=home, iam_password_file=empty, **names)
    assert config_error(
        "iam", {"VOD_EXPORTER_IAM_PASSWORD": SECRET}, home=home, iam_password_file=empty, **names
    ) == ("set either VOD_EXPORTER_IAM_PASSWORD or --iam.password-file, not both")
    missing = tmp_path / "missing"
    assert config_error("iam", {}, home=home, iam_password_file=missing, **names) == (
        f"--iam.password-file: {missing} does not exist"
    )


# --- auto --------------------------------------------------------------------------------------

EVERYTHING = {
    "HUAWEICLOUD_SDK_AK": "AKENV",
    "HUAWEICLOUD_SDK_SK": SECRET,
    "VOD_EXPORTER_AUTH_TOKEN": SECRET,
    "VOD_EXPORTER_IAM_PASSWORD": SECRET,
}


def test_auto_prefers_ak_sk_then_token_then_iam(home: Path) -> None:
    assert isinstance(
        resolve_credentials("auto", EVERYTHING, home=home, iam_username="alice", iam_domain="acme"),
        AkSkCredentials,
    )
    no_aksk = {k: v for k, v in EVERYTHING.items() if not k.startswith("HUAWEICLOUD")}
    assert isinstance(
        resolve_credentials("auto", no_aksk, home=home, iam_username="alice", iam_domain="acme"),
        StaticTokenCredentials,
    )
    only_iam = {"VOD_EXPORTER_IAM_PASSWORD": SECRET}
    assert isinstance(
        resolve_credentials("auto", only_iam, home=home, iam_username="alice", iam_domain="acme"),
        IamPasswordCredentials,
    )


def test_auto_takes_ak_sk_from_the_sdk_file_before_a_token(home: Path) -> None:
    write_sdk_file(default_sdk_file(home), "[basic]\nak = AKFILE\nsk = SKFILE\n")
    creds = resolve_credentials("auto", {"VOD_EXPORTER_AUTH_TOKEN": SECRET}, home=home)
    assert creds == AkSkCredentials(access_key="AKFILE", secret_key="SKFILE")


def test_auto_skips_half_set_ak_sk_for_a_token_and_says_so(
    home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = {"HUAWEICLOUD_SDK_SK": SECRET, "VOD_EXPORTER_AUTH_TOKEN": SECRET}
    with caplog.at_level(logging.WARNING, logger="exporter.cloud.credentials"):
        creds = resolve_credentials("auto", env, home=home)
    assert isinstance(creds, StaticTokenCredentials)
    assert "HUAWEICLOUD_SDK_SK is set but HUAWEICLOUD_SDK_AK is not" in caplog.text
    assert SECRET not in caplog.text


def test_auto_with_partial_iam_names_what_is_missing(home: Path) -> None:
    assert config_error("auto", {}, home=home, iam_username="alice").startswith(
        "IAM password login needs --iam.domain"
    )


def test_auto_with_nothing_says_every_way_to_fix_it(home: Path) -> None:
    message = config_error("auto", {}, home=home)
    assert message.startswith("no credentials: set HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK")
    for name in (
        "VOD_EXPORTER_AUTH_TOKEN",
        "--auth.token-file",
        "--iam.username",
        str(default_sdk_file(home)),
    ):
        assert name in message


def test_unknown_method(home: Path) -> None:
    assert config_error("kerberos", EVERYTHING, home=home) == (
        "--auth.method: 'kerberos' is not one of auto, aksk, token, iam, metadata, oidc"
    )


# --- secrets stay secret -----------------------------------------------------------------------


def test_repr_never_shows_a_secret(tmp_path: Path) -> None:
    for creds in (
        AkSkCredentials(access_key="AK", secret_key=SECRET, security_token=SECRET, project_id="p"),
        StaticTokenCredentials(token=SECRET, token_file=None),
        IamPasswordCredentials(username="alice", domain="acme", password=SECRET),
    ):
        assert SECRET not in repr(creds)
        assert SECRET not in str(creds)
    assert "AK" in repr(AkSkCredentials(access_key="AK", secret_key=SECRET))


def test_static_token_credentials_need_exactly_one_source(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        StaticTokenCredentials(token=None, token_file=None)
    with pytest.raises(ValueError, match="exactly one"):
        StaticTokenCredentials(token=SECRET, token_file=tmp_path)


# --- workload identity and metadata --------------------------------------------------------------


def test_a_workload_identity_comes_before_aksk_in_auto_as_in_the_sdk(home: Path, tmp_path: Path) -> None:
    token_file = tmp_path / "sa-token"
    token_file.write_text("token")
    env = {**EVERYTHING, "HUAWEICLOUD_SDK_IDP_ID": "idp", "HUAWEICLOUD_SDK_ID_TOKEN_FILE": str(token_file)}
    found = resolve_credentials("auto", env, home=home)
    assert isinstance(found, OidcCredentials)
    assert (found.idp_id, found.id_token_file) == ("idp", token_file)
    assert isinstance(resolve_credentials("aksk", env, home=home), AkSkCredentials)


@pytest.mark.parametrize(
    ("method", "env", "message"),
    [
        (
            "oidc",
            {},
            "workload identity (oidc) needs HUAWEICLOUD_SDK_IDP_ID and HUAWEICLOUD_SDK_ID_TOKEN_FILE",
        ),
        (
            "auto",
            {"HUAWEICLOUD_SDK_IDP_ID": "idp"},
            "HUAWEICLOUD_SDK_IDP_ID is set but HUAWEICLOUD_SDK_ID_TOKEN_FILE is not: "
            "set both for a workload identity",
        ),
        (
            "oidc",
            {"HUAWEICLOUD_SDK_ID_TOKEN_FILE": "/var/run/token"},
            "HUAWEICLOUD_SDK_ID_TOKEN_FILE is set but HUAWEICLOUD_SDK_IDP_ID is not: "
            "set both for a workload identity",
        ),
        (
            "oidc",
            {"HUAWEICLOUD_SDK_IDP_ID": "idp", "HUAWEICLOUD_SDK_ID_TOKEN_FILE": "/nonexistent/token"},
            "HUAWEICLOUD_SDK_ID_TOKEN_FILE: /nonexistent/token does not exist",
        ),
    ],
)
def test_an_incomplete_workload_identity_is_one_line(
    home: Path, method: str, env: dict[str, str], message: str
) -> None:
    assert config_error(method, env, home=home) == message


def test_a_mistyped_metadata_endpoint_is_named_not_taken_for_an_absent_service(home: Path) -> None:
    assert config_error("auto", {}, home=home, metadata_endpoint="169.254.169.254") == (
        "--auth.metadata-endpoint: '169.254.169.254' is not an http(s) URL"
    )
