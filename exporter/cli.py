"""The ``vod-exporter`` command: options in, a validated ``Config`` out, the parts wired together.

Every option can also be set through ``VOD_EXPORTER_<NAME>`` (dots and dashes become
underscores). Secrets are never options: they come from the environment or from files.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from exporter.cloud.errors import one_line
from exporter.command_options import (
    Alias,
    alias_option,
    compose,
    env_option,
    resolve_aliases,
    unknown_variables,
    wait_for_termination,
)
from exporter.config import (
    AUTH_METHODS,
    DEFAULT_METADATA_ENDPOINT,
    LISTING_MODES,
    ApiSettings,
    Config,
    ConfigError,
    ListingSettings,
    ScrapeSettings,
    SeriesSettings,
    WebSettings,
    format_duration,
    parse_listen_address,
)
from exporter.logs import FORMATS, LEVELS, configure_logging

if TYPE_CHECKING:
    from collections.abc import Callable

    from exporter.cloud.credentials import Credentials
    from exporter.targets import TargetSetup

log = logging.getLogger("exporter")

ENV_PREFIX = "VOD_EXPORTER_"

option = env_option(ENV_PREFIX)

# The defaults shown by --help and used when an option is left out are the config's own.
_SCRAPE, _SERIES, _WEB = ScrapeSettings(), SeriesSettings(), WebSettings()
_LISTING = ListingSettings()
_DEFAULT_TIMEOUT = format_duration(_SCRAPE.timeout)
DEFAULT_LISTEN_ADDRESS = f"{_WEB.host}:{_WEB.port}"

# Old spellings from before every flag had a dotted namespace: still read, hidden from --help.
ALIASES = (
    Alias("--scrape-timeout", "--scrape.timeout", "scrape_timeout"),
    Alias("--scrape-timeout-offset", "--scrape.timeout-offset", "scrape_timeout_offset"),
    Alias("--min-refresh-interval", "--scrape.min-interval", "min_refresh_interval"),
)

log_options = compose(
    option(
        "--log.level",
        "log_level",
        type=click.Choice(LEVELS),
        default="info",
        help="Log level (warning: warn).",
    ),
    option("--log.format", "log_format", type=click.Choice(FORMATS), default="logfmt", help="Log format."),
)

# The options that describe the one target of a command line; a --config.file lists its targets.
SINGLE_TARGET_OPTIONS = {
    "region": "--region",
    "project_id": "--project-id",
    "endpoint": "--endpoint",
    "iam_endpoint": "--iam-endpoint",
}

api_options = compose(
    option(
        "--config.file",
        "config_file",
        type=click.Path(path_type=Path, dir_okay=False),
        help="YAML file listing the targets (regions, projects) and their credentials; "
        "re-read on SIGHUP. Replaces --region, --project-id, --endpoint and --iam-endpoint.",
    ),
    option("--region", "region", help="Huawei Cloud region, e.g. cn-north-4."),
    option(
        "--project-id",
        "project_id",
        help="Project whose editing tasks to list [default: HUAWEICLOUD_SDK_PROJECT_ID, else the region's "
        "project, asked of IAM at start-up].",
    ),
    option("--endpoint", "endpoint", help="VOD endpoint [default: https://vod.{region}.myhuaweicloud.com]."),
    option(
        "--iam-endpoint",
        "iam_endpoint",
        help="IAM endpoint, for IAM password tokens, workload identities and the project id lookup "
        "[default: https://iam.{region}.myhuaweicloud.com].",
    ),
    option(
        "--auth.method",
        "auth_method",
        type=click.Choice(AUTH_METHODS),
        default="auto",
        help="auto: a CCE workload identity (HUAWEICLOUD_SDK_IDP_ID), AK/SK from HUAWEICLOUD_SDK_* or the "
        "SDK credentials file, a static token, IAM, then the ECS metadata service.",
    ),
    option(
        "--auth.metadata-endpoint",
        "metadata_endpoint",
        default=DEFAULT_METADATA_ENDPOINT,
        help="ECS/BMS metadata service that hands out the instance agency's temporary keys.",
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
    option(
        "--api.concurrency",
        "concurrency",
        type=int,
        default=ApiSettings.concurrency,
        help="Pages fetched at once.",
    ),
    option(
        "--api.rate-limit",
        "rate_limit",
        type=float,
        default=ApiSettings.rate_limit,
        help="Requests per second at most (0: no limit); halved after a 429.",
    ),
    option(
        "--api.timeout",
        "request_timeout",
        default=format_duration(ApiSettings.request_timeout),
        help="Timeout of one API request.",
    ),
    option(
        "--api.retries",
        "max_retries",
        type=int,
        default=ApiSettings.max_retries,
        help="Retries of one page on 429, 5xx, network.",
    ),
    option(
        "--scrape.timeout",
        "scrape_timeout",
        default=format_duration(_SCRAPE.timeout),
        help="Longest a listing may take.",
    ),
    option(
        "--scrape.timeout-offset",
        "scrape_timeout_offset",
        default=format_duration(_SCRAPE.timeout_offset),
        help="Kept back from Prometheus' scrape timeout to answer in time.",
    ),
    option(
        "--scrape.min-interval",
        "min_refresh_interval",
        default=format_duration(_SCRAPE.min_refresh_interval),
        help="Serve the last listing to scrapes that come sooner than this (for HA Prometheus pairs).",
    ),
    option(
        "--scrape.drift-retries",
        "drift_retries",
        type=int,
        default=_SCRAPE.drift_retries,
        help="List again when tasks changed while paging (each costs a listing's calls).",
    ),
    *(alias_option(ENV_PREFIX, alias) for alias in ALIASES),
    option(
        "--listing.mode",
        "listing_mode",
        type=click.Choice(LISTING_MODES),
        default=_LISTING.mode,
        help="auto: incremental passes once a complete listing has shown the API's order, complete "
        "listings otherwise; incremental: fail rather than list everything when the order is unknown; "
        "full: a complete listing every scrape.",
    ),
    option(
        "--listing.reconcile-interval",
        "reconcile_interval",
        default=format_duration(_LISTING.reconcile_interval),
        help="A complete listing in the background this often, to check the incremental state.",
    ),
    option(
        "--tasks.per-task-series/--tasks.no-per-task-series",
        "series_enabled",
        default=_SERIES.enabled,
        # click would show the flag's own name as the default.
        show_default="on" if _SERIES.enabled else "off",
        help="Export per-task series.",
    ),
    option(
        "--tasks.max-series",
        "max_series",
        type=int,
        default=_SERIES.max_series,
        help="Tasks with per-task series, at most.",
    ),
    option(
        "--tasks.max-finished-age",
        "max_finished_age",
        default=format_duration(_SERIES.max_finished_age),
        help="Finished tasks keep per-task series this long after their end_time.",
    ),
    option(
        "--tasks.duration-buckets",
        "duration_buckets",
        default=",".join(f"{b:g}" for b in _SERIES.duration_buckets),
        help="Buckets (seconds) of the finished-task duration histogram.",
    ),
    option(
        "--tasks.tracker-retention",
        "tracker_retention",
        default=format_duration(_SERIES.tracker_retention),
        help="How long finished tasks are remembered so each is counted once.",
    ),
    log_options,
)

web_options = compose(
    option(
        "--web.listen-address",
        "listen_address",
        default=DEFAULT_LISTEN_ADDRESS,
        help="Address to listen on.",
    ),
    option(
        "--web.telemetry-path", "telemetry_path", default=_WEB.telemetry_path, help="Path of the metrics."
    ),
    option(
        "--web.enable-lifecycle",
        "enable_lifecycle",
        is_flag=True,
        default=False,
        show_default="off",
        help="Reload --config.file on POST /-/reload (it answers 403 otherwise).",
    ),
    option(
        "--web.config.file",
        "web_config_file",
        type=click.Path(path_type=Path),
        help="TLS, basic auth and headers, in exporter-toolkit's web config format (as node_exporter).",
    ),
)


def start(options: dict[str, Any]) -> None:
    """Logging as the options say, then the warnings about how the command was configured:
    deprecated spellings (whose values move to the new options) and unknown variables."""
    configure_logging(options["log_level"], options["log_format"])
    warnings = resolve_aliases(ENV_PREFIX, ALIASES, click.get_current_context(), options)
    warnings += unknown_variables(ENV_PREFIX, known_variables(), os.environ)
    for warning in warnings:
        log.warning(warning)


def known_variables() -> set[str]:
    """Every ``VOD_EXPORTER_*`` variable something reads: any command's options, the secrets and
    the revision."""
    from exporter.build import ENV_REVISION
    from exporter.cloud.credentials import ENV_AUTH_TOKEN, ENV_IAM_PASSWORD

    known = {ENV_AUTH_TOKEN, ENV_IAM_PASSWORD, ENV_REVISION}
    for command in cli.commands.values():
        for param in command.params:
            if isinstance(param, click.Option) and isinstance(param.envvar, str):
                known.add(param.envvar)
    return known


def load(options: dict[str, Any]) -> tuple[Config, Credentials]:
    """Config and credentials from the options and the environment, validated; nothing started."""
    from exporter.cloud.credentials import AkSkCredentials, IamPasswordCredentials, OidcCredentials

    env = dict(os.environ)
    credentials = process_chain(options, env)
    named_project = (
        credentials.project_id if isinstance(credentials, AkSkCredentials | OidcCredentials) else None
    )
    needs_iam = isinstance(credentials, IamPasswordCredentials | OidcCredentials)
    return Config.from_options(options, env, named_project, needs_iam=needs_iam), credentials


def process_chain(options: dict[str, Any], env: dict[str, str]) -> Credentials:
    """The process's own credentials, as the --auth.* and --iam.* options say."""
    from exporter.cloud.credentials import resolve_credentials

    return resolve_credentials(
        options["auth_method"],
        env,
        home=Path.home(),
        token_file=options.get("token_file"),
        iam_username=options.get("iam_username"),
        iam_domain=options.get("iam_domain"),
        iam_password_file=options.get("iam_password_file"),
        metadata_endpoint=options.get("metadata_endpoint"),
    )


