"""The exporter's parts wired together, once: used by ``serve``, ``once`` and ``demo``.

auth -> client -> store -> collector -> web, with the clocks and the registry passed in.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from exporter import __version__
from exporter.api_metrics import ApiRequestStats
from exporter.auth import build_auth
from exporter.client import VodClient
from exporter.collector import VodCollector
from exporter.config import Config
from exporter.credentials import Credentials
from exporter.listing import ListingCoordinator
from exporter.store import StoreView, TaskStore
from exporter.web import ExporterApp

IAM_OPERATION = "iam_token"
USER_AGENT = f"vod-exporter/{__version__}"


class Exporter:
    def __init__(
        self,
        config: Config,
        credentials: Credentials,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        self.api_stats = ApiRequestStats()
        self._iam_http = httpx.Client(
            timeout=config.api.request_timeout,
            verify=config.api.verify_tls,
            headers={"User-Agent": USER_AGENT},
            event_hooks={"request": [self._iam_started], "response": [self._iam_answered]},
        )
        auth = build_auth(
            credentials,
            project_id=config.api.project_id,
            iam_endpoint=config.iam_endpoint,
            iam_http=self._iam_http,
            clock=wall_clock,
        )
        connections = config.api.concurrency
        self._http = httpx.Client(
            auth=auth,
            verify=config.api.verify_tls,
            headers={"User-Agent": USER_AGENT},
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        )
        self.client = VodClient(config.api, self._http, self.api_stats, clock=clock)
        self.store = TaskStore(config.api.project_id, config.series, started_at=wall_clock())
        self.coordinator = ListingCoordinator(
            self.client,
            self.store,
            min_refresh_interval=config.scrape.min_refresh_interval,
            drift_retries=config.scrape.drift_retries,
            clock=clock,
            wall_clock=wall_clock,
        )
        self.registry = registry if registry is not None else CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.registry.register(
            VodCollector(
                self.store.view,
                self.api_stats,
                min_refresh_interval=config.scrape.min_refresh_interval,
            )
        )

    def wsgi_app(self, description: str = "") -> ExporterApp:
        return ExporterApp(
            self.coordinator.refresh,
            self.registry,
            self.config.web,
            self.config.scrape,
            clock=self._clock,
            description=description,
        )

    def list_once(self) -> StoreView:
        """One listing within ``--scrape-timeout``; the store's view afterwards."""
        self.coordinator.refresh(self._clock() + self.config.scrape.timeout)
        return self.store.view()

    def close(self) -> None:
        self.client.close()
        self._http.close()
        self._iam_http.close()

    # IAM token requests are part of the quota bill too.
    def _iam_started(self, request: httpx.Request) -> None:
        request.extensions["vod_exporter_started"] = self._clock()

    def _iam_answered(self, response: httpx.Response) -> None:
        started = response.request.extensions.get("vod_exporter_started", self._clock())
        self.api_stats.observe(IAM_OPERATION, str(response.status_code), self._clock() - started)
