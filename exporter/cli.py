"""The ``vod-exporter`` command: options in, a validated ``Config`` out, the parts wired together.

Every option can also be set through ``VOD_EXPORTER_<NAME>`` (dots and dashes become
underscores). Secrets are never options: they come from the environment or from files.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from exporter import __version__
from exporter.command_options import compose, env_option, wait_for_termination
from exporter.config import (
    DEFAULT_DURATION_BUCKETS,
    ApiSettings,
    Config,
    ConfigError,
    ScrapeSettings,
    SeriesSettings,
    WebSettings,
    check_endpoint,
    check_project_id,
    check_region,
    parse_buckets,
    parse_duration,
    parse_listen_address,
)
from exporter.logs import FORMATS, LEVELS, configure_logging

if TYPE_CHECKING:
    from exporter.cloud.credentials import Credentials

log = logging.getLogger("exporter")

ENV_PREFIX = "VOD_EXPORTER_"
DEFAULT_LISTEN_ADDRESS = ":9881"

option = env_option(ENV_PREFIX)


api_options = compose(
    option("--region", "region", help="Huawei Cloud region, e.g. cn-north-4."),
    option(
        "--project-id",
        "project_id",
        help="Project whose editing tasks to list [default: HUAWEICLOUD_SDK_PROJECT_ID].",
    ),
    option("--endpoint", "endpoint", help="VOD endpoint [default: https://vod.{region}.myhuaweicloud.com]."),
    option(
        "--iam-endpoint",
        "iam_endpoint",
        help="IAM endpoint [default: https://iam.{region}.myhuaweicloud.com].",
    ),
    option(
        "--auth.method",
        "auth_method",
        type=click.Choice(["auto", "aksk", "token", "iam"]),
        default="auto",
        help="auto: AK/SK from HUAWEICLOUD_SDK_* or the SDK credentials file, then a static token, then IAM.",
    ),
    option(
        "--auth.token-file",
        "token_file",
        type=click.Path(path_type=Path),
        help="File holding an X-Auth-Token; re-read when it changes. Or set VOD_EXPORTER_AUTH_TOKEN.",
    ),
    option("--iam.username", "iam_username", help="IAM user for password tokens."),
    option("--iam.domain", "iam_domain", help="IAM account (domain) name of that user."),
    option(
        "--iam.password-file",
        "iam_password_file",
        type=click.Path(path_type=Path),
        help="File holding the IAM password. Or set VOD_EXPORTER_IAM_PASSWORD.",
    ),
    option("--api.concurrency", "concurrency", type=int, default=4, help="Pages fetched at once."),
    option(
        "--api.rate-limit",
        "rate_limit",
        type=float,
        default=20.0,
        help="Requests per second at most (0: no limit); halved after a 429.",
    ),
    option("--api.timeout", "request_timeout", default="5s", help="Timeout of one API request."),
    option(
        "--api.retries", "max_retries", type=int, default=3, help="Retries of one page on 429, 5xx, network."
    ),
    option("--scrape-timeout", "scrape_timeout", default="30s", help="Longest a listing may take."),
    option(
        "--scrape-timeout-offset",
        "scrape_timeout_offset",
        default="500ms",
        help="Kept back from Prometheus' scrape timeout to answer in time.",
    ),
    option(
        "--min-refresh-interval",
        "min_refresh_interval",
        default="0s",
        help="Serve the last listing to scrapes that come sooner than this (for HA Prometheus pairs).",
    ),
    option(
        "--scrape.drift-retries",
        "drift_retries",
        type=int,
        default=1,
        help="List again when tasks changed while paging (each costs a listing's calls).",
    ),
    option(
        "--tasks.per-task-series/--tasks.no-per-task-series",
        "series_enabled",
        default=True,
        help="Export per-task series.",
    ),
    option(
        "--tasks.max-series",
        "max_series",
        type=int,
        default=1000,
        help="Tasks with per-task series, at most.",
    ),
    option(
        "--tasks.max-finished-age",
        "max_finished_age",
        default="1h",
        help="Finished tasks keep per-task series this long after their end_time.",
    ),
    option(
        "--tasks.duration-buckets",
        "duration_buckets",
        default=",".join(f"{b:g}" for b in DEFAULT_DURATION_BUCKETS),
        help="Buckets (seconds) of the finished-task duration histogram.",
    ),
    option(
        "--tasks.tracker-retention",
        "tracker_retention",
        default="24h",
        help="How long finished tasks are remembered so each is counted once.",
    ),
    option("--log.level", "log_level", type=click.Choice(LEVELS), default="info", help="Log level."),
    option("--log.format", "log_format", type=click.Choice(FORMATS), default="logfmt", help="Log format."),
)

web_options = compose(
    option(
        "--web.listen-address", "listen_address", default=DEFAULT_LISTEN_ADDRESS, help="Address to listen on."
    ),
    option("--web.telemetry-path", "telemetry_path", default="/metrics", help="Path of the metrics."),
)


def build_config(
    options: dict[str, Any], env: dict[str, str], default_project_id: str | None = None
) -> Config:
    """Validate the options once; raises ``ConfigError`` with a one-line message.

    ``default_project_id`` is the one the credentials name (the SDK credentials file's ``project_id``).
    """
    region = options.get("region")
    if region:
        check_region(region)
    endpoint, iam_endpoint = options.get("endpoint"), options.get("iam_endpoint")
    if not region and not (endpoint and iam_endpoint):
        missing = (
            "--endpoint and --iam-endpoint"
            if not (endpoint or iam_endpoint)
            else ("--iam-endpoint" if endpoint else "--endpoint")
        )
        raise ConfigError(f"set --region (e.g. cn-north-4), or {missing}")
    endpoint = check_endpoint(endpoint or f"https://vod.{region}.myhuaweicloud.com", "--endpoint")
    iam_endpoint = check_endpoint(iam_endpoint or f"https://iam.{region}.myhuaweicloud.com", "--iam-endpoint")
    project_id = options.get("project_id") or env.get("HUAWEICLOUD_SDK_PROJECT_ID") or default_project_id
    if not project_id:
        raise ConfigError("set --project-id (or VOD_EXPORTER_PROJECT_ID / HUAWEICLOUD_SDK_PROJECT_ID)")
    check_project_id(project_id)
    host, port = parse_listen_address(options.get("listen_address") or DEFAULT_LISTEN_ADDRESS)
    return Config(
        region=region or "",
        iam_endpoint=iam_endpoint,
        api=ApiSettings(
            endpoint=endpoint,
            project_id=project_id,
            concurrency=options["concurrency"],
            rate_limit=options["rate_limit"],
            request_timeout=parse_duration(options["request_timeout"], "--api.timeout"),
            max_retries=options["max_retries"],
        ),
        series=SeriesSettings(
            enabled=options["series_enabled"],
            max_finished_age=parse_duration(options["max_finished_age"], "--tasks.max-finished-age"),
            max_series=options["max_series"],
            duration_buckets=parse_buckets(options["duration_buckets"]),
            tracker_retention=parse_duration(options["tracker_retention"], "--tasks.tracker-retention"),
        ),
        scrape=ScrapeSettings(
            timeout=parse_duration(options["scrape_timeout"], "--scrape-timeout"),
            timeout_offset=parse_duration(options["scrape_timeout_offset"], "--scrape-timeout-offset"),
            min_refresh_interval=parse_duration(options["min_refresh_interval"], "--min-refresh-interval"),
            drift_retries=options["drift_retries"],
        ),
        web=WebSettings(host=host, port=port, telemetry_path=options.get("telemetry_path") or "/metrics"),
    )


def load(options: dict[str, Any]) -> tuple[Config, Credentials]:
    """Config and credentials from the options and the environment, validated; nothing started."""
    from exporter.cloud.credentials import AkSkCredentials, resolve_credentials

    env = dict(os.environ)
    credentials = resolve_credentials(
        options["auth_method"],
        env,
        home=Path.home(),
        token_file=options.get("token_file"),
        iam_username=options.get("iam_username"),
        iam_domain=options.get("iam_domain"),
        iam_password_file=options.get("iam_password_file"),
    )
    named_project = credentials.project_id if isinstance(credentials, AkSkCredentials) else None
    return build_config(options, env, named_project), credentials


class _Commands(click.Group):
    """Imports ``simulate`` (the simulator is a package of its own) only when it is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), "simulate"])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name == "simulate":
            from exporter.simulator.command import simulate

            return simulate
        return super().get_command(ctx, cmd_name)


