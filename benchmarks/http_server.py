"""How the HTTP server holds up against hostile or careless clients, for several servers.

Each candidate serves the exporter's own WSGI app (``WebApp`` over a registry of 1,000 series,
with a listing that returns at once) in a process of its own, so that its descriptor limit can
be lowered and its CPU time read. Every client is on 127.0.0.1, every loop is bounded, and each
scenario gives up after a fixed time:

- ``burst``: 200 clients connect at the same moment and ask for ``/-/healthy``, then for
  ``/metrics``; how many are answered, and how fast;
- ``silent``: 100 connections that send nothing; how long ``/-/healthy`` then takes, and when
  the server closes the silent ones;
- ``no-version``: a request line without an HTTP version; answered, closed, or left hanging;
- ``fd-limit``: the server's ``RLIMIT_NOFILE`` lowered to 128 and 200 silent connections opened;
  how long ``/-/healthy`` then takes, and the server's CPU time meanwhile (a spinning accept loop
  shows here);
- ``sequential``: 200 requests for ``/-/healthy`` one after another, each on a new connection: what
  a connection costs (for TLS, a full handshake), in time and in the server's CPU.

``exporter-tls`` is the exporter's server with ``--web.config.file``: TLS (an EC P-256 certificate
made for the run by ``openssl``) and basic auth (a bcrypt hash of cost 10). Its clients speak TLS
and send the password, except the silent ones, which send nothing at all (not even a handshake);
``silent-tls`` adds connections that finish the handshake and then say nothing.

Run from the repository root (about 3 minutes on 2 cores):

    python -m benchmarks.http_server                       # every candidate
    python -m benchmarks.http_server --candidates exporter,exporter-tls --json out.json
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.measured_process import child_environment

HOST = "127.0.0.1"
# The same idle/read timeout for every candidate, so that their figures compare.
TIMEOUT = 10.0
BURST_CLIENTS = 200
BURST_WAIT = 15.0
SILENT_CONNECTIONS = 100
SILENT_WAIT = 30.0
LOW_NOFILE = 128
FD_LIMIT_CONNECTIONS = 200
FD_LIMIT_WAIT = 40.0
NO_VERSION_WAIT = 20.0
SERIES = 1000
SEQUENTIAL = 200
CANDIDATES = ("wsgiref", "cheroot", "waitress", "exporter", "exporter-tls")
USER, PASSWORD = "prometheus", "benchmark-password"


# ---- the server side: one candidate in this process, until stdin closes ----


def _app() -> Any:
    from prometheus_client import CollectorRegistry, Gauge

    from exporter.config import ScrapeSettings, WebSettings
    from exporter.serving.web import WebApp

    registry = CollectorRegistry()
    gauge = Gauge("bench_series", "A labelled gauge.", ["task_id"], registry=registry)
    for index in range(SERIES):
        gauge.labels(f"task-{index:06d}").set(index)
    return WebApp(lambda _deadline: True, registry, WebSettings(), ScrapeSettings())


def _serve_wsgiref(app: Any) -> tuple[int, Callable[[], None]]:
    """The server of the first release: wsgiref with a thread per connection, backlog 5."""
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = make_server(HOST, 0, app, server_class=Server, handler_class=Quiet)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server.server_address[1], server.shutdown


def _serve_cheroot(app: Any) -> tuple[int, Callable[[], None]]:
    from cheroot import wsgi

    server = wsgi.Server((HOST, 0), app, numthreads=10, request_queue_size=1024, timeout=TIMEOUT)
    server.prepare()
    threading.Thread(target=server.serve, daemon=True).start()
    return server.bind_addr[1], server.stop


def _serve_waitress(app: Any) -> tuple[int, Callable[[], None]]:
    import waitress

    server = waitress.create_server(
        app, host=HOST, port=0, backlog=1024, channel_timeout=int(TIMEOUT), cleanup_interval=1
    )
    threading.Thread(target=server.run, daemon=True).start()
    return server.effective_port, server.close


def _serve_exporter(app: Any) -> tuple[int, Callable[[], None]]:
    from exporter.serving.server import HttpServer

    server = HttpServer(app, HOST, 0)
    server.start()
    return server.port, server.stop


def _serve_exporter_tls(app: Any, certificates: Path) -> tuple[int, Callable[[], None]]:
    import bcrypt

    from exporter.serving.basic_auth import BasicAuth
    from exporter.serving.server import HttpServer
    from exporter.serving.web_config import TlsSettings

    users = {USER: bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()}
    tls = TlsSettings(cert_file=certificates / "server.crt", key_file=certificates / "server.key")
    server = HttpServer(BasicAuth(app, users, {}), HOST, 0, tls=tls)
    server.start()
    return server.port, server.stop


SERVERS = {
    "wsgiref": _serve_wsgiref,
    "cheroot": _serve_cheroot,
    "waitress": _serve_waitress,
    "exporter": _serve_exporter,
}


def serve(candidate: str, nofile: int | None, certificates: Path | None) -> None:
    if nofile:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    if candidate == "exporter-tls":
        assert certificates is not None
        port, stop = _serve_exporter_tls(_app(), certificates)
    else:
        port, stop = SERVERS[candidate](_app())
    print(port, flush=True)
    sys.stdin.read()  # until the harness closes our stdin
    stop()


# ---- the client side ----


@dataclass(frozen=True)
class Client:
    """How clients talk to a candidate: plain, or TLS with the run's CA and the password."""

    certificates: Path | None = None

    @property
    def tls(self) -> ssl.SSLContext | None:
        if self.certificates is None:
            return None
        return ssl.create_default_context(cafile=str(self.certificates / "ca.crt"))

    @property
    def authorization(self) -> str:
        if self.certificates is None:
            return ""
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        return f"Authorization: Basic {token}\r\n"


