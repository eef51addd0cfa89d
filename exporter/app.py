"""The exporter's parts wired together, once: used by ``serve``, ``once`` and ``demo``.

auth -> client -> store -> collector -> web, with the clocks and the registry passed in.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import httpx
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from exporter import __version__
from exporter.cloud.api_metrics import ApiRequestStats, CountingTransport
from exporter.cloud.auth import build_auth, renewal_state
from exporter.cloud.client import OPERATION as LIST_OPERATION
from exporter.cloud.client import VodClient
from exporter.cloud.credentials import Credentials, metadata_client
from exporter.cloud.projects import ProjectIds
from exporter.config import Config
from exporter.listing.coordinator import ListingCoordinator
from exporter.listing.strategy import ListingStrategy
from exporter.serving.collector import CredentialsCollector, VodCollector
from exporter.serving.web import WebApp
from exporter.store import StoreView, TaskStore

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
        runtime_metrics: bool = True,
    ) -> None:
        """``runtime_metrics``: the process_*, python_* families too (not for a textfile, where
        they would clash with node_exporter's own).

        Without a project id, it is found from the region at IAM first (``cloud.projects``), and
        kept in ``self.config``; a failed lookup raises ``ConfigError``.
        """
        self._runtime_metrics = runtime_metrics
        self._clock = clock
        self.api_stats = ApiRequestStats()
        api = config.api
        self._iam_http = httpx.Client(
            timeout=api.request_timeout,
            headers={"User-Agent": USER_AGENT},
            transport=CountingTransport(
                httpx.HTTPTransport(verify=api.verify_tls), self.api_stats, IAM_OPERATION
            ),
        )
        # The metadata service is on the instance: not part of the API bill, and quick or absent.
        self._metadata_http = metadata_client(headers={"User-Agent": USER_AGENT})
        if not api.project_id:
            try:
                project_id = ProjectIds(
                    self._iam_http, metadata_http=self._metadata_http, clock=wall_clock
                ).resolve(config, credentials)
            except BaseException:
                self._iam_http.close()
                self._metadata_http.close()
                raise
            config = replace(config, api=replace(api, project_id=project_id))
            api = config.api
        self.config = config
        auth = build_auth(
            credentials,
            project_id=api.project_id,
            iam_endpoint=config.iam_endpoint,
            iam_http=self._iam_http,
            metadata_http=self._metadata_http,
            clock=wall_clock,
        )
        limits = httpx.Limits(max_connections=api.concurrency, max_keepalive_connections=api.concurrency)
        self._http = httpx.Client(
            auth=auth,
            headers={"User-Agent": USER_AGENT},
            transport=CountingTransport(
                httpx.HTTPTransport(verify=api.verify_tls, limits=limits), self.api_stats, LIST_OPERATION
            ),
        )
        self.client = VodClient(api, self._http, clock=clock)
        self.store = TaskStore(config.api.project_id, config.series, started_at=wall_clock())
        self.strategy = ListingStrategy(
            self.client,
            self.store,
            config.listing,
            config.series,
            page_size=api.page_size,
            concurrency=api.concurrency,
            rate_limit=api.rate_limit,
            drift_retries=config.scrape.drift_retries,
            clock=clock,
            wall_clock=wall_clock,
        )
        self.coordinator = ListingCoordinator(
            self.client,
            self.store,
            strategy=self.strategy,
            min_refresh_interval=config.scrape.min_refresh_interval,
            listing_timeout=config.scrape.timeout,
            clock=clock,
            wall_clock=wall_clock,
        )
        self.registry = registry if registry is not None else CollectorRegistry()
        if runtime_metrics:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)
        self.registry.register(
            VodCollector(
                self.store.view, self.api_stats, min_refresh_interval=config.scrape.min_refresh_interval
            )
        )
        renewing = renewal_state(auth)
        if renewing is not None:
            self.registry.register(CredentialsCollector(api.project_id, renewing))

    def wsgi_app(self, description: str = "") -> WebApp:
        return WebApp(
            self.coordinator.refresh,
            self.registry,
            self.config.web,
            self.config.scrape,
            clock=self._clock,
            description=description,
        )

    def list_once(self) -> StoreView:
        """One listing within ``--scrape.timeout``; the store's view afterwards."""
        self.coordinator.refresh(self._clock() + self.config.scrape.timeout)
        return self.store.view()

    def close(self, drain_timeout: float = 5.0) -> None:
        self.coordinator.close(drain_timeout)
        self.client.close()
        self._http.close()
        self._iam_http.close()
        self._metadata_http.close()
