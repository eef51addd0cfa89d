"""Temporary access keys that the platform hands out and takes back: renewed before they expire.

Two sources, read from the official SDK (``huaweicloudsdkcore.auth.internal``) and rewritten:

- **ECS/BMS metadata** (``MetadataAccessor``): an optional session token from
  ``PUT {metadata}/meta-data/latest/api/token`` (header ``X-Metadata-Token-Ttl-Seconds``; a 404, 405
  or 503 means the service has no session tokens), then ``GET {metadata}/openstack/latest/securitykey``
  with ``X-Metadata-Token`` when there is one. A 401 that is not "configure an agency first" means
  the session token went stale: it is renewed and the key asked for once more.
- **CCE workload identity** (``FederalAccessor``): the service-account token file is read afresh
  (kubelet rotates it) and sent to ``POST {iam}/v3.0/OS-AUTH/id-token/tokens`` with ``X-Idp-Id``;
  the unscoped token in ``X-Subject-Token`` is exchanged at ``POST {iam}/v3.0/OS-CREDENTIAL/securitytokens``
  for a temporary key.

Both answer ``{"credential": {"access", "secret", "securitytoken", "expires_at"}}``. ``RenewingKey``
caches the key, renews it a margin before ``expires_at``, and counts failed renewals; every failure
is an ``AuthError`` whose message names the endpoint and never a secret.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from exporter.cloud.bodies import ACCEPT_ENCODING, read_body
from exporter.cloud.errors import ApiError, AuthError, one_line
from exporter.timestamps import parse_timestamp

log = logging.getLogger("exporter.cloud.providers")

METADATA_TOKEN_PATH = "/meta-data/latest/api/token"
METADATA_KEY_PATH = "/openstack/latest/securitykey"
METADATA_TOKEN_HEADER = "X-Metadata-Token"
METADATA_TOKEN_TTL_HEADER = "X-Metadata-Token-Ttl-Seconds"
METADATA_TOKEN_TTL = 6 * 3600  # the SDK's
_NO_AGENCY = "Please configure Cloud Service Agency first"

ID_TOKEN_PATH = "/v3.0/OS-AUTH/id-token/tokens"
SECURITY_TOKENS_PATH = "/v3.0/OS-CREDENTIAL/securitytokens"
IDP_HEADER = "X-Idp-Id"
OIDC_KEY_DURATION = 6 * 3600  # the SDK's FederalAccessor asks for 6 h keys
_JSON = {"Content-Type": "application/json;charset=UTF-8"}

# The SDK renews 40 minutes before expiry; a key that lives shorter is renewed at half its life.
DEFAULT_REFRESH_MARGIN = 40 * 60.0
# A key is used for at least this long even if the clocks disagree about its expiry.
_MIN_KEY_USE = 5.0


@dataclass(frozen=True)
class TemporaryKey:
    access_key: str
    secret_key: str = field(repr=False)
    security_token: str = field(repr=False)
    expires_at: float


class RenewingKey:
    """The current temporary key from ``fetch``, renewed before it expires. Thread-safe: one
    thread fetches at a time, the others wait for it and use its key.

    ``expires_at`` and ``renewal_failures`` are read by the collector (through ``auth``) so that
    an alert can fire before the last good key runs out.
    """

    def __init__(
        self,
        fetch: Callable[[], TemporaryKey],
        *,
        source: str,
        clock: Callable[[], float] = time.time,
        refresh_margin: float = DEFAULT_REFRESH_MARGIN,
        first_key: TemporaryKey | None = None,
    ) -> None:
        """``first_key``: one already fetched (at start-up), used until it is due for renewal."""
        self._fetch = fetch
        self.source = source
        self._clock = clock
        self._refresh_margin = refresh_margin
        self._lock = threading.Lock()
        self._key: TemporaryKey | None = None
        self._refresh_at = 0.0
        self._failures = 0
        if first_key is not None:
            self._use(first_key, clock())

    def __repr__(self) -> str:
        return f"RenewingKey(source={self.source!r})"

    @property
    def expires_at(self) -> float | None:
        key = self._key
        return key.expires_at if key is not None else None

    @property
    def renewal_failures(self) -> int:
        return self._failures

    def current(self, *, rejected: TemporaryKey | None = None) -> TemporaryKey:
        """A key that is not due for renewal; a fresh one when ``rejected`` is still current."""
        with self._lock:
            now = self._clock()
            key = self._key
            if key is not None and key != rejected and now < self._refresh_at:
                return key
            try:
                fresh = self._fetch()
            except AuthError:
                self._failures += 1
                if key is not None and key != rejected and now < key.expires_at:
                    # The old key still works: keep using it, and try again on the next request.
                    log.warning(
                        "renewing the key from %s failed; the current one is valid until %s",
                        self.source,
                        _iso(key.expires_at),
                    )
                    return key
                raise
            self._use(fresh, now)
            return fresh

    def _use(self, key: TemporaryKey, now: float) -> None:
        self._key = key
        self._refresh_at = renewal_time(now, key.expires_at, self._refresh_margin, _MIN_KEY_USE)
        log.info("obtained a temporary key from %s valid until %s", self.source, _iso(key.expires_at))


def renewal_time(now: float, expires_at: float, margin: float, minimum: float) -> float:
    """When to renew credentials obtained at ``now``: ``margin`` before they expire, but no earlier
    than half their lifetime (so ones issued for less than the margin are still reused), and not
    before ``minimum`` seconds have passed (should the clocks disagree about the expiry)."""
    lifetime = expires_at - now
    return now + max(lifetime - margin, lifetime / 2, minimum)


# --- ECS/BMS metadata ----------------------------------------------------------------------------


class MetadataKeys:
    """Fetches temporary keys from the instance's metadata service, as the SDK does."""

    def __init__(self, endpoint: str, http: httpx.Client) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._http = http
        self._session_token: str | None = None
        self._lock = threading.Lock()

    def __call__(self) -> TemporaryKey:
        with self._lock:
            if self._session_token is None:
                self._session_token = self._new_session_token(required=False)
            response = self._get_key()
            if response.status_code == 401 and _NO_AGENCY not in _text(response):
                self._session_token = self._new_session_token(required=True)
                response = self._get_key()
        if response.status_code != 200:
            raise self._failure(f"HTTP {response.status_code}{_detail(response)}")
        return parse_key(response.content, self._failure)

    def _get_key(self) -> Answer:
        headers = {METADATA_TOKEN_HEADER: self._session_token} if self._session_token else {}
        return self._request("GET", METADATA_KEY_PATH, headers)

    def _new_session_token(self, *, required: bool) -> str | None:
        headers = {METADATA_TOKEN_TTL_HEADER: str(METADATA_TOKEN_TTL)}
        response = self._request("PUT", METADATA_TOKEN_PATH, headers)
        if response.status_code == 200 and response.content.strip():
            return response.content.decode("utf-8", "replace").strip()
        if response.status_code in (404, 405, 503) and not required:
            return None  # a service without session tokens: ask for the key without one
        raise self._failure(f"session token: HTTP {response.status_code}{_detail(response)}")

    def _request(self, method: str, path: str, headers: dict[str, str]) -> Answer:
        return call(self._http, method, self.endpoint + path, headers, None, self._failure)

    def _failure(self, what: str) -> AuthError:
        return AuthError(f"metadata service {self.endpoint}: {what}")


