"""The targets file: its loading and checks (units), and every bad input as the command reports it."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from exporter.cli import main
from exporter.cloud.credentials import AkSkCredentials, IamPasswordCredentials, StaticTokenCredentials
from exporter.config import ConfigError
from exporter.targets import PROCESS_CHAIN, load_targets, resolve_targets
from tests.conftest import is_setting, wait_for

P1 = "0123456789abcdef0123456789abcdef"
P2 = "fedcba9876543210fedcba9876543210"
SECRET = "Sup3rSecretSkThatMustNeverShow0123456789"
CHAIN = AkSkCredentials("CHAINAK", "chain-sk")

EXAMPLE = f"""
targets:
  - region: cn-north-4
    project_id: {P1}
  - region: ap-southeast-1
    project_id: {P2}
    endpoint: https://vod.ap-southeast-1.myhuaweicloud.com/
    credentials: media-account
credentials:
  media-account:
    ak_env: MEDIA_AK
    sk_env: MEDIA_SK
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "targets.yml"
    path.write_text(text)
    return path


def resolve(path: Path, env: dict[str, str] | None = None, chain: Any = None) -> Any:
    calls: list[int] = []

    def process_chain() -> Any:
        calls.append(1)
        return chain or CHAIN

    setups = resolve_targets(load_targets(path), {}, env or {}, process_chain=process_chain)
    return setups, calls


def test_the_example_file_gives_one_setup_per_target(tmp_path: Path) -> None:
    setups, calls = resolve(write(tmp_path, EXAMPLE), {"MEDIA_AK": "MEDIAAK", "MEDIA_SK": SECRET})
    first, second = setups
    assert (first.config.region, first.config.api.project_id) == ("cn-north-4", P1)
    assert first.config.api.endpoint == "https://vod.cn-north-4.myhuaweicloud.com"
    assert first.credentials == CHAIN and first.quota == PROCESS_CHAIN
    assert second.config.api.endpoint == "https://vod.ap-southeast-1.myhuaweicloud.com"
    assert second.credentials == AkSkCredentials("MEDIAAK", SECRET) and second.quota == "media-account"
    assert calls == [1]  # the chain is read once, and only because a target uses it


def test_targets_with_named_credentials_never_read_the_process_chain(tmp_path: Path) -> None:
    first = "  - region: cn-north-4\n"
    text = EXAMPLE.replace(first, first + "    credentials: media-account\n")
    setups, calls = resolve(write(tmp_path, text), {"MEDIA_AK": "MEDIAAK", "MEDIA_SK": SECRET})
    assert calls == [] and {s.quota for s in setups} == {"media-account"}


def test_entries_with_the_same_credentials_share_one_quota(tmp_path: Path) -> None:
    # Two names (or an entry and the process's own chain) for one access key are one tenant: one
    # request-rate limit, or the tenant's flow control would see twice the rate configured.
    path = write(
        tmp_path,
        f"targets:\n  - {{region: cn-north-4, project_id: {P1}, credentials: media}}\n"
        f"  - {{region: cn-east-3, project_id: {P2}, credentials: media-again}}\n"
        "  - {region: ap-southeast-1}\n"
        "credentials:\n  media: {ak_env: MEDIA_AK, sk_env: MEDIA_SK}\n"
        "  media-again: {ak_env: OTHER_AK, sk_env: OTHER_SK}\n",
    )
    env = {"MEDIA_AK": "MEDIAAK", "MEDIA_SK": SECRET, "OTHER_AK": "MEDIAAK", "OTHER_SK": SECRET}
    setups, _ = resolve(path, env, chain=AkSkCredentials("MEDIAAK", SECRET))
    assert [setup.quota for setup in setups] == ["media", "media", "media"]


