"""HTTP: ``/metrics``, ``/-/healthy``, ``/-/ready``, ``/-/reload`` and ``/``.

Each scrape first brings the store up to date within the scrape's deadline, which Prometheus
announces in ``X-Prometheus-Scrape-Timeout-Seconds``; a little is kept back so the answer
arrives before Prometheus gives up. The answer is prometheus_client's documented WSGI app,
``make_wsgi_app``: format negotiation (text or OpenMetrics), ``name[]`` filtering and gzip.

``POST /-/reload`` re-reads the targets file, only when the operator enabled it
(``--web.enable-lifecycle``, as Prometheus names it): anyone who reaches the port could otherwise
make the exporter read its files again.
"""

from __future__ import annotations

import html
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable
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
        refresh: Callable[[float], Collection[str]],
        registry: CollectorRegistry,
        web: WebSettings,
        scrape: ScrapeSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        description: str = "",
        reload: Callable[[], str | None] | None = None,
    ) -> None:
        """``refresh(deadline)`` brings every target up to date by ``deadline`` and returns the
        project ids of those whose listing it could not wait for. ``reload``, when the lifecycle
        API is enabled: re-reads the configuration, returns None or why it was refused."""
        self._refresh = refresh
        self._registry = registry
        # Annotated: prometheus-client 0.20 leaves make_wsgi_app untyped.
        self._current_app: WSGIApplication = make_wsgi_app(registry)
        self._reload = reload
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
            late = self._refresh(self._clock() + scrape_budget(environ, self._scrape))
            # Those listings outlived this scrape's deadline: up 0, no snapshot, for them alone.
            app = late_app(self._registry, late) if late else self._current_app
            return app(environ, start_response)
        if path == "/-/reload":
            return self._lifecycle_reload(environ, start_response)
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

    def _lifecycle_reload(self, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        if self._reload is None:
            return _text(start_response, "403 Forbidden", "Lifecycle API is not enabled.\n")
        if environ.get("REQUEST_METHOD") != "POST":
            return _text(start_response, "405 Method Not Allowed", "Use POST.\n", [("Allow", "POST")])
        refused = self._reload()
        if refused is not None:
            return _text(start_response, "500 Internal Server Error", f"Reload refused: {refused}\n")
        return _text(start_response, "200 OK", "Reloaded.\n")


class _MissedDeadlineRegistry:
    """The registry as a scrape that could not wait for some listings sees it (``MissedDeadline``),
    with the ``restricted_registry`` that prometheus_client's WSGI app calls for ``name[]``."""

    def __init__(self, registry: CollectorRegistry, late: Collection[str]) -> None:
        self._registry = registry
        self._late = late

    def collect(self) -> Iterable[Metric]:
        return MissedDeadline(self._registry, self._late).collect()

    def restricted_registry(self, names: Iterable[str]) -> Collector:
        # In prometheus-client 0.20 the restricted registry is no Collector subclass, though it
        # has collect().
        return MissedDeadline(cast(Collector, self._registry.restricted_registry(names)), self._late)


def late_app(registry: CollectorRegistry, late: Collection[str]) -> WSGIApplication:
    """prometheus_client's documented WSGI app (format negotiation, ``name[]``, gzip) over the
    registry as a scrape sees it that could not wait for the listings of ``late`` (project ids)."""
    app: WSGIApplication = make_wsgi_app(cast(CollectorRegistry, _MissedDeadlineRegistry(registry, late)))
    return app


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
