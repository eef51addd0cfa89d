"""The official Huawei Cloud SDK talks to the simulator as it would to VOD: its signatures pass,
its pages add up to the ground truth, and the simulator's errors reach it with their codes.

The SDK resolves nothing itself here (project id and endpoint are given), and a guard on name
resolution fails the test if it tries to reach any host but the simulator's.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkvod.v1 import ListAssetEditTaskRequest, VodClient

from exporter.simulator import Simulator, WorldSettings
from exporter.tasks import parse_task
from tests.conftest import PROJECT

AK = "SDKTESTACCESSKEY0001"
SK = "sdk-test-secret-key"


# No proxy from the environment, and no name lookup but the simulator's address.
pytestmark = pytest.mark.usefixtures("loopback_only")


@pytest.fixture
def sim() -> Iterator[Simulator]:
    # Frozen, so the ground truth cannot move between the SDK's pages and the comparison.
    settings = WorldSettings(tasks=345, seed=21, arrival_rate=0.5, frozen=True)
    with Simulator(project_id=PROJECT, world_settings=settings, access_key=AK, secret_key=SK) as simulator:
        yield simulator


def vod_client(sim: Simulator, secret_key: str = SK) -> Any:
    return (
        VodClient.new_builder()
        .with_http_config(HttpConfig.get_default_config())
        .with_credentials(BasicCredentials(AK, secret_key, PROJECT))
        .with_endpoints([sim.url])
        .build()
    )


def test_the_sdk_pages_through_every_task(sim: Simulator) -> None:
    client = vod_client(sim)
    records: list[dict[str, Any]] = []
    total = None
    while total is None or len(records) < total:
        response = client.list_asset_edit_task(ListAssetEditTaskRequest(offset=len(records), limit=100))
        total = response.total
        assert response.tasks, "a page came back empty before the total was reached"
        records.extend(task.to_dict() for task in response.tasks)
    assert len(records) == total == 345
    # The SDK's model leaves end_time as None for open tasks; the wire format omits the key.
    parsed = [parse_task({k: v for k, v in record.items() if v is not None}) for record in records]
    assert parsed == sim.world.tasks()
    assert sim.requests.count("tasks", 200) == 4
    assert sim.requests.count("tasks") == 4


def test_the_sdk_gets_one_task_by_id(sim: Simulator) -> None:
    wanted = sim.world.tasks()[100]
    response = vod_client(sim).list_asset_edit_task(ListAssetEditTaskRequest(task_id=wanted.task_id))
    assert response.total == 1
    assert [task.task_id for task in response.tasks] == [wanted.task_id]
    assert response.tasks[0].status == wanted.status


def test_the_sdk_gets_nothing_for_an_unknown_or_deleted_task_id(sim: Simulator) -> None:
    client = vod_client(sim)
    unknown = client.list_asset_edit_task(ListAssetEditTaskRequest(task_id="0" * 32))
    assert (unknown.total, unknown.tasks) == (0, [])
    deep = sim.world.tasks()[300]
    assert sim.world.delete_task(deep.task_id)
    deleted = client.list_asset_edit_task(ListAssetEditTaskRequest(task_id=deep.task_id))
    assert (deleted.total, deleted.tasks) == (0, [])
    assert sim.requests.count("tasks", 200) == 2


def test_a_limit_over_100_reaches_the_sdk_as_vod_10053(sim: Simulator) -> None:
    with pytest.raises(ClientRequestException) as caught:
        vod_client(sim).list_asset_edit_task(ListAssetEditTaskRequest(limit=1000))
    error = caught.value
    assert (error.status_code, error.error_code) == (400, "VOD.10053")
    assert "{limit}" in error.error_msg
    assert re.fullmatch(r"[0-9a-f]{32}", error.request_id)


def test_a_wrong_secret_key_reaches_the_sdk_as_apigw_0301(sim: Simulator) -> None:
    with pytest.raises(ClientRequestException) as caught:
        vod_client(sim, secret_key="not-the-secret").list_asset_edit_task(ListAssetEditTaskRequest())
    assert (caught.value.status_code, caught.value.error_code) == (401, "APIGW.0301")
    assert sim.requests.count("tasks", 401) == 1  # the SDK does not retry a 401 either
