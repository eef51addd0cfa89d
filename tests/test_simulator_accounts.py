"""The simulator with several accounts and projects, over real sockets: each project its own tasks
and faults, each account its own keys, users and request quota, and IAM's project list by name."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from exporter.simulator import Account, FaultSettings, IamUser, Project, Simulator, WorldSettings
from tests.conftest import FakeClock
from tests.test_simulator import START, Signed

MEDIA_AK, MEDIA_SK = "MEDIAACCESSKEY000001", "media-secret-key"
ARCHIVE_AK, ARCHIVE_SK = "ARCHIVEACCESSKEY0001", "archive-secret-key"
NORTH = "0a" * 16  # media, cn-north-4
SOUTH = "0b" * 16  # media, ap-southeast-1
ARCHIVE = "0c" * 16  # archive, cn-north-4


def tasks_path(project_id: str) -> str:
    return f"/v1/{project_id}/asset/editing/tasks"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def sim(clock: FakeClock) -> Iterator[Simulator]:
    accounts = [
        Account(
            "media",
            access_key=MEDIA_AK,
            secret_key=MEDIA_SK,
            projects=[
                Project(NORTH, region="cn-north-4", world=WorldSettings(tasks=30, seed=1)),
                Project(SOUTH, region="ap-southeast-1", world=WorldSettings(tasks=7, seed=2)),
            ],
        ),
        Account(
            "archive",
            access_key=ARCHIVE_AK,
            secret_key=ARCHIVE_SK,
            iam_users=[IamUser("ops", "ops-password")],
            projects=[Project(ARCHIVE, region="cn-north-4", world=WorldSettings(tasks=12, seed=3))],
        ),
    ]
    with Simulator(accounts=accounts, clock=clock) as simulator:
        yield simulator


def ops_login(project_id: str = ARCHIVE) -> dict[str, Any]:
    """The archive account's IAM user asks for a token scoped to ``project_id``."""
    user = {"name": "ops", "password": "ops-password", "domain": {"name": "archive"}}
    return {
        "auth": {
            "identity": {"methods": ["password"], "password": {"user": user}},
            "scope": {"project": {"id": project_id}},
        }
    }


def client(sim: Simulator, clock: FakeClock, ak: str, sk: str) -> httpx.Client:
    return httpx.Client(base_url=sim.url, auth=Signed(ak, sk, clock=clock))


def test_each_project_lists_its_own_tasks(sim: Simulator, clock: FakeClock) -> None:
    with (
        client(sim, clock, MEDIA_AK, MEDIA_SK) as media,
        client(sim, clock, ARCHIVE_AK, ARCHIVE_SK) as archive,
    ):
        totals = {
            NORTH: media.get(tasks_path(NORTH)).json()["total"],
            SOUTH: media.get(tasks_path(SOUTH)).json()["total"],
            ARCHIVE: archive.get(tasks_path(ARCHIVE)).json()["total"],
        }
    assert totals == {NORTH: 30, SOUTH: 7, ARCHIVE: 12}
    assert {pid: world.total() for pid, world in sim.worlds.items()} == totals
    assert sim.requests.count("tasks", 200) == 3
    assert sim.requests.count("tasks", 200, project_id=SOUTH) == 1


def test_a_key_reaches_only_its_accounts_projects(sim: Simulator, clock: FakeClock) -> None:
    with client(sim, clock, MEDIA_AK, MEDIA_SK) as media:
        response = media.get(tasks_path(ARCHIVE))
    assert response.status_code == 403
    assert response.json()["error_code"] == "APIGW.0302"
    assert sim.requests.count("tasks", 403, project_id=ARCHIVE) == 1


def test_a_token_reaches_only_the_project_it_was_scoped_to(sim: Simulator, clock: FakeClock) -> None:
    with httpx.Client(base_url=sim.url) as plain:
        issued = plain.post("/v3/auth/tokens", json=ops_login())
        assert issued.status_code == 201
        assert issued.json()["token"]["project"]["name"] == "cn-north-4"
        headers = {"X-Auth-Token": issued.headers["X-Subject-Token"]}
        assert plain.get(tasks_path(ARCHIVE), headers=headers).status_code == 200
        assert plain.get(tasks_path(NORTH), headers=headers).status_code == 403
        other_account = plain.post("/v3/auth/tokens", json=ops_login(NORTH))
        assert other_account.status_code == 401