@click.group(
    cls=_Commands, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110}
)
@click.version_option(__version__, "--version", prog_name="vod-exporter")
def cli() -> None:
    """Prometheus exporter for Huawei Cloud VOD editing tasks."""


@cli.command()
@api_options
@web_options
def serve(**options: Any) -> None:
    """Serve /metrics; each scrape lists the editing tasks."""
    configure_logging(options["log_level"], options["log_format"])
    config, credentials = load(options)
    from exporter.app import Exporter
    from exporter.serving.server import HttpServer

    exporter = Exporter(config, credentials)
    app = exporter.wsgi_app()
    try:
        server = HttpServer(app, config.web.host, config.web.port)
    except OSError as error:
        exporter.close()
        raise ConfigError(
            f"--web.listen-address: cannot listen on {options['listen_address']}: {error.strerror}"
        ) from None
    server.start()
    log.info(
        "serving metrics on http://%s:%d%s for project %s (%s)",
        config.web.host or "0.0.0.0",
        server.port,
        config.web.telemetry_path,
        config.api.project_id,
        config.api.endpoint,
    )
    wait_for_termination()
    log.info("shutting down")
    # The server keeps answering while the listing in flight drains: /-/ready says 503, and the
    # scrapes waiting for that listing get their answer before the server stops.
    app.shutting_down.set()
    exporter.close()
    server.stop()