def load_targets(options: dict[str, Any]) -> tuple[Config, tuple[TargetSetup, ...], Callable[[], Any] | None]:
    """Every target's setup, validated, and the process-wide ``Config`` (the first target's); with
    ``--config.file``, also the function that reads the file again (for a reload)."""
    from exporter.targets import PROCESS_CHAIN, TargetSetup

    path: Path | None = options.get("config_file")
    if path is None:
        config, credentials = load(options)
        return config, (TargetSetup(config, credentials, PROCESS_CHAIN),), None
    context = click.get_current_context()
    for name, flag in SINGLE_TARGET_OPTIONS.items():
        if context.get_parameter_source(name) not in (None, ParameterSource.DEFAULT):
            raise ConfigError(
                f"--config.file and {flag} cannot be combined: give every target's region, project_id "
                f"and endpoints in {path}"
            )

    def read() -> tuple[TargetSetup, ...]:
        from exporter.targets import load_targets as load_file
        from exporter.targets import resolve_targets

        env = dict(os.environ)
        chain = lambda: process_chain(options, env)  # noqa: E731
        return resolve_targets(load_file(path), options, env, process_chain=chain)

    setups = read()
    return setups[0].config, setups, read


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """As Prometheus' own exporters print it: the version, then the revision, then the runtime."""
    if not value or ctx.resilient_parsing:
        return
    from exporter.build import build_info

    info = build_info()
    click.echo(f"vod-exporter, version {info.version} (revision: {info.revision})")
    click.echo(f"  python version: {info.python_version}")
    ctx.exit()


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
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the version, the git revision and the Python, and exit.",
)
def cli() -> None:
    """Prometheus exporter for Huawei Cloud VOD editing tasks."""