def test_each_account_has_its_own_request_quota(sim: Simulator, clock: FakeClock) -> None:
    sim.faults = FaultSettings(rate_limit=2)
    with (
        client(sim, clock, MEDIA_AK, MEDIA_SK) as media,
        client(sim, clock, ARCHIVE_AK, ARCHIVE_SK) as archive,
    ):
        # The media account's two projects draw on one quota: the third call in a second is refused.
        statuses = [media.get(tasks_path(pid)).status_code for pid in (NORTH, SOUTH, SOUTH)]
        assert statuses == [200, 200, 429]
        # The archive account's quota is untouched.
        assert [archive.get(tasks_path(ARCHIVE)).status_code for _ in range(2)] == [200, 200]
        clock.sleep(1.0)
        assert media.get(tasks_path(NORTH)).status_code == 200


def test_faults_can_be_set_for_one_project(sim: Simulator, clock: FakeClock) -> None:
    sim.set_faults(FaultSettings(error_rate=1.0), project_id=SOUTH)
    with client(sim, clock, MEDIA_AK, MEDIA_SK) as media:
        assert media.get(tasks_path(SOUTH)).status_code in (500, 503)
        assert media.get(tasks_path(NORTH)).status_code == 200
    assert sim.gateway.project_faults(SOUTH) == FaultSettings(error_rate=1.0)
    assert sim.faults == FaultSettings()


def test_a_project_can_be_built_with_its_own_faults(clock: FakeClock) -> None:
    account = Account(
        "media",
        access_key=MEDIA_AK,
        secret_key=MEDIA_SK,
        projects=[
            Project(NORTH),
            Project(SOUTH, region="ap-southeast-1", faults=FaultSettings(error_rate=1.0)),
        ],
    )
    with Simulator(accounts=[account], clock=clock) as sim, client(sim, clock, MEDIA_AK, MEDIA_SK) as media:
        assert media.get(tasks_path(NORTH)).status_code == 200
        assert media.get(tasks_path(SOUTH)).status_code in (500, 503)


def test_world_and_project_id_need_a_single_project(sim: Simulator) -> None:
    with pytest.raises(AttributeError, match="worlds"):
        sim.world  # noqa: B018
    with pytest.raises(AttributeError, match="worlds"):
        sim.project_id  # noqa: B018


