"""The project id found from the region, over real sockets: ``once`` and ``serve`` given only a
region and AK/SK, IAM answering none or several projects, and the official SDK's own lookup
pointed at the simulator, which must find the same id."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from exporter.simulator import Account, Project, Simulator, WorldSettings
from tests.conftest import environment_without_settings, free_port, wait_for

AK, SK = "RESOLVEACCESSKEY0001", "resolve-secret-key"
OTHER_AK, OTHER_SK = "OTHERACCESSKEY000001", "other-secret-key"
NORTH = "0a" * 16
SUB = "0d" * 16
ELSEWHERE = "0e" * 16
REGION = "cn-north-4"


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    """Two accounts: ours, with one project in cn-north-4 and two (a project and a look-alike) in
    ap-southeast-1; another with its own cn-north-4 project, which ours must never find."""
    frozen = WorldSettings(tasks=25, seed=5, frozen=True)
    accounts = [
        Account(
            "media",
            access_key=AK,
            secret_key=SK,
            projects=[
                Project(NORTH, region=REGION, world=frozen),
                Project(SUB, region="ap-southeast-1"),
                Project("0f" * 16, region="ap-southeast-1"),
            ],
        ),
        Account(
            "other", access_key=OTHER_AK, secret_key=OTHER_SK, projects=[Project(ELSEWHERE, region=REGION)]
        ),
    ]
    with Simulator(accounts=accounts) as simulator:
        yield simulator


def environment(home: Path, ak: str = AK, sk: str = SK) -> dict[str, str]:
    env = environment_without_settings()
    env.update(HOME=str(home), HUAWEICLOUD_SDK_AK=ak, HUAWEICLOUD_SDK_SK=sk, PYTHONUNBUFFERED="1")
    return env


def command(sim: Simulator, verb: str, region: str = REGION, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "exporter",
        verb,
        "--region",
        region,
        "--endpoint",
        sim.url,
        "--iam-endpoint",
        sim.url,
        *extra,
    ]


def run_once(
    sim: Simulator, home: Path, region: str = REGION, **keys: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(sim, "once", region, "--log.level", "debug"),
        env=environment(home, **keys),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_once_with_only_a_region_finds_the_project_and_lists_it(sim: Simulator, tmp_path: Path) -> None:
    before = sim.requests.count("projects", 200)
    done = run_once(sim, tmp_path)
    assert done.returncode == 0, done.stderr
    assert f'huaweicloud_vod_editing_tasks_reported{{project_id="{NORTH}"}} 25.0' in done.stdout
    assert 'huaweicloud_vod_api_requests_total{code="200",operation="iam_projects"} 1.0' in done.stdout
    assert sim.requests.count("projects", 200) == before + 1
    resolved = [line for line in done.stderr.splitlines() if "project_id resolved from region" in line]
    assert len(resolved) == 1
    assert f"region={REGION}" in resolved[0] and f"project_id={NORTH}" in resolved[0]
    assert SK not in done.stderr


def test_the_other_accounts_keys_find_its_own_project(sim: Simulator, tmp_path: Path) -> None:
    done = run_once(sim, tmp_path, ak=OTHER_AK, sk=OTHER_SK)
    assert done.returncode == 0, done.stderr
    assert f'huaweicloud_vod_up{{project_id="{ELSEWHERE}"}} 1.0' in done.stdout


@pytest.mark.parametrize(
    ("region", "expected"),
    [
        ("eu-west-101", "lists no project named eu-west-101 for these credentials"),
        (
            "ap-southeast-1",
            f"lists 2 projects named ap-southeast-1: ap-southeast-1 ({SUB}), ap-southeast-1 (",
        ),
    ],
)
def test_none_or_several_projects_are_one_line_and_exit_2(
    sim: Simulator, tmp_path: Path, region: str, expected: str
) -> None:
    done = subprocess.run(
        command(sim, "once", region),
        env=environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("vod-exporter: error: ")
    assert expected in done.stderr
    assert done.stdout == ""


def test_credentials_iam_refuses_are_one_line_and_exit_2(sim: Simulator, tmp_path: Path) -> None:
    done = subprocess.run(
        command(sim, "once"),
        env=environment(tmp_path, sk="wrong"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert f"cannot look up the project id of {REGION} at {sim.url}: HTTP 401 Unauthorized" in done.stderr
    assert "set --project-id" in done.stderr and "wrong" not in done.stderr


def test_an_iam_that_is_not_there_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{unused.getsockname()[1]}"  # bound, never listening: refused
        args = [
            sys.executable,
            "-m",
            "exporter",
            "once",
            "--region",
            REGION,
            "--endpoint",
            url,
            "--iam-endpoint",
            url,
        ]
        done = subprocess.run(
            args, env=environment(tmp_path), capture_output=True, text=True, timeout=60, check=False
        )
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "cannot reach 127.0.0.1" in done.stderr and "--iam-endpoint" in done.stderr


def test_serve_finds_the_project_once_and_serves_it(sim: Simulator, tmp_path: Path) -> None:
    port = free_port()
    before = sim.requests.count("projects")
    process = subprocess.Popen(
        command(sim, "serve", REGION, "--web.listen-address", f"127.0.0.1:{port}"),
        env=environment(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for("the exporter to be ready", lambda: _ready(f"http://127.0.0.1:{port}/-/ready"), 30, 0.05)
        for _ in range(2):
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=20).text
            assert f'huaweicloud_vod_up{{project_id="{NORTH}"}} 1.0' in text
        assert sim.requests.count("projects") == before + 1  # at start-up only, never per scrape
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=20)
        assert process.returncode == 0, err
        assert "project_id resolved from region" in err and f"for project {NORTH}" in err
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def _ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


# --- the official SDK's own lookup -------------------------------------------------------------------


def sdk_client(sim: Simulator, ak: str, sk: str) -> Any:
    from huaweicloudsdkcore.auth.credentials import BasicCredentials
    from huaweicloudsdkcore.http.http_config import HttpConfig
    from huaweicloudsdkcore.region.region import Region
    from huaweicloudsdkvod.v1 import VodClient

    # No project id: the SDK asks IAM for the region's, at the IAM endpoint given.
    credentials = BasicCredentials(ak, sk).with_iam_endpoint(sim.url)
    return (
        VodClient.new_builder()
        .with_http_config(HttpConfig.get_default_config())
        .with_credentials(credentials)
        .with_region(Region(REGION, sim.url))
        .build()
    )


@pytest.mark.usefixtures("loopback_only")
def test_the_sdk_finds_the_same_project_id_and_lists_it(sim: Simulator) -> None:
    from huaweicloudsdkvod.v1 import ListAssetEditTaskRequest

    before = sim.requests.count("projects", 200)
    response = sdk_client(sim, AK, SK).list_asset_edit_task(ListAssetEditTaskRequest(limit=100))
    assert response.total == 25
    assert sim.requests.count("projects", 200) == before + 1
    assert sim.requests.count("tasks", 200, project_id=NORTH) >= 1


@pytest.mark.usefixtures("loopback_only")
def test_the_sdk_refuses_several_projects_as_the_exporter_does(sim: Simulator) -> None:
    from huaweicloudsdkcore.auth.credentials import BasicCredentials
    from huaweicloudsdkcore.exceptions.exceptions import SdkException
    from huaweicloudsdkcore.http.http_config import HttpConfig
    from huaweicloudsdkcore.region.region import Region
    from huaweicloudsdkvod.v1 import VodClient

    credentials = BasicCredentials(AK, SK).with_iam_endpoint(sim.url)
    with pytest.raises(SdkException, match="Multiple project ids found"):
        (
            VodClient.new_builder()
            .with_http_config(HttpConfig.get_default_config())
            .with_credentials(credentials)
            .with_region(Region("ap-southeast-1", sim.url))
            .build()
        )
