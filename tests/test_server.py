"""The HTTP server against careless and hostile clients: bursts, silent connections, broken
request lines and a low descriptor limit. Every client is on 127.0.0.1."""

from __future__ import annotations

import os
import resource
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.serving.server import RESERVED_DESCRIPTORS, HttpServer, ServerLimits, connection_limit
from tests.certificates import make_pki
from tests.conftest import wait_for

REPOSITORY = Path(__file__).resolve().parent.parent
# Small, so that the tests that wait for a timeout are quick.
QUICK = ServerLimits(timeout=1)


def healthy(environ: dict[str, object], start_response: object) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])  # type: ignore[operator]
    return [b"ok\n"]


@pytest.fixture
def port() -> Iterator[int]:
    server = HttpServer(healthy, "127.0.0.1", 0, QUICK)  # type: ignore[arg-type]
    server.start()
    try:
        yield server.port
    finally:
        server.stop()


def ask(port: int, request: bytes, timeout: float = 20.0, context: ssl.SSLContext | None = None) -> bytes:
    """All the server sends back before it closes; raises if it neither answers nor closes.
    With a ``context``, over TLS."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        sock = context.wrap_socket(raw, server_hostname="127.0.0.1") if context else raw
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        return data


GET_HEALTHY = b"GET /-/healthy HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"


def test_200_concurrent_connections_are_all_answered(port: int) -> None:
    clients = 200
    barrier = threading.Barrier(clients)
    answers: list[bytes] = []

    def client() -> None:
        barrier.wait()
        try:
            answers.append(ask(port, GET_HEALTHY, timeout=10))
        except OSError as error:
            answers.append(repr(error).encode())

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    failed = [answer for answer in answers if not _is_ok(answer)]
    assert not failed, f"{len(failed)} of {clients} not answered, e.g. {failed[0]!r}"


def test_a_silent_connection_is_closed_after_the_timeout(port: int) -> None:
    assert ask(port, b"") == b""


def test_a_request_line_without_a_version_is_answered_or_closed(port: int) -> None:
    answer = ask(port, b"GET /-/healthy\r\n")
    assert answer == b"" or answer.startswith(b"HTTP/1.1 400 ")


@pytest.mark.parametrize("tls", [False, True], ids=["http", "tls"])
def test_silent_connections_beyond_the_descriptor_limit_leave_the_server_answering(
    tmp_path: Path, tls: bool
) -> None:
    """With 64 descriptors and twice as many silent connections, /-/healthy still gets an answer.
    Behind TLS the silent ones never start a handshake, and the answer comes over TLS."""
    script = (
        "import resource, sys\n"
        "from pathlib import Path\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))\n"
        "from exporter.serving.server import HttpServer, ServerLimits\n"
        "from exporter.serving.web_config import TlsSettings\n"
        "from tests.test_server import healthy\n"
        "tls = TlsSettings(Path(sys.argv[1]), Path(sys.argv[2])) if len(sys.argv) > 1 else None\n"
        "server = HttpServer(healthy, '127.0.0.1', 0, ServerLimits(timeout=1), tls=tls)\n"
        "server.start()\n"
        "print(server.port, flush=True)\n"
        "sys.stdin.read()\n"
        "server.stop()\n"
    )
    context, args = None, []
    if tls:
        pki = make_pki(tmp_path / "pki")
        context = ssl.create_default_context(cafile=str(pki.ca.cert))
        args = [str(pki.server.cert), str(pki.server.key)]
    env = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    process = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    silent: list[socket.socket] = []
    try:
        assert process.stdout is not None and process.stdin is not None
        port = int(process.stdout.readline())
        for _ in range(128):
            silent.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        wait_for("an answer on /-/healthy", lambda: _answers(port, context), timeout=30, every=0.1)
        process.stdin.close()
        assert process.wait(timeout=20) == 0
    finally:
        for sock in silent:
            sock.close()
        if process.poll() is None:
            process.kill()
            process.wait()


def _answers(port: int, context: ssl.SSLContext | None = None) -> bool:
    try:
        return _is_ok(ask(port, GET_HEALTHY, timeout=5, context=context))
    except OSError:
        return False


def _is_ok(answer: bytes) -> bool:
    return answer.startswith(b"HTTP/1.") and answer[8:13] == b" 200 "


def test_the_connection_limit_keeps_descriptors_for_the_exporter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the descriptor limit accept() fails in a loop; the silent-connection test above passes
    without this bound (waitress survives EMFILE), so the arithmetic is checked on its own."""
    monkeypatch.setattr(resource, "getrlimit", lambda _: (128, 4096))
    assert connection_limit(512) == 128 - RESERVED_DESCRIPTORS
    monkeypatch.setattr(resource, "getrlimit", lambda _: (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    assert connection_limit(512) == 512
