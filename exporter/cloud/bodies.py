"""Reading an answer's body within a bound: bytes off the wire and bytes after gunzipping alike.

A real page of 100 tasks is about 25 KB and an IAM token answer a few KB, so ``MAX_BODY_BYTES``
(8 MiB) never cuts a real answer short; it only stops a broken or hostile upstream from making
the exporter hold hundreds of megabytes (a 200 MB body) or inflate a gzip bomb (1 MB on the wire,
1 GB unpacked) in memory.

The body is read raw and gunzipped here rather than by httpx, because httpx inflates each chunk
off the wire in one go: a 64 KiB chunk of a bomb becomes 64 MiB before any check could see it.
``zlib``'s ``max_length`` lets each step produce no more than the bound allows. Requests ask for
``gzip`` only (``ACCEPT_ENCODING``), so an answer in any other coding is a bad response.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import httpx

from exporter.cloud.errors import BadResponseError

MAX_BODY_BYTES = 8 * 1024 * 1024

# The header value to send with every request whose answer is read by ``read_body``.
ACCEPT_ENCODING = {"Accept-Encoding": "gzip"}

_GZIP_WBITS = 16 + zlib.MAX_WBITS  # the gzip wrapper, not zlib's own


def read_body(
    response: httpx.Response,
    *,
    limit: int = MAX_BODY_BYTES,
    check: Callable[[], None] = lambda: None,
) -> bytes:
    """The decoded body of a streamed ``response``.

    Raises ``BadResponseError`` when it is larger than ``limit`` bytes on the wire or once
    decoded, or cannot be decoded. ``check`` is called before each chunk is taken in, so the caller
    can stop a body that drips in (by raising).
    """
    request_id = response.headers.get("X-Request-Id")
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit, request_id)
    coding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if coding not in ("identity", "gzip", "x-gzip", ""):
        raise BadResponseError(
            f"the body is encoded as {coding!r}, which the exporter did not ask for", request_id=request_id
        )
    inflater = zlib.decompressobj(_GZIP_WBITS) if coding in ("gzip", "x-gzip") else None
    on_wire = 0
    body = bytearray()
    try:
        for chunk in response.iter_raw():
            check()
            on_wire += len(chunk)
            if on_wire > limit:
                raise _too_large(limit, request_id)
            if inflater is None:
                body += chunk
                continue
            pending = chunk
            while pending:
                # At most one byte past the limit is ever inflated, however dense the chunk.
                body += inflater.decompress(pending, limit - len(body) + 1)
                if len(body) > limit:
                    raise _too_large(limit, request_id)
                pending = inflater.unconsumed_tail
        if inflater is not None:
            body += inflater.flush()
    except zlib.error as error:
        raise BadResponseError(f"the body cannot be decoded: {error}", request_id=request_id) from None
    if len(body) > limit:
        raise _too_large(limit, request_id)
    return bytes(body)


def _too_large(limit: int, request_id: str | None) -> BadResponseError:
    return BadResponseError(
        f"the body is larger than {limit / 1048576:g} MiB, far more than any real answer",
        request_id=request_id,
    )
