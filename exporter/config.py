"""The exporter's configuration: one frozen object, validated once at start-up.

Every user mistake raises ``ConfigError`` with a one-line message that says what to fix; the CLI
prints it and exits 2. Secrets never live here (see ``credentials``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


class ConfigError(Exception):
    """A configuration the exporter cannot start with. The message is shown to the user as is."""


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str, option: str) -> float:
    """Seconds for ``500ms``, ``30s``, ``1h30m`` (Prometheus style) or a plain number of seconds."""
    value = text.strip()
    try:
        seconds = float(value)
    except ValueError:
        parts = list(_DURATION_PART.finditer(value))
        if not parts or "".join(p.group(0) for p in parts) != value:
            raise ConfigError(f"{option}: {text!r} is not a duration (use e.g. 500ms, 30s, 5m, 1h)") from None
        seconds = sum(float(p.group(1)) * _DURATION_UNITS[p.group(2)] for p in parts)
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(f"{option}: {text!r} must be a duration of 0 or more")
    return seconds


def format_duration(seconds: float) -> str:
    """``seconds`` as ``parse_duration`` reads it back: 30.0 is ``30s``, 0.5 ``500ms``, 5400 ``1h30m``."""
    millis = round(seconds * 1000)
    parts = []
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        count, millis = divmod(millis, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def parse_listen_address(text: str, option: str = "--web.listen-address") -> tuple[str, int]:
    """``host:port``, ``:port`` (all interfaces) or ``[v6]:port``."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(f"{option}: {text!r} is not host:port (e.g. :9881 or 127.0.0.1:9881)")
    host = host.strip("[]")
    return host, int(port_text)


# The ways --auth.method knows to get credentials (cloud.credentials resolves them).
AUTH_METHODS = ("auto", "aksk", "token", "iam", "metadata", "oidc")

# The ECS/BMS metadata service, at the link-local address every instance reaches it on.
DEFAULT_METADATA_ENDPOINT = "http://169.254.169.254"


