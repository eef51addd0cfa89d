"""Our AK/SK signature against the official SDK's ``Signer``, byte for byte.

The SDK is the reference: for the same request on the wire and the same ``X-Sdk-Date``,
``AkSkAuth`` must produce the same ``Authorization`` header. Requests are generated with odd
paths and queries, because that is where signers disagree. The SDK is given what httpx actually
sends (the encoded path, and the query pairs), which is exactly what the gateway checks.

Temporary keys (a security token) are checked against the SDK's own ``BasicCredentials``, which
adds ``X-Security-Token`` (and ``X-Project-Id``) itself before signing: so the SDK, not these tests,
says which header carries the token and that it is signed.

Known differences, outside what the exporter sends: the SDK signs every header it is given except
names containing ``_``, and for a Content-Type other than JSON it adds
``X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD`` instead of hashing the body.
"""

from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import parse_qsl

import httpx
import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.cloud import signing
from exporter.cloud.auth import AkSkAuth, TemporaryKeyAuth
from exporter.cloud.providers import RenewingKey, TemporaryKey

AK = "HPUAEXAMPLEAK0000000"
SK = "ExampleSecretKey0123456789abcdefghijklmn"
SDK_DATE = "20261128T103406Z"
MOMENT = datetime(2026, 11, 28, 10, 34, 6, tzinfo=timezone.utc).timestamp()

CONFORMANCE = settings(max_examples=300, deadline=None, derandomize=True)


def sdk_sign(
    method: str,
    host: str,
    path: str,
    query: list[tuple[str, str]],
    headers: dict[str, str],
    body: bytes = b"",
    *,
    access_key: str = AK,
    secret_key: str = SK,
) -> tuple[str, str]:
    """``(Authorization, request URI)`` from the SDK. A fresh SdkRequest each time: signing
    mutates it (adds Host, re-encodes header values, rewrites the URI)."""
    request = SdkRequest(
        method=method,
        schema="https",
        host=host,
        resource_path=path,
        query_params=list(query),
        header_params=dict(headers),
        body=body,
    )
    Signer(BasicCredentials(access_key, secret_key)).sign(request)
    return request.header_params["Authorization"], request.uri


def sign_with_auth(auth: AkSkAuth, request: httpx.Request) -> httpx.Request:
    return next(auth.sync_auth_flow(request))


def wire_path(request: httpx.Request) -> str:
    return request.url.raw_path.decode("ascii").partition("?")[0]


def wire_uri(request: httpx.Request) -> str:
    return request.url.raw_path.decode("ascii")


def query_pairs(request: httpx.Request) -> list[tuple[str, str]]:
    return parse_qsl(request.url.query.decode("ascii"), keep_blank_values=True)


def sdk_sign_as_sent(sent: httpx.Request, query: list[tuple[str, str]]) -> tuple[str, str]:
    """The SDK's signature for the request ``AkSkAuth`` sent, signing the same headers."""
    names = signing.parse_authorization(sent.headers["Authorization"]).signed_headers
    headers = {name: sent.headers[name] for name in names if name != "host"}
    return sdk_sign(sent.method, sent.headers["Host"], wire_path(sent), query, headers, sent.content)


# --- known answers -----------------------------------------------------------------------------


def test_known_answer_for_the_listing_request() -> None:
    # Computed once with huaweicloudsdkcore's Signer and written down: this catches a change in
    # both the SDK and our signer at once, which the comparisons below cannot.
    project = "0a1b2c3d4e5f67890a1b2c3d4e5f6789"
    auth = AkSkAuth(AK, SK, project_id=project, clock=lambda: MOMENT)
    request = httpx.Request(
        "GET",
        f"https://vod.cn-north-4.myhuaweicloud.com/v1/{project}/asset/editing/tasks",
        params={"offset": 0, "limit": 100},
    )
    sent = sign_with_auth(auth, request)
    assert sent.headers["X-Sdk-Date"] == SDK_DATE
    assert sent.headers["Authorization"] == (
        "SDK-HMAC-SHA256 Access=HPUAEXAMPLEAK0000000, SignedHeaders=host;x-project-id;x-sdk-date, "
        "Signature=1338eaaea199bc89b7092e06208312cb42a1c728d0fe506784e90522f1afb9ed"
    )
    assert wire_uri(sent) == f"/v1/{project}/asset/editing/tasks?limit=100&offset=0"