def test_secrets_from_files_and_the_other_methods(tmp_path: Path) -> None:
    (tmp_path / "sk").write_text(SECRET + "\n")
    (tmp_path / "pw").write_text("pass word\n")
    (tmp_path / "token").write_text("tok")
    for name in ("sk", "pw", "token"):
        (tmp_path / name).chmod(0o600)
    text = f"""
targets:
  - {{region: cn-north-4, project_id: {P1}, credentials: files}}
  - {{region: cn-north-4, project_id: {P2}, credentials: login}}
  - {{region: cn-east-3, project_id: "{"1" * 32}", credentials: static}}
credentials:
  files: {{ak_env: AK, sk_file: {tmp_path / "sk"}, security_token_env: STS}}
  login: {{username: alice, domain: acme, password_file: {tmp_path / "pw"}}}
  static: {{method: token, token_file: {tmp_path / "token"}}}
"""
    setups, _ = resolve(write(tmp_path, text), {"AK": "AK1", "STS": "sts-token"})
    assert setups[0].credentials == AkSkCredentials("AK1", SECRET, security_token="sts-token")
    assert setups[1].credentials == IamPasswordCredentials("alice", "acme", "pass word")
    assert setups[1].config.iam_endpoint == "https://iam.cn-north-4.myhuaweicloud.com"
    assert setups[2].credentials == StaticTokenCredentials(token=None, token_file=tmp_path / "token")


# Each: the file's text, what the one-line message must say. {P1} is filled in.
BAD_FILES = {
    "unknown top key": ("target:\n  - region: cn-north-4\n", "unknown key 'target' (did you mean targets?)"),
    "unknown target key": (
        "targets:\n  - region: cn-north-4\n    projet_id: {P1}\n",
        "target 1 (region cn-north-4): unknown key 'projet_id' (did you mean project_id?)",
    ),
    "unknown credentials key": (
        "targets:\n  - {{region: cn-north-4, project_id: {P1}, credentials: a}}\n"
        "credentials:\n  a: {{ak_evn: AK, sk_env: SK}}\n",
        "credentials 'a': unknown key 'ak_evn' (did you mean ak_env?)",
    ),
    "same project twice": (
        "targets:\n  - {{region: cn-north-4, project_id: {P1}}}\n"
        "  - {{region: cn-east-3, project_id: {P1}}}\n",
        f"target 2 (region cn-east-3) repeats project_id {P1} of target 1 (region cn-north-4): remove one",
    ),
    "same region without project": (
        "targets:\n  - region: cn-north-4\n  - region: cn-north-4\n",
        "target 2 (region cn-north-4) repeats target 1 (region cn-north-4) without a project_id",
    ),
    "unknown credentials name": (
        "targets:\n  - {{region: cn-north-4, project_id: {P1}, credentials: media}}\n"
        "credentials:\n  media-account: {{ak_env: AK, sk_env: SK}}\n",
        "credentials 'media' is not defined (did you mean media-account?)",
    ),
    "a secret in the file": (
        "targets:\n  - {{region: cn-north-4, project_id: {P1}, credentials: a}}\n"
        "credentials:\n  a: {{ak_env: AK, sk: " + SECRET + "}}\n",
        "credentials 'a': sk would put a secret in the file: name an environment variable (sk_env) "
        "or a file (sk_file)",
    ),
    "a key pasted where a variable's name goes": (
        "targets:\n  - {{region: cn-north-4, project_id: {P1}, credentials: a}}\n"
        "credentials:\n  a: {{ak_env: AK, sk_env: " + SECRET + "}}\n",
        "credentials 'a': sk_env is not an environment variable's name",
    ),
    "an unset variable": (
        "targets:\n  - {{region: cn-north-4, project_id: {P1}, credentials: a}}\n"
        "credentials:\n  a: {{ak_env: AK, sk_env: UNSET_SK}}\n",
        "credentials 'a': sk_env names UNSET_SK, which is not set: set it, or fix the name",
    ),
    "an unreadable file": (
        "targets:\n  - {{region: cn-north-4, project_id: {P1}, credentials: a}}\n"
        "credentials:\n  a: {{ak_env: AK, sk_file: /nonexistent/sk}}\n",
        "credentials 'a': sk_file: /nonexistent/sk does not exist",
    ),
    "a bad region": (
        "targets:\n  - region: North 4\n",
        "target 1 (region North 4): region: 'North 4' is not",
    ),
    "a bad project id": (
        "targets:\n  - {{region: cn-north-4, project_id: nope}}\n",
        "target 1 (region cn-north-4): project_id: 'nope' is not a project id",
    ),
    "a project id YAML reads as a number": (
        "targets:\n  - {{region: cn-north-4, project_id: 12345678901234567890123456789012}}\n",
        'project_id was read as a number: quote it (project_id: "...")',
    ),
    "no targets": ("targets: []\n", "targets: give a list of at least one target"),
    "a key given twice": (
        "targets:\n  - region: cn-north-4\n    region: cn-east-3\n",
        "line 3: key 'region' is given twice: keep one",
    ),
    "not YAML": ("targets: [\n", "not valid YAML (line 2)"),
    "nested deeper than the parser can go": (
        "targets: " + "[" * 20000 + "]" * 20000 + "\n",
        "nested too deeply: a targets file is a few levels deep",
    ),
    "mixed methods": (
        "targets:\n  - {{region: cn-north-4, project_id: {P1}, credentials: a}}\n"
        "credentials:\n  a: {{ak_env: AK, sk_env: SK, username: bob}}\n",
        "credentials 'a': mixes keys of aksk and iam: keep one, or set method",
    ),
    "an IAM login without a project id": (
        "targets:\n  - {{region: cn-north-4, credentials: a}}\n"
        "credentials:\n  a: {{username: bob, domain: acme, password_env: AK}}\n",
        "target 1 (region cn-north-4): an IAM password login cannot look up the project: set project_id",
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_every_bad_file_is_one_line_naming_the_file_and_exit_2(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in list(os.environ):
        if is_setting(name):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("HUAWEICLOUD_SDK_AK", "CHAINAK")
    monkeypatch.setenv("HUAWEICLOUD_SDK_SK", "chain-sk")
    monkeypatch.setenv("AK", "AK1")
    text, expected = BAD_FILES[case]
    path = write(tmp_path, text.format(P1=P1))
    with pytest.raises(SystemExit) as exited:
        main(["once", "--config.file", str(path)])
    _, err = capsys.readouterr()
    assert exited.value.code == 2
    assert err.count("\n") == 1 and err.startswith(f"vod-exporter: error: {path}: "), err
    assert expected in err
    assert SECRET not in err


def test_the_single_target_options_cannot_be_mixed_with_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, EXAMPLE)
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--config.file", str(path), "--region", "cn-north-4"])
    _, err = capsys.readouterr()
    assert exited.value.code == 2 and err.count("\n") == 1
    assert "--config.file and --region cannot be combined" in err


def test_aliases_of_aliases_are_walked_once_each(tmp_path: Path) -> None:
    # Billion laughs: twelve levels of ten aliases each are 10**12 nodes once expanded, though the
    # file is small. Its nodes must each be looked at once (the repeated-keys check included), or
    # a reload would block the signal handler, and shutdown with it, for hours.
    levels = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    levels += [f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 10)}]" for n in range(1, 12)]
    path = write(tmp_path, "\n".join([*levels, "targets: *l11", ""]))
    outcome: list[BaseException] = []

    def load() -> None:
        try:
            load_targets(path)
        except ConfigError as error:
            outcome.append(error)

    threading.Thread(target=load, daemon=True).start()
    wait_for("the file to be refused", lambda: outcome, timeout=30)
    assert "unknown key 'l0'" in str(outcome[0])


