"""The project id of a region, found at IAM when none is given, as the official SDK finds it.

``GET {iam}/v3/projects?name={region}``, signed like any other call (AK/SK, no ``X-Project-Id``
since there is no project yet) and counted under its own operation. IAM lists the account's
projects of that name: one is the answer; none or several are a one-line ``ConfigError`` that
says what was found, since guessing would list another project's tasks.

``ProjectIds`` signs the lookup with a target's own credentials and keeps each answer for the
process's lifetime: IAM is asked once per IAM endpoint, region and credentials, however many
targets or reloads need it.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

import httpx

from exporter.cloud.api_metrics import OPERATION_EXTENSION
from exporter.cloud.auth import build_auth
from exporter.cloud.bodies import ACCEPT_ENCODING, read_body
from exporter.cloud.credentials import Credentials, IamPasswordCredentials
from exporter.cloud.errors import ApiError, classify_response, one_line, unreachable
from exporter.config import Config, ConfigError

log = logging.getLogger("exporter.cloud.projects")

OPERATION = "iam_projects"
PROJECTS_PATH = "/v3/projects"

_PROJECT_ID = re.compile(r"[0-9a-f]{32}")


def resolve_project_id(region: str, http: httpx.Client, iam_endpoint: str, auth: httpx.Auth) -> str:
    """The id of the one project IAM lists under ``region`` for the credentials ``auth`` signs with.

    Raises ``ConfigError`` with one line: no project, several (with their names and ids), an error
    answer from IAM, no answer, or an answer that is not a project list.
    """
    url = iam_endpoint.rstrip("/") + PROJECTS_PATH
    failed = f"cannot look up the project id of {region} at {iam_endpoint}"
    try:
        with http.stream(
            "GET",
            url,
            params={"name": region},
            auth=auth,
            headers=ACCEPT_ENCODING,
            extensions={OPERATION_EXTENSION: OPERATION},
        ) as response:
            content = read_body(response)
    except httpx.TransportError as error:
        failure = unreachable(httpx.URL(url).host, error)
        raise ConfigError(f"{failed}: {failure}; check --iam-endpoint, or set --project-id") from None
    except ApiError as error:
        raise ConfigError(f"{failed}: {error}") from None
    if response.status_code != 200:
        refused = classify_response(response.status_code, content, response.headers.get("X-Request-Id"))
        raise ConfigError(
            f"{failed}: {refused}; the credentials must be allowed to list IAM projects, or set --project-id"
        )
    projects = _projects(content)
    if projects is None:
        raise ConfigError(f"{failed}: HTTP 200 without a list of projects, each with a project id")
    if not projects:
        raise ConfigError(
            f"IAM at {iam_endpoint} lists no project named {region} for these credentials: "
            "check --region, or set --project-id"
        )
    if len(projects) > 1:
        found = ", ".join(f"{one_line(name)} ({project_id})" for project_id, name in projects)
        raise ConfigError(
            f"IAM at {iam_endpoint} lists {len(projects)} projects named {region}: {found}; "
            "set --project-id to one of them"
        )
    project_id = projects[0][0]
    log.info("project_id resolved from region", extra={"region": region, "project_id": project_id})
    return project_id


def _projects(content: bytes) -> list[tuple[str, str]] | None:
    """``(id, name)`` of each project listed, or ``None`` when the body is not such a list."""
    try:
        document: Any = json.loads(content)
    except ValueError:
        return None
    listed = document.get("projects") if isinstance(document, dict) else None
    if not isinstance(listed, list):
        return None
    projects = []
    for entry in listed:
        project_id = entry.get("id") if isinstance(entry, dict) else None
        if not isinstance(project_id, str) or not _PROJECT_ID.fullmatch(project_id):
            return None
        name = entry.get("name")
        projects.append((project_id, name if isinstance(name, str) else ""))
    return projects


class ProjectIds:
    """Project ids found at IAM for a configuration's region, each asked for once.

    ``http`` is the IAM client (counting its attempts); the lookup is signed with the credentials
    given, as their API calls are, without a project. Two sets of credentials may belong to two
    accounts, whose projects in one region differ, so each is asked for its own. A failed lookup is
    not kept, so a reload after the fix asks again. Safe to share between threads; one lookup at
    a time.
    """

    def __init__(self, http: httpx.Client, *, clock: Callable[[], float] = time.time) -> None:
        self._http = http
        self._clock = clock
        self._lock = threading.Lock()
        self._found: dict[tuple[str, str, Hashable], str] = {}

    def resolve(self, config: Config, credentials: Credentials) -> str:
        """The id of the project of ``config.region``, asked of ``config.iam_endpoint``."""
        if isinstance(credentials, IamPasswordCredentials):
            raise ConfigError(
                f"an IAM password login is scoped to a project, so the project id of {config.region} "
                "cannot be looked up with it: set the project id"
            )
        key = (config.iam_endpoint, config.region, _identity(credentials))
        with self._lock:
            if key not in self._found:
                auth = build_auth(
                    credentials,
                    project_id="",
                    iam_endpoint=config.iam_endpoint,
                    iam_http=self._http,
                    clock=self._clock,
                )
                self._found[key] = resolve_project_id(config.region, self._http, config.iam_endpoint, auth)
            return self._found[key]


def _identity(credentials: Credentials) -> Hashable:
    # Credentials are frozen dataclasses, equal when their values are; any that cannot be hashed
    # count as themselves.
    try:
        hash(credentials)
    except TypeError:
        return id(credentials)
    return credentials
