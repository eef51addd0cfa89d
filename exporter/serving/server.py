"""The HTTP server under the WSGI app: waitress, with every resource bounded.

Chosen by measurement over wsgiref (the first release) and cheroot; see ``benchmarks/http_server.py``
and docs/benchmarks.md. waitress reads requests in one event loop and hands only complete requests
to a fixed pool of workers, so a silent or slow client holds neither a thread nor, past the
connection limit, a file descriptor:

- the listen backlog is 1,024 (the kernel may cap it lower: ``net.core.somaxconn``);
- a connection that sends nothing, or stops halfway through a request, or idles between
  requests, is closed after ``timeout`` seconds; a scrape that takes long in the app is not cut;
- at most ``max_connections`` are open at once, never more than the descriptor limit allows less a
  reserve for the exporter's own sockets: beyond that, new connections wait in the backlog instead
  of making ``accept()`` fail in a loop;
- ``workers`` threads run the app: scrapes that wait for the same listing each hold one, so there
  are enough for several Prometheus servers and the health checks beside them.

waitress documents ``serve()``, which blocks and has no graceful stop. ``create_server`` with our
own socket map, its task dispatcher's ``shutdown`` and the channels' ``writable`` are what its own
``serve`` and tests use, but not documented as public: pyproject.toml keeps waitress below 4, and
CI runs the suite on the oldest and the newest release allowed.

With ``tls`` settings, waitress listens on a private Unix socket instead, and ``tls.TlsFront``
takes the public port, does the handshakes, and pipes each connection to it (see ``tls.py``).
"""

from __future__ import annotations

import resource
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import waitress  # type: ignore[import-untyped]

from exporter.serving.tls import DESCRIPTORS_PER_CONNECTION, ReloadingContext, TlsFront

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

    from exporter.serving.web_config import TlsSettings

# Descriptors kept back from the connection limit for what the exporter itself opens: the API
# client's pooled connections, the log, the interpreter's own files.
RESERVED_DESCRIPTORS = 32


@dataclass(frozen=True)
class ServerLimits:
    timeout: int = 10  # seconds; waitress counts whole seconds
    max_connections: int = 512
    workers: int = 16
    backlog: int = 1024
    tls_handshakes: int = 128  # at once; the rest wait (see tls.py: each costs about 270 KiB)
    shutdown_timeout: float = 5.0  # for the requests in flight when the server stops


DEFAULT_LIMITS = ServerLimits()


def connection_limit(wanted: int) -> int:
    """``wanted``, or fewer when the soft descriptor limit would not allow that many."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft - RESERVED_DESCRIPTORS))


class HttpServer:
    """The WSGI app served from a background thread; ``start()``, then ``stop()``."""

    def __init__(
        self,
        app: WSGIApplication,
        host: str,
        port: int,
        limits: ServerLimits = DEFAULT_LIMITS,
        tls: TlsSettings | None = None,
    ) -> None:
        self._limits = limits
        # Ours, so that stop() can close what is left in it and end the loop.
        self._map: dict[int, waitress.wasyncore.dispatcher] = {}
        self._front: TlsFront | None = None
        self._private_dir: str | None = None
        if tls is None:
            where = {"host": host or "0.0.0.0", "port": port}
            connections = connection_limit(limits.max_connections)
        else:
            # A TLS connection holds one descriptor during its handshake, three once it reaches
            # waitress: the front counts descriptors, and waitress sees only the piped ones.
            descriptors = connection_limit(limits.max_connections * DESCRIPTORS_PER_CONNECTION)
            connections = max(1, descriptors // DESCRIPTORS_PER_CONNECTION)
            # Loaded before anything is opened: a bad certificate is a ConfigError, and nothing leaks.
            contexts = ReloadingContext(tls)
            # Bound first, so that a port in use fails before anything else is made.
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            listener = socket.create_server((host or "0.0.0.0", port), family=family, backlog=limits.backlog)
            try:
                # Mode 0700: only this user reaches waitress without going through TLS.
                self._private_dir = tempfile.mkdtemp(prefix="vod-exporter-")
            except OSError:
                listener.close()
                raise
            backend = str(Path(self._private_dir) / "http.sock")
            where = {"unix_socket": backend, "unix_socket_perms": "600", "url_scheme": "https"}
            self._front = TlsFront(
                listener,
                backend,
                contexts,
                handshake_timeout=limits.timeout,
                max_descriptors=descriptors,
                max_handshakes=limits.tls_handshakes,
                allowed_sans=tls.allowed_sans,
            )
        try:
            self._server = waitress.create_server(
                app,
                map=self._map,
                **where,
                ident="vod-exporter",
                threads=limits.workers,
                backlog=limits.backlog,
                connection_limit=connections,
                channel_timeout=limits.timeout,
                # How often idle connections are looked for: a silent one lives at most a second longer.
                cleanup_interval=1,
                # poll() has no limit on descriptor numbers, unlike select()'s 1,024.
                asyncore_use_poll=True,
            )
        except OSError:
            self._close_front()
            raise
        self._thread = threading.Thread(target=self._server.run, name="http", daemon=True)

    @property
    def port(self) -> int:
        if self._front is not None:
            return self._front.port
        return int(self._server.effective_port)

    def start(self) -> None:
        self._thread.start()
        if self._front is not None:
            self._front.start()

    def stop(self) -> None:
        """Let the requests in flight finish and their answers go out, then close everything."""
        # While the loop still runs, so that the answers being written reach the client.
        self._server.task_dispatcher.shutdown(timeout=self._limits.shutdown_timeout)
        deadline = time.monotonic() + self._limits.shutdown_timeout
        pause = threading.Event()
        while time.monotonic() < deadline and any(channel.writable() for channel in list(self._map.values())):
            pause.wait(0.01)
        if self._front is not None:
            self._front.stop(self._limits.shutdown_timeout)
        self._server.close()
        for channel in list(self._map.values()):
            channel.close()
        self._thread.join(self._limits.shutdown_timeout)
        self._close_front()

    def _close_front(self) -> None:
        """The TLS front's listening socket and the private directory of the socket behind it."""
        if self._front is not None:
            self._front.close()
        if self._private_dir is not None:
            shutil.rmtree(self._private_dir, ignore_errors=True)
