from __future__ import annotations

import pytest

from exporter.cloud.errors import (
    AuthError,
    BadResponseError,
    ServerError,
    classify_response,
    is_retryable,
    one_line,
)
from tests.conftest import error_body


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        # The gateway's code says more than the status: a 0308 is throttling whatever the status.
        (500, "APIGW.0301", AuthError),
        (200, "APIGW.0613", ServerError),
        (400, "VOD.10053", BadResponseError),
        (418, "APIGW.9999", BadResponseError),
    ],
)
def test_gateway_codes_with_either_prefix_decide_the_class(status: int, code: str, expected: type) -> None:
    error = classify_response(status, error_body(code, "x"), None)
    assert type(error) is expected and error.error_code == code


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (401, "APIGW.0308", AuthError),
        (403, "APIGW.0613", AuthError),
        (400, "APIG.0601", BadResponseError),
        (400, "APIGW.0308", BadResponseError),
    ],
)
def test_a_code_never_makes_a_client_error_retryable(status: int, code: str, expected: type) -> None:
    error = classify_response(status, error_body(code, "x"), None)
    assert type(error) is expected and not is_retryable(error)


def test_iam_keystone_error_shape_is_read() -> None:
    body = b'{"error": {"code": 401, "title": "Unauthorized", "message": "The password is wrong."}}'
    error = classify_response(401, body, "rid-9")
    assert isinstance(error, AuthError)
    assert error.error_msg == "The password is wrong."
    assert "Unauthorized" in str(error) and "rid-9" in str(error)


def test_only_throttling_server_and_network_errors_are_retryable() -> None:
    assert is_retryable(classify_response(429, b"", None))
    assert is_retryable(classify_response(503, b"", None))
    assert not is_retryable(classify_response(401, b"", None))
    assert not is_retryable(classify_response(400, b"", None))


def test_upstream_strings_are_kept_to_one_line() -> None:
    body = error_body("VOD.1\n0053", "bad limit\nlevel=error msg=forged\x1b[2J", request_id="rid\r\n")
    error = classify_response(400, body, None)
    assert error.error_code == "VOD.1\\n0053"
    assert error.error_msg == "bad limit\\nlevel=error msg=forged\\x1b[2J"
    assert error.request_id == "rid\\r\\n"
    assert str(error) == (
        "HTTP 400 VOD.1\\n0053: bad limit\\nlevel=error msg=forged\\x1b[2J (request id rid\\r\\n)"
    )


def test_a_request_id_header_is_kept_to_one_line() -> None:
    error = classify_response(503, b"", "rid\u2028x\x85")
    assert error.request_id == "rid\\u2028x\\x85"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain text, ünïcode 中文", "plain text, ünïcode 中文"),
        ("a\nb\tc\x00d\x7fe", "a\\nb\\tc\\x00d\\x7fe"),
    ],
)
def test_one_line_escapes_only_control_characters(text: str, expected: str) -> None:
    assert one_line(text) == expected


def test_a_locked_access_key_gets_a_hint_to_fix_the_sk_and_wait() -> None:
    message = "Incorrect IAM authentication information: AK access failed to reach the limit,forbidden."
    error = classify_response(401, error_body("APIGW.0301", message, request_id="rid-3"), None)
    assert isinstance(error, AuthError)
    assert str(error) == (
        f"HTTP 401 APIGW.0301: {message} (request id rid-3); the access key is locked for 5 minutes "
        "after 5 failed authentications in a row: fix the SK, then wait 5 minutes"
    )