def test_known_answer_with_security_token_port_and_odd_query() -> None:
    auth = AkSkAuth(AK, SK, security_token="gQpjbi1ub3J0aC00...+/=", project_id="p", clock=lambda: MOMENT)
    query = [("task_id", "a b+c/ü"), ("limit", "10"), ("task_id", ""), ("x", "~*%")]
    sent = sign_with_auth(
        auth, httpx.Request("GET", "https://vod.test:8443/v1/p/asset/editing/tasks", params=tuple(query))
    )
    assert sent.headers["Authorization"] == (
        "SDK-HMAC-SHA256 Access=HPUAEXAMPLEAK0000000, "
        "SignedHeaders=host;x-project-id;x-sdk-date;x-security-token, "
        "Signature=7b73b6b723142e781601f2db3fe2439882078375d49360fd3ad0cb828ab28ce6"
    )
    assert (
        wire_uri(sent) == "/v1/p/asset/editing/tasks?limit=10&task_id=&task_id=a%20b%2Bc%2F%C3%BC&x=~%2A%25"
    )


# --- explicit examples against the SDK ---------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://vod.test/v1/p/asset/editing/tasks",
        "https://vod.test/v1/p/asset/editing/tasks/",
        "https://vod.test/",
        "https://vod.test/v1/a b/ü~+/x%20y/100%25/",
        # A segment holding a literal "%41": on the wire "%2541". Decoding it twice (from
        # url.path, which httpx has already decoded) would sign "A" instead.
        "https://vod.test/v1/a%2541/b",
        "https://vod.test/v1/a%2Fb/c",
        "https://vod.test/v1/%7e%7E/100%",
        "http://127.0.0.1:8080/v1/p/asset/editing/tasks",
    ],
)
def test_paths_match_the_sdk(url: str) -> None:
    sent = sign_with_auth(AkSkAuth(AK, SK, clock=lambda: MOMENT), httpx.Request("GET", url))
    expected, uri = sdk_sign_as_sent(sent, [])
    assert sent.headers["Authorization"] == expected
    assert wire_uri(sent) == uri


def test_post_with_json_body_matches_the_sdk() -> None:
    auth = AkSkAuth(AK, SK, project_id="p", clock=lambda: MOMENT)
    request = httpx.Request("POST", "https://vod.test/v1/p/asset/editing/tasks", json={"name": "ü"})
    sent = sign_with_auth(auth, request)
    assert "content-type" in signing.parse_authorization(sent.headers["Authorization"]).signed_headers
    assert sent.headers["Authorization"] == sdk_sign_as_sent(sent, [])[0]


# --- generated requests ------------------------------------------------------------------------

ODD_TEXT = " /+*~%=&?#;:@,!$'()[]\"<>\\^`{|}üé中\u00a0\t"
query_text = st.text(
    alphabet=st.one_of(st.sampled_from(ODD_TEXT), st.characters(codec="utf-8")),
    max_size=12,
)
# A few keys shared between pairs, so that repeated keys (sorted by value) come up often.
query_key = st.one_of(st.sampled_from(["limit", "offset", "task_id", "k y", "ü", "a+b", ""]), query_text)
query = st.lists(st.tuples(query_key, query_text), max_size=8)

# Path segments as they are written in the URL: raw characters (httpx encodes what it must) and
# percent-escapes, including ones that decode to '/', '%' or a multi-byte character.
path_piece = st.one_of(
    st.text(
        alphabet=st.characters(codec="utf-8", exclude_categories=("Cc", "Cs"), exclude_characters="/?#"),
        min_size=1,
        max_size=6,
    ),
    st.sampled_from(
        ["%20", "%2F", "%2f", "%25", "%41", "%7e", "%7E", "%C3%BC", "%2B", "+", "~", "100%", "a b"]
    ),
)
path = st.lists(st.lists(path_piece, max_size=3).map("".join), max_size=5).map(
    lambda parts: "/" + "/".join(parts)
)
host = st.sampled_from(["vod.cn-north-4.myhuaweicloud.com", "vod.test:8443", "127.0.0.1:8080"])
method = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"])
token_text = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_.", min_size=1, max_size=40
)
moment = st.integers(
    min_value=int(datetime(2000, 1, 1, tzinfo=timezone.utc).timestamp()),
    max_value=int(datetime(2099, 12, 31, tzinfo=timezone.utc).timestamp()),
)


def generated_request(
    method: str, host: str, path: str, query: list[tuple[str, str]], body: bytes
) -> httpx.Request:
    has_body = method != "GET" and body
    return httpx.Request(
        method,
        f"https://{host}{path}",
        params=tuple(query),
        content=body if has_body else None,
        headers={"Content-Type": "application/json"} if has_body else None,
    )


