"""The exporter's parts wired together, once: used by ``serve``, ``once`` and ``demo``.

auth -> client -> store -> collector -> web, with the clocks and the registry passed in.

Each target (a region and project) has parts of its own, a ``TargetExporter``: its auth and HTTP
client, store, listing strategy and coordinator (its listing, health, per-task cap and tracker).
The process has the rest: the registry and collector, the web app, the IAM client, the API
call statistics, and one request-rate limit per quota (targets that share credentials share a
tenant's flow control), and the project ids found from regions at IAM (``cloud.projects``).
``apply`` swaps the set of targets (a reload): unchanged targets keep their parts, and so their
counters; removed ones are closed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
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
from exporter.cloud.throttle import RateLimiter
from exporter.config import Config, ConfigError
from exporter.listing.coordinator import ListingCoordinator
from exporter.listing.strategy import ListingStrategy
from exporter.serving.collector import CredentialsCollector, CredentialsState, TargetView, VodCollector
from exporter.serving.web import WebApp
from exporter.store import StoreView, TaskStore
from exporter.targets import PROCESS_CHAIN, TargetSetup, in_file

log = logging.getLogger(__name__)

IAM_OPERATION = "iam_token"
USER_AGENT = f"vod-exporter/{__version__}"


class TargetExporter:
    """One target's parts, built from its ``TargetSetup`` (its project id known); the process-wide
    ones passed in. ``given`` is the setup as configured, which a reload compares."""

    def __init__(
        self,
        setup: TargetSetup,
        *,
        given: TargetSetup,
        api_stats: ApiRequestStats,
        iam_http: httpx.Client,
        metadata_http: httpx.Client,
        limiter: RateLimiter,
        clock: Callable[[], float],
        wall_clock: Callable[[], float],
    ) -> None:
        self.setup = setup
        self.given = given
        config = setup.config
        api = config.api
        auth = build_auth(
            setup.credentials,
            project_id=api.project_id,
            iam_endpoint=config.iam_endpoint,
            iam_http=iam_http,
            metadata_http=metadata_http,
            clock=wall_clock,
        )
        limits = httpx.Limits(max_connections=api.concurrency, max_keepalive_connections=api.concurrency)
        # When the credentials expire (an IAM token, a temporary key): None when they never do.
        self.renewal = renewal_state(auth)
        self._http = httpx.Client(
            auth=auth,
            headers={"User-Agent": USER_AGENT},
            transport=CountingTransport(
                httpx.HTTPTransport(verify=api.verify_tls, limits=limits), api_stats, LIST_OPERATION
            ),
        )
        self.client = VodClient(api, self._http, clock=clock, limiter=limiter)
        self.store = TaskStore(api.project_id, config.series, started_at=wall_clock())
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

    @property
    def project_id(self) -> str:
        return self.setup.config.api.project_id

    def view(self) -> TargetView:
        return TargetView(self.setup.config.region, self.store.view())

    def close(self, drain_timeout: float) -> None:
        self.coordinator.close(drain_timeout)
        self.client.close()
        self._http.close()


class Exporter:
    def __init__(
        self,
        config: Config,
        credentials: Credentials | None = None,
        *,
        targets: Sequence[TargetSetup] = (),
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        registry: CollectorRegistry | None = None,
        runtime_metrics: bool = True,
    ) -> None:
        """One target (``config`` and ``credentials``) or several (``targets``, each with its own
        config; ``config`` then gives what the process shares: web and scrape settings).

        ``runtime_metrics``: the process_*, python_* families too (not for a textfile, where
        they would clash with node_exporter's own).

        A target without a project id has it found from its region at IAM first; a failed lookup
        raises ``ConfigError``. With one target, ``self.config`` is then its config, project included.
        """
        if (credentials is None) == (not targets):
            raise ValueError("give credentials (one target) or targets, not both")
        self.config = config
        self._runtime_metrics = runtime_metrics
        self._clock = clock
        self._wall_clock = wall_clock
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
        self._projects = ProjectIds(self._iam_http, metadata_http=self._metadata_http, clock=wall_clock)
        self._limiters: dict[str, RateLimiter] = {}
        self._targets: tuple[TargetExporter, ...] = ()
        self._applying = threading.Lock()
        self._started = False  # the first apply is the start, not a change
        if credentials is not None:
            targets = (TargetSetup(config, credentials, PROCESS_CHAIN),)
        try:
            self.apply(targets)
        except BaseException:
            self._iam_http.close()
            self._metadata_http.close()
            raise
        if credentials is not None:
            self.config = self.targets[0].setup.config
        self.registry = registry if registry is not None else CollectorRegistry()
        if runtime_metrics:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)
        self.registry.register(
            VodCollector(self.views, self.api_stats, min_refresh_interval=config.scrape.min_refresh_interval)
        )
        self.registry.register(CredentialsCollector(self.renewals))

    @property
    def targets(self) -> tuple[TargetExporter, ...]:
        return self._targets

    # The only target's parts, for the single-target commands and their tests.
    @property
    def store(self) -> TaskStore:
        return self._only().store

    @property
    def coordinator(self) -> ListingCoordinator:
        return self._only().coordinator

    @property
    def strategy(self) -> ListingStrategy:
        return self._only().strategy

    def _only(self) -> TargetExporter:
        (target,) = self._targets
        return target

    def apply(self, setups: Sequence[TargetSetup]) -> None:
        """Watch exactly ``setups`` from now on: a target whose setup is unchanged keeps its parts
        (its counters carry on); new ones start; removed ones stop exporting at once and are closed
        in the background, so that a reload never waits for their listings. Raises ``ConfigError``
        (and changes nothing) when a project id cannot be found or two targets are one project."""
        with self._applying:
            resolved = self._resolve(setups)
            previous = {target.given: target for target in self._targets}
            targets, added = [], []
            for given, setup in zip(setups, resolved, strict=True):
                target = previous.pop(given, None)
                if target is None:
                    added.append(setup)
                    target = TargetExporter(
                        setup,
                        given=given,
                        api_stats=self.api_stats,
                        iam_http=self._iam_http,
                        metadata_http=self._metadata_http,
                        limiter=self._limiter(setup),
                        clock=self._clock,
                        wall_clock=self._wall_clock,
                    )
                targets.append(target)
            self._targets = tuple(targets)
            in_use = {target.setup.quota for target in targets}
            self._limiters = {quota: self._limiters[quota] for quota in in_use}
            if self._started:
                # What a reload changed, for the operator who sent it.
                for setup in added:
                    api = setup.config.api
                    log.info("target added: project %s (region %s)", api.project_id, setup.config.region)
            self._started = True
        for removed in previous.values():
            log.info(
                "target removed: project %s (region %s)", removed.project_id, removed.setup.config.region
            )
            threading.Thread(
                target=removed.close, args=(0.0,), name=f"close-{removed.project_id}", daemon=True
            ).start()

    def _resolve(self, setups: Sequence[TargetSetup]) -> list[TargetSetup]:
        """``setups`` with every project id known: kept targets as they run, others found at IAM."""
        running = {target.given: target.setup for target in self._targets}
        resolved: list[TargetSetup] = []
        first_of: dict[str, TargetSetup] = {}
        for setup in setups:
            known = running.get(setup) or (setup if setup.config.api.project_id else self._look_up(setup))
            project_id = known.config.api.project_id
            first = first_of.setdefault(project_id, setup)
            if first is not setup:
                raise ConfigError(
                    f"{setup.source}: {setup.label} is project {project_id}, as {first.label} is: remove one"
                )
            resolved.append(known)
        return resolved

    def _look_up(self, setup: TargetSetup) -> TargetSetup:
        config = setup.config
        try:
            project_id = self._projects.resolve(config, setup.credentials)
        except ConfigError as error:
            raise in_file(setup, error) from None
        return replace(setup, config=replace(config, api=replace(config.api, project_id=project_id)))

    def _limiter(self, setup: TargetSetup) -> RateLimiter:
        """The quota's shared limit; its rate and burst are the first target's (the flags give
        every target the same)."""
        api = setup.config.api
        if setup.quota not in self._limiters:
            self._limiters[setup.quota] = RateLimiter(api.rate_limit, api.concurrency, clock=self._clock)
        return self._limiters[setup.quota]

    def renewals(self) -> list[tuple[str, CredentialsState]]:
        """Each target whose credentials expire, with their renewal state."""
        return [(target.project_id, target.renewal) for target in self._targets if target.renewal is not None]

    def views(self) -> list[TargetView]:
        return [target.view() for target in self._targets]

    def refresh(self, deadline: float) -> frozenset[str]:
        """Brings every target up to date by ``deadline``, all at the same time; returns the
        project ids of those whose listing this scrape could not wait for."""
        targets = self._targets
        joined = [(target, target.coordinator.join(deadline)) for target in targets]
        return frozenset(
            target.project_id for target, listing in joined if not target.coordinator.wait(listing, deadline)
        )

    def wsgi_app(self, description: str = "", reload: Callable[[], str | None] | None = None) -> WebApp:
        return WebApp(
            self.refresh,
            self.registry,
            self.config.web,
            self.config.scrape,
            clock=self._clock,
            description=description,
            reload=reload,
        )

    def list_targets_once(self) -> list[StoreView]:
        """One listing of every target within ``--scrape.timeout``; their views afterwards."""
        self.refresh(self._clock() + self.config.scrape.timeout)
        return [target.store.view() for target in self._targets]

    def list_once(self) -> StoreView:
        """``list_targets_once`` for the only target."""
        (view,) = self.list_targets_once()
        return view

    def close(self, drain_timeout: float = 5.0) -> None:
        """Every target's listing in flight gets ``drain_timeout`` to end, all at the same time: a
        shutdown takes as long as the slowest target's, not the sum of them."""
        closing = [
            threading.Thread(target=target.close, args=(drain_timeout,), name=f"close-{target.project_id}")
            for target in self._targets
        ]
        for thread in closing:
            thread.start()
        for thread in closing:
            thread.join()
        self._iam_http.close()
        self._metadata_http.close()
