"""Authentication of API requests, as ``httpx.Auth`` classes.

One ``httpx.Client`` is shared by the client's worker threads, so every class here is thread-safe:
per-request state lives in the ``auth_flow`` generator, shared state behind a lock.

- ``AkSkAuth`` signs each request (SDK-HMAC-SHA256, see ``signing``).
- ``StaticTokenAuth`` sends a token given as is, or read from a file that is re-read as it changes.
- ``IamTokenAuth`` logs in to IAM with a password, caches the token and renews it well before
  it expires.
- ``TemporaryKeyAuth`` signs with temporary keys from the platform (ECS metadata, CCE workload
  identity; see ``providers``), renewed before they expire.

The two that renew something expose ``expires_at`` and ``renewal_failures`` (``renewal_state``),
which the collector publishes so that an alert can fire before the credentials run out.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Generator
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qsl

import httpx

from exporter.cloud import signing
from exporter.cloud.bodies import ACCEPT_ENCODING, read_body
from exporter.cloud.credentials import (
    AkSkCredentials,
    Credentials,
    IamPasswordCredentials,
    MetadataCredentials,
    OidcCredentials,
    StaticTokenCredentials,
)
from exporter.cloud.errors import ApiError, AuthError, BadResponseError, classify_response, unreachable
from exporter.cloud.providers import MetadataKeys, OidcKeys, RenewingKey, TemporaryKey, renewal_time
from exporter.timestamps import parse_timestamp

log = logging.getLogger("exporter.cloud.auth")

TOKEN_HEADER = "X-Auth-Token"
PROJECT_ID_HEADER = "X-Project-Id"
SECURITY_TOKEN_HEADER = "X-Security-Token"


class AkSkAuth(httpx.Auth):
    """Signs every request with the access key pair.

    Signed: ``Host``, ``X-Sdk-Date``, ``X-Project-Id`` and ``X-Security-Token`` when sent, and
    ``Content-Type`` when the request has one. Headers that proxies may rewrite (``User-Agent``,
    ``Accept``, ``Connection``...) are left out so that the signature survives them.

    The query string is sent in its canonical form, exactly as the official SDK sends it: spaces
    as ``%20`` and ``+`` as ``%2B``, so that the gateway never has to guess whether a ``+`` means
    a space when it checks the signature.
    """

    requires_request_body = True

    def __init__(
        self,
        access_key: str,
        secret_key: str,
        *,
        security_token: str | None = None,
        project_id: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._access_key = access_key
        self._secret_key = secret_key
        self._security_token = security_token
        self._project_id = project_id
        self._clock = clock

    def __repr__(self) -> str:
        return f"AkSkAuth(access_key={self._access_key!r}, project_id={self._project_id!r})"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self.sign(request)
        yield request

    def sign(self, request: httpx.Request) -> None:
        """Add ``X-Sdk-Date``, the optional project and token headers and ``Authorization``."""
        sdk_date = signing.format_sdk_date(datetime.fromtimestamp(self._clock(), timezone.utc))
        request.headers[signing.DATE_HEADER] = sdk_date
        if self._project_id:
            request.headers[PROJECT_ID_HEADER] = self._project_id
        if self._security_token:
            request.headers[SECURITY_TOKEN_HEADER] = self._security_token

        signed = {
            "Host": request.headers.get("Host") or request.url.netloc.decode("ascii"),
            signing.DATE_HEADER: sdk_date,
        }
        for name in (PROJECT_ID_HEADER, SECURITY_TOKEN_HEADER, "Content-Type"):
            if name in request.headers:
                signed[name] = request.headers[name]

        query = request.url.query
        pairs = parse_qsl(query.decode("utf-8"), keep_blank_values=True, encoding="utf-8")
        if pairs:
            canonical = signing.canonical_query(pairs).encode("ascii")
            if canonical != query:  # rebuilding the URL costs more than the rest of the signing
                request.url = request.url.copy_with(query=canonical)
        request.headers["Authorization"] = signing.authorization(
            self._access_key,
            self._secret_key,
            request.method,
            _encoded_path(request.url),
            pairs,
            signed,
            request.content,
        )


def _encoded_path(url: httpx.URL) -> str:
    # The path as it goes on the wire. ``url.path`` is already decoded, and decoding it a second
    # time (as the canonical URI does) would turn a literal "%41" in a segment into "A".
    return url.raw_path.decode("utf-8").partition("?")[0]


class StaticTokenAuth(httpx.Auth):
    """Sends ``X-Auth-Token``: a fixed token, or the contents of a file.

    The file is checked on every request (one ``stat``) and re-read when it changes, so a token
    rotated by a sidecar or a mounted secret takes effect without a restart. A file that turns
    unreadable or empty leaves the last good token in use.
    """

    def __init__(self, *, token: str | None = None, token_file: Path | None = None) -> None:
        if (token is None) == (token_file is None):
            raise ValueError("give exactly one of token and token_file")
        self._token = token.strip() if token is not None else None
        self._token_file = token_file
        self._lock = threading.Lock()
        self._file_version: tuple[int, int, int] | None = None
        self._warned = False

    def __repr__(self) -> str:
        return f"StaticTokenAuth(token_file={self._token_file!r})"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers[TOKEN_HEADER] = self.current_token()
        yield request

    def current_token(self) -> str:
        if self._token_file is not None:
            with self._lock:
                self._reload(self._token_file)
        token = self._token
        if token is None:
            raise AuthError(f"no token: the token file {self._token_file} is unreadable or empty")
        return token

    def _reload(self, path: Path) -> None:
        try:
            stat = path.stat()
            # The inode changes when a mounted secret is swapped in by a rename.
            version = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
            if version == self._file_version:
                return
            token = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as error:
            self._warn_once("cannot read the token file %s (%s); keeping the last token", path, error)
            return
        if not token:
            self._warn_once("the token file %s is empty; keeping the last token", path)
            return
        if self._token is not None and token != self._token:
            log.info("token file %s changed; using the new token", path)
        self._token = token
        self._file_version = version
        self._warned = False

    def _warn_once(self, message: str, *args: object) -> None:
        if not self._warned:
            log.warning(message, *args)
            self._warned = True


class IamTokenAuth(httpx.Auth):
    """Sends ``X-Auth-Token`` with a token from an IAM password login, renewed before it expires.

    One thread logs in at a time; the others wait for it and use its token. When the API answers
    401 the token is renewed once and the request sent once more; a second 401 is returned as it
    is, because five failed authentications in a row lock the account. For the same reason, after
    IAM rejects the password no new login is tried for ``auth_failure_hold`` seconds: the password
    cannot change without a restart, and each attempt would count towards the lock.
    """

    def __init__(
        self,
        *,
        iam_endpoint: str,
        username: str,
        password: str,
        domain: str,
        project_id: str,
        http: httpx.Client,
        clock: Callable[[], float] = time.time,
        refresh_margin: float = 3600.0,
        auth_failure_hold: float = 300.0,
    ) -> None:
        self._url = iam_endpoint.rstrip("/") + "/v3/auth/tokens"
        self._username = username
        self._password = password
        self._domain = domain
        self._project_id = project_id
        self._http = http
        self._clock = clock
        self._refresh_margin = refresh_margin
        self._auth_failure_hold = auth_failure_hold
        self._lock = threading.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0
        self._rejection: AuthError | None = None
        self._rejection_until = 0.0
        self._expires_at: float | None = None
        self._failures = 0

    @property
    def expires_at(self) -> float | None:
        """When the token in use expires; None before the first login."""
        return self._expires_at

    @property
    def renewal_failures(self) -> int:
        return self._failures

    def __repr__(self) -> str:
        return f"IamTokenAuth(url={self._url!r}, username={self._username!r}, domain={self._domain!r})"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self.token()
        request.headers[TOKEN_HEADER] = token
        response = yield request
        if response.status_code != 401:
            return
        log.info("the API rejected the IAM token (HTTP 401); renewing it once")
        request.headers[TOKEN_HEADER] = self.token(rejected=token)
        yield request

    def token(self, *, rejected: str | None = None) -> str:
        """A valid token, logging in first when there is none, it is due for renewal, or it is
        ``rejected`` (unless another thread has already replaced that one)."""
        with self._lock:
            now = self._clock()
            if self._token is not None and self._token != rejected and now < self._refresh_at:
                return self._token
            if self._rejection is not None and now < self._rejection_until:
                # IAM rejected the password recently: fail the same way rather than try again.
                raise _copy(self._rejection, f"not asking IAM again before {_iso(self._rejection_until)}")
            try:
                token, expires_at = self._log_in()
            except AuthError as error:
                self._failures += 1
                self._rejection = error
                self._rejection_until = now + self._auth_failure_hold
                raise
            except ApiError:
                self._failures += 1
                raise
            self._rejection = None
            self._expires_at = expires_at
            self._token = token
            self._refresh_at = renewal_time(now, expires_at, self._refresh_margin, _MIN_TOKEN_USE)
            log.info("obtained an IAM token for %s valid until %s", self._username, _iso(expires_at))
            return token

    def _log_in(self) -> tuple[str, float]:
        body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {
                            "name": self._username,
                            "password": self._password,
                            "domain": {"name": self._domain},
                        }
                    },
                },
                "scope": {"project": {"id": self._project_id}},
            }
        }
        try:
            with self._http.stream("POST", self._url, json=body, headers=ACCEPT_ENCODING) as response:
                content = read_body(response)
        except httpx.TransportError as error:
            failure = unreachable(httpx.URL(self._url).host, error)
            failure.args = (f"IAM token request failed: {failure.args[0]}",)
            raise failure from error
        except BadResponseError as error:
            raise _from_iam(error) from None
        request_id = response.headers.get("X-Request-Id")
        if response.status_code != 201:
            raise _from_iam(classify_response(response.status_code, content, request_id))
        token = response.headers.get("X-Subject-Token")
        if not token:
            raise BadResponseError(
                "IAM token request: HTTP 201 without an X-Subject-Token header",
                status=201,
                request_id=request_id,
            )
        try:
            expires_at = parse_timestamp(json.loads(content)["token"]["expires_at"])
        except (ValueError, KeyError, TypeError):
            raise BadResponseError(
                "IAM token request: HTTP 201 without a valid token.expires_at",
                status=201,
                request_id=request_id,
            ) from None
        return token, expires_at


class TemporaryKeyAuth(httpx.Auth):
    """Signs every request with the current temporary key of ``keys`` and its security token.

    When the API answers 401, the key is renewed and, if the platform hands out a different one,
    the request is signed and sent once more. The 401's body is not read here: that would buffer
    every answer without the bound ``bodies`` keeps. A key the platform still hands out is not
    sent again, so a rejected key never counts twice towards the AK lock-out.
    """

    requires_request_body = True

    def __init__(
        self, keys: RenewingKey, *, project_id: str | None, clock: Callable[[], float] = time.time
    ) -> None:
        self._keys = keys
        self._project_id = project_id
        self._clock = clock

    def __repr__(self) -> str:
        return f"TemporaryKeyAuth(source={self._keys.source!r}, project_id={self._project_id!r})"

    @property
    def expires_at(self) -> float | None:
        return self._keys.expires_at

    @property
    def renewal_failures(self) -> int:
        return self._keys.renewal_failures

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        key = self._keys.current()
        self._sign(request, key)
        response = yield request
        if response.status_code != 401:
            return
        fresh = self._keys.current(rejected=key)
        if fresh.access_key == key.access_key and fresh.security_token == key.security_token:
            return
        log.info("the API rejected the temporary key (HTTP 401); signing once more with a renewed one")
        self._sign(request, fresh)
        yield request

    def _sign(self, request: httpx.Request, key: TemporaryKey) -> None:
        AkSkAuth(
            key.access_key,
            key.secret_key,
            security_token=key.security_token,
            project_id=self._project_id,
            clock=self._clock,
        ).sign(request)


def renewal_state(auth: httpx.Auth) -> IamTokenAuth | TemporaryKeyAuth | None:
    """``auth`` when it renews credentials that expire (it has ``expires_at`` and
    ``renewal_failures``); None when nothing it holds expires."""
    return auth if isinstance(auth, IamTokenAuth | TemporaryKeyAuth) else None


# A token is always used for at least this long, even if the clocks disagree about its expiry:
# logging in on every request would be worse than an occasional 401.
_MIN_TOKEN_USE = 60.0


def _from_iam(error: ApiError) -> ApiError:
    """``error`` with a message that says it came from the IAM login, not from the VOD API."""
    error.args = (f"IAM token request: {error.args[0]}",)
    return error


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _copy(error: AuthError, note: str) -> AuthError:
    # A fresh exception for each thread: raising one object from several threads at once would
    # tangle their tracebacks.
    return type(error)(
        f"{error.args[0] if error.args else error}; {note}",
        status=error.status,
        error_code=error.error_code,
        error_msg=error.error_msg,
        request_id=error.request_id,
        hint=error.hint,
    )


def build_auth(
    credentials: Credentials,
    *,
    project_id: str,
    iam_endpoint: str,
    iam_http: httpx.Client,
    metadata_http: httpx.Client | None = None,
    clock: Callable[[], float] = time.time,
) -> httpx.Auth:
    """The ``httpx.Auth`` for ``credentials``. ``iam_http`` is used only to log in to IAM (and to
    exchange a workload identity), never for API calls, so that logging in does not pass through
    this auth again. ``metadata_http`` asks the metadata service (default: ``iam_http``).

    Other keyword arguments may be added, always with defaults."""
    if isinstance(credentials, AkSkCredentials):
        return AkSkAuth(
            credentials.access_key,
            credentials.secret_key,
            security_token=credentials.security_token,
            project_id=project_id,
            clock=clock,
        )
    if isinstance(credentials, StaticTokenCredentials):
        return StaticTokenAuth(token=credentials.token, token_file=credentials.token_file)
    if isinstance(credentials, IamPasswordCredentials):
        return IamTokenAuth(
            iam_endpoint=iam_endpoint,
            username=credentials.username,
            password=credentials.password,
            domain=credentials.domain,
            project_id=project_id,
            http=iam_http,
            clock=clock,
        )
    if isinstance(credentials, MetadataCredentials):
        fetch = MetadataKeys(credentials.endpoint, metadata_http or iam_http)
        keys = RenewingKey(
            fetch,
            source=f"the metadata service {fetch.endpoint}",
            clock=clock,
            first_key=credentials.first_key,
        )
        return TemporaryKeyAuth(keys, project_id=project_id, clock=clock)
    if isinstance(credentials, OidcCredentials):
        exchange = OidcKeys(iam_endpoint, credentials.idp_id, credentials.id_token_file, iam_http)
        keys = RenewingKey(exchange, source=f"IAM {exchange.iam_endpoint} (workload identity)", clock=clock)
        return TemporaryKeyAuth(keys, project_id=project_id, clock=clock)
    raise TypeError(f"unsupported credentials {type(credentials).__name__}")
