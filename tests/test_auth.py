"""The auth classes: headers they set, token files, IAM tokens, renewal and the one-resend rule."""

from __future__ import annotations

import gzip
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import respx

from exporter.cloud import signing
from exporter.cloud.auth import AkSkAuth, IamTokenAuth, StaticTokenAuth, build_auth
from exporter.cloud.credentials import (
    AkSkCredentials,
    Credentials,
    IamPasswordCredentials,
    StaticTokenCredentials,
)
from exporter.cloud.errors import AuthError, BadResponseError, NetworkError, ServerError

API = "https://vod.test"
LIST_URL = f"{API}/v1/proj-1/asset/editing/tasks"
IAM = "https://iam.test"
TOKENS_URL = f"{IAM}/v3/auth/tokens"
NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z
SECRET = "s3cr3t-MARKER"


class FakeClock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def step(auth: httpx.Auth, request: httpx.Request) -> httpx.Request:
    """The request as the auth flow first sends it, without any network."""
    return next(auth.sync_auth_flow(request))


# --- AK/SK -------------------------------------------------------------------------------------


def test_aksk_sets_date_from_the_clock_and_signs_the_fixed_headers() -> None:
    auth = AkSkAuth("AK1", SECRET, security_token="temp-token", project_id="proj-1", clock=FakeClock())
    request = httpx.Request("GET", LIST_URL, params={"offset": "0", "limit": "100"})
    request.headers["User-Agent"] = "vod-exporter/test"

    sent = step(auth, request)

    assert sent.headers["X-Sdk-Date"] == "20231114T221320Z"
    assert sent.headers["X-Project-Id"] == "proj-1"
    assert sent.headers["X-Security-Token"] == "temp-token"
    parsed = signing.parse_authorization(sent.headers["Authorization"])
    assert parsed.access_key == "AK1"
    # User-Agent, Accept and the like may be rewritten by proxies: they must not be signed.
    assert parsed.signed_headers == ("host", "x-project-id", "x-sdk-date", "x-security-token")
    # What a gateway would compute from the request as sent.
    assert sent.headers["Authorization"] == signing.authorization(
        "AK1",
        SECRET,
        "GET",
        "/v1/proj-1/asset/editing/tasks",
        [("offset", "0"), ("limit", "100")],
        {name: sent.headers[name] for name in parsed.signed_headers},
    )
    assert SECRET not in repr(auth)


def test_aksk_without_token_or_project_signs_only_host_and_date() -> None:
    sent = step(AkSkAuth("AK1", "SK1", clock=FakeClock()), httpx.Request("GET", LIST_URL))
    assert "X-Project-Id" not in sent.headers
    assert "X-Security-Token" not in sent.headers
    assert signing.parse_authorization(sent.headers["Authorization"]).signed_headers == ("host", "x-sdk-date")


def test_aksk_signs_content_type_and_body_when_present() -> None:
    auth = AkSkAuth("AK1", "SK1", clock=FakeClock())
    sent = step(auth, httpx.Request("POST", LIST_URL, json={"a": 1}))
    assert signing.parse_authorization(sent.headers["Authorization"]).signed_headers == (
        "content-type",
        "host",
        "x-sdk-date",
    )
    other_body = step(auth, httpx.Request("POST", LIST_URL, json={"a": 2}))
    assert other_body.headers["Authorization"] != sent.headers["Authorization"]


def test_aksk_host_includes_a_non_default_port() -> None:
    auth = AkSkAuth("AK1", "SK1", clock=FakeClock())
    with_port = step(auth, httpx.Request("GET", "https://vod.test:8443/v1/p/asset/editing/tasks"))
    without = step(auth, httpx.Request("GET", "https://vod.test/v1/p/asset/editing/tasks"))
    assert with_port.headers["Host"] == "vod.test:8443"
    assert with_port.headers["Authorization"] != without.headers["Authorization"]


