"""The server over real TLS, with certificates made in the test and a real HTTPS client (httpx):
basic auth on every path, client certificates, TLS versions, headers, plain HTTP to the TLS port,
and a certificate rotated on disk while the server runs."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import socket
import ssl
import tracemalloc
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import bcrypt
import httpx
import pytest
from prometheus_client import CollectorRegistry

from exporter.config import ScrapeSettings, WebSettings
from exporter.serving.basic_auth import BasicAuth
from exporter.serving.server import HttpServer, ServerLimits
from exporter.serving.tls import _Pipe
from exporter.serving.web import WebApp
from exporter.serving.web_config import TlsSettings
from tests.certificates import Pair, Pki, make_leaf, make_pki, make_server_cert
from tests.conftest import exporter_command, free_port, terminate, wait_for

PASSWORD = "correct horse battery staple"
USERS = {"prometheus": bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()}
HEADERS = {"X-Frame-Options": "deny", "Strict-Transport-Security": "max-age=31536000"}
QUICK = ServerLimits(timeout=1)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def web_app() -> WebApp:
    return WebApp(lambda deadline: True, CollectorRegistry(), WebSettings(), ScrapeSettings())


class Served:
    def __init__(self, tls: TlsSettings, users: dict[str, str] | None = None) -> None:
        app = BasicAuth(web_app(), USERS if users is None else users, HEADERS)
        self.server = HttpServer(app, "127.0.0.1", 0, QUICK, tls=tls)
        self.server.start()
        self.url = f"https://127.0.0.1:{self.server.port}"

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture
def serve() -> Iterator[type[Served]]:
    started: list[Served] = []

    class Tracked(Served):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            started.append(self)

    try:
        yield Tracked
    finally:
        for served in started:
            served.stop()


def settings(pki: Pki, **overrides: object) -> TlsSettings:
    return replace(TlsSettings(cert_file=pki.server.cert, key_file=pki.server.key), **overrides)  # type: ignore[arg-type]


def client(pki: Pki, cert: Pair | None = None, **versions: ssl.TLSVersion) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(pki.ca.cert))
    for name, version in versions.items():
        setattr(context, name, version)
    if cert is not None:
        context.load_cert_chain(cert.cert, cert.key)
    return httpx.Client(verify=context, timeout=10)


@pytest.mark.parametrize("path", ["/metrics", "/-/healthy", "/-/ready", "/", "/nothing-here"])
def test_every_path_needs_the_password(pki: Pki, serve: type[Served], path: str) -> None:
    served = serve(settings(pki))
    with client(pki) as http:
        assert http.get(served.url + path, auth=("prometheus", PASSWORD)).status_code in (200, 404)
        for auth in (None, ("prometheus", "wrong"), ("nobody", PASSWORD)):
            answer = http.get(served.url + path, auth=auth)
            assert answer.status_code == 401, auth
            assert answer.headers["WWW-Authenticate"] == "Basic"


def test_metrics_and_headers_with_the_right_password(pki: Pki, serve: type[Served]) -> None:
    served = serve(settings(pki))
    with client(pki) as http:
        answer = http.get(served.url + "/metrics", auth=("prometheus", PASSWORD))
        refused = http.get(served.url + "/metrics")
    assert answer.status_code == 200 and "python_info" not in answer.text
    for name, value in HEADERS.items():
        assert answer.headers[name] == value
        assert refused.headers[name] == value


def test_a_failed_login_is_logged_without_the_password(
    pki: Pki, serve: type[Served], caplog: pytest.LogCaptureFixture
) -> None:
    served = serve(settings(pki))
    with caplog.at_level(logging.DEBUG), client(pki) as http:
        http.get(served.url + "/metrics", auth=("prometheus", "hunter2-wrong"))
    assert "basic auth failed for user 'prometheus'" in caplog.text
    assert "hunter2-wrong" not in caplog.text
    assert "Basic " not in caplog.text  # nor the Authorization header


def test_plain_http_to_the_tls_port_gets_no_answer(pki: Pki, serve: type[Served]) -> None:
    """Go's server answers 400 here; this one fails the handshake and closes: nothing is served."""
    served = serve(settings(pki), users={})
    with socket.create_connection(("127.0.0.1", served.server.port), timeout=10) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
    assert b"HTTP/1.1" not in received
    with client(pki) as http:  # and the server still serves TLS
        assert http.get(served.url + "/-/healthy").status_code == 200


def test_a_client_without_the_required_certificate_fails_the_handshake(pki: Pki, serve: type[Served]) -> None:
    served = serve(settings(pki, client_ca_file=pki.ca.cert, verify_mode=ssl.CERT_REQUIRED), users={})
    with client(pki, pki.client) as http:
        assert http.get(served.url + "/-/healthy").status_code == 200
    for cert in (None, pki.stranger):
        with client(pki, cert) as http, pytest.raises(httpx.TransportError):
            http.get(served.url + "/-/healthy")