def test_an_entrys_metadata_service_that_is_not_there_names_the_entrys_key(
    tmp_path: Path, no_real_metadata_service: str
) -> None:
    path = write(
        tmp_path,
        f"targets:\n  - {{region: cn-north-4, project_id: {P1}, credentials: vm}}\n"
        f"credentials:\n  vm: {{method: metadata, metadata_endpoint: '{no_real_metadata_service}'}}\n",
    )
    with pytest.raises(ConfigError) as refused:
        resolve(path)
    assert str(refused.value) == (
        f"{path}: credentials 'vm': metadata_endpoint: no temporary key: metadata service "
        f"{no_real_metadata_service}: unreachable (ConnectError)"
    )


def test_a_file_too_large_to_be_a_targets_file_is_refused_unread(tmp_path: Path) -> None:
    # PyYAML takes seconds per megabyte, on the thread that answers signals: a log or an image
    # given by mistake would hold a reload, or shutdown, for minutes.
    path = write(tmp_path, "targets:\n  - region: cn-north-4\n" + "#" * (1 << 20) + "\n")
    with pytest.raises(ConfigError, match=r"targets.yml: larger than 1 MiB \(ten thousand targets"):
        load_targets(path)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--config.file: .*nope.yml does not exist"):
        load_targets(tmp_path / "nope.yml")