def test_aksk_dates_each_request_with_the_current_time() -> None:
    clock = FakeClock()
    auth = AkSkAuth("AK1", "SK1", clock=clock)
    first = step(auth, httpx.Request("GET", LIST_URL))
    clock.now += 61
    second = step(auth, httpx.Request("GET", LIST_URL))
    assert (first.headers["X-Sdk-Date"], second.headers["X-Sdk-Date"]) == (
        "20231114T221320Z",
        "20231114T221421Z",
    )
    assert first.headers["Authorization"] != second.headers["Authorization"]


def test_aksk_sends_the_query_in_canonical_form() -> None:
    # httpx writes a space as '+'; a gateway that reads '+' literally would then compute another
    # signature. The query on the wire is therefore the canonical one, as the SDK sends it.
    request = httpx.Request("GET", LIST_URL, params=[("task_id", "a b+c"), ("limit", "10")])
    sent = step(AkSkAuth("AK1", "SK1", clock=FakeClock()), request)
    assert sent.url.query == b"limit=10&task_id=a%20b%2Bc"


def test_aksk_keeps_a_query_that_is_already_canonical() -> None:
    # Rebuilding the URL was a fifth of the signing's CPU, paid on every page of every listing;
    # the client writes its queries canonical, so the signer leaves them as they are.
    request = httpx.Request("GET", LIST_URL + "?limit=100&offset=200")
    url = request.url
    sent = step(AkSkAuth("AK1", "SK1", clock=FakeClock()), request)
    assert sent.url is url


def test_aksk_through_a_client_reaches_the_api_signed() -> None:
    with respx.mock(assert_all_called=True) as router:
        route = router.get(LIST_URL).mock(return_value=httpx.Response(200, json={"total": 0, "tasks": []}))
        auth = AkSkAuth("AK1", "SK1", project_id="proj-1", clock=FakeClock())
        with httpx.Client(auth=auth) as client:
            assert client.get(LIST_URL, params={"limit": 100}).status_code == 200
    received = route.calls.last.request
    assert received.headers["Authorization"].startswith("SDK-HMAC-SHA256 Access=AK1, SignedHeaders=host;")
    assert received.headers["X-Sdk-Date"] == "20231114T221320Z"


# --- static token ------------------------------------------------------------------------------


def test_static_token_sets_the_header() -> None:
    sent = step(StaticTokenAuth(token=f" {SECRET}\n"), httpx.Request("GET", LIST_URL))
    assert sent.headers["X-Auth-Token"] == SECRET
    assert SECRET not in repr(StaticTokenAuth(token=SECRET))


