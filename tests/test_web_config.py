"""``--web.config.file`` read as exporter-toolkit reads it: every mistake one line and exit 2 at
start-up, and what Python's ssl cannot do refused or warned about."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import bcrypt
import pytest

from exporter.cli import main
from exporter.config import ConfigError
from exporter.serving.web_config import load_web_config, parse_web_config
from tests.certificates import Pki, encrypted_key, make_pki

PROJECT = "0123456789abcdef0123456789abcdef"
BASE = ["serve", "--region", "cn-north-4", "--project-id", PROJECT]
HASH = bcrypt.hashpw(b"secret", bcrypt.gensalt(4)).decode()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def tls_section(pki: Pki, **extra: object) -> dict[str, object]:
    return {"cert_file": str(pki.server.cert), "key_file": str(pki.server.key), **extra}


def test_a_full_file_in_the_toolkits_format(tmp_path: Path, pki: Pki) -> None:
    (tmp_path / "server.crt").write_bytes(pki.server.cert.read_bytes())
    (tmp_path / "server.key").write_bytes(pki.server.key.read_bytes())
    (tmp_path / "web.yml").write_text(
        f"""
tls_server_config:
  cert_file: server.crt   # relative to the file, as in the toolkit
  key_file: server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: {pki.ca.cert}
  min_version: TLS13
  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384]
  prefer_server_cipher_suites: false
  curve_preferences: [X25519]
http_server_config:
  http2: false
  headers:
    X-Frame-Options: deny
    Strict-Transport-Security: max-age=31536000
basic_auth_users:
  prometheus: {HASH}