@cli.command()
@api_options
@web_options
def serve(**options: Any) -> None:
    """Serve /metrics; each scrape lists the editing tasks."""
    start(options)
    config, setups, read_again = load_targets(options)
    from exporter.app import Exporter
    from exporter.reload import Reloader
    from exporter.serving.basic_auth import BasicAuth
    from exporter.serving.server import HttpServer
    from exporter.serving.web_config import WebConfig, load_web_config

    web_config_file: Path | None = options["web_config_file"]
    web = load_web_config(web_config_file) if web_config_file else WebConfig()
    exporter = Exporter(config, targets=setups)
    reloader = None
    if read_again is not None:
        reloader = Reloader(str(options["config_file"]), read_again, exporter.apply)
        exporter.registry.register(reloader)
    reload = None
    if options["enable_lifecycle"]:
        reload = reloader.reload if reloader is not None else _nothing_to_reload
    app = exporter.wsgi_app(reload=reload)
    try:
        server = HttpServer(
            BasicAuth(app, web.users, web.headers), config.web.host, config.web.port, tls=web.tls
        )
    except ConfigError:  # the certificate and key, loaded as the server starts
        exporter.close()
        raise
    except OSError as error:
        exporter.close()
        raise ConfigError(
            f"--web.listen-address: cannot listen on {options['listen_address']}: {error.strerror}"
        ) from None
    server.start()
    log.info(
        "serving metrics on %s://%s:%d%s%s for %s",
        "https" if web.tls else "http",
        config.web.host or "0.0.0.0",
        server.port,
        config.web.telemetry_path,
        " with basic auth" if web.users else "",
        ", ".join(f"project {t.project_id} ({t.setup.config.api.endpoint})" for t in exporter.targets),
    )
    wait_for_termination(on_hangup=reloader.reload if reloader is not None else None)
    log.info("shutting down")
    # The server keeps answering while the listing in flight drains: /-/ready says 503, and the
    # scrapes waiting for that listing get their answer before the server stops.
    app.shutting_down.set()
    exporter.close()
    server.stop()