def test_static_token_needs_exactly_one_source(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        StaticTokenAuth()
    with pytest.raises(ValueError, match="exactly one"):
        StaticTokenAuth(token="t", token_file=tmp_path / "t")


def write_token(path: Path, text: str, mtime_ns: int) -> None:
    path.write_text(text, encoding="utf-8")
    # An explicit mtime: two writes within the file system's timestamp granularity look the same.
    os.utime(path, ns=(mtime_ns, mtime_ns))


def test_token_file_is_reread_when_it_changes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "token"
    write_token(path, "token-one\n", 1_000_000_000_000)
    auth = StaticTokenAuth(token_file=path)
    assert step(auth, httpx.Request("GET", LIST_URL)).headers["X-Auth-Token"] == "token-one"

    write_token(path, "token-two-longer\n", 2_000_000_000_000)
    assert step(auth, httpx.Request("GET", LIST_URL)).headers["X-Auth-Token"] == "token-two-longer"

    with caplog.at_level(logging.WARNING, logger="exporter.cloud.auth"):
        write_token(path, "", 3_000_000_000_000)
        for _ in range(3):
            assert step(auth, httpx.Request("GET", LIST_URL)).headers["X-Auth-Token"] == "token-two-longer"
        path.unlink()
        assert step(auth, httpx.Request("GET", LIST_URL)).headers["X-Auth-Token"] == "token-two-longer"
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert str(path) in warnings[0].getMessage()
    assert "token-two" not in caplog.text

    write_token(path, "token-three\n", 4_000_000_000_000)
    assert step(auth, httpx.Request("GET", LIST_URL)).headers["X-Auth-Token"] == "token-three"


def test_token_file_swapped_in_by_rename_is_seen(tmp_path: Path) -> None:
    # Mounted secrets are replaced by a rename: same size, possibly the same mtime, new inode.
    path, staged = tmp_path / "token", tmp_path / "token.new"
    write_token(path, "aaaa", 1_000_000_000_000)
    auth = StaticTokenAuth(token_file=path)
    assert step(auth, httpx.Request("GET", LIST_URL)).headers["X-Auth-Token"] == "aaaa"
    write_token(staged, "bbbb", 1_000_000_000_000)
    os.replace(staged, path)
    assert step(auth, httpx.Request("GET", LIST_URL)).headers["X-Auth-Token"] == "bbbb"


def test_token_file_without_any_token_fails_as_auth(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("")
    with pytest.raises(AuthError, match="token file"):
        step(StaticTokenAuth(token_file=path), httpx.Request("GET", LIST_URL))


# --- IAM ---------------------------------------------------------------------------------------


def token_response(token: str, expires_at: str = "2023-11-15T22:13:20.123000Z") -> httpx.Response:
    return httpx.Response(
        201,
        headers={"X-Subject-Token": token},
        json={"token": {"expires_at": expires_at, "methods": ["password"]}},
    )


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as mock:
        yield mock


@pytest.fixture
def iam_http() -> Iterator[httpx.Client]:
    with httpx.Client() as client:
        yield client


def iam_auth(http: httpx.Client, clock: FakeClock | None = None) -> IamTokenAuth:
    return IamTokenAuth(
        iam_endpoint=IAM,
        username="alice",
        password=SECRET,
        domain="acme",
        project_id="proj-1",
        http=http,
        clock=clock or FakeClock(),
    )


def tokens_seen(route: respx.Route) -> list[str | None]:
    return [call.request.headers.get("X-Auth-Token") for call in route.calls]


def test_iam_logs_in_with_the_password_and_caches_the_token(
    router: respx.MockRouter, iam_http: httpx.Client
) -> None:
    iam = router.post(TOKENS_URL).mock(side_effect=[token_response("tok-1"), token_response("tok-2")])
    api = router.get(LIST_URL).mock(return_value=httpx.Response(200, json={"total": 0, "tasks": []}))
    auth = iam_auth(iam_http)
    with httpx.Client(auth=auth) as client:
        for _ in range(5):
            assert client.get(LIST_URL).status_code == 200

    assert iam.call_count == 1
    assert tokens_seen(api) == ["tok-1"] * 5
    assert json.loads(iam.calls.last.request.content) == {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": "alice", "password": SECRET, "domain": {"name": "acme"}}},
            },
            "scope": {"project": {"id": "proj-1"}},
        }
    }
    assert SECRET not in repr(auth)


def test_iam_token_is_renewed_an_hour_before_it_expires(
    router: respx.MockRouter, iam_http: httpx.Client
) -> None:
    # Issued at NOW, valid for 24 h (with the fraction IAM sends).
    iam = router.post(TOKENS_URL).mock(side_effect=[token_response("tok-1"), token_response("tok-2")])
    clock = FakeClock()
    auth = iam_auth(iam_http, clock)
    assert auth.token() == "tok-1"
    clock.now = NOW + 23 * 3600 - 1
    assert auth.token() == "tok-1"
    clock.now = NOW + 23 * 3600 + 1
    assert auth.token() == "tok-2"
    assert iam.call_count == 2


