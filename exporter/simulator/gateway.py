"""What the simulated API answers to one request: routing, authentication, faults and the listing.

Independent of sockets: ``Gateway.handle`` takes a parsed request and returns the response (or
``None`` for a connection to be reset), so ``server`` only moves bytes.

Order of checks on the listing, as a gateway in front of a backend would do them: injected latency
and connection resets, credentials (401), project (403), the account's request quota (429),
injected backend failures (5xx), parameters (400), and finally the page. Faults are the project's;
the quota is the account's, shared by all its projects, as the real API meters a tenant.

IAM's ``GET /v3/projects?name=...`` lists the caller's account's projects of that name, in
Keystone's shape; the official SDK finds a region's project id this way.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

from exporter.simulator import rejections
from exporter.simulator.accounts import Account, Project
from exporter.simulator.faults import FaultInjector, FaultSettings, RequestQuota
from exporter.simulator.identity import Identity
from exporter.simulator.rejections import Rejected
from exporter.simulator.world import World

TASKS_PATH = re.compile(r"/v1/([^/]+)/asset/editing/tasks")
TOKENS_PATH = "/v3/auth/tokens"
PROJECTS_PATH = "/v3/projects"

DEFAULT_LIMIT = 10
MAX_LIMIT = 100
_MAX_OFFSET = 2**63 - 1
_INTEGER = re.compile(r"-?[0-9]+")


@dataclass(frozen=True)
class Request:
    method: str
    target: str  # path and query exactly as received
    headers: Mapping[str, str]  # names in lower case
    body: bytes = b""


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    request_id: str
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


class RequestLog:
    """How many requests the simulator received, by kind (``tasks``, ``tokens``, ``projects``,
    ``other``) and by answer: the HTTP status, or ``"reset"`` for a connection reset on purpose.
    Listings are also counted by the project id in their path."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, int | str]] = Counter()
        self._by_project: Counter[tuple[str, str, int | str]] = Counter()

    def record(self, kind: str, status: int | str, project_id: str | None = None) -> None:
        with self._lock:
            self._counts[(kind, status)] += 1
            if project_id is not None:
                self._by_project[(project_id, kind, status)] += 1

    def count(self, kind: str, status: int | str | None = None, *, project_id: str | None = None) -> int:
        """Requests of ``kind`` answered with ``status`` (any when None), for ``project_id`` if given."""
        with self._lock:
            if project_id is not None:
                return sum(
                    n
                    for (p, k, s), n in self._by_project.items()
                    if p == project_id and k == kind and status in (None, s)
                )
            if status is not None:
                return self._counts[(kind, status)]
            return sum(n for (k, _), n in self._counts.items() if k == kind)

    def snapshot(self) -> dict[tuple[str, int | str], int]:
        with self._lock:
            return dict(self._counts)


