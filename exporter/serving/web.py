"""HTTP: ``/metrics``, ``/-/healthy``, ``/-/ready`` and ``/``.

Each scrape first brings the store up to date within the scrape's deadline, which Prometheus
announces in ``X-Prometheus-Scrape-Timeout-Seconds``; a little is kept back so the answer
arrives before Prometheus gives up. Format negotiation (text or OpenMetrics), ``name[]``
filtering and gzip follow prometheus_client's own WSGI app, and its writers render the answer.
"""

from __future__ import annotations

import gzip
import html
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, cast
from urllib.parse import parse_qs

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.config import ScrapeSettings, WebSettings
from exporter.serving.collector import MissedDeadline

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

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


class WebApp:
    def __init__(
        self,
        refresh: Callable[[float], bool],
        registry: CollectorRegistry,
        web: WebSettings,
        scrape: ScrapeSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        description: str = "",
    ) -> None:
        self._refresh = refresh
        self._registry = registry
        self._web = web
        self._scrape = scrape
        self._clock = clock
        self._description = description
        self.shutting_down = threading.Event()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == self._web.telemetry_path:
            if environ.get("REQUEST_METHOD", "GET") != "GET":
                # Not even HEAD: every answer here costs a listing, that is API calls.
                return _text(start_response, "405 Method Not Allowed", "Use GET.\n", [("Allow", "GET")])
            current = self._refresh(self._clock() + scrape_budget(environ, self._scrape))
            return _metrics(self._registry, environ, start_response, current=current)
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


# Level 6, not gzip's default 9: a third of the CPU for 3 % more bytes on a typical exposition.
GZIP_LEVEL = 6


def _metrics(
    registry: CollectorRegistry,
    environ: WSGIEnvironment,
    start_response: StartResponse,
    *,
    current: bool = True,
) -> list[bytes]:
    encoder, content_type = choose_encoder(environ.get("HTTP_ACCEPT", ""))
    names = parse_qs(environ.get("QUERY_STRING", "")).get("name[]")
    # As prometheus_client's own WSGI app does. In older versions (0.20) its writers are annotated
    # with CollectorRegistry alone, though they only call collect(), and the restricted registry is
    # no Collector subclass, though it has collect().
    source = cast(Collector, registry.restricted_registry(names)) if names else registry
    if not current:  # the listing outlived this scrape's deadline
        source = MissedDeadline(source)
    body = encoder(cast(CollectorRegistry, source))
    headers = [("Content-Type", content_type)]
    if gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING", "")):
        body = gzip.compress(body, compresslevel=GZIP_LEVEL)
        headers.append(("Content-Encoding", "gzip"))
    headers.append(("Content-Length", str(len(body))))
    start_response("200 OK", headers)
    return [body]


def _text(
    start_response: StartResponse, status: str, body: str, extra: list[tuple[str, str]] | None = None
) -> list[bytes]:
    data = body.encode()
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data)))]
    start_response(status, headers + (extra or []))
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