def test_api_401_renews_once_and_resends_once(router: respx.MockRouter, iam_http: httpx.Client) -> None:
    iam = router.post(TOKENS_URL).mock(side_effect=[token_response("tok-1"), token_response("tok-2")])
    api = router.get(LIST_URL).mock(
        side_effect=[
            httpx.Response(401, json={"error_code": "APIGW.0307", "error_msg": "token expired"}),
            httpx.Response(200, json={"total": 0, "tasks": []}),
        ]
    )
    with httpx.Client(auth=iam_auth(iam_http)) as client:
        assert client.get(LIST_URL).status_code == 200
    assert iam.call_count == 2
    assert tokens_seen(api) == ["tok-1", "tok-2"]


def test_second_401_is_returned_without_another_login(
    router: respx.MockRouter, iam_http: httpx.Client
) -> None:
    iam = router.post(TOKENS_URL).mock(
        side_effect=[token_response("tok-1"), token_response("tok-2"), token_response("tok-3")]
    )
    api = router.get(LIST_URL).mock(
        return_value=httpx.Response(401, json={"error_code": "APIGW.0301", "error_msg": "bad token"})
    )
    with httpx.Client(auth=iam_auth(iam_http)) as client:
        response = client.get(LIST_URL)
    assert response.status_code == 401
    assert response.json()["error_code"] == "APIGW.0301"
    assert iam.call_count == 2
    assert api.call_count == 2


def test_iam_rejecting_the_password_raises_auth_error_and_is_not_retried_at_once(
    router: respx.MockRouter, iam_http: httpx.Client
) -> None:
    iam = router.post(TOKENS_URL).mock(
        side_effect=[
            httpx.Response(
                401,
                headers={"X-Request-Id": "req-42"},
                json={"error_code": "IAM.0101", "error_msg": "The username or password is wrong."},
            ),
            token_response("tok-1"),
        ]
    )
    clock = FakeClock()
    auth = iam_auth(iam_http, clock)
    with pytest.raises(AuthError) as caught:
        auth.token()
    assert caught.value.error_code == "IAM.0101"
    assert caught.value.request_id == "req-42"
    assert caught.value.status == 401
    assert SECRET not in str(caught.value)

    # Each failed login counts towards locking the account: the next requests fail without one.
    clock.now += 299
    with pytest.raises(
        AuthError, match=r"IAM\.0101.*not asking IAM again before 2023-11-14T22:18:20Z"
    ) as held:
        auth.token()
    assert held.value.error_code == "IAM.0101"
    assert iam.call_count == 1
    clock.now += 2
    assert auth.token() == "tok-1"
    assert iam.call_count == 2


def test_iam_server_error_is_retried_by_the_next_request(
    router: respx.MockRouter, iam_http: httpx.Client
) -> None:
    iam = router.post(TOKENS_URL).mock(side_effect=[httpx.Response(503), token_response("tok-1")])
    auth = iam_auth(iam_http)
    with pytest.raises(ServerError):
        auth.token()
    assert auth.token() == "tok-1"
    assert iam.call_count == 2


def test_iam_unreachable_is_a_network_error_that_names_the_host(
    router: respx.MockRouter, iam_http: httpx.Client
) -> None:
    router.post(TOKENS_URL).mock(side_effect=httpx.ConnectTimeout("timed out"))
    router.get(LIST_URL).mock(return_value=httpx.Response(200))
    with httpx.Client(auth=iam_auth(iam_http)) as client, pytest.raises(NetworkError) as caught:
        client.get(LIST_URL)
    assert str(caught.value) == (
        f"IAM token request failed: cannot reach {httpx.URL(IAM).host}: ConnectTimeout: timed out"
    )


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(201, json={"token": {"expires_at": "2023-11-15T22:13:20Z"}}),
        httpx.Response(201, headers={"X-Subject-Token": "t"}, json={"token": {"expires_at": "tomorrow"}}),
        httpx.Response(201, headers={"X-Subject-Token": "t"}, json={"token": {}}),
        httpx.Response(201, headers={"X-Subject-Token": "t"}, content=b"<html>"),
        httpx.Response(
            200, headers={"X-Subject-Token": "t"}, json={"token": {"expires_at": "2023-11-15T22:13:20Z"}}
        ),
    ],
)
def test_unusable_iam_answers_are_bad_responses(
    router: respx.MockRouter, iam_http: httpx.Client, response: httpx.Response
) -> None:
    router.post(TOKENS_URL).mock(return_value=response)
    with pytest.raises(BadResponseError):
        iam_auth(iam_http).token()


