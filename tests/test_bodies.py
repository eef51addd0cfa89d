"""Answer bodies are read within a bound, counted on the wire and after gunzipping."""

from __future__ import annotations

import gzip
import tracemalloc
import zlib
from collections.abc import Iterator

import httpx
import pytest

from exporter.cloud.bodies import MAX_BODY_BYTES, read_body
from exporter.cloud.errors import BadResponseError

CHUNK = 64 * 1024


class CountingStream(httpx.SyncByteStream):
    """A body served in chunks, counting how much of it the reader took."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self.taken = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            self.taken += len(chunk)
            yield chunk


def answer(stream: CountingStream, **headers: str) -> httpx.Response:
    return httpx.Response(200, headers={"X-Request-Id": "req-9", **headers}, stream=stream)


def endless(chunk: bytes) -> Iterator[bytes]:
    while True:
        yield chunk


def test_a_plain_body_is_read_whole() -> None:
    stream = CountingStream(iter([b'{"total": 0,', b' "tasks": []}']))
    assert read_body(answer(stream)) == b'{"total": 0, "tasks": []}'


def test_a_gzipped_body_is_inflated() -> None:
    packed = gzip.compress(b'{"total": 0, "tasks": []}')
    stream = CountingStream(iter([packed[:7], packed[7:]]))
    assert read_body(answer(stream, **{"Content-Encoding": "gzip"})) == b'{"total": 0, "tasks": []}'


def test_an_endless_body_is_cut_off_just_past_the_bound() -> None:
    stream = CountingStream(endless(b" " * CHUNK))
    with pytest.raises(BadResponseError, match="larger than 8 MiB") as caught:
        read_body(answer(stream))
    assert caught.value.request_id == "req-9"
    assert MAX_BODY_BYTES < stream.taken <= MAX_BODY_BYTES + CHUNK


def test_a_declared_length_beyond_the_bound_is_refused_unread() -> None:
    stream = CountingStream(endless(b" " * CHUNK))
    with pytest.raises(BadResponseError, match="larger than 8 MiB"):
        read_body(answer(stream, **{"Content-Length": str(MAX_BODY_BYTES + 1)}))
    assert stream.taken == 0


def test_a_gzip_bomb_is_never_inflated_much_past_the_bound() -> None:
    # 64 KiB of zeros packs into about 100 bytes, so this stream unpacks to gigabytes.
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    dense = packer.compress(b"\0" * (64 * 1024 * 1024))
    stream = CountingStream(iter([dense] * 64))
    tracemalloc.start()
    try:
        with pytest.raises(BadResponseError, match="larger than 8 MiB"):
            read_body(answer(stream, **{"Content-Encoding": "gzip"}))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stream.taken <= 2 * len(dense)
    assert peak < 3 * MAX_BODY_BYTES


def test_a_coding_that_was_not_asked_for_is_a_bad_response() -> None:
    stream = CountingStream(iter([b"\x28\xb5\x2f\xfd"]))
    with pytest.raises(BadResponseError, match="encoded as 'zstd'"):
        read_body(answer(stream, **{"Content-Encoding": "zstd"}))


def test_a_broken_gzip_body_is_a_bad_response() -> None:
    stream = CountingStream(iter([b"not gzip at all"]))
    with pytest.raises(BadResponseError, match="cannot be decoded"):
        read_body(answer(stream, **{"Content-Encoding": "gzip"}))