class Gateway:
    """The simulated VOD endpoint and IAM endpoints behind one address, for several accounts.

    ``worlds`` holds each project's tasks. Faults are set with ``set_faults``: replaced whole, so
    each request sees one set of settings.
    """

    def __init__(
        self,
        *,
        accounts: Sequence[Account],
        worlds: Mapping[str, World],
        identity: Identity,
        faults: FaultSettings,
        clock: Callable[[], float],
        sleep: Callable[[float], object],
    ) -> None:
        self.worlds = dict(worlds)
        self.identity = identity
        self.requests = RequestLog()
        self._accounts = {account.name: account for account in accounts}
        self._projects: dict[str, Project] = {
            project.id: project for account in accounts for project in account.projects
        }
        self._clock = clock
        self._sleep = sleep
        self._faults: dict[str, FaultInjector] = {}
        self._quotas: dict[str, RequestQuota] = {}
        self.set_faults(faults)
        for project in self._projects.values():
            if project.faults is not None:
                self.set_faults(project.faults, project.id)

    @property
    def faults(self) -> FaultSettings:
        """The simulator-wide settings: those of every project not given its own."""
        return self._default_faults.settings

    def project_faults(self, project_id: str) -> FaultSettings:
        return self._faults_for(project_id).settings

    def set_faults(self, settings: FaultSettings, project_id: str | None = None) -> None:
        """Faults for one project, or for all of them (and the accounts' quotas) when ``project_id``
        is None. Each project rolls its own dice, seeded from its world's seed."""
        if project_id is not None:
            self._faults[project_id] = self._injector(settings, self._projects[project_id])
            return
        self._default_faults = FaultInjector(settings, seed=self._seed(None))
        self._faults = {pid: self._injector(settings, project) for pid, project in self._projects.items()}
        self._quotas = {name: RequestQuota(settings.rate_limit, self._clock) for name in self._accounts}

    def _injector(self, settings: FaultSettings, project: Project) -> FaultInjector:
        return FaultInjector(settings, seed=self._seed(project))

    def _seed(self, project: Project | None) -> int:
        return (project.world.seed if project is not None else 0) + 1

    def _faults_for(self, project_id: str) -> FaultInjector:
        return self._faults.get(project_id, self._default_faults)

    def handle(self, request: Request) -> Response | None:
        path, _, raw_query = request.target.partition("?")
        match = TASKS_PATH.fullmatch(path)
        kind = (
            "tasks"
            if match
            else "tokens"
            if path == TOKENS_PATH
            else "projects"
            if path == PROJECTS_PATH
            else "other"
        )
        project_id = unquote(match.group(1)) if match else None
        request_id = os.urandom(16).hex()
        try:
            if match:
                if request.method != "GET":
                    raise rejections.not_found(wrong_method=True)
                response = self._list_tasks(request, unquote(match.group(1)), path, raw_query, request_id)
            elif kind == "tokens" and request.method == "POST":
                response = self._issue_token(request, request_id)
            elif kind == "projects" and request.method == "GET":
                response = self._list_projects(request, path, raw_query, request_id)
            else:
                raise rejections.not_found()
        except Rejected as rejection:
            response = Response(rejection.status, rejection.body(request_id), request_id)
        self.requests.record(kind, response.status if response is not None else "reset", project_id)
        return response

    def _list_tasks(
        self, request: Request, project_id: str, path: str, raw_query: str, request_id: str
    ) -> Response | None:
        faults = self._faults_for(project_id)
        delay = faults.delay()
        if delay > 0:
            self._sleep(delay)
        if faults.resets():
            return None
        query = parse_qsl(raw_query, keep_blank_values=True)
        caller = self.identity.authenticate(request.method, path, query, request.headers, request.body)
        if project_id not in caller.project_ids:
            raise rejections.not_authorized()
        quota = self._quotas[caller.account]
        if not quota.take():
            raise rejections.throttled(quota.rate)
        failure = faults.server_error()
        if failure is not None:
            raise rejections.internal_error() if failure == 500 else rejections.unavailable()

        params = dict(reversed(query))  # the first of repeated parameters wins
        offset = _integer(params, "offset", 0, 0, _MAX_OFFSET)
        limit = _integer(params, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        task_id = params.get("task_id") or None

        world = self.worlds[project_id]
        at = world.now()
        if task_id is None:
            total, tasks = world.page(offset, limit, at)
        else:
            found = world.find(task_id, at)
            total = 1 if found is not None else 0
            tasks = [found][offset : offset + limit] if found is not None else []
        body = b'{"total":%d,"tasks":[%b]}' % (total, b",".join(faults.records(tasks, at)))
        content_type = "application/json"
        corrupted = faults.corrupt_body(body)
        if corrupted is not None:
            body, content_type = corrupted
        if task_id is None:
            for _ in range(faults.settings.drift):
                world.add_task(at)
        return Response(200, body, request_id, content_type)

    def _issue_token(self, request: Request, request_id: str) -> Response:
        issued = self.identity.issue_token(request.body)
        return Response(201, issued.body, request_id, headers=(("X-Subject-Token", issued.token),))

    def _list_projects(self, request: Request, path: str, raw_query: str, request_id: str) -> Response:
        """Keystone's project list for the caller's account, filtered by ``name`` when given: all
        of the account's projects, whether the caller signs with its AK/SK or sends a token."""
        query = parse_qsl(raw_query, keep_blank_values=True)
        try:
            caller = self.identity.authenticate(request.method, path, query, request.headers, request.body)
        except Rejected as rejection:
            # IAM is no API gateway: it says no in its own (Keystone) shape.
            raise rejections.iam_error(
                rejection.status, "Unauthorized", "The request you have made requires authentication."
            ) from None
        account = self._accounts[caller.account]
        name = dict(reversed(query)).get("name")
        base = f"http://{request.headers.get('host', 'localhost')}{PROJECTS_PATH}"
        projects = [
            _project_document(project, account, base)
            for project in account.projects
            if name in (None, project.iam_name)
        ]
        document = {
            "links": {
                "self": base + (f"?name={quote(name)}" if name is not None else ""),
                "previous": None,
                "next": None,
            },
            "projects": projects,
        }
        return Response(
            200, json.dumps(document).encode(), request_id, headers=(("X-IAM-Trace-Id", request_id),)
        )


def _project_document(project: Project, account: Account, base: str) -> dict[str, Any]:
    return {
        "id": project.id,
        "name": project.iam_name,
        "domain_id": account.domain_id,
        # A region's own project hangs off the account; a sub-project would hang off it.
        "parent_id": account.domain_id,
        "is_domain": False,
        "enabled": True,
        "description": "",
        "links": {"self": f"{base}/{project.id}"},
    }


def _integer(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    text = params.get(name)
    if text is None:
        return default
    if not _INTEGER.fullmatch(text):
        raise rejections.bad_parameter(name)
    value = int(text)
    if not low <= value <= high:
        raise rejections.bad_parameter(name)
    return value