def test_client_allowed_sans(pki: Pki, serve: type[Served]) -> None:
    verified = {"client_ca_file": pki.ca.cert, "verify_mode": ssl.CERT_REQUIRED}
    allowed = serve(settings(pki, **verified, allowed_sans=("prometheus.example",)), users={})
    refused = serve(settings(pki, **verified, allowed_sans=("other.example",)), users={})
    with client(pki, pki.client) as http:
        assert http.get(allowed.url + "/-/healthy").status_code == 200
        with pytest.raises(httpx.TransportError):
            http.get(refused.url + "/-/healthy")


def test_client_allowed_sans_takes_addresses_as_the_toolkit_writes_them(
    pki: Pki, serve: type[Served], tmp_path: Path
) -> None:
    """Go compares an IP SAN in its short form (``2001:db8::1``); Python reports it long and in
    capitals (``2001:DB8:0:0:0:0:0:1``): a file written for node_exporter must work unchanged."""
    ipv6 = make_leaf(tmp_path, "ipv6", pki.ca, "clientAuth", "IP:2001:db8::1")
    verified = {"client_ca_file": pki.ca.cert, "verify_mode": ssl.CERT_REQUIRED}
    served = serve(settings(pki, **verified, allowed_sans=("2001:db8::1",)), users={})
    with client(pki, ipv6) as http:
        assert http.get(served.url + "/-/healthy").status_code == 200


def test_min_version_is_honoured(pki: Pki, serve: type[Served]) -> None:
    served = serve(settings(pki, min_version=ssl.TLSVersion.TLSv1_3), users={})
    with client(pki) as http:
        assert http.get(served.url + "/-/healthy").status_code == 200
    # The handshake fails: a protocol_version alert (Python 3.11+), or a bare close (3.10's asyncio).
    with client(pki, maximum_version=ssl.TLSVersion.TLSv1_2) as http, pytest.raises(httpx.TransportError):
        http.get(served.url + "/-/healthy")


def served_certificate_cn(port: int, pki: Pki) -> str:
    context = ssl.create_default_context(cafile=str(pki.ca.cert))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        subject = dict(item[0] for item in tls.getpeercert()["subject"])  # type: ignore[index]
        return str(subject["commonName"])


def test_a_certificate_rotated_on_disk_is_served_without_a_restart(
    pki: Pki, serve: type[Served], tmp_path: Path
) -> None:
    live = Pair(tmp_path / "tls.crt", tmp_path / "tls.key")
    live.cert.write_bytes(pki.server.cert.read_bytes())
    live.key.write_bytes(pki.server.key.read_bytes())
    served = serve(TlsSettings(cert_file=live.cert, key_file=live.key), users={})
    assert served_certificate_cn(served.server.port, pki) == "server"
    # As kubelet and cert-manager do: the new files are written aside, then renamed into place.
    (tmp_path / "next").mkdir()
    rotated = make_server_cert(tmp_path / "next", pki.ca, name="rotated")
    os.replace(rotated.key, live.key)
    os.replace(rotated.cert, live.cert)
    assert served_certificate_cn(served.server.port, pki) == "rotated"


