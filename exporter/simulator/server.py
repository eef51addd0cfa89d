"""The simulator on real sockets, and ``Simulator``: the in-process handle for tests, demo and benchmarks.

HTTP/1.1 with keep-alive, one thread per connection (so injected latency never holds up another
client), and every response written with a single ``sendall``: headers and body in one segment,
so Nagle's algorithm and delayed ACKs cannot add 40 ms to each answer.

    with Simulator(project_id="p1", access_key=ak, secret_key=sk) as sim:
        sim.url                      # http://127.0.0.1:PORT, VOD and IAM alike
        sim.world.counts()           # ground truth: also total(), open_tasks(), find(task_id)
        sim.world.set_order("oldest-first")  # or delete_task(task_id), add_task()
        sim.faults = FaultSettings(error_rate=0.5)
        sim.requests.count("tasks", 401)

Several accounts, each with its keys, users and projects (see ``accounts``):

    with Simulator(accounts=[Account("media", access_key=ak, secret_key=sk, projects=[
            Project(p1, region="cn-north-4"), Project(p2, region="ap-southeast-1")])]) as sim:
        sim.worlds[p2].counts()
        sim.set_faults(FaultSettings(error_rate=1.0), project_id=p2)
        sim.requests.count("tasks", 200, project_id=p1)
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import socketserver
import struct
import threading
import time
from collections.abc import Callable, Sequence
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from exporter.simulator.accounts import DEFAULT_REGION, Account, Project, check_accounts
from exporter.simulator.faults import FaultSettings
from exporter.simulator.gateway import Gateway, Request, RequestLog, Response
from exporter.simulator.identity import DEFAULT_TOKEN_LIFETIME, IamUser, Identity
from exporter.simulator.world import World, WorldSettings

log = logging.getLogger(__name__)

_IDLE_CONNECTION_TIMEOUT = 60.0
_RESET_LINGER = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST instead of FIN


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "api-gateway"
    timeout = _IDLE_CONNECTION_TIMEOUT
    server: _HttpServer

    def _serve(self) -> None:
        length_text = self.headers.get("Content-Length", "0")
        if not length_text.isdigit() or self.headers.get("Transfer-Encoding"):
            self.send_error(HTTPStatus.BAD_REQUEST)
            return
        body = self.rfile.read(int(length_text)) if length_text != "0" else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        response = self.server.gateway.handle(Request(self.command, self.path, headers, body))
        if response is None:
            self.close_connection = True
            self.server.reset_on_close(self.connection)
            return
        self._write(response)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

    def _write(self, response: Response) -> None:
        lines = [
            f"HTTP/1.1 {response.status} {HTTPStatus(response.status).phrase}",
            f"Server: {self.server_version}",
            f"Date: {formatdate(usegmt=True)}",
            f"Content-Type: {response.content_type}",
            f"Content-Length: {len(response.body)}",
            f"X-Request-Id: {response.request_id}",
        ]
        lines.extend(f"{name}: {value}" for name, value in response.headers)
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head if self.command == "HEAD" else head + response.body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Malformed requests get a gateway-style JSON answer too, with its request id."""
        self.close_connection = True
        request_id = os.urandom(16).hex()
        body = (
            b'{"error_code":"APIGW.0201","error_msg":"API request error.","request_id":"%s"}'
            % request_id.encode()
        )
        self.server.gateway.requests.record("other", int(code))
        self._write(Response(int(code), body, request_id))

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format, *args)


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], gateway: Gateway) -> None:
        self.gateway = gateway
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._to_reset: set[socket.socket] = set()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would look up the host's FQDN, which can stall on DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def reset_on_close(self, connection: socket.socket) -> None:
        with self._lock:
            self._to_reset.add(connection)

    def shutdown_request(self, request: Any) -> None:
        with self._lock:
            self._connections.discard(request)
            reset = request in self._to_reset
            self._to_reset.discard(request)
        if reset:
            # No shutdown() first: that would send a FIN, and the client would see a clean close.
            request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_LINGER)
            request.close()
            return
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            # A connection may have been closed by its handler since the copy was taken.
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-answer is normal here (timeouts, benchmarks stopping).
        log.debug("error serving %s", client_address, exc_info=True)


