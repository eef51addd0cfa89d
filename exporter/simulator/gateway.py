"""What the simulated API answers to one request: routing, authentication, faults and the listing.

Independent of sockets: ``Gateway.handle`` takes a parsed request and returns the response (or
``None`` for a connection to be reset), so ``server`` only moves bytes.

Order of checks on the listing, as a gateway in front of a backend would do them: injected latency
and connection resets, credentials (401), project (403), request quota (429), injected backend
failures (5xx), parameters (400), and finally the page.
"""

from __future__ import annotations

import os
import re
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote

from exporter.simulator import rejections
from exporter.simulator.faults import FaultInjector
from exporter.simulator.identity import Identity
from exporter.simulator.platform import PATHS as PLATFORM_PATHS
from exporter.simulator.platform import Platform
from exporter.simulator.rejections import Rejected
from exporter.simulator.world import World

TASKS_PATH = re.compile(r"/v1/([^/]+)/asset/editing/tasks")
TOKENS_PATH = "/v3/auth/tokens"

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
    """How many requests the simulator received, by kind (``tasks``, ``tokens``, ``metadata``,
    ``oidc``, ``other``) and by
    answer: the HTTP status, or ``"reset"`` for a connection reset on purpose."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, int | str]] = Counter()

    def record(self, kind: str, status: int | str) -> None:
        with self._lock:
            self._counts[(kind, status)] += 1

    def count(self, kind: str, status: int | str | None = None) -> int:
        """Requests of ``kind`` answered with ``status``; all of that kind when ``status`` is None."""
        with self._lock:
            if status is not None:
                return self._counts[(kind, status)]
            return sum(n for (k, _), n in self._counts.items() if k == kind)

    def snapshot(self) -> dict[tuple[str, int | str], int]:
        with self._lock:
            return dict(self._counts)


class Gateway:
    """The simulated VOD endpoint and IAM token endpoint behind one address."""

    def __init__(
        self,
        *,
        world: World,
        identity: Identity,
        faults: FaultInjector,
        sleep: Callable[[float], object],
        platform: Platform | None = None,
    ) -> None:
        self.world = world
        self.identity = identity
        self.platform = platform  # the metadata service and IAM's workload-identity exchange
        self.faults = faults  # replaced whole when settings change, so each request sees one set
        self.requests = RequestLog()
        self._sleep = sleep

    def handle(self, request: Request) -> Response | None:
        path, _, raw_query = request.target.partition("?")
        match = TASKS_PATH.fullmatch(path)
        kind = "tasks" if match else "tokens" if path == TOKENS_PATH else "other"
        request_id = os.urandom(16).hex()
        if self.platform is not None and path in PLATFORM_PATHS:
            kind = PLATFORM_PATHS[path]
            answer = self.platform.answer(request.method, path, request.headers, request.body)
            self.requests.record(kind, answer.status)
            return Response(answer.status, answer.body, request_id, answer.content_type, answer.headers)
        try:
            if match:
                if request.method != "GET":
                    raise rejections.not_found(wrong_method=True)
                response = self._list_tasks(request, unquote(match.group(1)), path, raw_query, request_id)
            elif kind == "tokens" and request.method == "POST":
                response = self._issue_token(request, request_id)
            else:
                raise rejections.not_found()
        except Rejected as rejection:
            response = Response(rejection.status, rejection.body(request_id), request_id)
        self.requests.record(kind, response.status if response is not None else "reset")
        return response

    def _list_tasks(
        self, request: Request, project_id: str, path: str, raw_query: str, request_id: str
    ) -> Response | None:
        faults = self.faults
        delay = faults.delay()
        if delay > 0:
            self._sleep(delay)
        if faults.resets():
            return None
        query = parse_qsl(raw_query, keep_blank_values=True)
        allowed = self.identity.authenticate(request.method, path, query, request.headers, request.body)
        if project_id != allowed:
            raise rejections.not_authorized()
        if not faults.quota.take():
            raise rejections.throttled(faults.quota.rate)
        failure = faults.server_error()
        if failure is not None:
            raise rejections.internal_error() if failure == 500 else rejections.unavailable()

        params = dict(reversed(query))  # the first of repeated parameters wins
        offset = _integer(params, "offset", 0, 0, _MAX_OFFSET)
        limit = _integer(params, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        task_id = params.get("task_id") or None

        world = self.world
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
