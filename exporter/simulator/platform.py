"""Credentials that the simulated platform hands out: ECS metadata keys and CCE workload identities.

- The metadata service: ``PUT /meta-data/latest/api/token`` (header ``X-Metadata-Token-Ttl-Seconds``)
  gives a session token, and ``GET /openstack/latest/securitykey`` a temporary key
  ``{"credential": {"access", "secret", "securitytoken", "expires_at"}}``. With
  ``session_tokens`` on, the key is given only with a valid ``X-Metadata-Token`` (401 otherwise).
- IAM's workload-identity exchange: ``POST /v3.0/OS-AUTH/id-token/tokens`` with ``X-Idp-Id`` and
  ``{"auth": {"id_token": {"id": <service-account token>}}}`` answers 201 with an unscoped token in
  ``X-Subject-Token``, which ``POST /v3.0/OS-CREDENTIAL/securitytokens`` exchanges for a temporary key.

Every key lives ``key_lifetime`` seconds; after that the gateway answers it with 401
``APIGW.0307`` ("The token must be updated"), as it does an expired token. These are the
requests the official SDK's ``MetadataAccessor`` and ``FederalAccessor`` make.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from exporter.simulator import rejections
from exporter.simulator.rejections import Rejected

METADATA_TOKEN_PATH = "/meta-data/latest/api/token"
METADATA_KEY_PATH = "/openstack/latest/securitykey"
ID_TOKEN_PATH = "/v3.0/OS-AUTH/id-token/tokens"
SECURITY_TOKENS_PATH = "/v3.0/OS-CREDENTIAL/securitytokens"
PATHS = {
    METADATA_TOKEN_PATH: "metadata",
    METADATA_KEY_PATH: "metadata",
    ID_TOKEN_PATH: "oidc",
    SECURITY_TOKENS_PATH: "oidc",
}

DEFAULT_KEY_LIFETIME = 3600.0
_UNSCOPED_TOKEN_LIFETIME = 24 * 3600.0


@dataclass(frozen=True)
class PlatformSettings:
    key_lifetime: float = DEFAULT_KEY_LIFETIME
    idp_id: str = "cce-workload-identity"
    session_tokens: bool = True
    # Service-account tokens IAM accepts; ``Platform.accept_id_token`` adds more while running.
    id_tokens: frozenset[str] = field(default_factory=frozenset, repr=False)


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class _Key:
    secret: str = field(repr=False)
    security_token: str = field(repr=False)
    expires_at: float


class Platform:
    """Issues temporary keys and checks them for the gateway. Safe to share between threads."""

    def __init__(self, settings: PlatformSettings, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, _Key] = {}
        self._session_tokens: set[str] = set()
        self._unscoped: dict[str, float] = {}
        self._id_tokens = set(settings.id_tokens)
        self.keys_issued = 0

    def accept_id_token(self, token: str) -> None:
        with self._lock:
            self._id_tokens.add(token)

    def revoke_id_token(self, token: str) -> None:
        with self._lock:
            self._id_tokens.discard(token)

    def secret_for(self, access_key: str, security_token: str | None) -> str | None:
        """The secret of a temporary ``access_key``; None when it is not one. Raises ``Rejected``
        (401) when the security token is missing or wrong, or the key has expired."""
        with self._lock:
            key = self._keys.get(access_key)
        if key is None:
            return None
        if security_token is None:
            raise rejections.bad_credentials("x-security-token not found for a temporary access key")
        if not secrets.compare_digest(key.security_token.encode(), security_token.encode()):
            raise rejections.bad_credentials("verify security token fail")
        if self._clock() >= key.expires_at:
            raise rejections.token_expired()
        return key.secret

    def answer(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Answer:
        """The answer to a request for one of ``PATHS`` (``headers`` with lower-case names)."""
        try:
            if path == METADATA_TOKEN_PATH and method == "PUT":
                return self._session_token(headers)
            if path == METADATA_KEY_PATH and method == "GET":
                return self._metadata_key(headers)
            if path == ID_TOKEN_PATH and method == "POST":
                return self._unscoped_token(headers, body)
            if path == SECURITY_TOKENS_PATH and method == "POST":
                return self._temporary_key(body)
            raise rejections.not_found(wrong_method=True)
        except Rejected as rejection:
            return Answer(rejection.status, rejection.body(secrets.token_hex(16)))

    # --- the metadata service ------------------------------------------------------------------

    def _session_token(self, headers: Mapping[str, str]) -> Answer:
        if not self.settings.session_tokens:
            return Answer(404, b"404 page not found\n", "text/plain")
        if not headers.get("x-metadata-token-ttl-seconds", "").isdigit():
            return Answer(400, b"X-Metadata-Token-Ttl-Seconds is required\n", "text/plain")
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._session_tokens.add(token)
        return Answer(200, token.encode(), "text/plain")

    def _metadata_key(self, headers: Mapping[str, str]) -> Answer:
        if self.settings.session_tokens:
            with self._lock:
                valid = headers.get("x-metadata-token") in self._session_tokens
            if not valid:
                return Answer(401, b"401 Unauthorized: invalid X-Metadata-Token\n", "text/plain")
        return Answer(200, self._issue_key())

    # --- IAM: workload identity ----------------------------------------------------------------

    def _unscoped_token(self, headers: Mapping[str, str], body: bytes) -> Answer:
        try:
            id_token = json.loads(body)["auth"]["id_token"]["id"]
        except (ValueError, KeyError, TypeError):
            raise rejections.iam_error(400, "Bad Request", "The request body is invalid.") from None
        if headers.get("x-idp-id") != self.settings.idp_id:
            raise rejections.iam_error(404, "Not Found", "Could not find identity provider.")
        with self._lock:
            accepted = isinstance(id_token, str) and id_token in self._id_tokens
        if not accepted:
            raise rejections.iam_error(401, "Unauthorized", "The id_token is invalid or expired.")
        now = self._clock()
        token = "MIIU" + secrets.token_urlsafe(96)
        expires_at = now + _UNSCOPED_TOKEN_LIFETIME
        with self._lock:
            self._unscoped[token] = expires_at
        document = {
            "token": {
                "methods": ["mapped"],
                "issued_at": _iam_time(now),
                "expires_at": _iam_time(expires_at),
                "user": {
                    "name": "system:serviceaccount",
                    "OS-FEDERATION": {"identity_provider": {"id": self.settings.idp_id}},
                },
            }
        }
        return Answer(201, json.dumps(document).encode(), headers=(("X-Subject-Token", token),))

    def _temporary_key(self, body: bytes) -> Answer:
        try:
            identity = json.loads(body)["auth"]["identity"]
            token = identity["token"]["id"]
            methods = identity["methods"]
        except (ValueError, KeyError, TypeError):
            raise rejections.iam_error(400, "Bad Request", "The request body is invalid.") from None
        with self._lock:
            expires_at = self._unscoped.get(token) if isinstance(token, str) else None
        if methods != ["token"] or expires_at is None or self._clock() >= expires_at:
            raise rejections.iam_error(
                401, "Unauthorized", "The request you have made requires authentication."
            )
        return Answer(201, self._issue_key())

    # --- keys ----------------------------------------------------------------------------------

    def _issue_key(self) -> bytes:
        access = "T" + secrets.token_hex(10).upper()
        key = _Key(
            secret=secrets.token_urlsafe(30),
            security_token="gQ" + secrets.token_urlsafe(120),
            expires_at=self._clock() + self.settings.key_lifetime,
        )
        with self._lock:
            # Keys long past their expiry are forgotten (and then refused as unknown): bounded memory.
            forget = key.expires_at - 2 * self.settings.key_lifetime
            for old in [name for name, known in self._keys.items() if known.expires_at < forget]:
                del self._keys[old]
            self._keys[access] = key
            self.keys_issued += 1
        credential: dict[str, Any] = {
            "access": access,
            "secret": key.secret,
            "securitytoken": key.security_token,
            "expires_at": _iam_time(key.expires_at),
        }
        return json.dumps({"credential": credential}).encode()


def _iam_time(moment: float) -> str:
    # As IAM and the metadata service write it, with microseconds (the SDK's format insists).
    return datetime.fromtimestamp(moment, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
