from __future__ import annotations

import pytest

from exporter.cloud.errors import (
    AuthError,
    BadResponseError,
    ServerError,
    classify_response,
    is_retryable,
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