def test_a_half_written_rotation_keeps_the_old_certificate(
    pki: Pki, serve: type[Served], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    live = Pair(tmp_path / "tls.crt", tmp_path / "tls.key")
    live.cert.write_bytes(pki.server.cert.read_bytes())
    live.key.write_bytes(pki.server.key.read_bytes())
    served = serve(TlsSettings(cert_file=live.cert, key_file=live.key), users={})
    live.key.write_bytes(pki.client.key.read_bytes())  # the key no longer matches the certificate
    with caplog.at_level(logging.WARNING):
        assert served_certificate_cn(served.server.port, pki) == "server"
    assert "keeping the TLS certificate in use" in caplog.text


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False


def test_a_request_that_came_with_the_handshake_is_passed_on() -> None:
    """Python 3.10's TLS transport hands over data that arrived with the end of the handshake even
    though reading is paused: it must reach waitress once the pipe is joined, not be dropped."""

    async def scenario() -> list[bytes]:
        front, back = _Pipe(), _Pipe()
        front.connection_made(RecordingTransport())
        front.data_received(b"GET /metrics HTTP/1.1\r\n")
        back_transport = RecordingTransport()
        back.connection_made(back_transport)
        front.join(back)
        back.join(front)
        front.data_received(b"Host: localhost\r\n\r\n")
        return back_transport.written

    assert asyncio.run(scenario()) == [b"GET /metrics HTTP/1.1\r\n", b"Host: localhost\r\n\r\n"]


def test_serve_with_a_web_config_file(pki: Pki, tmp_path: Path) -> None:
    """The command wired together: ``serve --web.config.file`` answers over TLS with basic auth,
    says so in its log, and never logs the password."""
    (tmp_path / "web.yml").write_text(
        f"tls_server_config:\n  cert_file: {pki.server.cert}\n  key_file: {pki.server.key}\n"
        f"basic_auth_users:\n  prometheus: {USERS['prometheus']}\n"
    )
    port = free_port()
    args = [
        "serve",
        "--region=cn-north-4",
        "--project-id=0123456789abcdef0123456789abcdef",
        # Never called: /-/healthy lists nothing.
        f"--endpoint=http://127.0.0.1:{free_port()}",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--web.config.file={tmp_path / 'web.yml'}",
    ]
    env = {"HUAWEICLOUD_SDK_AK": "AKEXAMPLE", "HUAWEICLOUD_SDK_SK": "very-secret-sk", "HOME": str(tmp_path)}
    url = f"https://127.0.0.1:{port}/-/healthy"
    with exporter_command(args, env) as process, client(pki) as http:

        def answered() -> int:
            try:
                return http.get(url, auth=("prometheus", PASSWORD)).status_code
            except httpx.TransportError:
                return 0

        assert wait_for("the exporter to answer over TLS", answered, 30, 0.05) == 200
        assert http.get(url, auth=("prometheus", "not-it")).status_code == 401
        out, err = terminate(process)
    assert process.returncode == 0, err
    assert f"serving metrics on https://127.0.0.1:{port}/metrics with basic auth" in err
    assert "basic auth failed for user 'prometheus'" in err
    assert PASSWORD not in out + err and "not-it" not in out + err


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc")
def test_a_client_that_leaves_without_reading_frees_its_pipe(pki: Pki, serve: type[Served]) -> None:
    """A client pipelines requests without reading the answers until the server stops reading it,
    then goes away: both ends of the Unix socket to waitress must close, not wait forever to
    hand waitress requests nobody will read the answers to."""
    served = serve(settings(pki), users={})
    baseline = open_descriptors()
    request = b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n" * 100
    context = ssl.create_default_context(cafile=str(pki.ca.cert))
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect(("127.0.0.1", served.server.port))
    with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.settimeout(1)
        with pytest.raises(TimeoutError):  # the server stopped reading: every buffer is full
            while True:
                tls.sendall(request)
    wait_for("the pipe to close", lambda: open_descriptors() <= baseline, 10, 0.05)


@pytest.mark.parametrize("says", [b"", b"\x16\x03\x01"], ids=["silent", "a stalled ClientHello"])
def test_idle_connections_hold_little_tls_state(pki: Pki, says: bytes) -> None:
    """A TLS connection's state costs about 270 KiB (asyncio reads through a 256 KiB buffer): a
    client that connects and says nothing must cost its descriptor only, as without TLS, and
    stalled handshakes no more than ``tls_handshakes`` at once; else a few hundred idle
    connections exceed a container's memory limit."""
    server = HttpServer(
        web_app(), "127.0.0.1", 0, ServerLimits(timeout=1, tls_handshakes=5), tls=settings(pki)
    )
    server.start()
    idle = []
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(20):
            idle.append(socket.create_connection(("127.0.0.1", server.port), timeout=10))
            idle[-1].sendall(says)
        # Accepted after the idle ones: once it is answered, the front has taken them all.
        with client(pki) as http:
            assert http.get(f"https://127.0.0.1:{server.port}/-/healthy").status_code == 200
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        for sock in idle:
            sock.close()
        server.stop()
    assert grown < 3 * 1024 * 1024, f"{grown / 20 / 1024:.0f} KiB an idle connection"


def test_failed_handshakes_leave_no_garbage(pki: Pki, serve: type[Served]) -> None:
    """Each failed handshake's 256 KiB buffer must be freed as it fails, not left in a reference
    cycle for the garbage collector: plain HTTP to the TLS port, scanners, a flood of them."""
    served = serve(settings(pki), users={})
    tracemalloc.start()
    gc.disable()  # what is left must not depend on when the collector happens to run
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(20):
            with socket.create_connection(("127.0.0.1", served.server.port), timeout=10) as sock:
                sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
                with contextlib.suppress(ConnectionResetError):
                    assert sock.recv(65536) == b""  # the server gave up on it
        left = tracemalloc.get_traced_memory()[0] - before
    finally:
        gc.enable()
        tracemalloc.stop()
    assert left < 2 * 1024 * 1024, f"{left / 20 / 1024:.0f} KiB left by each failed handshake"
