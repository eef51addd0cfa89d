"""Basic auth and the configured response headers, around the whole WSGI app: every path, as in
exporter-toolkit (``/metrics``, ``/-/healthy``, ``/-/ready``, ``/``, whatever is added later).

Passwords are checked against bcrypt hashes, which cost tens of milliseconds each on purpose. As the
toolkit does, a verdict is cached so that a scrape every 15 s does not pay that each time; unlike
the toolkit, the cache key is an HMAC under a key made at start-up, so no password is kept in
memory in a form that gives it back. The cache is bounded, and checks run one at a time so that a
flood of wrong passwords takes one core, not all. An unknown user is checked against a hash of a
thrown-away password at the configured users' cost (the toolkit's fixed cost 10 tells users hashed
at 12 from unknown ones), so that timing does not tell which users exist. The password and the
``Authorization`` header are never logged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import bcrypt

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)

CACHE_SIZE = 100
# bcrypt reads 72 bytes at most; longer passwords are refused rather than cut (bcrypt 5 raises).
MAX_PASSWORD_BYTES = 72


class VerdictCache:
    """Whether a (user, hash, password) was right, for the last ``size`` right ones and the last
    ``size`` wrong ones; keys are HMACs. Kept apart so that a flood of wrong guesses cannot push
    out the right one, which would make Prometheus pay bcrypt again, queued behind the guesses."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self._size = size
        self._key = secrets.token_bytes(32)
        self._verdicts: dict[bool, OrderedDict[bytes, None]] = {True: OrderedDict(), False: OrderedDict()}
        self._lock = threading.Lock()

    def key(self, user: str, hashed: bytes, password: bytes) -> bytes:
        message = b"\0".join((user.encode("utf-8", "surrogateescape"), hashed, password))
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def get(self, key: bytes) -> bool | None:
        with self._lock:
            for verdict, keys in self._verdicts.items():
                if key in keys:
                    keys.move_to_end(key)
                    return verdict
            return None

    def put(self, key: bytes, verdict: bool) -> None:
        with self._lock:
            keys = self._verdicts[verdict]
            keys[key] = None
            keys.move_to_end(key)
            while len(keys) > self._size:
                keys.popitem(last=False)


class BasicAuth:
    """``users`` (name -> bcrypt hash) checked on every request, when there are any; ``headers`` on
    every answer."""

    def __init__(self, app: WSGIApplication, users: Mapping[str, str], headers: Mapping[str, str]) -> None:
        self._app = app
        self._users = {user: hashed.encode() for user, hashed in users.items()}
        self._unknown_user_hash = _unknown_user_hash(self._users.values())
        self._headers = list(headers.items())
        self._cache = VerdictCache()
        self._bcrypt = threading.Lock()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        def with_headers(status: str, headers: list[tuple[str, str]], exc_info: object = None) -> object:
            return start_response(status, headers + self._headers, exc_info)  # type: ignore[arg-type]

        if not self._users:
            return self._app(environ, with_headers)  # type: ignore[arg-type]
        credentials = _credentials(environ.get("HTTP_AUTHORIZATION", ""))
        if credentials is not None and self.check(*credentials):
            return self._app(environ, with_headers)  # type: ignore[arg-type]
        if credentials is not None:
            # The user's name, escaped and cut short (it comes from the client); never the password.
            user = credentials[0]
            log.warning("basic auth failed for user %r", user if len(user) <= 64 else user[:64] + "...")
        body = b"Unauthorized\n"
        with_headers(
            "401 Unauthorized",
            [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(body))),
                ("WWW-Authenticate", "Basic"),
            ],
        )
        return [body]

    def check(self, user: str, password: bytes) -> bool:
        known = user in self._users
        hashed = self._users.get(user, self._unknown_user_hash)
        key = self._cache.key(user, hashed, password)
        verdict = self._cache.get(key)
        if verdict is None:
            with self._bcrypt:
                matches = len(password) <= MAX_PASSWORD_BYTES and _bcrypt_matches(password, hashed)
            verdict = known and matches
            self._cache.put(key, verdict)
        return verdict


def _unknown_user_hash(hashes: Iterable[bytes]) -> bytes:
    """What an unknown user's password is checked against, so that it takes as long as a known
    user's: bcrypt of a random password, thrown away, at the highest cost among ``hashes``."""
    costs = [int(hashed[4:6]) for hashed in hashes]  # $2b$12$...: validated when the file was read
    if not costs:
        return b""  # no users: nobody is checked
    return bcrypt.hashpw(secrets.token_hex(16).encode(), bcrypt.gensalt(max(costs)))


def _bcrypt_matches(password: bytes, hashed: bytes) -> bool:
    # Python's bcrypt writes $2b$; htpasswd and Go's $2y$ and $2a$ hash the same way.
    if hashed.startswith((b"$2y$", b"$2a$")):
        hashed = b"$2b$" + hashed[4:]
    return bcrypt.checkpw(password, hashed)


def _credentials(header: str) -> tuple[str, bytes] | None:
    """User and password from ``Authorization: Basic ...``, or None when there are none."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        # WSGI hands headers over as latin-1; the credentials themselves are UTF-8 by convention.
        decoded = base64.b64decode(token.strip().encode("latin-1"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return None
    user, colon, password = decoded.partition(b":")
    if not colon:
        return None
    return user.decode("utf-8", "surrogateescape"), password