@cli.command()
@api_options
def once(**options: Any) -> None:
    """List the tasks once and print the exposition (for debugging and textfile cron jobs).

    Exits 0 when the listing succeeded; otherwise 1, with the reason on stderr.
    """
    # At the default level, once keeps stderr to its own one-line verdict: the listing's warning
    # would say the same thing twice. An explicit debug (or warn) still shows the log.
    configure_logging(
        options["log_level"] if options["log_level"] != "info" else "error", options["log_format"]
    )
    config, credentials = load(options)
    from prometheus_client import generate_latest

    from exporter.app import Exporter

    exporter = Exporter(config, credentials)
    try:
        view = exporter.list_once()
        sys.stdout.write(generate_latest(exporter.registry).decode())
    finally:
        exporter.close()
    if not view.up:
        reason, detail = view.last_error or ("unknown", "")
        click.echo(f"vod-exporter: listing failed ({reason}): {detail}", err=True)
        sys.exit(1)


@cli.command()
@option(
    "--web.listen-address",
    "listen_address",
    default="127.0.0.1:9881",
    help="Address the exporter listens on (the simulator takes a free loopback port).",
)
@option("--log.level", "log_level", type=click.Choice(LEVELS), default="info", help="Log level.")
@option("--log.format", "log_format", type=click.Choice(FORMATS), default="logfmt", help="Log format.")
def demo(**options: Any) -> None:
    """Run the exporter against a built-in simulated VOD API: live metrics, no cloud account."""
    configure_logging(options["log_level"], options["log_format"])
    host, port = parse_listen_address(options["listen_address"])
    from exporter.demo import Demo

    try:
        running = Demo(host, port)
    except OSError as error:
        raise ConfigError(
            f"--web.listen-address: cannot listen on {options['listen_address']}: {error.strerror}"
        ) from None
    click.echo(f"vod-exporter demo: metrics at {running.metrics_url}")
    simulator = running.simulator
    click.echo(f"vod-exporter demo: simulated VOD API at {simulator.url} (project {simulator.project_id})")
    click.echo("vod-exporter demo: press Ctrl-C to stop")
    wait_for_termination()
    running.stop()
    click.echo("vod-exporter demo: stopped")


def main(argv: list[str] | None = None) -> None:
    """Entry point: every user error is one line on stderr and a non-zero exit, never a traceback."""
    try:
        code = cli.main(args=argv, prog_name="vod-exporter", standalone_mode=False)
    except ConfigError as error:
        click.echo(f"vod-exporter: error: {error}", err=True)
        sys.exit(2)
    except click.UsageError as error:
        hint = f" (see '{error.ctx.command_path} --help')" if error.ctx else ""
        click.echo(f"vod-exporter: error: {error.format_message()}{hint}", err=True)
        sys.exit(error.exit_code)
    except click.ClickException as error:
        click.echo(f"vod-exporter: error: {error.format_message()}", err=True)
        sys.exit(error.exit_code)
    except click.Abort:
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