# --- CCE workload identity (OIDC) -----------------------------------------------------------------


class OidcKeys:
    """Exchanges the service-account token file for temporary keys at IAM, as the SDK does."""

    def __init__(self, iam_endpoint: str, idp_id: str, id_token_file: Path, http: httpx.Client) -> None:
        self.iam_endpoint = iam_endpoint.rstrip("/")
        self._idp_id = idp_id
        self._id_token_file = id_token_file
        self._http = http

    def __call__(self) -> TemporaryKey:
        id_token = self._read_id_token()
        login: dict[str, Any] = {"auth": {"id_token": {"id": id_token}}}
        response = self._post(ID_TOKEN_PATH, login, {IDP_HEADER: self._idp_id})
        token = response.headers.get("X-Subject-Token")
        if response.status_code != 201 or not token:
            raise self._failure(f"id token exchange: HTTP {response.status_code}{_detail(response)}")
        exchange: dict[str, Any] = {
            "auth": {
                "identity": {
                    "methods": ["token"],
                    "token": {"id": token, "duration_seconds": OIDC_KEY_DURATION},
                }
            }
        }
        response = self._post(SECURITY_TOKENS_PATH, exchange, {})
        if response.status_code != 201:
            raise self._failure(f"temporary key: HTTP {response.status_code}{_detail(response)}")
        return parse_key(response.content, self._failure)

    def _read_id_token(self) -> str:
        # Read on every exchange: kubelet replaces the projected token well before it expires.
        try:
            token = self._id_token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as error:
            reason = getattr(error, "strerror", None) or type(error).__name__
            raise self._failure(f"cannot read the id token file {self._id_token_file} ({reason})") from None
        if not token:
            raise self._failure(f"the id token file {self._id_token_file} is empty")
        return token

    def _post(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> Answer:
        return call(self._http, "POST", self.iam_endpoint + path, {**_JSON, **headers}, body, self._failure)

    def _failure(self, what: str) -> AuthError:
        return AuthError(f"IAM {self.iam_endpoint} (workload identity {self._idp_id}): {what}")


# --- shared --------------------------------------------------------------------------------------


def parse_key(content: bytes, failure: Callable[[str], AuthError]) -> TemporaryKey:
    """The key in ``{"credential": {...}}``; ``failure`` builds the error for anything else."""
    try:
        document = json.loads(content)
        fields = document["credential"]
        access, secret, token = fields["access"], fields["secret"], fields["securitytoken"]
        expires_at = parse_timestamp(fields["expires_at"])
    except (ValueError, KeyError, TypeError):
        raise failure(
            "the answer is not a credential with access, secret, securitytoken and expires_at"
        ) from None
    if not all(isinstance(value, str) and value for value in (access, secret, token)):
        raise failure("the answer holds an empty or non-text access, secret or securitytoken")
    return TemporaryKey(access, secret, token, expires_at)


@dataclass(frozen=True)
class Answer:
    status_code: int
    headers: httpx.Headers
    content: bytes


def call(
    http: httpx.Client,
    method: str,
    url: str,
    headers: dict[str, str],
    body: dict[str, Any] | None,
    failure: Callable[[str], AuthError],
) -> Answer:
    """One request, its body read within ``bodies``' bound; every failure is ``failure(what)``."""
    try:
        with http.stream(method, url, headers={**ACCEPT_ENCODING, **headers}, json=body) as response:
            return Answer(response.status_code, response.headers, read_body(response))
    except httpx.TransportError as error:
        raise failure(f"unreachable ({type(error).__name__})") from None
    except ApiError as error:
        raise failure(str(error)) from None


def _text(response: Answer) -> str:
    return response.content.decode("utf-8", "replace")


def _detail(response: Answer) -> str:
    """A short, one-line excerpt of an error answer: never a whole body, which might hold a key."""
    text = _text(response)
    if '"secret"' in text or '"securitytoken"' in text:
        return ""
    return f" ({one_line(text[:120])})" if text.strip() else ""


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))