@cli.command()
@api_options
@option(
    "--output",
    "output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the exposition to this file instead of stdout, atomically, even when the listing fails "
    "(for node_exporter's textfile collector).",
)
def once(**options: Any) -> None:
    """List the tasks once and print the exposition (for debugging and textfile cron jobs).

    Only the huaweicloud_vod_* families: no process_* or python_* ones, which would clash with
    node_exporter's own. Exits 0 when the listing succeeded; otherwise 1, with the reason on stderr.
    """
    start(options)
    # Beyond the start-up warnings, once keeps stderr to its own one-line verdict at the default
    # level: the listing's warning would say the same thing twice. Debug (or warn) still shows the log.
    if options["log_level"] == "info":
        configure_logging("error", options["log_format"])
    output: Path | None = options["output"]
    if output is not None and not output.parent.is_dir():
        raise ConfigError(f"--output: {output.parent} is not a directory")
    _, setups, _ = load_targets(options)
    from prometheus_client import generate_latest

    from exporter.app import Exporter

    # One complete listing: there is no next pass for an incremental one to save calls in. With no
    # --scrape.timeout, its deadline fits the project's size (docs/incremental-listing.md, "Modes").
    # (An old flag's value has been moved onto the option by now: then it is not the default.)
    source = click.get_current_context().get_parameter_source("scrape_timeout")
    fit = source in (None, ParameterSource.DEFAULT) and options["scrape_timeout"] == _DEFAULT_TIMEOUT
    # Several targets may share one quota and list at once: a fit to one project's size at the
    # whole rate would be too short, so they get the longest wait instead.
    fit = fit and len(setups) == 1
    setups = tuple(replace(s, config=_once_config(s.config, fit=fit)) for s in setups)
    exporter = Exporter(setups[0].config, targets=setups, runtime_metrics=False)
    try:
        views = exporter.list_targets_once()
        exposition = generate_latest(exporter.registry)
    finally:
        exporter.close()
    if output is None:
        sys.stdout.write(exposition.decode())
    else:
        write_atomically(output, exposition)
    failed = [view for view in views if not view.up]
    for view in failed:
        reason, detail = view.last_error or ("unknown", "")
        if reason == "timeout" and "--scrape.timeout" not in detail:
            if fit:
                detail += (
                    "; its deadline was fitted to the project's size: set --scrape.timeout to give it longer"
                )
            else:
                allowed = format_duration(setups[0].config.scrape.timeout)
                detail += f"; give it longer with --scrape.timeout (it had {allowed})"
        # The project is named only when there are several: one target's line stays as it was.
        which = f" for project {view.project_id}" if len(views) > 1 else ""
        click.echo(f"vod-exporter: listing failed{which} ({reason}): {one_line(detail)}", err=True)
    if failed:
        sys.exit(1)