@pytest.mark.parametrize(
    ("accounts", "message"),
    [
        (
            [Account("a", projects=[Project(NORTH)]), Account("a", projects=[Project(SOUTH)])],
            "account used twice",
        ),
        (
            [Account("a", projects=[Project(NORTH)]), Account("b", projects=[Project(NORTH)])],
            "project id used twice",
        ),
        (
            [
                Account("a", access_key="K", secret_key="s", projects=[Project(NORTH)]),
                Account("b", access_key="K", secret_key="t", projects=[Project(SOUTH)]),
            ],
            "access key used twice",
        ),
        ([Account("a")], "at least one project"),
    ],
)
def test_inconsistent_accounts_are_refused(accounts: list[Account], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Simulator(accounts=accounts)


def test_project_id_and_accounts_are_exclusive() -> None:
    with pytest.raises(ValueError, match="either"):
        Simulator(project_id=NORTH, accounts=[Account("a", projects=[Project(SOUTH)])])
    with pytest.raises(ValueError, match="either"):
        Simulator()


# --- IAM: GET /v3/projects?name={region} -------------------------------------------------------------


def list_projects(sim: Simulator, clock: FakeClock, ak: str, sk: str, **params: str) -> httpx.Response:
    with client(sim, clock, ak, sk) as iam:
        return iam.get("/v3/projects", params=params)


def test_iam_lists_the_accounts_project_of_a_region(sim: Simulator, clock: FakeClock) -> None:
    response = list_projects(sim, clock, MEDIA_AK, MEDIA_SK, name="ap-southeast-1")
    assert response.status_code == 200
    document = response.json()
    assert [(p["id"], p["name"], p["enabled"]) for p in document["projects"]] == [
        (SOUTH, "ap-southeast-1", True)
    ]
    project = document["projects"][0]
    assert project["domain_id"] == project["parent_id"] == sim.accounts[0].domain_id
    assert project["is_domain"] is False
    assert project["links"]["self"].endswith(f"/v3/projects/{SOUTH}")
    assert document["links"]["self"].endswith("/v3/projects?name=ap-southeast-1")
    assert response.headers["X-IAM-Trace-Id"]
    # The same region in another account is that account's project.
    archive = list_projects(sim, clock, ARCHIVE_AK, ARCHIVE_SK, name="cn-north-4").json()
    assert [p["id"] for p in archive["projects"]] == [ARCHIVE]
    assert sim.requests.count("projects", 200) == 2


def test_iam_lists_nothing_for_a_region_the_account_has_no_project_in(
    sim: Simulator, clock: FakeClock
) -> None:
    response = list_projects(sim, clock, ARCHIVE_AK, ARCHIVE_SK, name="ap-southeast-1")
    assert response.status_code == 200
    assert response.json()["projects"] == []


def test_iam_lists_every_project_of_the_account_without_a_name(sim: Simulator, clock: FakeClock) -> None:
    response = list_projects(sim, clock, MEDIA_AK, MEDIA_SK)
    assert sorted(p["id"] for p in response.json()["projects"]) == [NORTH, SOUTH]


def test_iam_refuses_a_bad_signature_in_keystone_style(sim: Simulator, clock: FakeClock) -> None:
    response = list_projects(sim, clock, MEDIA_AK, "not-the-secret", name="cn-north-4")
    assert response.status_code == 401
    error: dict[str, Any] = response.json()["error"]
    assert (error["code"], error["title"]) == (401, "Unauthorized")
    assert MEDIA_AK not in json.dumps(error)
    assert sim.requests.count("projects", 401) == 1


def test_iam_lists_projects_for_a_token(sim: Simulator, clock: FakeClock) -> None:
    with httpx.Client(base_url=sim.url) as plain:
        token = plain.post("/v3/auth/tokens", json=ops_login()).headers["X-Subject-Token"]
        response = plain.get("/v3/projects", params={"name": "cn-north-4"}, headers={"X-Auth-Token": token})
    assert [p["id"] for p in response.json()["projects"]] == [ARCHIVE]


def test_the_one_project_simulator_answers_for_its_region(clock: FakeClock) -> None:
    with Simulator(
        project_id=NORTH, region="eu-west-101", access_key=MEDIA_AK, secret_key=MEDIA_SK, clock=clock
    ) as sim:
        found = list_projects(sim, clock, MEDIA_AK, MEDIA_SK, name="eu-west-101").json()["projects"]
        assert [p["id"] for p in found] == [NORTH]
        assert sim.project_id == NORTH
        assert sim.world is sim.worlds[NORTH]


# --- vod-exporter simulate with several projects ----------------------------------------------------


def test_simulate_serves_every_project_id_given_each_with_its_own_tasks() -> None:
    from exporter.simulator.command import build_simulator, simulate

    args = ["--project-id", NORTH, "--project-id", f"{SOUTH}@ap-southeast-1", "--tasks", "20"]
    options = simulate.make_context("simulate", args).params
    sim = build_simulator(options, {"HUAWEICLOUD_SDK_AK": MEDIA_AK, "HUAWEICLOUD_SDK_SK": MEDIA_SK})
    assert sorted(sim.worlds) == [NORTH, SOUTH]
    assert sim.worlds[NORTH].total() == sim.worlds[SOUTH].total() == 20
    # Each project its own world: another seed, other tasks.
    assert sim.worlds[NORTH].tasks() != sim.worlds[SOUTH].tasks()
    (account,) = sim.accounts
    assert [(p.id, p.region) for p in account.projects] == [(NORTH, "cn-north-4"), (SOUTH, "ap-southeast-1")]


def test_simulate_places_projects_without_a_region_in_region() -> None:
    from exporter.simulator.command import build_simulator, simulate

    options = simulate.make_context("simulate", ["--project-id", NORTH, "--region", "eu-west-101"]).params
    sim = build_simulator(options, {"HUAWEICLOUD_SDK_AK": MEDIA_AK, "HUAWEICLOUD_SDK_SK": MEDIA_SK})
    assert [p.region for p in sim.accounts[0].projects] == ["eu-west-101"]
    assert sim.project_id == NORTH


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (f"{NORTH}@Mars", "--project-id: 'Mars' is not a Huawei Cloud region"),
        ("nope@cn-north-4", "--project-id: 'nope' is not a project id"),
    ],
)
def test_simulate_refuses_a_bad_project(value: str, message: str) -> None:
    from exporter.config import ConfigError
    from exporter.simulator.command import build_simulator, simulate

    options = simulate.make_context("simulate", ["--project-id", value]).params
    with pytest.raises(ConfigError, match=re.escape(message)):
        build_simulator(options, {"HUAWEICLOUD_SDK_AK": MEDIA_AK, "HUAWEICLOUD_SDK_SK": MEDIA_SK})


def test_simulate_refuses_a_project_given_twice() -> None:
    from exporter.config import ConfigError
    from exporter.simulator.command import build_simulator, simulate

    options = simulate.make_context("simulate", ["--project-id", NORTH, "--project-id", NORTH]).params
    with pytest.raises(ConfigError, match=f"--project-id: {NORTH} is given twice"):
        build_simulator(options, {"HUAWEICLOUD_SDK_AK": MEDIA_AK, "HUAWEICLOUD_SDK_SK": MEDIA_SK})