@CONFORMANCE
@given(
    method=method,
    host=host,
    path=path,
    query=query,
    body=st.binary(max_size=64),
    security_token=st.none() | token_text,
    project_id=st.none() | token_text,
    when=moment,
)
def test_generated_requests_match_the_sdk(
    method: str,
    host: str,
    path: str,
    query: list[tuple[str, str]],
    body: bytes,
    security_token: str | None,
    project_id: str | None,
    when: int,
) -> None:
    request = generated_request(method, host, path, query, body)
    # What httpx puts on the wire must parse back to the pairs the SDK is given: that is what
    # the gateway reads. (httpx groups repeated keys together; order does not matter for signing.)
    assert sorted(query_pairs(request)) == sorted(query)

    auth = AkSkAuth(AK, SK, security_token=security_token, project_id=project_id, clock=lambda: float(when))
    sent = sign_with_auth(auth, request)
    assert sorted(query_pairs(sent)) == sorted(query)

    expected, uri = sdk_sign_as_sent(sent, query)
    assert sent.headers["Authorization"] == expected
    # The URI on the wire is the SDK's too, query included, byte for byte.
    assert wire_uri(sent) == uri


header_name = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12
)
header_value = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), max_size=20)
extra_headers = st.dictionaries(header_name, header_value, max_size=5).filter(
    lambda headers: len({name.lower() for name in headers} | {"host", "x-sdk-date"}) == len(headers) + 2
)


@CONFORMANCE
@given(method=method, host=host, path=path, query=query, headers=extra_headers, body=st.binary(max_size=64))
def test_extra_signed_headers_match_the_sdk(
    method: str,
    host: str,
    path: str,
    query: list[tuple[str, str]],
    headers: dict[str, str],
    body: bytes,
) -> None:
    # AkSkAuth signs a fixed set of headers, so arbitrary extra ones are checked on the signing
    # functions that it calls. Header values keep their surrounding spaces: both sides trim them.
    encoded_path = httpx.URL(f"https://{host}{path}").raw_path.decode("ascii")
    signed = {"Host": host, "X-Sdk-Date": SDK_DATE, **headers}
    ours = signing.authorization(AK, SK, method, encoded_path, query, signed, body)
    expected, _ = sdk_sign(method, host, encoded_path, query, {"X-Sdk-Date": SDK_DATE, **headers}, body)
    assert ours == expected


# --- temporary credentials: the header the SDK's credentials add, and that it is signed ---------


def sdk_sign_with_credentials(
    sent: httpx.Request, query: list[tuple[str, str]], security_token: str, project_id: str | None
) -> SdkRequest:
    """The SDK's request after its own credentials object has signed it: the SDK, not us, decides
    which headers a security token and a project add (``Credentials.sign_request``)."""
    headers = {"X-Sdk-Date": sent.headers["X-Sdk-Date"]}
    if "Content-Type" in sent.headers:
        headers["Content-Type"] = sent.headers["Content-Type"]
    request = SdkRequest(
        method=sent.method,
        schema="https",
        host=sent.headers["Host"],
        resource_path=wire_path(sent),
        query_params=list(query),
        header_params=headers,
        body=sent.content,
    )
    credentials = BasicCredentials(AK, SK, project_id).with_security_token(security_token)
    signed: SdkRequest = credentials.sign_request(request)
    return signed


@CONFORMANCE
@given(
    method=method,
    host=host,
    path=path,
    query=query,
    body=st.binary(max_size=64),
    security_token=token_text,
    project_id=st.none() | token_text,
    when=moment,
)
def test_temporary_key_requests_match_the_sdk_credentials(
    method: str,
    host: str,
    path: str,
    query: list[tuple[str, str]],
    body: bytes,
    security_token: str,
    project_id: str | None,
    when: int,
) -> None:
    request = generated_request(method, host, path, query, body)
    key = TemporaryKey(AK, SK, security_token, expires_at=float(when) + 3600)
    keys = RenewingKey(lambda: key, source="test", clock=lambda: float(when))
    sent = sign_with_auth(TemporaryKeyAuth(keys, project_id=project_id, clock=lambda: float(when)), request)

    expected = sdk_sign_with_credentials(sent, query, security_token, project_id)
    assert sent.headers["X-Security-Token"] == expected.header_params["X-Security-Token"] == security_token
    assert sent.headers.get("X-Project-Id") == expected.header_params.get("X-Project-Id")
    assert sent.headers["Authorization"] == expected.header_params["Authorization"]
    assert "x-security-token" in signing.parse_authorization(sent.headers["Authorization"]).signed_headers
    assert wire_uri(sent) == expected.uri
