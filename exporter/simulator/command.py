"""``vod-exporter simulate``: serve the simulated VOD API until SIGTERM or SIGINT.

Every option can also be set through ``VOD_SIMULATOR_<NAME>`` (dots and dashes become
underscores). Secrets are never options: the AK/SK come from ``HUAWEICLOUD_SDK_AK`` and
``HUAWEICLOUD_SDK_SK``, the IAM user's password from ``VOD_SIMULATOR_IAM_PASSWORD``.

``--project-id`` may be repeated (``ID`` or ``ID@REGION``): the one simulated account then has
several projects, each with tasks of its own (seeds ``--seed``, ``--seed`` + 1, ...) and the same
world and fault settings, and IAM lists each under its region.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import click

from exporter.command_options import env_option, wait_for_termination
from exporter.config import ConfigError, check_project_id, check_region, parse_duration, parse_listen_address
from exporter.logs import FORMATS, LEVELS, configure_logging
from exporter.simulator.accounts import DEFAULT_REGION, Account, Project
from exporter.simulator.faults import FaultSettings
from exporter.simulator.identity import IamUser
from exporter.simulator.platform import PlatformSettings
from exporter.simulator.server import Simulator
from exporter.simulator.world import ORDERS, TIE_ORDERS, WorldSettings

log = logging.getLogger("exporter.simulator")

ENV_PREFIX = "VOD_SIMULATOR_"
PASSWORD_VARIABLE = ENV_PREFIX + "IAM_PASSWORD"
ID_TOKENS_VARIABLE = ENV_PREFIX + "ID_TOKENS"
DEFAULT_LISTEN_ADDRESS = "127.0.0.1:9882"

option = env_option(ENV_PREFIX)


def duration(ctx: click.Context, param: click.Parameter, value: str) -> float:
    """``500ms``, ``30s``, ``1h30m`` or plain seconds, as everywhere in vod-exporter."""
    try:
        return parse_duration(value, param.opts[0])
    except ConfigError as error:
        raise click.BadParameter(str(error), ctx, param) from None


SHARE = click.FloatRange(0.0, 1.0)


@click.command("simulate")
@option("--web.listen-address", "listen_address", default=DEFAULT_LISTEN_ADDRESS, help="Where to serve.")
@option(
    "--project-id",
    "project_id",
    multiple=True,
    required=True,
    help="A project of the simulated account, ID or ID@REGION; repeat for several, each with its own tasks.",
)
@option("--region", "region", default=DEFAULT_REGION, help="Region of the projects that name none.")
@option("--tasks", "tasks", type=click.IntRange(min=0), default=1000, help="Tasks that exist at start.")
@option("--seed", "seed", type=int, default=0, help="Same seed, same tasks and same faults.")
@option("--arrival-rate", "arrival_rate", type=float, default=0.1, help="New tasks per second.")
@option("--succeed-share", "succeed_share", type=SHARE, default=0.85, help="Weight of tasks ending SUCCEED.")
@option("--failed-share", "failed_share", type=SHARE, default=0.10, help="Weight of tasks ending FAILED.")
@option("--cancel-share", "cancel_share", type=SHARE, default=0.05, help="Weight of tasks ending CANCEL.")
@option("--wait-mean", "wait_mean", callback=duration, default="20s", help="Mean time waiting.")
@option(
    "--duration-median",
    "duration_median",
    callback=duration,
    default="2m",
    help="Median time in PROCESSING (log-normal).",
)
@option("--duration-sigma", "duration_sigma", type=float, default=0.8, help="Spread of the processing time.")
@option("--history", "history", callback=duration, default="1h", help="Start tasks span this.")
@option(
    "--order",
    "order",
    type=click.Choice(ORDERS),
    default=ORDERS[0],
    help="Listing order; ties on create_time by creation (unordered: by task id group).",
)
@option(
    "--tie-order",
    "tie_order",
    type=click.Choice(TIE_ORDERS),
    default=TIE_ORDERS[0],
    help="Tasks sharing a create_time second: by creation, or in a fresh order in every answer.",
)
@option(
    "--burst-size",
    "burst_size",
    type=click.FloatRange(1.0, 10_000.0),
    default=1.0,
    help="Mean tasks created in the same second (history and arrivals).",
)
@option(
    "--stuck-tasks",
    "stuck_tasks",
    type=click.IntRange(min=0),
    default=0,
    help="Tasks of the history stuck in PROCESSING, spread through it.",
)
@option(
    "--stuck-ends-after",
    "stuck_ends_after",
    callback=duration,
    default="0s",
    help="When stuck tasks succeed, after start (0s: never).",
)
@option(
    "--purge-after",
    "purge_after",
    callback=duration,
    default="0s",
    help="Tasks older than this are gone, so total falls (0s: never).",
)
@option("--frozen", "frozen", is_flag=True, help="Stop the clock: every listing returns the same data.")
@option("--token-lifetime", "token_lifetime", callback=duration, default="24h", help="Token validity.")
@option(
    "--iam-user",
    "iam_user",
    help=f"IAM user who may get a token (POST /v3/auth/tokens); password from {PASSWORD_VARIABLE}.",
)
@option("--iam-domain", "iam_domain", help="The IAM user's account name [default: the user name].")
@option(
    "--metadata-key-lifetime",
    "metadata_key_lifetime",
    callback=duration,
    default="0s",
    help="Serve the ECS metadata service, with temporary keys valid this long (0s: no metadata service).",
)
@option(
    "--idp-id",
    "idp_id",
    help=f"Serve IAM's workload-identity exchange for this provider; tokens in {ID_TOKENS_VARIABLE}.",
)
@option("--latency", "latency", callback=duration, default="0s", help="Added to every listing answer.")
@option("--latency-jitter", "latency_jitter", callback=duration, default="0s", help="Up to this much more.")
@option(
    "--rate-limit",
    "rate_limit",
    type=click.FloatRange(min=0.0),
    default=0.0,
    help="Listing requests per second before 429 APIGW.0308 (0: no limit).",
)
@option("--error-rate", "error_rate", type=SHARE, default=0.0, help="Share answered 500 or 503.")
@option("--reset-rate", "reset_rate", type=SHARE, default=0.0, help="Share of connections reset.")
@option("--malformed-body-rate", "malformed_body_rate", type=SHARE, default=0.0, help="Share of bad bodies.")
@option(
    "--malformed-record-rate",
    "malformed_record_rate",
    type=SHARE,
    default=0.0,
    help="Share of bad records in pages.",
)
@option("--drift", "drift", type=click.IntRange(min=0), default=0, help="New tasks created per page served.")
@option("--log.level", "log_level", type=click.Choice(LEVELS), default="info", help="Log level.")
@option("--log.format", "log_format", type=click.Choice(FORMATS), default="logfmt", help="Log format.")
def simulate(**options: Any) -> None:
    """Serve a simulated Huawei Cloud VOD editing-task API (and IAM token endpoint).

    For the demo, integration tests and benchmarks: same paths, AK/SK signatures, error bodies and
    limits as the real API, with faults on demand. Stops on SIGTERM or SIGINT.
    """
    configure_logging(options["log_level"], options["log_format"])
    try:
        simulator = build_simulator(options, os.environ)
    except ConfigError as error:
        raise click.UsageError(str(error)) from None
    try:
        simulator.start()
    except OSError as error:
        raise click.ClickException(f"cannot listen on {options['listen_address']}: {error}") from None
    for project_id, world in simulator.worlds.items():
        # Seed and start determine the world: this line lets anyone recompute it.
        log.info("project %s: seed %d, world start %r", project_id, world.settings.seed, world.start)
    log.info("simulated VOD API listening on %s (project %s)", simulator.url, ", ".join(simulator.worlds))
    try:
        wait_for_termination()
    finally:
        simulator.stop()
    log.info("simulated VOD API stopped")


def build_simulator(options: dict[str, Any], environ: Mapping[str, str]) -> Simulator:
    """The simulator the options describe; raises ``ConfigError`` with a one-line message."""
    host, port = parse_listen_address(options["listen_address"])
    world = world_settings(options)
    faults = FaultSettings(
        latency=options["latency"],
        latency_jitter=options["latency_jitter"],
        rate_limit=options["rate_limit"],
        error_rate=options["error_rate"],
        reset_rate=options["reset_rate"],
        malformed_body_rate=options["malformed_body_rate"],
        malformed_record_rate=options["malformed_record_rate"],
        drift=options["drift"],
    )
    access_key = environ.get("HUAWEICLOUD_SDK_AK") or None
    secret_key = environ.get("HUAWEICLOUD_SDK_SK") or None
    if (access_key is None) != (secret_key is None):
        raise ConfigError("set both HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK, or neither")
    users = []
    if options["iam_user"]:
        password = environ.get(PASSWORD_VARIABLE)
        if not password:
            raise ConfigError(f"--iam-user needs the user's password in {PASSWORD_VARIABLE}")
        users.append(IamUser(options["iam_user"], password, options["iam_domain"] or options["iam_user"]))
    platform = _platform(options, environ)
    if access_key is None and not users and platform is None:
        raise ConfigError(
            "no credentials: set HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK, or --iam-user, "
            "or --metadata-key-lifetime, or --idp-id"
        )
    if options["token_lifetime"] <= 0:
        raise ConfigError("--token-lifetime must be longer than 0s")
    projects = [
        Project(project_id, region=region, world=replace(world, seed=world.seed + index))
        for index, (project_id, region) in enumerate(_projects(options["project_id"], options["region"]))
    ]
    return Simulator(
        accounts=[Account("simulated", access_key, secret_key, users, projects)],
        faults=faults,
        token_lifetime=options["token_lifetime"],
        host=host or "0.0.0.0",
        port=port,
        platform=platform,
    )


def world_settings(options: Mapping[str, Any]) -> WorldSettings:
    """The first project's world as the options describe it; the n-th project's seed is ``seed`` + n.

    With the start time each world logs, this is all it takes to recompute a project's tasks at
    any moment in another process (a benchmark's ground truth)."""
    return WorldSettings(
        tasks=options["tasks"],
        seed=options["seed"],
        arrival_rate=options["arrival_rate"],
        succeed_share=options["succeed_share"],
        failed_share=options["failed_share"],
        cancel_share=options["cancel_share"],
        wait_mean=options["wait_mean"],
        duration_median=options["duration_median"],
        duration_sigma=options["duration_sigma"],
        history=options["history"],
        frozen=options["frozen"],
        order=options["order"],
        tie_order=options["tie_order"],
        burst_size=options["burst_size"],
        stuck_tasks=options["stuck_tasks"],
        stuck_ends_after=options["stuck_ends_after"],
        purge_after=options["purge_after"],
    )


def _platform(options: Mapping[str, Any], environ: Mapping[str, str]) -> PlatformSettings | None:
    lifetime, idp_id = options.get("metadata_key_lifetime") or 0.0, options.get("idp_id")
    if not lifetime and not idp_id:
        return None
    tokens = frozenset(
        token.strip() for token in environ.get(ID_TOKENS_VARIABLE, "").split(",") if token.strip()
    )
    if idp_id and not tokens:
        raise ConfigError(f"--idp-id needs the service-account tokens IAM accepts in {ID_TOKENS_VARIABLE}")
    # Workload-identity keys live as long as metadata keys; an hour when only --idp-id is given.
    return PlatformSettings(
        key_lifetime=lifetime or PlatformSettings.key_lifetime,
        idp_id=idp_id or PlatformSettings.idp_id,
        id_tokens=tokens,
    )


def _projects(values: tuple[str, ...], default_region: str) -> list[tuple[str, str]]:
    """``(project id, region)`` for each ``--project-id`` value, ``ID`` or ``ID@REGION``."""
    check_region(default_region)
    projects: list[tuple[str, str]] = []
    for value in values:
        project_id, _, region = value.partition("@")
        check_project_id(project_id)
        try:
            check_region(region or default_region)
        except ConfigError:
            raise ConfigError(
                f"--project-id: {region!r} is not a Huawei Cloud region (e.g. {project_id}@cn-north-4)"
            ) from None
        if any(project_id == seen for seen, _ in projects):
            raise ConfigError(f"--project-id: {project_id} is given twice")
        projects.append((project_id, region or default_region))
    return projects


if __name__ == "__main__":
    simulate.main(prog_name="vod-exporter simulate")
