"""Why the API failed a listing: one exception class per ``reason`` label of
``huaweicloud_vod_scrape_errors_total`` that an answer (or its lack) can cause.

``classify_response`` is the one place that turns an HTTP error answer into an exception, and each
class's ``reason`` is the one place that names its label. Every string in an ``ApiError`` passes
through ``one_line``, since most come from the upstream and end up in one-line messages and logs.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Mapping

from exporter.failures import ListingFailed

# C0 and C1 controls, DEL, and the Unicode line and paragraph separators: anything that could
# end a line or drive a terminal.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(text: str) -> str:
    """``text`` with control characters written as escapes (``\\n``, ``\\x1b``), so that an
    upstream string can neither forge a line of output nor send a terminal sequence."""
    return _CONTROL.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), text)


def _one_line_or_none(text: str | None) -> str | None:
    return one_line(text) if text is not None else None


class ApiError(ListingFailed):
    """An answer from the API (or the lack of one) that ends the listing."""

    reason = "bad_response"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_code: str | None = None,
        error_msg: str | None = None,
        request_id: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(one_line(message))
        self.status = status
        self.error_code = _one_line_or_none(error_code)
        self.error_msg = _one_line_or_none(error_msg)
        self.request_id = _one_line_or_none(request_id)
        self.hint = hint  # what the user can do about it, when the answer alone does not say

    def __str__(self) -> str:
        text = super().__str__()
        text = f"{text} (request id {self.request_id})" if self.request_id else text
        return f"{text}; {self.hint}" if self.hint else text


class AuthError(ApiError):
    """401 or 403: wrong, expired or under-privileged credentials. Never retried in a loop:
    five failed AK/SK authentications in a row lock the key for five minutes."""

    reason = "auth"


class ThrottledError(ApiError):
    """429 (``APIGW.0308``): the tenant's request quota is spent for now."""

    reason = "throttled"


class SlowedDown(ThrottledError):
    """Our own rate limit, slowed by earlier 429s, leaves no slot before the deadline. Not an
    answer from the API: neither retried nor a reason to slow down further."""


class ServerError(ApiError):
    """5xx: the gateway or VOD failed; worth retrying."""

    reason = "server_error"


class BadResponseError(ApiError):
    """An answer that cannot be used: another 4xx, a body that is not the documented JSON."""

    reason = "bad_response"


class NetworkError(ApiError):
    """No answer: refused, reset, DNS or TLS failure."""

    reason = "network"


class RequestTimeout(NetworkError):
    """One request got no answer within ``--api.timeout``; retried like any network error."""

    reason = "timeout"


# Gateway codes that say more than the HTTP status does. The API sends both the APIGW. and the
# older APIG. prefix for the same code.
_GATEWAY_CODES: Mapping[str, type[ApiError]] = {
    "0301": AuthError,
    "0307": AuthError,
    "0302": AuthError,
    "0310": AuthError,
    "0308": ThrottledError,
    "0601": ServerError,
    "0613": ServerError,
}

_RETRYABLE = (ThrottledError, ServerError, NetworkError)

# The gateway's 0301 message once an access key has failed to authenticate 5 times in a row.
_KEY_LOCKED = "AK access failed to reach the limit"
_KEY_LOCKED_HINT = (
    "the access key is locked for 5 minutes after 5 failed authentications in a row: "
    "fix the SK, then wait 5 minutes"
)


def is_retryable(error: ApiError) -> bool:
    return isinstance(error, _RETRYABLE)


def classify_response(status: int, body: bytes, request_id: str | None) -> ApiError:
    """The exception for an error answer, with ``error_code``/``error_msg`` from its JSON body."""
    error_code, error_msg, body_request_id = _error_fields(body)
    request_id = request_id or body_request_id
    cls = _class_for(status, error_code)
    detail = f"{error_code}: {error_msg}" if error_code else (error_msg or "no error body")
    return cls(
        f"HTTP {status} {detail}",
        status=status,
        error_code=error_code,
        error_msg=error_msg,
        request_id=request_id,
        hint=_KEY_LOCKED_HINT if error_msg and _KEY_LOCKED in error_msg else None,
    )


def unreachable(host: str, error: Exception) -> NetworkError:
    """A ``NetworkError`` for a request to ``host`` that got no answer, naming the host (the
    resolver's own message does not) and saying what to check when the name does not resolve."""
    causes: list[BaseException] = []
    cause: BaseException | None = error
    while cause is not None and cause not in causes:  # a chain may loop back on itself
        causes.append(cause)
        cause = cause.__cause__ or cause.__context__
    unresolved = any(isinstance(cause, socket.gaierror) for cause in causes)
    hint = "the host name does not resolve: check --region and --endpoint" if unresolved else None
    return NetworkError(f"cannot reach {host}: {type(error).__name__}: {error}", hint=hint)


def _class_for(status: int, error_code: str | None) -> type[ApiError]:
    if error_code:
        prefix, _, number = error_code.partition(".")
        refined = _GATEWAY_CODES.get(number) if prefix in ("APIGW", "APIG") else None
        # A code refines the status but never makes a 4xx (other than 429) retryable: a 401 is
        # never retried, whatever its body says, since five in a row lock the key.
        if refined is not None and not (400 <= status < 500 and status != 429 and refined in _RETRYABLE):
            return refined
    if status in (401, 403):
        return AuthError
    if status == 429:
        return ThrottledError
    if status >= 500:
        return ServerError
    return BadResponseError


def _error_fields(body: bytes) -> tuple[str | None, str | None, str | None]:
    try:
        document = json.loads(body)
    except ValueError:
        return None, None, None
    if not isinstance(document, dict):
        return None, None, None
    nested = document.get("error")
    if isinstance(nested, dict) and "error_code" not in document:
        # IAM answers in the Keystone shape: {"error": {"code": 401, "title": ..., "message": ...}}.
        code = nested.get("title") if isinstance(nested.get("title"), str) else None
        message = nested.get("message")
        return code, message if isinstance(message, str) else None, None
    fields = (document.get("error_code"), document.get("error_msg"), document.get("request_id"))
    code, msg, rid = (value if isinstance(value, str) else None for value in fields)
    return code, msg, rid
