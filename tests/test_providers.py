"""Temporary keys from the platform: the metadata service, the workload-identity exchange, their
renewal, and the auth that signs with them. HTTP mocked with respx; no sockets."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import respx

from exporter.cloud.auth import IamTokenAuth, TemporaryKeyAuth, build_auth, renewal_state
from exporter.cloud.credentials import MetadataCredentials, OidcCredentials
from exporter.cloud.errors import AuthError, ServerError
from exporter.cloud.providers import MetadataKeys, OidcKeys, RenewingKey, TemporaryKey
from tests.conftest import FakeClock

METADATA = "http://metadata.test"
KEY_URL = f"{METADATA}/openstack/latest/securitykey"
SESSION_URL = f"{METADATA}/meta-data/latest/api/token"
IAM = "https://iam.test"
API = "https://vod.test/v1/proj-1/asset/editing/tasks"
NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z
SECRET = "s3cr3t-MARKER"


def credential(access: str = "TEMPAK1", expires: str = "2023-11-15T00:13:20.000000Z") -> bytes:
    fields = {"access": access, "secret": SECRET, "securitytoken": f"token-{access}", "expires_at": expires}
    return json.dumps({"credential": fields}).encode()


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as mock:
        yield mock


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client() as client:
        yield client


# --- the metadata service ------------------------------------------------------------------------


def test_metadata_key_is_asked_for_with_a_session_token(router: respx.MockRouter, http: httpx.Client) -> None:
    session = router.put(SESSION_URL).respond(200, text="session-1")
    key_route = router.get(KEY_URL).respond(200, content=credential())

    key = MetadataKeys(METADATA, http)()

    assert key == TemporaryKey("TEMPAK1", SECRET, "token-TEMPAK1", NOW + 7200)
    assert session.calls.last.request.headers["X-Metadata-Token-Ttl-Seconds"] == "21600"
    assert key_route.calls.last.request.headers["X-Metadata-Token"] == "session-1"
    assert SECRET not in repr(key)


def test_metadata_without_session_tokens_is_asked_without_one(
    router: respx.MockRouter, http: httpx.Client
) -> None:
    router.put(SESSION_URL).respond(404, text="404 page not found")
    key_route = router.get(KEY_URL).respond(200, content=credential())
    fetch = MetadataKeys(METADATA, http)

    fetch()
    fetch()

    assert "X-Metadata-Token" not in key_route.calls.last.request.headers


def test_a_stale_session_token_is_renewed_once(router: respx.MockRouter, http: httpx.Client) -> None:
    router.put(SESSION_URL).mock(side_effect=[httpx.Response(200, text="s1"), httpx.Response(200, text="s2")])
    key_route = router.get(KEY_URL).mock(
        side_effect=[httpx.Response(401, text="invalid token"), httpx.Response(200, content=credential())]
    )

    MetadataKeys(METADATA, http)()

    assert [call.request.headers["X-Metadata-Token"] for call in key_route.calls] == ["s1", "s2"]


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, text="<html>captive portal</html>"),
        httpx.Response(200, json={"credential": {"access": "A", "secret": SECRET}}),
        httpx.Response(
            200,
            json={
                "credential": {
                    "access": "",
                    "secret": SECRET,
                    "securitytoken": "t",
                    "expires_at": "2023-11-15T00:13:20Z",
                }
            },
        ),
        httpx.Response(
            200,
            json={
                "credential": {
                    "access": "A",
                    "secret": SECRET,
                    "securitytoken": "t",
                    "expires_at": "tomorrow",
                }
            },
        ),
        httpx.Response(500, json={"credential": {"secret": SECRET}}),
        httpx.Response(401, text="Please configure Cloud Service Agency first"),
    ],
)
def test_a_metadata_service_that_answers_garbage_is_an_auth_error_without_secrets(
    router: respx.MockRouter, http: httpx.Client, answer: httpx.Response
) -> None:
    router.put(SESSION_URL).respond(404)
    router.get(KEY_URL).mock(return_value=answer)

    with pytest.raises(AuthError) as raised:
        MetadataKeys(METADATA, http)()

    message = str(raised.value)
    assert message.startswith(f"metadata service {METADATA}: ")
    assert "\n" not in message and SECRET not in message
    assert raised.value.reason == "auth"


def test_an_absent_metadata_service_is_an_auth_error(router: respx.MockRouter, http: httpx.Client) -> None:
    router.put(SESSION_URL).mock(side_effect=httpx.ConnectError("refused"))

    with pytest.raises(
        AuthError, match=r"^metadata service http://metadata.test: unreachable \(ConnectError\)$"
    ):
        MetadataKeys(METADATA, http)()


# --- the workload identity exchange --------------------------------------------------------------


def test_oidc_exchanges_the_token_file_as_the_sdk_does(
    router: respx.MockRouter, http: httpx.Client, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("sa-token-1\n")
    login = router.post(f"{IAM}/v3.0/OS-AUTH/id-token/tokens").respond(
        201, json={"token": {}}, headers={"X-Subject-Token": "unscoped-1"}
    )
    exchange = router.post(f"{IAM}/v3.0/OS-CREDENTIAL/securitytokens").respond(201, content=credential())
    fetch = OidcKeys(IAM, "idp-1", token_file, http)

    assert fetch().access_key == "TEMPAK1"
    token_file.write_text("sa-token-2\n")  # kubelet rotates the projected token
    fetch()

    sent = login.calls.last.request
    assert sent.headers["X-Idp-Id"] == "idp-1"
    assert sent.headers["Content-Type"] == "application/json;charset=UTF-8"
    assert [json.loads(call.request.content) for call in login.calls] == [
        {"auth": {"id_token": {"id": "sa-token-1"}}},
        {"auth": {"id_token": {"id": "sa-token-2"}}},
    ]
    assert json.loads(exchange.calls.last.request.content) == {
        "auth": {"identity": {"methods": ["token"], "token": {"id": "unscoped-1", "duration_seconds": 21600}}}
    }


def test_oidc_failures_name_the_step_and_never_the_token(
    router: respx.MockRouter, http: httpx.Client, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(SECRET)
    router.post(f"{IAM}/v3.0/OS-AUTH/id-token/tokens").respond(
        401,
        json={
            "error": {"code": 401, "message": "The id_token is invalid or expired.", "title": "Unauthorized"}
        },
    )
    fetch = OidcKeys(IAM, "idp-1", token_file, http)

    with pytest.raises(AuthError) as raised:
        fetch()
    assert str(raised.value).startswith(
        "IAM https://iam.test (workload identity idp-1): id token exchange: HTTP 401"
    )
    assert SECRET not in str(raised.value)

    token_file.write_text("")
    with pytest.raises(AuthError, match=r"the id token file .* is empty"):
        fetch()


# --- renewal -------------------------------------------------------------------------------------


class Keys:
    """A fetch that hands out numbered keys valid for ``lifetime``, or fails when told to."""

    def __init__(self, clock: FakeClock, lifetime: float = 3600.0) -> None:
        self.clock, self.lifetime, self.calls, self.failing = clock, lifetime, 0, False

    def __call__(self) -> TemporaryKey:
        self.calls += 1
        if self.failing:
            raise AuthError("metadata service http://metadata.test: HTTP 500")
        return TemporaryKey(f"AK{self.calls}", SECRET, f"token{self.calls}", self.clock() + self.lifetime)


def test_a_key_is_renewed_before_it_expires_and_its_expiry_is_known() -> None:
    clock = FakeClock(NOW)
    keys = Keys(clock, lifetime=3 * 3600)
    renewing = RenewingKey(keys, source="test", clock=clock)

    assert renewing.expires_at is None
    assert renewing.current().access_key == "AK1"
    assert renewing.expires_at == NOW + 3 * 3600
    clock.now += 3 * 3600 - 40 * 60 - 1  # still outside the 40 minutes the SDK keeps as a margin
    assert renewing.current().access_key == "AK1"
    clock.now += 2
    assert renewing.current().access_key == "AK2"
    assert keys.calls == 2


def test_a_short_lived_key_is_renewed_at_half_its_life() -> None:
    clock = FakeClock(NOW)
    renewing = RenewingKey(Keys(clock, lifetime=600), source="test", clock=clock)
    renewing.current()
    clock.now += 299
    assert renewing.current().access_key == "AK1"
    clock.now += 2
    assert renewing.current().access_key == "AK2"


def test_a_failed_renewal_is_counted_and_the_valid_key_kept(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(NOW)
    keys = Keys(clock, lifetime=3600)
    renewing = RenewingKey(keys, source="test", clock=clock)
    renewing.current()
    keys.failing = True
    clock.now += 3000

    with caplog.at_level(logging.WARNING):
        assert renewing.current().access_key == "AK1"
    assert renewing.renewal_failures == 1
    assert "renewing the key from test failed" in caplog.text and SECRET not in caplog.text

    clock.now += 601  # past its expiry: nothing left to fall back on
    with pytest.raises(AuthError):
        renewing.current()
    assert renewing.renewal_failures == 2


# --- the auth that signs with them ---------------------------------------------------------------


def test_temporary_key_auth_signs_with_the_security_token() -> None:
    clock = FakeClock(NOW)
    auth = TemporaryKeyAuth(
        RenewingKey(Keys(clock), source="test", clock=clock), project_id="proj-1", clock=clock
    )

    sent = next(auth.sync_auth_flow(httpx.Request("GET", API)))

    assert sent.headers["X-Security-Token"] == "token1"
    assert (
        "Access=AK1, SignedHeaders=host;x-project-id;x-sdk-date;x-security-token,"
        in sent.headers["Authorization"]
    )


def test_a_401_renews_the_key_and_resends_once(router: respx.MockRouter) -> None:
    clock = FakeClock(NOW)
    keys = Keys(clock)
    route = router.get(API).mock(
        side_effect=[httpx.Response(401, json={"error_code": "APIGW.0307"}), httpx.Response(200, json={})]
    )
    auth = TemporaryKeyAuth(RenewingKey(keys, source="test", clock=clock), project_id="proj-1", clock=clock)

    with httpx.Client(auth=auth) as client:
        assert client.get(API).status_code == 200

    assert [call.request.headers["X-Security-Token"] for call in route.calls] == ["token1", "token2"]


def test_a_401_is_not_resent_with_the_same_key(router: respx.MockRouter) -> None:
    clock = FakeClock(NOW)
    same = TemporaryKey("AK1", SECRET, "token1", NOW + 3600)
    route = router.get(API).respond(401, json={"error_code": "APIGW.0301"})
    auth = TemporaryKeyAuth(
        RenewingKey(lambda: same, source="test", clock=clock), project_id="p", clock=clock
    )

    with httpx.Client(auth=auth) as client:
        assert client.get(API).status_code == 401

    assert route.call_count == 1  # a key the platform still hands out is not sent twice


def test_build_auth_gives_renewing_auths_for_platform_credentials(http: httpx.Client, tmp_path: Path) -> None:
    first = TemporaryKey("AK0", SECRET, "token0", NOW + 3600)
    metadata = build_auth(
        MetadataCredentials(METADATA, first_key=first),
        project_id="p",
        iam_endpoint=IAM,
        iam_http=http,
        clock=FakeClock(NOW),
    )
    oidc = build_auth(
        OidcCredentials("idp-1", tmp_path / "token"), project_id="p", iam_endpoint=IAM, iam_http=http
    )
    assert isinstance(metadata, TemporaryKeyAuth) and isinstance(oidc, TemporaryKeyAuth)
    assert metadata.expires_at == NOW + 3600  # the key fetched at start-up is used, not fetched again
    assert renewal_state(metadata) is metadata and renewal_state(oidc) is oidc
    assert SECRET not in repr(metadata)


def test_iam_token_auth_exposes_its_expiry_and_failed_logins(
    router: respx.MockRouter, http: httpx.Client
) -> None:
    router.post(f"{IAM}/v3/auth/tokens").mock(
        side_effect=[
            httpx.Response(503, json={"error_code": "APIGW.0613", "error_msg": "busy"}),
            httpx.Response(
                201,
                json={"token": {"expires_at": "2023-11-15T22:13:20.000000Z"}},
                headers={"X-Subject-Token": "tok"},
            ),
        ]
    )
    auth = IamTokenAuth(
        iam_endpoint=IAM,
        username="u",
        password=SECRET,
        domain="d",
        project_id="p",
        http=http,
        clock=FakeClock(NOW),
    )
    assert renewal_state(auth) is auth
    with pytest.raises(ServerError):
        auth.token()
    auth.token()
    assert auth.renewal_failures == 1
    assert auth.expires_at == NOW + 24 * 3600