def test_an_oversized_iam_answer_is_a_bad_response_and_not_inflated(
    router: respx.MockRouter, iam_http: httpx.Client
) -> None:
    # Valid JSON once inflated (trailing whitespace is allowed), so only a bound refuses it.
    document = b'{"token": {"expires_at": "2023-11-15T22:13:20Z"}}' + b" " * (16 * 1024 * 1024)
    bomb = httpx.Response(
        201,
        headers={"X-Subject-Token": "t", "Content-Encoding": "gzip"},
        content=gzip.compress(document, compresslevel=1),
    )
    iam = router.post(TOKENS_URL).mock(return_value=bomb)
    with pytest.raises(BadResponseError, match="IAM token request: the body is larger than 8 MiB"):
        iam_auth(iam_http).token()
    assert iam.calls[0].request.headers["Accept-Encoding"] == "gzip"


def test_threads_share_one_login(router: respx.MockRouter, iam_http: httpx.Client) -> None:
    threads_count = 8
    entered = threading.Semaphore(0)
    release = threading.Event()

    def slow_login(request: httpx.Request) -> httpx.Response:
        # Hold the first login open until every thread is waiting for a token.
        assert release.wait(timeout=10)
        return token_response("tok-1")

    iam = router.post(TOKENS_URL).mock(side_effect=slow_login)
    api = router.get(LIST_URL).mock(return_value=httpx.Response(200, json={"total": 0, "tasks": []}))

    class CountingIamTokenAuth(IamTokenAuth):
        def token(self, *, rejected: str | None = None) -> str:
            entered.release()
            return super().token(rejected=rejected)

    auth = CountingIamTokenAuth(
        iam_endpoint=IAM,
        username="alice",
        password=SECRET,
        domain="acme",
        project_id="proj-1",
        http=iam_http,
        clock=FakeClock(),
    )
    statuses: list[int] = []
    with httpx.Client(auth=auth) as client:
        workers = [
            threading.Thread(target=lambda: statuses.append(client.get(LIST_URL).status_code))
            for _ in range(threads_count)
        ]
        for worker in workers:
            worker.start()
        deadline = time.monotonic() + 10
        for _ in range(threads_count):
            assert entered.acquire(timeout=max(0.0, deadline - time.monotonic()))
        release.set()
        for worker in workers:
            worker.join(timeout=10)
    assert statuses == [200] * threads_count
    assert iam.call_count == 1
    assert tokens_seen(api) == ["tok-1"] * threads_count


# --- build_auth --------------------------------------------------------------------------------


def test_build_auth_picks_the_class_and_always_sends_the_project(iam_http: httpx.Client) -> None:
    def build(credentials: Credentials) -> httpx.Auth:
        return build_auth(
            credentials, project_id="proj-9", iam_endpoint=IAM, iam_http=iam_http, clock=FakeClock()
        )

    aksk = build(AkSkCredentials("AK", "SK", project_id="other"))
    assert isinstance(aksk, AkSkAuth)
    assert step(aksk, httpx.Request("GET", LIST_URL)).headers["X-Project-Id"] == "proj-9"
    token = build(StaticTokenCredentials(token="t", token_file=None))
    assert step(token, httpx.Request("GET", LIST_URL)).headers["X-Auth-Token"] == "t"
    assert isinstance(build(IamPasswordCredentials("alice", "acme", SECRET)), IamTokenAuth)
