"""Finding the project id from the region at IAM: the request, the answers, and every error as one
line that says what was found (never a secret)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx

from exporter.cloud.api_metrics import ApiRequestStats, CountingTransport
from exporter.cloud.auth import AkSkAuth
from exporter.cloud.credentials import AkSkCredentials, IamPasswordCredentials, StaticTokenCredentials
from exporter.cloud.projects import OPERATION, ProjectIds, resolve_project_id
from exporter.config import Config, ConfigError

IAM = "https://iam.cn-north-4.myhuaweicloud.com"
PROJECTS_URL = f"{IAM}/v3/projects"
AK, SK = "PROJECTSTESTAK000001", "projects-test-secret-key"
NORTH = "0a" * 16
SUB = "0d" * 16


def project(project_id: str, name: str = "cn-north-4") -> dict[str, Any]:
    return {
        "id": project_id,
        "name": name,
        "domain_id": "d0" * 16,
        "parent_id": "d0" * 16,
        "is_domain": False,
        "enabled": True,
        "description": "",
        "links": {"self": f"{PROJECTS_URL}/{project_id}"},
    }


def answer(*projects: dict[str, Any]) -> httpx.Response:
    links = {"self": f"{PROJECTS_URL}?name=cn-north-4", "previous": None, "next": None}
    return httpx.Response(200, json={"links": links, "projects": list(projects)})


@pytest.fixture
def stats() -> ApiRequestStats:
    return ApiRequestStats()


@pytest.fixture
def http(stats: ApiRequestStats) -> Iterator[httpx.Client]:
    # As the app builds its IAM client: every attempt counted, under the token login's operation
    # unless the request names its own.
    with httpx.Client(transport=CountingTransport(httpx.HTTPTransport(), stats, "iam_token")) as client:
        yield client


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as mock:
        yield mock


def resolve(http: httpx.Client, region: str = "cn-north-4") -> str:
    return resolve_project_id(region, http, IAM, AkSkAuth(AK, SK))


def test_the_one_project_of_the_region_is_the_answer(
    router: respx.MockRouter, http: httpx.Client, stats: ApiRequestStats
) -> None:
    route = router.get(PROJECTS_URL).mock(return_value=answer(project(NORTH)))
    assert resolve(http) == NORTH
    request = route.calls.last.request
    assert request.url.params["name"] == "cn-north-4"
    # Signed as the SDK signs it: AK/SK over Host and X-Sdk-Date, and no project header, since
    # there is no project yet.
    assert request.headers["Authorization"].startswith(f"SDK-HMAC-SHA256 Access={AK}, ")
    assert "X-Sdk-Date" in request.headers
    assert "X-Project-Id" not in request.headers
    assert stats.requests() == {(OPERATION, "200"): 1}


def test_no_project_is_one_line_naming_the_region(router: respx.MockRouter, http: httpx.Client) -> None:
    router.get(PROJECTS_URL).mock(return_value=answer())
    with pytest.raises(ConfigError) as caught:
        resolve(http)
    message = str(caught.value)
    assert "\n" not in message
    assert "no project named cn-north-4" in message
    assert IAM in message and "--project-id" in message


def test_several_projects_are_one_line_listing_names_and_ids(
    router: respx.MockRouter, http: httpx.Client
) -> None:
    router.get(PROJECTS_URL).mock(return_value=answer(project(NORTH), project(SUB)))
    with pytest.raises(ConfigError) as caught:
        resolve(http)
    message = str(caught.value)
    assert "\n" not in message
    assert "2 projects named cn-north-4" in message
    assert f"cn-north-4 ({NORTH})" in message and f"cn-north-4 ({SUB})" in message
    assert "--project-id" in message


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            401,
            {
                "error": {
                    "code": 401,
                    "message": "The request you have made requires authentication.",
                    "title": "Unauthorized",
                }
            },
            "HTTP 401 Unauthorized: The request you have made requires authentication.",
        ),
        (
            403,
            {
                "error": {
                    "code": 403,
                    "message": "You are not authorized to perform the requested action.",
                    "title": "Forbidden",
                }
            },
            "HTTP 403 Forbidden",
        ),
        (500, {"error_code": "APIGW.0601", "error_msg": "Internal server error."}, "HTTP 500 APIGW.0601"),
    ],
)
def test_an_error_from_iam_is_one_line_with_the_hint(
    router: respx.MockRouter, http: httpx.Client, status: int, body: dict[str, Any], expected: str
) -> None:
    router.get(PROJECTS_URL).mock(return_value=httpx.Response(status, json=body))
    with pytest.raises(ConfigError) as caught:
        resolve(http)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"cannot look up the project id of cn-north-4 at {IAM}: ")
    assert expected in message
    assert "set --project-id" in message
    assert AK not in message and SK not in message


def test_an_unreachable_iam_is_one_line(
    router: respx.MockRouter, http: httpx.Client, stats: ApiRequestStats
) -> None:
    router.get(PROJECTS_URL).mock(side_effect=httpx.ConnectError("connection refused"))
    with pytest.raises(ConfigError) as caught:
        resolve(http)
    message = str(caught.value)
    assert "\n" not in message
    assert "cannot reach iam.cn-north-4.myhuaweicloud.com" in message
    assert "--iam-endpoint" in message
    assert stats.requests() == {(OPERATION, "network_error"): 1}


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="<html>maintenance</html>"),
        httpx.Response(200, json={"projects": "none"}),
        httpx.Response(200, json=[]),
        httpx.Response(200, json={"projects": [{"name": "cn-north-4"}]}),
        httpx.Response(200, json={"projects": [project("not-a-project-id\nforged line")]}),
    ],
)
def test_an_answer_that_is_not_a_project_list_is_one_line(
    router: respx.MockRouter, http: httpx.Client, response: httpx.Response
) -> None:
    router.get(PROJECTS_URL).mock(return_value=response)
    with pytest.raises(ConfigError) as caught:
        resolve(http)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("cannot look up the project id of cn-north-4")


def test_several_projects_with_hostile_names_stay_on_one_line(
    router: respx.MockRouter, http: httpx.Client
) -> None:
    router.get(PROJECTS_URL).mock(return_value=answer(project(NORTH, "cn-north-4\x1b[2J"), project(SUB)))
    with pytest.raises(ConfigError) as caught:
        resolve(http)
    assert "\n" not in str(caught.value) and "\x1b" not in str(caught.value)


def config(region: str = "cn-north-4") -> Config:
    return Config.from_options({"region": region, "iam_endpoint": IAM}, {}, needs_iam=False)


def test_project_ids_asks_iam_once_per_region_and_credentials(
    router: respx.MockRouter, http: httpx.Client
) -> None:
    route = router.get(PROJECTS_URL).mock(return_value=answer(project(NORTH)))
    ids = ProjectIds(http)
    found = []
    threads = [
        threading.Thread(target=lambda: found.append(ids.resolve(config(), AkSkCredentials(AK, SK))))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert found == [NORTH] * 4
    assert route.call_count == 1
    assert route.calls.last.request.headers["Authorization"].startswith(f"SDK-HMAC-SHA256 Access={AK}, ")
    # Other credentials may belong to another account: asked again; so is another region.
    assert ids.resolve(config(), AkSkCredentials("OTHERKEY", SK)) == NORTH
    assert route.call_count == 2
    ids.resolve(config("eu-west-101"), AkSkCredentials(AK, SK))
    assert route.call_count == 3
    assert route.calls.last.request.url.params["name"] == "eu-west-101"


def test_project_ids_signs_with_a_token_as_the_api_calls_are(
    router: respx.MockRouter, http: httpx.Client
) -> None:
    route = router.get(PROJECTS_URL).mock(return_value=answer(project(NORTH)))
    assert (
        ProjectIds(http).resolve(config(), StaticTokenCredentials(token="MIITtoken", token_file=None))
        == NORTH
    )
    assert route.calls.last.request.headers["X-Auth-Token"] == "MIITtoken"


def test_project_ids_refuses_an_iam_password_login(http: httpx.Client) -> None:
    with pytest.raises(ConfigError, match="an IAM password login is scoped to a project"):
        ProjectIds(http).resolve(config(), IamPasswordCredentials("ops", "acme", "pw"))


def test_a_failed_lookup_is_not_cached(router: respx.MockRouter, http: httpx.Client) -> None:
    route = router.get(PROJECTS_URL).mock(side_effect=[answer(), answer(project(NORTH))])
    ids = ProjectIds(http)
    with pytest.raises(ConfigError):
        ids.resolve(config(), AkSkCredentials(AK, SK))
    assert ids.resolve(config(), AkSkCredentials(AK, SK)) == NORTH
    assert route.call_count == 2


def test_the_answer_is_read_within_a_bound(router: respx.MockRouter, http: httpx.Client) -> None:
    huge = json.dumps({"projects": [project(NORTH)], "padding": "x" * (9 * 1024 * 1024)})
    router.get(PROJECTS_URL).mock(return_value=httpx.Response(200, text=huge))
    with pytest.raises(ConfigError, match="larger than"):
        resolve(http)
