"""``--web.config.file``: TLS, basic auth and response headers, in Prometheus exporter-toolkit's format.

The same YAML file that node_exporter and blackbox_exporter take, read once at start-up into a frozen
``WebConfig``; every mistake is a ``ConfigError`` naming the key. Where Python's ``ssl`` cannot do what
the Go toolkit does, the setting is refused (it would weaken or change security) or ignored with a
warning (it only tunes), never silently dropped:

- refused: ``client_auth_type`` ``RequestClientCert`` and ``RequireAnyClientCert`` (OpenSSL through
  Python cannot ask for a certificate without verifying it), inline ``cert``/``key``/``client_ca``
  (Python loads a certificate chain from files only), ``rate_limit``;
- ignored with a warning: TLS 1.3 names in ``cipher_suites`` (Python cannot choose TLS 1.3 suites; Go
  ignores them too), ``curve_preferences`` with more than one curve (Python sets one curve or none),
  ``http_server_config.http2`` (the server speaks HTTP/1.1 only; clients fall back to it).
"""

from __future__ import annotations

import logging
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from exporter.config import ConfigError

log = logging.getLogger(__name__)

OPTION = "--web.config.file"

# Go's names (tls.CipherSuites(), the suites the toolkit accepts) to OpenSSL's.
TLS12_CIPHERS = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
}
TLS13_CIPHERS = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")

CURVES = {"CurveP256": "prime256v1", "CurveP384": "secp384r1", "CurveP521": "secp521r1", "X25519": "X25519"}

VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}

# client_auth_type -> (verify_mode, needs client_ca_file). Go's other two policies take a
# certificate without verifying it, which Python's ssl cannot do: refused below.
CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
UNVERIFIED_CLIENT_AUTH = ("RequestClientCert", "RequireAnyClientCert", "RequireClientCert")

# Headers the file may set, and the values allowed where the toolkit fixes them (None: any). The
# toolkit keeps this list short on purpose, for consistency across the ecosystem.
SETTABLE_HEADERS: dict[str, tuple[str, ...] | None] = {
    "Strict-Transport-Security": None,
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": None,
    "Content-Security-Policy": None,
}

# A bcrypt hash as Go's and Python's bcrypt write it: $2a$, $2b$ or $2y$, a two-digit cost, then
# 22 characters of salt and 31 of hash.
_BCRYPT = re.compile(r"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}")

_TOP_KEYS = {"tls_server_config", "http_server_config", "basic_auth_users", "rate_limit"}
_TLS_KEYS = {
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "min_version",
    "max_version",
    "cipher_suites",
    "prefer_server_cipher_suites",
    "curve_preferences",
    "client_allowed_sans",
    "cert",
    "key",
    "client_ca",
}
_HTTP_KEYS = {"headers", "http2"}


@dataclass(frozen=True)
class TlsSettings:
    """What the TLS context is built from; file paths are absolute or relative to the config file."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    verify_mode: ssl.VerifyMode = ssl.CERT_NONE
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    max_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3
    ciphers: str | None = None  # OpenSSL's cipher list for TLS 1.2 and older
    prefer_server_ciphers: bool = True
    curve: str | None = None
    allowed_sans: tuple[str, ...] = ()

    @property
    def files(self) -> tuple[Path, ...]:
        """What the context is read from: when one of these changes, it is built again."""
        return (self.cert_file, self.key_file) + ((self.client_ca_file,) if self.client_ca_file else ())


@dataclass(frozen=True)
class WebConfig:
    tls: TlsSettings | None = None
    # user -> bcrypt hash. Hashes are not secrets in the sense of the password, but still never logged.
    users: Mapping[str, str] = field(default_factory=dict, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict)


def load_web_config(path: Path) -> WebConfig:
    """The file at ``path``, validated. The certificates are loaded when the server starts
    (``tls.build_context``), which fails the same way."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{OPTION}: cannot read {path}: {_reason(error)}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{OPTION}: {path} is not valid YAML{where}") from None
    return parse_web_config(document if document is not None else {}, path.parent)


def parse_web_config(document: object, base: Path) -> WebConfig:
    """The parsed YAML as a ``WebConfig``; relative paths are taken from ``base``."""
    top = _mapping(document, "the file", _TOP_KEYS)
    if top.get("rate_limit") is not None:
        raise ConfigError(f"{OPTION}: rate_limit is not supported by vod-exporter: remove it")
    tls_section = top.get("tls_server_config")
    tls = _tls_settings(_mapping(tls_section, "tls_server_config", _TLS_KEYS), base) if tls_section else None
    http = _mapping(top.get("http_server_config") or {}, "http_server_config", _HTTP_KEYS)
    if http.get("http2", True) is not False:
        log.debug("http_server_config.http2 ignored: the server speaks HTTP/1.1 only")
    return WebConfig(
        tls=tls,
        users=_users(top.get("basic_auth_users") or {}),
        headers=_headers(http.get("headers") or {}),
    )