# The longest ``once`` waits for a listing when no --scrape.timeout is given: its deadline is then
# fitted to the project's size, up to this.
ONCE_LONGEST = 900.0


def _once_config(config: Config, *, fit: bool) -> Config:
    listing = replace(config.listing, mode="full", fit_deadline=fit)
    scrape = replace(config.scrape, timeout=ONCE_LONGEST) if fit else config.scrape
    return replace(config, listing=listing, scrape=scrape)


def _nothing_to_reload() -> str:
    return "there is no --config.file to reload"


def write_atomically(path: Path, content: bytes) -> None:
    """Replace ``path`` in one step: a reader (node_exporter) sees the old file or the new one, never
    a half-written one. The temporary file lies beside it, so the rename stays within one file system,
    and is not named *.prom, so the textfile collector never reads it."""
    import tempfile  # here, not at the top: it costs --version and --help 5 ms

    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(content)
                file.flush()
                os.fsync(file.fileno())
            # mkstemp makes it 0600; node_exporter usually runs as another user. Metrics are no secret.
            os.chmod(temporary, 0o644)
            os.replace(temporary, path)
        except BaseException:
            os.unlink(temporary)
            raise
    except OSError as error:
        raise ConfigError(f"--output: cannot write {path}: {error.strerror}") from None


@cli.command()
@option(
    "--web.listen-address",
    "listen_address",
    default="127.0.0.1:9881",
    help="Address the exporter listens on (the simulator takes a free loopback port).",
)
@log_options
def demo(**options: Any) -> None:
    """Run the exporter against a built-in simulated VOD API: live metrics, no cloud account."""
    start(options)
    host, port = parse_listen_address(options["listen_address"])
    from exporter.demo import Demo

    try:
        running = Demo(host, port)
    except OSError as error:
        raise ConfigError(
            f"--web.listen-address: cannot listen on {options['listen_address']}: {error.strerror}"
        ) from None
    # Through the log, so that the banner takes the chosen format like every other line.
    simulator = running.simulator
    log.info("demo: metrics at %s", running.metrics_url)
    log.info("demo: simulated VOD API at %s (project %s)", simulator.url, simulator.project_id)
    log.info("demo: press Ctrl-C to stop")
    wait_for_termination()
    running.stop()
    log.info("demo: stopped")


def main(argv: list[str] | None = None) -> None:
    """Entry point: every user error is one line on stderr and a non-zero exit, never a traceback."""
    try:
        code = cli.main(args=argv, prog_name="vod-exporter", standalone_mode=False)
    except ConfigError as error:
        click.echo(f"vod-exporter: error: {one_line(str(error))}", err=True)
        sys.exit(2)
    except click.UsageError as error:
        hint = f" (see '{error.ctx.command_path} --help')" if error.ctx else ""
        click.echo(f"vod-exporter: error: {one_line(error.format_message())}{hint}", err=True)
        sys.exit(error.exit_code)
    except click.ClickException as error:
        click.echo(f"vod-exporter: error: {one_line(error.format_message())}", err=True)
        sys.exit(error.exit_code)
    except click.Abort:
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
