"""HTTP: ``/metrics`` (through prometheus_client's WSGI app), ``/-/healthy``, ``/-/ready`` and ``/``.

Each scrape first brings the store up to date within the scrape's deadline, which Prometheus
announces in ``X-Prometheus-Scrape-Timeout-Seconds``; a little is kept back so the answer
arrives before Prometheus gives up. Gzip and OpenMetrics negotiation come from prometheus_client.
"""

from __future__ import annotations

import html
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from exporter import __version__
from exporter.config import ScrapeSettings, WebSettings

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)

TIMEOUT_HEADER = "HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS"


def scrape_budget(environ: WSGIEnvironment, settings: ScrapeSettings) -> float:
    """Seconds this scrape may spend listing: Prometheus' timeout less the offset, capped."""
    announced = environ.get(TIMEOUT_HEADER)
    budget = settings.timeout
    if announced:
        try:
            budget = min(budget, float(announced) - settings.timeout_offset)
        except ValueError:
            log.debug("ignoring a malformed %s header: %r", TIMEOUT_HEADER, announced)
    return max(budget, 0.0)


class ExporterApp:
    def __init__(
        self,
        refresh: Callable[[float], bool],
        registry: CollectorRegistry,
        late_registry: CollectorRegistry,
        web: WebSettings,
        scrape: ScrapeSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        description: str = "",
    ) -> None:
        self._refresh = refresh
        self._metrics_app = make_wsgi_app(registry)
        # For a scrape whose deadline passed while it waited for another scrape's listing.
        self._late_metrics_app = make_wsgi_app(late_registry)
        self._web = web
        self._scrape = scrape
        self._clock = clock
        self._description = description
        self.shutting_down = threading.Event()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == self._web.telemetry_path:
            current = self._refresh(self._clock() + scrape_budget(environ, self._scrape))
            app = self._metrics_app if current else self._late_metrics_app
            body: Iterable[bytes] = app(environ, start_response)
            return body
        if path == "/-/healthy":
            return _text(start_response, "200 OK", "Healthy.\n")
        if path == "/-/ready":
            if self.shutting_down.is_set():
                return _text(start_response, "503 Service Unavailable", "Shutting down.\n")
            return _text(start_response, "200 OK", "Ready.\n")
        if path == "/":
            return _landing(start_response, self._web.telemetry_path, self._description)
        return _text(
            start_response, "404 Not Found", "Not found. Metrics are at " + self._web.telemetry_path + "\n"
        )


def _text(start_response: StartResponse, status: str, body: str) -> list[bytes]:
    data = body.encode()
    start_response(
        status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data)))]
    )
    return [data]


def _landing(start_response: StartResponse, telemetry_path: str, description: str) -> list[bytes]:
    path = html.escape(telemetry_path)
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>vod-exporter</title></head>
<body>
<h1>vod-exporter {html.escape(__version__)}</h1>
<p>Prometheus exporter for Huawei Cloud VOD editing tasks. {html.escape(description)}</p>
<ul>
<li><a href="{path}">{path}</a>: metrics (each scrape lists the editing tasks)</li>
<li><a href="/-/healthy">/-/healthy</a>: liveness</li>
<li><a href="/-/ready">/-/ready</a>: readiness</li>
</ul>
</body></html>
"""
    data = page.encode()
    start_response(
        "200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(data)))]
    )
    return [data]


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _IPv6ThreadingWSGIServer(_ThreadingWSGIServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class ExporterServer:
    """The WSGI app on a threading HTTP server, served from a background thread."""

    def __init__(self, app: WSGIApplication, host: str, port: int) -> None:
        server_class = _IPv6ThreadingWSGIServer if ":" in host else _ThreadingWSGIServer
        self._server = make_server(host, port, app, server_class=server_class, handler_class=_QuietHandler)
        # A short poll interval makes shutdown (SIGTERM, tests) prompt.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