class Simulator:
    """The simulated VOD API (and its IAM endpoints), on ``host:port`` (0: a free port).

    One project: ``project_id`` (in ``region``), ``world_settings``, and the account's
    ``access_key``/``secret_key`` and ``iam_users``. Several: ``accounts``, each with its own
    credentials and projects. ``faults`` applies to every project not given its own; its
    ``rate_limit`` is each account's request quota.

    ``clock`` dates what the gateway checks: signatures (15 minutes of skew), token expiry and
    the request rate. ``world_clock``, when given, is the tasks' time alone, so a benchmark can
    step simulated time ("a scrape every 15 s") while clients sign with the real time.
    """

    def __init__(
        self,
        *,
        project_id: str | None = None,
        region: str = DEFAULT_REGION,
        world_settings: WorldSettings | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        iam_users: Sequence[IamUser] = (),
        accounts: Sequence[Account] = (),
        faults: FaultSettings | None = None,
        token_lifetime: float = DEFAULT_TOKEN_LIFETIME,
        lockout_after: int = 5,
        clock: Callable[[], float] = time.time,
        world_clock: Callable[[], float] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if (project_id is None) == (not accounts):
            raise ValueError("give either project_id or accounts")
        if project_id is not None:
            # The one account's users keep the domains they name (their own name by default).
            users = [IamUser(user.name, user.password, user.domain_name) for user in iam_users]
            project = Project(project_id, region=region, world=world_settings or WorldSettings())
            accounts = [Account("simulated", access_key, secret_key, users, [project])]
        check_accounts(accounts)
        self.accounts = tuple(accounts)
        world_time = world_clock or clock
        self.worlds = {
            project.id: World(project.world, start=world_time(), clock=world_time)
            for account in self.accounts
            for project in account.projects
        }
        self.identity = Identity(
            accounts=self.accounts, token_lifetime=token_lifetime, clock=clock, lockout_after=lockout_after
        )
        self._stopping = threading.Event()
        self.gateway = Gateway(
            accounts=self.accounts,
            worlds=self.worlds,
            identity=self.identity,
            faults=faults or FaultSettings(),
            clock=clock,
            sleep=self._stopping.wait,
        )
        self._address = (host, port)
        self._server: _HttpServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def project_id(self) -> str:
        """The project of a one-project simulator."""
        return self._only_project()

    @property
    def world(self) -> World:
        """The tasks of a one-project simulator; ``worlds[project_id]`` for several."""
        return self.worlds[self._only_project()]

    def _only_project(self) -> str:
        if len(self.worlds) != 1:
            raise AttributeError("this simulator has several projects: use worlds[project_id]")
        return next(iter(self.worlds))

    @property
    def faults(self) -> FaultSettings:
        return self.gateway.faults

    @faults.setter
    def faults(self, settings: FaultSettings) -> None:
        """Every project's faults, and every account's request quota, start afresh."""
        self.gateway.set_faults(settings)

    def set_faults(self, settings: FaultSettings, *, project_id: str) -> None:
        """One project's faults (its ``rate_limit`` aside: the quota is the account's)."""
        self.gateway.set_faults(settings, project_id)

    @property
    def requests(self) -> RequestLog:
        return self.gateway.requests

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the simulator is not started")
        host, port = str(self._server.server_address[0]), int(self._server.server_address[1])
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}"

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("the simulator is already started")
        self._stopping.clear()
        server = _HttpServer(self._address, self.gateway)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="vod-simulator", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._stopping.set()  # ends injected latency waits
        server.shutdown()
        server.close_connections()
        server.server_close()
        thread.join()
        self._server = self._thread = None

    def __enter__(self) -> Simulator:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
