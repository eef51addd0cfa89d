"""Every "no" the simulated API can say, with the status, code and message the real one uses.

Gateway and VOD errors share one body shape, ``{"error_code", "error_msg", "request_id"}``; IAM's
token endpoint answers in the Keystone shape, ``{"error": {"code", "message", "title"}}``.

Unknown project: a project id that the caller's credentials do not cover gets 403 ``APIGW.0302``
("the IAM user is not authorized to access the API"). ``APIGW.0310`` ("the project is
unavailable") is the gateway's answer for a project that exists but is frozen or deleted, which
the simulator has no notion of.
"""

from __future__ import annotations

import json
from typing import Any


class Rejected(Exception):
    """An error answer. ``fields`` is the JSON body; gateway-style bodies get the request id added."""

    def __init__(self, status: int, fields: dict[str, Any], *, gateway_style: bool = True) -> None:
        super().__init__(f"{status} {fields}")
        self.status = status
        self.fields = fields
        self.gateway_style = gateway_style

    @property
    def error_code(self) -> str | None:
        code = self.fields.get("error_code")
        return code if isinstance(code, str) else None

    def body(self, request_id: str) -> bytes:
        fields = {**self.fields, "request_id": request_id} if self.gateway_style else self.fields
        return json.dumps(fields).encode()


def _gateway(status: int, code: str, message: str) -> Rejected:
    return Rejected(status, {"error_code": code, "error_msg": message})


def not_found(wrong_method: bool = False) -> Rejected:
    message = (
        "The API does not exist."
        if wrong_method
        else "The API does not exist or has not been published in the environment."
    )
    return _gateway(404, "APIGW.0101", message)


def bad_credentials(detail: str) -> Rejected:
    return _gateway(401, "APIGW.0301", f"Incorrect IAM authentication information: {detail}")


def token_expired() -> Rejected:
    return _gateway(401, "APIGW.0307", "The token must be updated.")


def not_authorized() -> Rejected:
    return _gateway(403, "APIGW.0302", "The IAM user is not authorized to access the API.")


def throttled(limit: float) -> Rejected:
    return _gateway(
        429,
        "APIGW.0308",
        "The throttling threshold has been reached: "
        f"policy user over ratelimit,limit:{limit:g},time:1 second",
    )


def internal_error() -> Rejected:
    return _gateway(500, "APIGW.0601", "Internal server error.")


def unavailable() -> Rejected:
    return _gateway(503, "APIGW.0613", "The IAM service is currently unavailable.")


def bad_parameter(field: str) -> Rejected:
    return _gateway(400, "VOD.10053", f"The request parameter is illegal, illegal field: {{{field}}}.")


def iam_error(status: int, title: str, message: str) -> Rejected:
    return Rejected(
        status, {"error": {"code": status, "message": message, "title": title}}, gateway_style=False
    )