PLAIN = Client()


@contextmanager
def server_process(
    candidate: str, nofile: int | None = None, client: Client = PLAIN
) -> Iterator[tuple[int, int]]:
    """(port, pid) of the candidate serving in a child process; stopped on the way out."""
    args = [sys.executable, "-m", "benchmarks.http_server", "--serve", candidate]
    if nofile:
        args += ["--nofile", str(nofile)]
    if client.certificates is not None:
        args += ["--certificates", str(client.certificates)]
    process = subprocess.Popen(
        args,
        env=child_environment({}),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stdin is not None
        port = int(process.stdout.readline())
        yield port, process.pid
    finally:
        if process.stdin:
            process.stdin.close()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def get(
    port: int, path: str, wait: float, request: bytes | None = None, client: Client = PLAIN
) -> tuple[str, float]:
    """(outcome, seconds): the status line's code, ``closed`` without an answer, or ``none``."""
    start = time.monotonic()
    request = request or (
        f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n{client.authorization}Connection: close\r\n\r\n".encode()
    )
    tls = client.tls
    try:
        with socket.create_connection((HOST, port), timeout=wait) as raw:
            raw.settimeout(max(wait - (time.monotonic() - start), 0.01))
            sock = tls.wrap_socket(raw, server_hostname=HOST) if tls is not None else raw
            sock.sendall(request)
            data = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError as error:
        if isinstance(error, TimeoutError):
            return "none", time.monotonic() - start
        return "closed", time.monotonic() - start
    elapsed = time.monotonic() - start
    if not data:
        return "closed", elapsed
    parts = data.split(b" ", 2)
    return (parts[1].decode() if len(parts) > 1 and parts[0].startswith(b"HTTP/") else "other"), elapsed


def burst(port: int, path: str, client: Client = PLAIN) -> dict[str, Any]:
    results: list[tuple[str, float]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(BURST_CLIENTS)

    def one() -> None:
        barrier.wait()
        result = get(port, path, BURST_WAIT, client=client)
        with lock:
            results.append(result)

    threads = [threading.Thread(target=one) for _ in range(BURST_CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    answered = sorted(seconds for outcome, seconds in results if outcome == "200")
    return {
        "clients": BURST_CLIENTS,
        "answered": len(answered),
        "median_seconds": statistics.median(answered) if answered else None,
        "max_seconds": answered[-1] if answered else None,
    }


def open_silent(port: int, count: int) -> list[socket.socket]:
    """Connections that send nothing; a connect the backlog cannot take is given up on."""
    sockets = []
    deadline = time.monotonic() + 20.0
    for _ in range(count):
        if time.monotonic() > deadline:
            break
        sock = socket.socket()
        sock.settimeout(0.5)
        try:
            sock.connect((HOST, port))
        except OSError:
            sock.close()
            continue
        sockets.append(sock)
    return sockets


def closed_by_server(sockets: Sequence[socket.socket], wait: float) -> float | None:
    """Seconds until the server has closed every one of ``sockets``, or None within ``wait``."""
    start = time.monotonic()
    for sock in sockets:
        sock.settimeout(max(wait - (time.monotonic() - start), 0.01))
        try:
            if sock.recv(1024) == b"":
                continue
        except TimeoutError:
            return None
        except OSError:
            continue
    return time.monotonic() - start


def silent(port: int, client: Client = PLAIN, handshaken: bool = False) -> dict[str, Any]:
    sockets = open_silent(port, SILENT_CONNECTIONS)
    if handshaken:
        sockets = handshake(sockets, client)
    start = time.monotonic()
    try:
        outcome, seconds = get(port, "/-/healthy", SILENT_WAIT, client=client)
        remaining = TIMEOUT + 10 - (time.monotonic() - start)
        all_closed = closed_by_server(sockets, max(remaining, 1.0))
    finally:
        for sock in sockets:
            sock.close()
    return {
        "connections": len(sockets),
        "healthy": outcome,
        "healthy_seconds": seconds,
        "silent_closed_after_seconds": None if all_closed is None else all_closed + seconds,
    }


def handshake(sockets: Sequence[socket.socket], client: Client) -> list[socket.socket]:
    """The same connections after a finished TLS handshake (those whose handshake failed dropped)."""
    tls = client.tls
    assert tls is not None
    done: list[socket.socket] = []
    for sock in sockets:
        sock.settimeout(5.0)
        try:
            done.append(tls.wrap_socket(sock, server_hostname=HOST))
        except OSError:
            sock.close()
    return done


def no_version(port: int, client: Client = PLAIN) -> dict[str, Any]:
    outcome, seconds = get(port, "", NO_VERSION_WAIT, request=b"GET /-/healthy\r\n", client=client)
    return {"outcome": outcome, "seconds": seconds}


def sequential(port: int, pid: int, client: Client = PLAIN) -> dict[str, Any]:
    """``SEQUENTIAL`` requests one after another, a new connection each."""
    cpu_before = cpu_seconds(pid)
    times, failed = [], 0
    for _ in range(SEQUENTIAL):
        outcome, seconds = get(port, "/-/healthy", 10.0, client=client)
        if outcome == "200":
            times.append(seconds)
        else:
            failed += 1
    cpu = cpu_seconds(pid) - cpu_before
    times.sort()
    return {
        "requests": SEQUENTIAL,
        "failed": failed,
        "median_ms": statistics.median(times) * 1000 if times else None,
        "p99_ms": times[int(len(times) * 0.99) - 1] * 1000 if times else None,
        "server_cpu_ms_per_request": cpu * 1000 / SEQUENTIAL,
    }


def fd_limit(candidate: str, client: Client = PLAIN) -> dict[str, Any]:
    with server_process(candidate, nofile=LOW_NOFILE, client=client) as (port, pid):
        sockets = open_silent(port, FD_LIMIT_CONNECTIONS)
        try:
            cpu_before, start = cpu_seconds(pid), time.monotonic()
            outcome, seconds = get(port, "/-/healthy", FD_LIMIT_WAIT, client=client)
            cpu = cpu_seconds(pid) - cpu_before
            wall = time.monotonic() - start
            metrics, metrics_seconds = get(port, "/metrics", FD_LIMIT_WAIT, client=client)
        finally:
            for sock in sockets:
                sock.close()
    return {
        "nofile": LOW_NOFILE,
        "connections": len(sockets),
        "healthy": outcome,
        "healthy_seconds": seconds,
        "server_cpu_share": cpu / wall if wall else None,
        "metrics": metrics,
        "metrics_seconds": metrics_seconds,
    }


def measure(candidate: str, client: Client = PLAIN) -> dict[str, Any]:
    result: dict[str, Any] = {"candidate": candidate}
    with server_process(candidate, client=client) as (port, pid):
        result["burst_healthy"] = burst(port, "/-/healthy", client)
        result["burst_metrics"] = burst(port, "/metrics", client)
        result["no_version"] = no_version(port, client)
        result["silent"] = silent(port, client)
        if client.certificates is not None:
            result["silent_tls"] = silent(port, client, handshaken=True)
        result["sequential"] = sequential(port, pid, client)
    result["fd_limit"] = fd_limit(candidate, client)
    return result


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _burst(b: dict[str, Any]) -> str:
    return f"{b['answered']}/{b['clients']}, {_seconds(b['median_seconds'])}, {_seconds(b['max_seconds'])}"


def table(results: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| candidate | burst /-/healthy: answered, median s, max s | burst /metrics: answered, median s, "
        "max s | no-version request | silent: /-/healthy, s, all closed after s "
        "| fd limit: /-/healthy, s, CPU share |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        s, f, nv = r["silent"], r["fd_limit"], r["no_version"]
        bursts = [_burst(r["burst_healthy"]), _burst(r["burst_metrics"])]
        lines.append(
            f"| {r['candidate']} | {bursts[0]} | {bursts[1]} | {nv['outcome']} after {nv['seconds']:.2f} s "
            f"| {s['healthy']} after {s['healthy_seconds']:.2f}, "
            f"{_seconds(s['silent_closed_after_seconds'])} "
            f"| {f['healthy']} after {f['healthy_seconds']:.2f}, {f['server_cpu_share']:.0%} |"
        )
    lines += [
        "",
        "| candidate | sequential: failed, median ms, p99 ms, server CPU ms per request "
        "| silent after a handshake: /-/healthy, s, all closed after s |",
        "|---|---|---|",
    ]
    for r in results:
        q = r["sequential"]
        t = r.get("silent_tls")
        after = (
            f"{t['healthy']} after {t['healthy_seconds']:.2f}, {_seconds(t['silent_closed_after_seconds'])}"
            if t
            else "-"
        )
        lines.append(
            f"| {r['candidate']} | {q['failed']}/{q['requests']}, {_seconds(q['median_ms'])}, "
            f"{_seconds(q['p99_ms'])}, {q['server_cpu_ms_per_request']:.2f} | {after} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.http_server",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--candidates", default=",".join(CANDIDATES), help="comma-separated")
    parser.add_argument("--json", help="write every figure to this file")
    parser.add_argument("--serve", choices=CANDIDATES, help=argparse.SUPPRESS)
    parser.add_argument("--nofile", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--certificates", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.nofile, args.certificates)
        return
    # The clients need more descriptors than the server under test is given.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    results = []
    with tempfile.TemporaryDirectory() as directory:
        for candidate in args.candidates.split(","):
            print(f"measuring {candidate}...", file=sys.stderr, flush=True)
            client = PLAIN
            if candidate == "exporter-tls":
                # The tests' certificates: a CA and a server certificate for 127.0.0.1.
                from tests.certificates import make_pki

                make_pki(Path(directory))
                client = Client(Path(directory))
            results.append(measure(candidate, client))
    print(table(results))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=2)


if __name__ == "__main__":
    main()