"""
    )
    config = load_web_config(tmp_path / "web.yml")
    assert config.tls is not None
    assert config.tls.cert_file == tmp_path / "server.crt"
    assert config.tls.verify_mode == ssl.CERT_REQUIRED
    assert config.tls.min_version == ssl.TLSVersion.TLSv1_3
    assert config.tls.ciphers == "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384"
    assert config.tls.curve == "X25519"
    assert not config.tls.prefer_server_ciphers
    assert config.users == {"prometheus": HASH}
    assert config.headers == {"X-Frame-Options": "deny", "Strict-Transport-Security": "max-age=31536000"}


def test_an_empty_file_or_users_alone_serve_plain_http(tmp_path: Path) -> None:
    (tmp_path / "empty.yml").write_text("")
    assert load_web_config(tmp_path / "empty.yml").tls is None
    assert parse_web_config({"basic_auth_users": {"a": HASH}}, tmp_path).users == {"a": HASH}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"tls_server_confg": {}}, "unknown key 'tls_server_confg' in the file"),
        ({"tls_server_config": {"cert_file": "a", "key_file": "b", "ca": "c"}}, "unknown key 'ca'"),
        ({"http_server_config": {"headerz": {}}}, "unknown key 'headerz' in http_server_config"),
        ({"tls_server_config": {"key_file": "b"}}, "tls_server_config needs cert_file"),
        ({"tls_server_config": {"cert_file": "a"}}, "tls_server_config needs key_file"),
        ({"tls_server_config": {"cert": "PEM", "key_file": "b"}}, "cert (inline PEM) is not supported"),
        ({"rate_limit": {"burst": 1, "interval": "1s"}}, "rate_limit is not supported"),
        (
            {
                "tls_server_config": {
                    "cert_file": "a",
                    "key_file": "b",
                    "client_auth_type": "RequireAnyClientCert",
                }
            },
            "RequireAnyClientCert (a certificate taken without verifying it) is not supported",
        ),
        (
            {"tls_server_config": {"cert_file": "a", "key_file": "b", "client_auth_type": "Maybe"}},
            "invalid client_auth_type 'Maybe'",
        ),
        (
            {
                "tls_server_config": {
                    "cert_file": "a",
                    "key_file": "b",
                    "client_auth_type": "RequireAndVerifyClientCert",
                }
            },
            "RequireAndVerifyClientCert needs client_ca_file",
        ),
        (
            {"tls_server_config": {"cert_file": "a", "key_file": "b", "client_ca_file": "ca"}},
            "client_ca_file is set but client_auth_type does not verify clients",
        ),
        (
            {"tls_server_config": {"cert_file": "a", "key_file": "b", "min_version": "TLS14"}},
            "unknown TLS version 'TLS14'",
        ),
        (
            {
                "tls_server_config": {
                    "cert_file": "a",
                    "key_file": "b",
                    "min_version": "TLS13",
                    "max_version": "TLS12",
                }
            },
            "min_version is above max_version",
        ),
        (
            {"tls_server_config": {"cert_file": "a", "key_file": "b", "cipher_suites": ["TLS_NOPE"]}},
            "unknown cipher 'TLS_NOPE'",
        ),
        (
            {"tls_server_config": {"cert_file": "a", "key_file": "b", "curve_preferences": ["P1"]}},
            "unknown curve 'P1'",
        ),
        (
            {"tls_server_config": {"cert_file": "a", "key_file": "b", "min_version": ["TLS12"]}},
            "unknown TLS version ['TLS12']",
        ),
        (
            {"tls_server_config": {"cert_file": "a", "key_file": "b", "client_auth_type": {"a": 1}}},
            "invalid client_auth_type {'a': 1}",
        ),
        ({"basic_auth_users": {"alice": "plain-password"}}, "basic_auth_users.alice: not a bcrypt hash"),
        ({"basic_auth_users": {"alice": "$2y$99$" + "a" * 53}}, "basic_auth_users.alice: not a bcrypt hash"),
        ({"http_server_config": {"headers": {"Server": "x"}}}, "HTTP header 'Server' can not be configured"),
        (
            {"http_server_config": {"headers": {"X-Frame-Options": "allow"}}},
            "invalid value for X-Frame-Options",
        ),
        ({"http_server_config": {"headers": {"X-XSS-Protection": "1\r\nSet-Cookie: a"}}}, "spans lines"),
        ("just text", "the file must be a mapping"),
    ],
)
def test_mistakes_are_named(tmp_path: Path, document: object, message: str) -> None:
    with pytest.raises(ConfigError, match=r"^--web\.config\.file: ") as raised:
        parse_web_config(document, tmp_path)
    assert message in str(raised.value)
    assert "plain-password" not in str(raised.value)


def test_what_python_cannot_choose_is_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    section = {
        "cert_file": "a",
        "key_file": "b",
        "cipher_suites": ["TLS_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"],
        "curve_preferences": ["CurveP256", "X25519"],
    }
    with caplog.at_level(logging.WARNING):
        tls = parse_web_config({"tls_server_config": section}, tmp_path).tls
    assert tls is not None
    assert tls.ciphers == "ECDHE-RSA-AES128-GCM-SHA256"
    assert tls.curve is None
    assert "TLS_AES_128_GCM_SHA256 ignored: TLS 1.3 suites cannot be chosen" in caplog.text
    assert "curve_preferences ignored" in caplog.text


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "web.yml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp, pki: str(tmp / "missing.yml"), "cannot read"),
        (lambda tmp, pki: str(write(tmp, "tls_server_config: [")), "is not valid YAML at line 1"),
        (
            lambda tmp, pki: str(
                write(tmp, f"tls_server_config: {{cert_file: nope.crt, key_file: {pki.server.key}}}")
            ),
            "cannot read cert_file",
        ),
        (
            # The client's key with the server's certificate.
            lambda tmp, pki: str(
                write(tmp, f"tls_server_config: {{cert_file: {pki.server.cert}, key_file: {pki.client.key}}}")
            ),
            "are not a certificate and its key",
        ),
        (
            lambda tmp, pki: str(
                write(
                    tmp,
                    f"tls_server_config: {{cert_file: {pki.server.cert}, key_file: {pki.server.key}, "
                    f"client_auth_type: VerifyClientCertIfGiven, client_ca_file: {pki.server.key}}}",
                )
            ),
            "client_ca_file",
        ),
        (
            # OpenSSL would ask for the passphrase on the terminal, or fail with EINVAL without one.
            lambda tmp, pki: str(
                write(
                    tmp,
                    f"tls_server_config: {{cert_file: {pki.server.cert}, "
                    f"key_file: {encrypted_key(tmp, pki.server)}}}",
                )
            ),
            "is encrypted",
        ),
        (lambda tmp, pki: str(write(tmp, "basic_auth_users: {alice: secret}")), "not a bcrypt hash"),
    ],
)
def test_a_bad_file_is_one_line_and_exit_2_at_start_up(
    tmp_path: Path,
    pki: Pki,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    make: object,
    message: str,
) -> None:
    monkeypatch.setenv("HUAWEICLOUD_SDK_AK", "AKEXAMPLE")
    monkeypatch.setenv("HUAWEICLOUD_SDK_SK", "very-secret-sk")
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(SystemExit) as exited:
        main([*BASE, "--web.listen-address", "127.0.0.1:0", "--web.config.file", make(tmp_path, pki)])  # type: ignore[operator]
    _, err = capsys.readouterr()
    assert exited.value.code == 2
    assert err.startswith("vod-exporter: error: --web.config.file: ") and err.count("\n") == 1
    assert message in err
    assert "secret" not in err
