"""Credentials from the platform against the simulator, over real sockets: metadata keys that
expire and rotate, the refresh on a 401, a metadata service that is absent or answers garbage, and
a workload identity whose token file changes. The simulator and the exporter share a fake wall
clock, so expiries pass without waiting."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from exporter.app import Exporter
from exporter.cloud.credentials import (
    AkSkCredentials,
    MetadataCredentials,
    OidcCredentials,
    resolve_credentials,
)
from exporter.config import ApiSettings, Config, ConfigError, ScrapeSettings
from exporter.simulator.platform import Answer, PlatformSettings
from exporter.simulator.server import Simulator
from exporter.simulator.world import WorldSettings
from tests.conftest import METADATA_ENDPOINT_VARIABLE, PROJECT, FakeClock

KEY_LIFETIME = 600.0
IDP = "cce-idp"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=1_800_000_000.0)


@pytest.fixture
def sim(clock: FakeClock) -> Iterator[Simulator]:
    platform = PlatformSettings(key_lifetime=KEY_LIFETIME, idp_id=IDP, id_tokens=frozenset({"sa-token-1"}))
    world = WorldSettings(tasks=150, seed=5, frozen=True)
    with Simulator(project_id=PROJECT, world_settings=world, platform=platform, clock=clock) as simulator:
        yield simulator


def exporter_for(sim: Simulator, credentials: object, clock: FakeClock) -> Exporter:
    api = ApiSettings(endpoint=sim.url, project_id=PROJECT, rate_limit=0, backoff_base=0.01, backoff_max=0.02)
    config = Config(
        region="", api=api, iam_endpoint=sim.url, scrape=ScrapeSettings(timeout=20, min_refresh_interval=0)
    )
    return Exporter(config, credentials, wall_clock=clock, runtime_metrics=False)  # type: ignore[arg-type]


def metric(exporter: Exporter, name: str) -> float | None:
    value = exporter.registry.get_sample_value(name, {"project_id": PROJECT})
    return value


def metadata_credentials(sim: Simulator) -> MetadataCredentials:
    credentials = resolve_credentials("metadata", {}, home=Path("/nonexistent"), metadata_endpoint=sim.url)
    assert isinstance(credentials, MetadataCredentials)
    return credentials


def test_metadata_keys_rotate_over_several_expiries_and_no_listing_fails(
    sim: Simulator, clock: FakeClock
) -> None:
    exporter = exporter_for(sim, metadata_credentials(sim), clock)
    try:
        expiries = []
        for _ in range(8):  # about five key lifetimes
            view = exporter.list_once()
            assert view.up, view.last_error
            expiry = metric(exporter, "huaweicloud_vod_credentials_expiry_timestamp_seconds")
            assert expiry is not None and expiry > clock()
            expiries.append(expiry)
            # Past the half-life at which a 10-minute key is renewed, and short of its expiry.
            clock.sleep(KEY_LIFETIME * 0.6)
    finally:
        exporter.close()
    assert len(set(expiries)) == len(expiries)  # every listing came after the renewal point
    assert sim.requests.count("tasks", 401) == 0  # renewed ahead of expiry, never after it
    assert metric(exporter, "huaweicloud_vod_credentials_renewal_failures_total") == 0


def test_a_key_the_gateway_calls_expired_is_renewed_once_and_the_request_sent_again(
    sim: Simulator, clock: FakeClock
) -> None:
    # The exporter's clock lags the gateway's by more than the key's life (within the 15 minutes
    # of skew the gateway allows): it holds a key it believes valid, and the gateway says 0307.
    lagging = FakeClock(start=clock())
    exporter = exporter_for(sim, metadata_credentials(sim), lagging)
    try:
        clock.sleep(KEY_LIFETIME + 60)
        view = exporter.list_once()
    finally:
        exporter.close()
    assert view.up, view.last_error
    assert sim.requests.count("tasks", 401) == 1
    assert sim.platform is not None and sim.platform.keys_issued == 2


def test_a_metadata_service_that_is_absent_or_answers_garbage_is_one_line_at_start(
    sim: Simulator, no_real_metadata_service: str
) -> None:
    with pytest.raises(ConfigError) as absent:
        resolve_credentials(
            "metadata", {}, home=Path("/nonexistent"), metadata_endpoint=no_real_metadata_service
        )
    assert str(absent.value) == (
        f"--auth.metadata-endpoint: no temporary key: metadata service {no_real_metadata_service}: "
        "unreachable (ConnectError)"
    )

    assert sim.platform is not None
    sim.platform.answer = lambda *request: Answer(200, b"<html>not a key</html>", "text/html")  # type: ignore[method-assign]
    with pytest.raises(ConfigError, match=r"no temporary key: .* is not a credential") as garbage:
        metadata_credentials(sim)
    assert "\n" not in str(garbage.value)


def test_a_metadata_service_that_hands_out_an_expired_key_is_one_line_at_start() -> None:
    # Its clock (or this machine's) is off by more than a key's life: every call would be a 401,
    # which would be blamed on the keys rather than on the clocks.
    behind = FakeClock(start=1_700_000_000.0)
    platform = PlatformSettings(key_lifetime=KEY_LIFETIME)
    with (
        Simulator(project_id=PROJECT, platform=platform, clock=behind) as sim,
        pytest.raises(ConfigError) as old,
    ):
        url = sim.url
        metadata_credentials(sim)
    assert str(old.value) == (
        f"--auth.metadata-endpoint: the metadata service {url} hands out a key that expired "
        "at 2023-11-14T22:23:20Z: check the clocks of this machine and of the instance"
    )


def test_a_metadata_service_that_breaks_at_run_time_gives_up_0_auth_and_a_log_line(
    sim: Simulator, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    exporter = exporter_for(sim, metadata_credentials(sim), clock)
    assert sim.platform is not None
    secret = sim.platform._keys  # the keys issued so far: none may show in a log line
    try:
        assert exporter.list_once().up
        sim.platform.answer = lambda *request: Answer(200, b"{}")  # type: ignore[method-assign]
        clock.sleep(KEY_LIFETIME + 1)
        with caplog.at_level(logging.INFO):
            view = exporter.list_once()
        exposition = generate_latest(exporter.registry).decode()
    finally:
        exporter.close()
    assert not view.up
    assert view.last_error is not None and view.last_error[0] == "auth"
    assert f'huaweicloud_vod_scrape_errors_total{{project_id="{PROJECT}",reason="auth"}} 1.0' in exposition
    assert f'huaweicloud_vod_credentials_renewal_failures_total{{project_id="{PROJECT}"}} 1.0' in exposition
    failures = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("metadata service" in line and "not a credential" in line for line in failures)
    for key in secret.values():
        assert key.secret not in caplog.text and key.security_token not in caplog.text


def test_a_workload_identity_follows_its_rotating_token_file(
    sim: Simulator, clock: FakeClock, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("sa-token-1")
    env = {"HUAWEICLOUD_SDK_IDP_ID": IDP, "HUAWEICLOUD_SDK_ID_TOKEN_FILE": str(token_file)}
    credentials = resolve_credentials("auto", env, home=tmp_path, metadata_endpoint=sim.url)
    assert isinstance(credentials, OidcCredentials)
    exporter = exporter_for(sim, credentials, clock)
    assert sim.platform is not None
    try:
        assert exporter.list_once().up
        # kubelet rotates the token; IAM stops accepting the old one.
        sim.platform.accept_id_token("sa-token-2")
        token_file.write_text("sa-token-2")
        sim.platform.revoke_id_token("sa-token-1")
        for _ in range(3):
            clock.sleep(KEY_LIFETIME / 2 + 1)
            view = exporter.list_once()
            assert view.up, view.last_error
    finally:
        exporter.close()
    assert sim.requests.count("oidc", 201) >= 2 * 3  # two steps per exchange, one exchange a lifetime
    assert sim.requests.count("oidc", 401) == 0
    assert metric(exporter, "huaweicloud_vod_credentials_expiry_timestamp_seconds") == pytest.approx(
        clock() + KEY_LIFETIME, abs=KEY_LIFETIME
    )


def test_auto_never_asks_the_real_metadata_address_in_tests(
    no_real_metadata_service: str, tmp_path: Path
) -> None:
    # The autouse fixture points every credential chain the tests run at a closed loopback port,
    # in this process and in the processes they start.
    assert no_real_metadata_service.startswith("http://127.0.0.1:")
    script = f"import os; print(os.environ['{METADATA_ENDPOINT_VARIABLE}'])"
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert child.stdout.strip() == no_real_metadata_service
    done = subprocess.run(
        [sys.executable, "-m", "exporter", "once", "--region", "cn-north-4", "--project-id", PROJECT],
        capture_output=True,
        text=True,
        check=False,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            METADATA_ENDPOINT_VARIABLE: no_real_metadata_service,
        },
        timeout=60,
    )
    assert done.returncode == 2
    assert f"or run where the metadata service {no_real_metadata_service} answers" in done.stderr
    assert "169.254.169.254" not in done.stderr


def test_long_lived_keys_export_no_credentials_families(sim: Simulator, clock: FakeClock) -> None:
    exporter = exporter_for(sim, AkSkCredentials("AK", "SK"), clock)
    try:
        exposition = generate_latest(exporter.registry).decode()
    finally:
        exporter.close()
    assert "huaweicloud_vod_credentials_" not in exposition


def test_auto_asks_the_metadata_service_last_and_only_when_nothing_else_is_set(
    sim: Simulator, tmp_path: Path
) -> None:
    aksk = {"HUAWEICLOUD_SDK_AK": "AK", "HUAWEICLOUD_SDK_SK": "SK"}
    assert isinstance(
        resolve_credentials("auto", aksk, home=tmp_path, metadata_endpoint=sim.url), AkSkCredentials
    )
    assert sim.requests.count("metadata") == 0

    found = resolve_credentials("auto", {}, home=tmp_path, metadata_endpoint=sim.url)
    assert isinstance(found, MetadataCredentials) and found.endpoint == sim.url
    assert found.first_key is not None  # fetched once at start, and used: not fetched again
    assert sim.requests.count("metadata", 200) == 2


def test_the_metadata_service_is_asked_directly_whatever_proxy_the_environment_names(
    sim: Simulator, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, no_real_metadata_service: str
) -> None:
    # A proxy cannot reach the instance's link-local metadata address: never send it there.
    monkeypatch.setenv("HTTP_PROXY", no_real_metadata_service)
    monkeypatch.setenv("NO_PROXY", "")
    exporter = exporter_for(sim, metadata_credentials(sim), clock)
    try:
        clock.sleep(KEY_LIFETIME)  # the renewal goes through the exporter's own client
        view = exporter.list_once()
        assert view.up, view.last_error
        assert sim.requests.count("metadata", 200) == 4  # at start, then the renewal: session token and key
    finally:
        exporter.close()
