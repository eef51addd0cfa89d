"""Basic auth as a WSGI wrapper, stepped without a server: bcrypt's cost paid once per credential,
htpasswd's ``$2y$`` hashes, unknown users as slow as known ones."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator

import bcrypt
import pytest

from exporter.serving import basic_auth
from exporter.serving.basic_auth import BasicAuth

HASH = bcrypt.hashpw(b"secret", bcrypt.gensalt(4)).decode()


def app(environ: dict[str, object], start_response: object) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])  # type: ignore[operator]
    return [b"metrics\n"]


def call(auth: BasicAuth, user: str | None, password: str = "") -> str:
    environ: dict[str, object] = {"PATH_INFO": "/metrics"}
    if user is not None:
        environ["HTTP_AUTHORIZATION"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    statuses: list[str] = []
    auth(environ, lambda status, headers, exc_info=None: statuses.append(status))  # type: ignore[arg-type]
    return statuses[0]


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """The hashes bcrypt was asked to check against, in order."""
    seen: list[bytes] = []
    real = bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        seen.append(hashed)
        return real(password, hashed)

    monkeypatch.setattr(basic_auth.bcrypt, "checkpw", counting)
    yield seen


def test_bcrypt_runs_once_per_credential_not_per_scrape(checks: list[bytes]) -> None:
    auth = BasicAuth(app, {"prometheus": HASH}, {})
    assert [call(auth, "prometheus", "secret") for _ in range(5)] == ["200 OK"] * 5
    assert [call(auth, "prometheus", "wrong") for _ in range(3)] == ["401 Unauthorized"] * 3
    assert len(checks) == 2


def test_htpasswd_hashes_are_read(checks: list[bytes]) -> None:
    htpasswd = "$2y$" + HASH[4:]  # what htpasswd -B writes: the same algorithm, another prefix
    auth = BasicAuth(app, {"prometheus": htpasswd}, {})
    assert call(auth, "prometheus", "secret") == "200 OK"
    assert call(auth, "prometheus", "Secret") == "401 Unauthorized"


def test_an_unknown_user_costs_a_bcrypt_check_too(checks: list[bytes]) -> None:
    auth = BasicAuth(app, {"prometheus": HASH}, {})
    assert call(auth, "mallory", "secret") == "401 Unauthorized"
    assert len(checks) == 1 and checks[0] != HASH.encode()
    # At the users' own cost: a check at another cost takes another time, which tells who exists.
    assert checks[0][4:7] == HASH.encode()[4:7] == b"04$"


@pytest.mark.parametrize(
    "header", ["Bearer abc", "Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode(), ""]
)
def test_malformed_credentials_are_refused(header: str) -> None:
    auth = BasicAuth(app, {"prometheus": HASH}, {})
    statuses: list[str] = []
    auth(
        {"HTTP_AUTHORIZATION": header},
        lambda status, headers, exc_info=None: statuses.append(status),  # type: ignore[arg-type]
    )
    assert statuses == ["401 Unauthorized"]


def test_a_password_longer_than_bcrypt_reads_is_refused() -> None:
    long_hash = bcrypt.hashpw(b"x" * 72, bcrypt.gensalt(4)).decode()
    auth = BasicAuth(app, {"prometheus": long_hash}, {})
    assert call(auth, "prometheus", "x" * 72) == "200 OK"
    # bcrypt 4 would cut this to the 72 bytes above and let it in.
    assert call(auth, "prometheus", "x" * 73) == "401 Unauthorized"


def test_without_users_every_request_passes() -> None:
    assert call(BasicAuth(app, {}, {}), None) == "200 OK"


def test_the_cache_is_bounded_and_keeps_no_password() -> None:
    cache = basic_auth.VerdictCache(size=3)
    keys = [cache.key("u", b"hash", f"password-{i}".encode()) for i in range(5)]
    for key in keys:
        cache.put(key, True)
    assert [cache.get(key) for key in keys] == [None, None, True, True, True]
    assert all(b"password" not in key for key in keys)


def test_a_failed_login_logs_a_bounded_line(caplog: pytest.LogCaptureFixture) -> None:
    """The user's name comes from the client, up to waitress' 256 KiB of headers: a flood of
    failed logins must not write that much log each."""
    auth = BasicAuth(app, {"prometheus": HASH}, {})
    with caplog.at_level(logging.WARNING):
        assert call(auth, "m" * 100_000 + "\n", "secret") == "401 Unauthorized"
    [line] = caplog.messages
    assert line.startswith("basic auth failed for user 'mmmm") and len(line) < 200


def test_a_flood_of_wrong_passwords_does_not_evict_the_right_one(checks: list[bytes]) -> None:
    """Else each flood of guesses makes Prometheus pay bcrypt again, queued behind the guesses."""
    auth = BasicAuth(app, {"prometheus": HASH}, {})
    assert call(auth, "prometheus", "secret") == "200 OK"
    for guess in range(basic_auth.CACHE_SIZE + 1):
        assert call(auth, "prometheus", f"guess-{guess}") == "401 Unauthorized"
    checks.clear()
    assert call(auth, "prometheus", "secret") == "200 OK"
    assert checks == []