def check_endpoint(url: str, option: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{option}: {url!r} is not an http(s) URL")
    return url.rstrip("/")


_REGION = re.compile(r"[a-z]{2}(-[a-z0-9]+)+")
# As the console shows it under My Credentials > API Credentials: a UUID without dashes.
_PROJECT_ID = re.compile(r"[0-9a-f]{32}")


def check_region(region: str) -> str:
    if not _REGION.fullmatch(region):
        raise ConfigError(f"--region: {region!r} is not a Huawei Cloud region (e.g. cn-north-4)")
    return region


def check_project_id(project_id: str) -> str:
    if not _PROJECT_ID.fullmatch(project_id):
        raise ConfigError(
            f"--project-id: {project_id!r} is not a project id (32 hex characters, as listed under "
            "My Credentials > API Credentials for the region)"
        )
    return project_id


# Finished-task durations run from seconds (a trim) to hours (a long transcode-and-edit).
DEFAULT_DURATION_BUCKETS: tuple[float, ...] = (
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    900.0,
    1800.0,
    3600.0,
    7200.0,
    14400.0,
)


def parse_buckets(text: str) -> tuple[float, ...]:
    try:
        buckets = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(
            f"--tasks.duration-buckets: {text!r} is not a comma-separated list of seconds"
        ) from None
    if not buckets or any(not math.isfinite(b) or b <= 0 for b in buckets):
        raise ConfigError("--tasks.duration-buckets: give at least one positive number of seconds")
    if list(buckets) != sorted(set(buckets)):
        raise ConfigError("--tasks.duration-buckets: buckets must be strictly increasing")
    return buckets


@dataclass(frozen=True)
class ApiSettings:
    """How the client spends API calls. Defaults are explained in the README's quota section."""

    endpoint: str
    project_id: str  # empty until found from the region at start-up (``cloud.projects``)
    page_size: int = 100
    concurrency: int = 4
    rate_limit: float = 20.0  # requests per second; 0 turns the limit off
    request_timeout: float = 5.0
    max_retries: int = 3
    backoff_base: float = 0.25
    backoff_max: float = 5.0
    throttle_backoff: float = 2.0  # Huawei advises waiting 2-5 s after APIGW.0308
    verify_tls: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.page_size <= 100:
            raise ConfigError("the page size must be between 1 and 100 (the API's maximum)")
        if not 1 <= self.concurrency <= 64:
            raise ConfigError("--api.concurrency must be between 1 and 64")
        if not math.isfinite(self.rate_limit) or self.rate_limit < 0:
            raise ConfigError("--api.rate-limit must be 0 (no limit) or a positive number of requests/s")
        if self.request_timeout <= 0:
            raise ConfigError("--api.timeout must be longer than 0s")
        if not 0 <= self.max_retries <= 10:
            raise ConfigError("--api.retries must be between 0 and 10")


@dataclass(frozen=True)
class SeriesSettings:
    """Which tasks get per-task series; the aggregates always cover every task."""

    enabled: bool = True
    max_finished_age: float = 3600.0
    max_series: int = 1000
    duration_buckets: tuple[float, ...] = DEFAULT_DURATION_BUCKETS
    # How long a finished task is remembered so that it is counted once; see store.FinishedTaskTracker.
    tracker_retention: float = 86400.0

    def __post_init__(self) -> None:
        if self.max_series < 0:
            raise ConfigError("--tasks.max-series must be 0 or more")
        if self.tracker_retention < 60:
            raise ConfigError("--tasks.tracker-retention must be at least 1m")


@dataclass(frozen=True)
class ScrapeSettings:
    timeout: float = 30.0  # cap on a listing's time, and the budget when Prometheus sends none
    timeout_offset: float = 0.5  # kept back from Prometheus' own timeout to answer in time
    # A successful listing is reused this long, whatever hits /metrics: the quota's bound (README,
    # quota arithmetic). Below the usual 30 s and 60 s scrape intervals, so these list every time.
    min_refresh_interval: float = 20.0
    drift_retries: int = 1  # listings again when tasks changed while paging

    def __post_init__(self) -> None:
        if not 0 <= self.drift_retries <= 5:
            raise ConfigError("--scrape.drift-retries must be between 0 and 5")
        if self.timeout <= 0:
            raise ConfigError("--scrape.timeout must be longer than 0s")
        if self.timeout_offset >= self.timeout:
            raise ConfigError("--scrape.timeout-offset must be shorter than --scrape.timeout")


LISTING_MODES = ("auto", "incremental", "full")


FIT_SLACK = 10.0  # seconds a deadline fitted to a project's size allows beyond twice its calls' time


@dataclass(frozen=True)
class ListingSettings:
    """How listings are made (docs/incremental-listing.md, "Modes")."""

    mode: str = "auto"  # incremental passes once the order is verified; complete listings otherwise
    reconcile_interval: float = 6 * 3600.0  # a complete listing in the background, this often
    sync_rate_share: float = 0.5  # of --api.rate-limit, for background complete listings
    # ``once`` with no --scrape.timeout: the deadline, from the first page on, is what the listing
    # needs at the rate limit, twice over, plus ``FIT_SLACK`` seconds.
    fit_deadline: bool = False

    def __post_init__(self) -> None:
        if self.mode not in LISTING_MODES:
            raise ConfigError(f"--listing.mode: {self.mode!r} is not one of {', '.join(LISTING_MODES)}")
        if self.reconcile_interval < 60:
            raise ConfigError("--listing.reconcile-interval must be at least 1m")
        if not 0 < self.sync_rate_share <= 1:
            raise ConfigError("the background listing's share of the rate limit must be in (0, 1]")


@dataclass(frozen=True)
class WebSettings:
    host: str = ""
    port: int = 9881
    telemetry_path: str = "/metrics"

    def __post_init__(self) -> None:
        if not self.telemetry_path.startswith("/") or self.telemetry_path in ("/", "/-/healthy", "/-/ready"):
            raise ConfigError(
                f"--web.telemetry-path: {self.telemetry_path!r} must start with / "
                "and not clash with / or /-/*"
            )


@dataclass(frozen=True)
class Config:
    region: str
    api: ApiSettings
    iam_endpoint: str  # empty when the credentials never call IAM (AK/SK, a static token)
    series: SeriesSettings = field(default_factory=SeriesSettings)
    scrape: ScrapeSettings = field(default_factory=ScrapeSettings)
    web: WebSettings = field(default_factory=WebSettings)
    listing: ListingSettings = field(default_factory=ListingSettings)

    @classmethod
    def from_options(
        cls,
        options: Mapping[str, Any],
        env: Mapping[str, str],
        default_project_id: str | None = None,
        *,
        needs_iam: bool,
    ) -> Config:
        """The one way a ``Config`` is built from the command's options (or the demo's), validated.

        ``options`` is keyed by the options' names in the CLI (``scrape_timeout``, ...); one that is
        missing or None takes the dataclasses' default, so those defaults are the only ones.
        ``default_project_id`` is the one the credentials name (the SDK credentials file's
        ``project_id``). ``needs_iam``: the credentials log in to IAM, so its endpoint must be known.
        Raises ``ConfigError`` with a one-line message.
        """

        def given(name: str, default: Any = None) -> Any:
            value = options.get(name)
            return default if value is None or value == "" else value

        def duration(name: str, flag: str, default: float) -> float:
            value = given(name)
            return default if value is None else parse_duration(str(value), flag)

        region = given("region")
        if region:
            check_region(region)
        endpoint, iam_endpoint = given("endpoint"), given("iam_endpoint")
        # AK/SK and static tokens never call IAM: only a password login needs its endpoint.
        missing = [
            flag
            for flag, value, needed in (
                ("--endpoint", endpoint, True),
                ("--iam-endpoint", iam_endpoint, needs_iam),
            )
            if needed and not value
        ]
        if not region and missing:
            raise ConfigError(f"set --region (e.g. cn-north-4), or {' and '.join(missing)}")
        endpoint = check_endpoint(endpoint or f"https://vod.{region}.myhuaweicloud.com", "--endpoint")
        if iam_endpoint or region:
            iam_endpoint = check_endpoint(
                iam_endpoint or f"https://iam.{region}.myhuaweicloud.com", "--iam-endpoint"
            )
        project_id = given("project_id") or env.get("HUAWEICLOUD_SDK_PROJECT_ID") or default_project_id
        if project_id:
            check_project_id(project_id)
        elif needs_iam:
            # IAM scopes a password login to a project: there is none yet to log in with.
            raise ConfigError(
                "set --project-id (or VOD_EXPORTER_PROJECT_ID / HUAWEICLOUD_SDK_PROJECT_ID): "
                "an IAM password login cannot look it up"
            )
        elif not region:
            raise ConfigError(
                "set --project-id (or VOD_EXPORTER_PROJECT_ID / HUAWEICLOUD_SDK_PROJECT_ID), "
                "or --region to look it up at IAM"
            )
        api, series, scrape, web = ApiSettings, SeriesSettings(), ScrapeSettings(), WebSettings()
        listing = ListingSettings()
        host, port = parse_listen_address(given("listen_address", f"{web.host}:{web.port}"))
        buckets = given("duration_buckets")
        return cls(
            region=region or "",
            iam_endpoint=iam_endpoint or "",
            api=ApiSettings(
                endpoint=endpoint,
                project_id=project_id or "",
                concurrency=given("concurrency", api.concurrency),
                rate_limit=given("rate_limit", api.rate_limit),
                request_timeout=duration("request_timeout", "--api.timeout", api.request_timeout),
                max_retries=given("max_retries", api.max_retries),
            ),
            series=SeriesSettings(
                enabled=given("series_enabled", series.enabled),
                max_finished_age=duration(
                    "max_finished_age", "--tasks.max-finished-age", series.max_finished_age
                ),
                max_series=given("max_series", series.max_series),
                duration_buckets=series.duration_buckets if buckets is None else parse_buckets(buckets),
                tracker_retention=duration(
                    "tracker_retention", "--tasks.tracker-retention", series.tracker_retention
                ),
            ),
            scrape=ScrapeSettings(
                timeout=duration("scrape_timeout", "--scrape.timeout", scrape.timeout),
                timeout_offset=duration(
                    "scrape_timeout_offset", "--scrape.timeout-offset", scrape.timeout_offset
                ),
                min_refresh_interval=duration(
                    "min_refresh_interval", "--scrape.min-interval", scrape.min_refresh_interval
                ),
                drift_retries=given("drift_retries", scrape.drift_retries),
            ),
            web=WebSettings(host=host, port=port, telemetry_path=given("telemetry_path", web.telemetry_path)),
            listing=ListingSettings(
                mode=given("listing_mode", listing.mode),
                reconcile_interval=duration(
                    "reconcile_interval", "--listing.reconcile-interval", listing.reconcile_interval
                ),
            ),
        )