def _tls_settings(section: Mapping[str, Any], base: Path) -> TlsSettings:
    for inline in ("cert", "key", "client_ca"):
        if section.get(inline):
            raise ConfigError(
                f"{OPTION}: tls_server_config.{inline} (inline PEM) is not supported: use {inline}_file"
            )
    cert, key = section.get("cert_file"), section.get("key_file")
    if not cert:
        raise ConfigError(f"{OPTION}: tls_server_config needs cert_file")
    if not key:
        raise ConfigError(f"{OPTION}: tls_server_config needs key_file")
    ca = section.get("client_ca_file")
    auth = section.get("client_auth_type") or "NoClientCert"
    if auth in UNVERIFIED_CLIENT_AUTH:
        raise ConfigError(
            f"{OPTION}: client_auth_type {auth} (a certificate taken without verifying it) is not "
            "supported by Python's ssl: use VerifyClientCertIfGiven or RequireAndVerifyClientCert"
        )
    if not isinstance(auth, str) or auth not in CLIENT_AUTH:  # a list or mapping cannot be looked up
        raise ConfigError(f"{OPTION}: invalid client_auth_type {auth!r} (one of {', '.join(CLIENT_AUTH)})")
    verify_mode = CLIENT_AUTH[auth]
    if ca and verify_mode == ssl.CERT_NONE:
        raise ConfigError(f"{OPTION}: client_ca_file is set but client_auth_type does not verify clients")
    if verify_mode != ssl.CERT_NONE and not ca:
        raise ConfigError(f"{OPTION}: client_auth_type {auth} needs client_ca_file")
    minimum = _version(section.get("min_version"), "min_version", ssl.TLSVersion.TLSv1_2)
    maximum = _version(section.get("max_version"), "max_version", ssl.TLSVersion.TLSv1_3)
    if minimum > maximum:
        raise ConfigError(f"{OPTION}: min_version is above max_version")
    sans = _strings(section.get("client_allowed_sans") or [], "client_allowed_sans")
    if sans and verify_mode == ssl.CERT_NONE:
        raise ConfigError(f"{OPTION}: client_allowed_sans needs a client_auth_type that verifies clients")
    prefer = section.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        raise ConfigError(f"{OPTION}: prefer_server_cipher_suites must be true or false")
    return TlsSettings(
        cert_file=base / str(cert),
        key_file=base / str(key),
        client_ca_file=base / str(ca) if ca else None,
        verify_mode=verify_mode,
        min_version=minimum,
        max_version=maximum,
        ciphers=_ciphers(section.get("cipher_suites") or []),
        prefer_server_ciphers=prefer,
        curve=_curve(section.get("curve_preferences") or []),
        allowed_sans=tuple(sans),
    )


def _version(value: object, key: str, default: ssl.TLSVersion) -> ssl.TLSVersion:
    if value is None:
        return default
    if not isinstance(value, str) or value not in VERSIONS:  # a list or mapping cannot be looked up
        raise ConfigError(f"{OPTION}: unknown TLS version {value!r} in {key} (one of {', '.join(VERSIONS)})")
    return VERSIONS[str(value)]


def _ciphers(names: object) -> str | None:
    chosen = []
    for name in _strings(names, "cipher_suites"):
        if name in TLS13_CIPHERS:
            log.warning("cipher_suites: %s ignored: TLS 1.3 suites cannot be chosen (as in Go)", name)
        elif name in TLS12_CIPHERS:
            chosen.append(TLS12_CIPHERS[name])
        else:
            raise ConfigError(f"{OPTION}: unknown cipher {name!r} in cipher_suites")
    return ":".join(chosen) or None


def _curve(names: object) -> str | None:
    curves = _strings(names, "curve_preferences")
    for name in curves:
        if name not in CURVES:
            raise ConfigError(f"{OPTION}: unknown curve {name!r} in curve_preferences")
    if len(curves) > 1:
        log.warning(
            "curve_preferences ignored: Python's ssl sets one curve or OpenSSL's defaults, not an order"
        )
        return None
    return CURVES[curves[0]] if curves else None


def _users(section: object) -> dict[str, str]:
    users = {}
    for user, hashed in _mapping(section, "basic_auth_users", None).items():
        match = _BCRYPT.fullmatch(hashed) if isinstance(hashed, str) else None
        # Never the hash itself in the message: the user's name says which line to fix.
        if match is None or not 4 <= int(match.group(1)) <= 31:
            raise ConfigError(f"{OPTION}: basic_auth_users.{user}: not a bcrypt hash (htpasswd -nBC 10 USER)")
        users[str(user)] = hashed
    return users


def _headers(section: object) -> dict[str, str]:
    headers = {}
    for name, value in _mapping(section, "http_server_config.headers", None).items():
        if name not in SETTABLE_HEADERS:
            raise ConfigError(f"{OPTION}: HTTP header {name!r} can not be configured")
        allowed = SETTABLE_HEADERS[name]
        text = str(value)
        if allowed is not None and text not in allowed:
            raise ConfigError(f"{OPTION}: invalid value for {name}: {text!r} (one of {', '.join(allowed)})")
        if "\r" in text or "\n" in text:
            raise ConfigError(f"{OPTION}: the value of {name} spans lines")
        headers[str(name)] = text
    return headers


def _mapping(value: object, where: str, keys: set[str] | None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{OPTION}: {where} must be a mapping")
    if keys is not None:
        unknown = sorted(str(key) for key in value if key not in keys)
        if unknown:
            raise ConfigError(f"{OPTION}: unknown key {unknown[0]!r} in {where}")
    return value


def _strings(value: object, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{OPTION}: {key} must be a list of names")
    return value


def _reason(error: Exception) -> str:
    return error.strerror if isinstance(error, OSError) and error.strerror else str(error)
