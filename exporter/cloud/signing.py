"""The SDK-HMAC-SHA256 (AK/SK) signature, as pure functions.

The exporter signs with these (``auth.AkSkAuth``) and the simulator verifies with them, so both
sides of every integration test run the same algorithm. The official SDK's ``Signer`` is the
reference: ``tests/test_signing_conformance.py`` proves the output is byte-identical to it.

Canonical request::

    METHOD \\n canonical URI \\n canonical query \\n canonical headers \\n signed headers \\n sha256(body)
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import quote, unquote

ALGORITHM = "SDK-HMAC-SHA256"
DATE_HEADER = "X-Sdk-Date"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"


def encode(value: str) -> str:
    """Percent-encode everything but ``A-Za-z0-9-_.~`` (space becomes ``%20``, never ``+``)."""
    return quote(value, safe="~")


def canonical_uri(path: str) -> str:
    """Each segment of the decoded path encoded on its own; the result always ends in ``/``."""
    uri = "/".join(encode(segment) for segment in unquote(path).split("/"))
    return uri if uri.endswith("/") else uri + "/"


def canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    # The SDK sorts the raw (key, value) pairs and encodes afterwards; sorting the encoded text
    # instead orders some non-ASCII values differently, so the order here must stay as it is.
    return "&".join(f"{encode(key)}={encode(value)}" for key, value in sorted(pairs))


def canonical_headers(headers: Mapping[str, str]) -> tuple[str, str]:
    """``(canonical header block, signed header names)`` for the headers to be signed."""
    folded = {name.lower(): str(value).strip() for name, value in headers.items()}
    names = sorted(folded)
    block = "".join(f"{name}:{folded[name]}\n" for name in names)
    return block, ";".join(names)


def canonical_request(
    method: str,
    path: str,
    query: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes = b"",
) -> tuple[str, str]:
    """``(canonical request, signed header names)``."""
    header_block, signed = canonical_headers(headers)
    text = "\n".join(
        (
            method.upper(),
            canonical_uri(path),
            canonical_query(query),
            header_block,
            signed,
            hashlib.sha256(body).hexdigest(),
        )
    )
    return text, signed


def signature(secret_key: str, sdk_date: str, request_text: str) -> str:
    string_to_sign = f"{ALGORITHM}\n{sdk_date}\n{hashlib.sha256(request_text.encode()).hexdigest()}"
    return hmac.new(secret_key.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()


def authorization(
    access_key: str,
    secret_key: str,
    method: str,
    path: str,
    query: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes = b"",
) -> str:
    """The ``Authorization`` value. ``headers`` are exactly the headers to sign, and must
    include ``Host`` and ``X-Sdk-Date``."""
    sdk_date = _header(headers, DATE_HEADER)
    if sdk_date is None or _header(headers, "Host") is None:
        raise ValueError("the signed headers must include Host and X-Sdk-Date")
    text, signed = canonical_request(method, path, query, headers, body)
    sig = signature(secret_key, sdk_date, text)
    return f"{ALGORITHM} Access={access_key}, SignedHeaders={signed}, Signature={sig}"


def format_sdk_date(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime(DATE_FORMAT)


def parse_sdk_date(value: str) -> datetime:
    """Raises ``ValueError`` for anything but ``YYYYMMDDTHHMMSSZ``."""
    return datetime.strptime(value, DATE_FORMAT).replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class ParsedAuthorization:
    access_key: str
    signed_headers: Sequence[str]
    signature: str


def parse_authorization(value: str) -> ParsedAuthorization:
    """Split an ``Authorization`` header; raises ``ValueError`` when it is not SDK-HMAC-SHA256."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise ValueError(f"unsupported algorithm {algorithm!r}")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        key, sep, val = part.strip().partition("=")
        if not sep:
            raise ValueError(f"malformed authorization field {part.strip()!r}")
        fields[key] = val
    try:
        return ParsedAuthorization(
            access_key=fields["Access"],
            signed_headers=tuple(fields["SignedHeaders"].split(";")),
            signature=fields["Signature"],
        )
    except KeyError as missing:
        raise ValueError(f"authorization lacks {missing.args[0]}") from None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None
