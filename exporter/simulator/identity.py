"""Who may call the simulated API: AK/SK signatures, IAM password tokens, and the AK lock-out.

Every key, user and token belongs to one account (``accounts.Account``); ``authenticate`` says
which, and which of its projects the credentials reach: all of the account's for an AK/SK, the one
it was scoped to for a token.

The signature is checked with ``exporter.cloud.signing``, over exactly the headers the client says it
signed, the path and query as received, and the body. Like the real gateway it allows 15 minutes
of clock skew and locks an access key for 5 minutes after 5 failed authentications in a row.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from exporter.cloud.signing import (
    DATE_HEADER,
    canonical_request,
    parse_authorization,
    parse_sdk_date,
    signature,
)
from exporter.simulator import rejections
from exporter.simulator.rejections import Rejected

if TYPE_CHECKING:
    from exporter.simulator.accounts import Account

MAX_CLOCK_SKEW = 15 * 60.0
DEFAULT_TOKEN_LIFETIME = 24 * 3600.0
_DATE_KEY = DATE_HEADER.lower()


@dataclass(frozen=True)
class IamUser:
    """A user of the simulated account who may ask IAM for a token with a password."""

    name: str
    password: str = field(repr=False)
    domain: str = ""  # the account name; defaults to the user name (the account's own user)

    @property
    def domain_name(self) -> str:
        return self.domain or self.name


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_at: float
    body: bytes


@dataclass(frozen=True)
class Caller:
    """Whose credentials a request carries: the account, and the project ids they reach."""

    account: str
    project_ids: frozenset[str]


@dataclass
class _Failures:
    in_a_row: int = 0
    locked_until: float = 0.0


class Identity:
    """Checks a request's credentials and issues tokens. Safe to share between request threads."""

    def __init__(
        self,
        *,
        accounts: Sequence[Account],
        token_lifetime: float = DEFAULT_TOKEN_LIFETIME,
        clock: Callable[[], float] = time.time,
        lockout_after: int = 5,
        lockout_seconds: float = 300.0,
    ) -> None:
        self._accounts = {account.name: account for account in accounts}
        self._projects = {
            account.name: frozenset(project.id for project in account.projects) for account in accounts
        }
        # access key -> (secret key, account name); (domain, user name) -> (user, account name)
        self._access_keys = {
            account.access_key: (account.secret_key, account.name)
            for account in accounts
            if account.access_key and account.secret_key
        }
        self._users = {
            (user.domain_name, user.name): (user, account.name)
            for account in accounts
            for user in account.iam_users
        }
        self._token_lifetime = token_lifetime
        self._clock = clock
        self._lockout_after = lockout_after
        self._lockout_seconds = lockout_seconds
        self._lock = threading.Lock()
        self._failures: dict[str, _Failures] = {}
        self._tokens: dict[str, tuple[float, Caller]] = {}  # token -> (expires at, its caller)

    def authenticate(
        self,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]],
        headers: Mapping[str, str],
        body: bytes,
    ) -> Caller:
        """Whose credentials the request carries; raises ``Rejected`` (401) for bad ones.

        ``headers`` has lower-case names.
        """
        token = headers.get("x-auth-token")
        if token is not None:
            return self._check_token(token)
        authorization = headers.get("authorization")
        if authorization is None:
            raise rejections.bad_credentials("x-auth-token not found")
        return self._check_signature(method, path, query, headers, body, authorization)

    def _check_token(self, token: str) -> Caller:
        with self._lock:
            entry = self._tokens.get(token)
        if entry is None:
            raise rejections.bad_credentials("decrypt token fail")
        expires_at, caller = entry
        if self._clock() >= expires_at:
            raise rejections.token_expired()
        return caller

    def _check_signature(
        self,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]],
        headers: Mapping[str, str],
        body: bytes,
        authorization: str,
    ) -> Caller:
        try:
            parsed = parse_authorization(authorization)
        except ValueError as error:
            raise rejections.bad_credentials(f"verify aksk signature fail, {error}") from None
        access_key = parsed.access_key
        known = self._access_keys.get(access_key)
        if known is None:
            raise rejections.bad_credentials(f"Get secretKey failed,ak:{_mask(access_key)},err:ak not exist")
        secret_key, account = known
        now = self._clock()
        with self._lock:
            failures = self._failures.setdefault(access_key, _Failures())
            if now < failures.locked_until:
                raise rejections.bad_credentials("AK access failed to reach the limit,forbidden.")
        try:
            self._verify(
                method, path, query, headers, body, parsed.signed_headers, parsed.signature, secret_key, now
            )
        except Rejected:
            with self._lock:
                failures.in_a_row += 1
                if self._lockout_after and failures.in_a_row >= self._lockout_after:
                    failures.in_a_row = 0
                    failures.locked_until = now + self._lockout_seconds
            raise
        with self._lock:
            failures.in_a_row = 0
        return Caller(account, self._projects[account])

    @staticmethod
    def _verify(
        method: str,
        path: str,
        query: Sequence[tuple[str, str]],
        headers: Mapping[str, str],
        body: bytes,
        signed_headers: Sequence[str],
        claimed: str,
        secret_key: str,
        now: float,
    ) -> None:
        names = [name.lower() for name in signed_headers]
        if "host" not in names or _DATE_KEY not in names:
            raise rejections.bad_credentials("verify aksk signature fail, host and x-sdk-date must be signed")
        missing = [name for name in names if name not in headers]
        if missing:
            raise rejections.bad_credentials(
                f"verify aksk signature fail, signed header {missing[0]} not found"
            )
        sdk_date = headers[_DATE_KEY]
        try:
            signed_at = parse_sdk_date(sdk_date).timestamp()
        except ValueError:
            raise rejections.bad_credentials("verify aksk signature fail, x-sdk-date format error") from None
        if abs(now - signed_at) > MAX_CLOCK_SKEW:
            raise rejections.bad_credentials("calc ak sk signature fail:signature expired")
        text, _ = canonical_request(method, path, query, {name: headers[name] for name in names}, body)
        expected = signature(secret_key, sdk_date, text)
        if not hmac.compare_digest(expected.encode(), claimed.encode()):
            raise rejections.bad_credentials("verify aksk signature fail")

    def issue_token(self, body: bytes) -> IssuedToken:
        """Answer ``POST /v3/auth/tokens`` (password method, project scope)."""
        try:
            document = json.loads(body)
            auth = document["auth"]
            methods = auth["identity"]["methods"]
            user_fields = auth["identity"]["password"]["user"]
            name, password = user_fields["name"], user_fields["password"]
            domain = user_fields["domain"]["name"]
            project_id = auth["scope"]["project"]["id"]
        except (ValueError, KeyError, TypeError):
            raise rejections.iam_error(400, "Bad Request", "The request body is invalid.") from None
        if "password" not in methods or not all(
            isinstance(v, str) for v in (name, password, domain, project_id)
        ):
            raise rejections.iam_error(400, "Bad Request", "The request body is invalid.")
        known = self._users.get((domain, name))
        if known is None or not hmac.compare_digest(known[0].password.encode(), password.encode()):
            raise rejections.iam_error(401, "Unauthorized", "The username or password is wrong.")
        user, account = known
        project = next((p for p in self._accounts[account].projects if p.id == project_id), None)
        if project is None:
            raise rejections.iam_error(
                401, "Unauthorized", "The request you have made requires authentication."
            )
        issued_at = self._clock()
        expires_at = issued_at + self._token_lifetime
        token = "MIIT" + secrets.token_urlsafe(192)
        with self._lock:
            self._tokens[token] = (expires_at, Caller(account, frozenset({project_id})))
        document = {"token": _token_document(user, project_id, project.iam_name, issued_at, expires_at)}
        return IssuedToken(token, expires_at, json.dumps(document).encode())


def _token_document(
    user: IamUser, project_id: str, project_name: str, issued_at: float, expires_at: float
) -> dict[str, Any]:
    domain = {"id": stable_id("domain", user.domain_name), "name": user.domain_name}
    return {
        "expires_at": _iam_time(expires_at),
        "issued_at": _iam_time(issued_at),
        "methods": ["password"],
        "catalog": [],
        "roles": [{"id": stable_id("role", "vod_adm"), "name": "vod_adm"}],
        "project": {"id": project_id, "name": project_name, "domain": domain},
        "user": {
            "id": stable_id("user", f"{user.domain_name}/{user.name}"),
            "name": user.name,
            "domain": domain,
            "password_expires_at": "",
        },
    }


def _iam_time(moment: float) -> str:
    # IAM writes microseconds (2020-09-01T18:50:20.123000Z), unlike the VOD API.
    return datetime.fromtimestamp(moment, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def stable_id(kind: str, name: str) -> str:
    """An IAM-style id (32 hex characters), the same for the same name on every run."""
    return hashlib.sha256(f"{kind}:{name}".encode()).hexdigest()[:32]


def _mask(access_key: str) -> str:
    return access_key[:4] + "*" * max(0, len(access_key) - 4)
