"""HTTP: ``/metrics``, ``/-/healthy``, ``/-/ready`` and ``/``.

Each scrape first brings the store up to date within the scrape's deadline, which Prometheus
announces in ``X-Prometheus-Scrape-Timeout-Seconds``; a little is kept back so the answer
arrives before Prometheus gives up. The answer is prometheus_client's documented WSGI app,
``make_wsgi_app``: format negotiation (text or OpenMetrics), ``name[]`` filtering and gzip.
"""

from __future__ import annotations

import html
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, cast

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.config import ScrapeSettings, WebSettings
from exporter.serving.collector import MissedDeadline

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
        self._current_app, self._late_app = metrics_apps(registry)
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
            # The listing outlived this scrape's deadline: up 0, no snapshot.
            app = self._current_app if current else self._late_app
            return app(environ, start_response)
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


class _MissedDeadlineRegistry:
    """The registry as a scrape that could not wait for the listing sees it (``MissedDeadline``),
    with the ``restricted_registry`` that prometheus_client's WSGI app calls for ``name[]``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        return MissedDeadline(self._registry).collect()

    def restricted_registry(self, names: Iterable[str]) -> Collector:
        # In prometheus-client 0.20 the restricted registry is no Collector subclass, though it
        # has collect().
        return MissedDeadline(cast(Collector, self._registry.restricted_registry(names)))


def metrics_apps(registry: CollectorRegistry) -> tuple[WSGIApplication, WSGIApplication]:
    """prometheus_client's documented WSGI app (format negotiation, ``name[]``, gzip) over the
    registry, and over the same registry as a late scrape sees it."""
    late = cast(CollectorRegistry, _MissedDeadlineRegistry(registry))
    return make_wsgi_app(registry), make_wsgi_app(late)


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
