"""The client over respx: paging, error classes, retry rules (counted in calls), deadline, concurrency."""

from __future__ import annotations

import contextlib
import gzip
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

import httpx
import pytest
import respx

from exporter.cloud.api_metrics import ApiRequestStats, CountingTransport
from exporter.cloud.client import OPERATION, VodClient
from exporter.cloud.errors import (
    ApiError,
    AuthError,
    BadResponseError,
    NetworkError,
    RequestTimeout,
    ServerError,
    ThrottledError,
)
from exporter.cloud.throttle import RateLimiter
from exporter.config import ApiSettings
from exporter.deadline import Deadline, DeadlineExceeded
from exporter.tasks import Page, PageRequest
from tests.conftest import ENDPOINT, PROJECT, TASKS_URL, FakeClock, body, error_body, record


def make_client(
    settings: ApiSettings, limiter: RateLimiter | None = None
) -> tuple[VodClient, ApiRequestStats]:
    """A client over a real httpx transport (intercepted by respx), counted as in production."""
    stats = ApiRequestStats()
    http = httpx.Client(transport=CountingTransport(httpx.HTTPTransport(), stats, OPERATION))
    return VodClient(settings, http, limiter=limiter), stats


def serve_listing(mock: respx.MockRouter, count: int) -> respx.Route:
    records = [record(i) for i in range(count)]

    def page(request: httpx.Request) -> httpx.Response:
        offset = int(request.url.params["offset"])
        limit = int(request.url.params["limit"])
        return httpx.Response(200, content=body(records[offset : offset + limit], total=count))

    return mock.get(TASKS_URL).mock(side_effect=page)


def list_all(client: VodClient, deadline: float | Deadline) -> list[Page]:
    """Every page of the listing as a complete listing reads them: the first page, which tells the
    total, then the rest at once."""
    if not isinstance(deadline, Deadline):
        deadline = Deadline(deadline)
    (first,) = client.stream_pages([PageRequest(0, 100)], deadline)
    rest = (PageRequest(offset, 100) for offset in range(100, first.total, 100))
    return [first, *client.stream_pages(rest, deadline)]


def far_deadline() -> Deadline:
    return Deadline(time.monotonic() + 60)


@pytest.mark.parametrize(("count", "calls"), [(0, 1), (1, 1), (100, 1), (101, 2), (10_050, 101)])
def test_pages_through_every_task_with_one_call_per_page(
    api_settings: ApiSettings, count: int, calls: int
) -> None:
    client, stats = make_client(api_settings)
    with respx.mock(assert_all_called=False) as mock:
        route = serve_listing(mock, count)
        pages = list_all(client, far_deadline())
    ids = [task.task_id for page in pages for task in page.tasks]
    assert len(ids) == count and len(set(ids)) == count
    assert route.call_count == calls
    assert sorted(int(call.request.url.params["offset"]) for call in route.calls) == list(
        range(0, calls * 100, 100)
    )
    assert all(call.request.url.params["limit"] == "100" for call in route.calls)
    assert stats.requests() == {("list_editing_tasks", "200"): calls}
    client.close()


@pytest.mark.parametrize(
    ("status", "content", "error_class", "code"),
    [
        (400, error_body("VOD.10053", "invalid limit"), BadResponseError, "VOD.10053"),
        (401, error_body("APIGW.0301", "Incorrect IAM authentication information"), AuthError, "APIGW.0301"),
        (401, error_body("APIGW.0307", "The token has expired"), AuthError, "APIGW.0307"),
        (403, error_body("APIGW.0302", "The IAM user is forbidden"), AuthError, "APIGW.0302"),
        (403, error_body("APIG.0310", "forbidden"), AuthError, "APIG.0310"),
        (404, b"not json", BadResponseError, None),
        (
            429,
            error_body("APIGW.0308", "The throttling threshold has been reached"),
            ThrottledError,
            "APIGW.0308",
        ),
        (500, error_body("APIGW.0601", "internal error"), ServerError, "APIGW.0601"),
        (503, error_body("APIG.0613", "backend unavailable"), ServerError, "APIG.0613"),
        (502, b"<html>bad gateway</html>", ServerError, None),
    ],
)
def test_error_answers_become_typed_errors_with_code_and_request_id(
    api_settings: ApiSettings,
    status: int,
    content: bytes,
    error_class: type[ApiError],
    code: str | None,
) -> None:
    settings = replace(api_settings, max_retries=0)
    client, stats = make_client(settings)
    with respx.mock() as mock:
        mock.get(TASKS_URL).respond(status, content=content, headers={"X-Request-Id": "rid-42"})
        with pytest.raises(error_class) as caught:
            list_all(client, far_deadline())
    assert caught.value.error_code == code
    assert caught.value.status == status
    assert caught.value.request_id == "rid-42"
    assert "rid-42" in str(caught.value)
    assert stats.requests() == {("list_editing_tasks", str(status)): 1}


def test_request_id_falls_back_to_the_body(api_settings: ApiSettings) -> None:
    client, _ = make_client(api_settings)
    with respx.mock() as mock:
        mock.get(TASKS_URL).respond(400, content=error_body("VOD.10053", "bad", request_id="from-body"))
        with pytest.raises(BadResponseError) as caught:
            list_all(client, far_deadline())
    assert caught.value.request_id == "from-body"


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_client_errors_are_never_retried(api_settings: ApiSettings, status: int) -> None:
    client, _ = make_client(api_settings)
    with respx.mock() as mock:
        route = mock.get(TASKS_URL).respond(status, content=error_body("APIGW.0301", "no"))
        with pytest.raises(ApiError):
            list_all(client, far_deadline())
    assert route.call_count == 1


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(429, content=error_body("APIGW.0308", "throttled")),
        httpx.Response(500, content=error_body("APIGW.0601", "oops")),
        httpx.Response(503, content=error_body("APIGW.0613", "unavailable")),
        httpx.ConnectError("connection refused"),
        httpx.ReadError("connection reset by peer"),
        httpx.ReadTimeout("timed out"),
    ],
)
def test_transient_failures_are_retried(
    api_settings: ApiSettings, failure: httpx.Response | Exception
) -> None:
    client, _ = make_client(api_settings)
    with respx.mock() as mock:
        route = mock.get(TASKS_URL).mock(
            side_effect=[failure, httpx.Response(200, content=body([record(1)]))]
        )
        pages = list_all(client, far_deadline())
    assert route.call_count == 2
    assert [t.task_id for t in pages[0].tasks] == ["task-000001"]


@pytest.mark.parametrize(
    ("failure", "error_class", "code"),
    [
        (httpx.Response(500), ServerError, "500"),
        (httpx.ConnectError("refused"), NetworkError, "network_error"),
        (httpx.ReadTimeout("slow"), RequestTimeout, "timeout"),
    ],
)
def test_retries_stop_after_the_configured_number(
    api_settings: ApiSettings,
    failure: httpx.Response | Exception,
    error_class: type[ApiError],
    code: str,
) -> None:
    client, stats = make_client(api_settings)  # max_retries=3
    with respx.mock() as mock:
        route = mock.get(TASKS_URL).mock(side_effect=[failure] * 10)
        with pytest.raises(error_class):
            list_all(client, far_deadline())
    assert route.call_count == 4
    assert stats.requests() == {("list_editing_tasks", code): 4}


def test_a_429_halves_the_request_rate(api_settings: ApiSettings) -> None:
    settings = replace(api_settings, rate_limit=8, throttle_backoff=0.001)
    limiter = RateLimiter(settings.rate_limit, settings.concurrency)
    client, _ = make_client(settings, limiter)
    with respx.mock() as mock:
        mock.get(TASKS_URL).mock(
            side_effect=[
                httpx.Response(429, content=error_body("APIGW.0308", "x")),
                httpx.Response(200, content=body([])),
            ]
        )
        list_all(client, far_deadline())
    assert limiter.rate < 8


def test_backoff_that_would_pass_the_deadline_reports_the_cause(api_settings: ApiSettings) -> None:
    settings = replace(api_settings, rate_limit=0, throttle_backoff=30)
    client, _ = make_client(settings)
    with respx.mock() as mock:
        route = mock.get(TASKS_URL).respond(429, content=error_body("APIGW.0308", "throttled"))
        with pytest.raises(ThrottledError):
            list_all(client, time.monotonic() + 5)
    assert route.call_count == 1


@pytest.mark.parametrize("stalled_from", [0, 100], ids=["first page stalls", "later pages stall"])
def test_the_deadline_ends_a_stalled_listing_in_time(api_settings: ApiSettings, stalled_from: int) -> None:
    release = threading.Event()
    records = [record(i) for i in range(300)]

    def page(request: httpx.Request) -> httpx.Response:
        offset = int(request.url.params["offset"])
        if offset >= stalled_from:
            release.wait(10)  # hangs until the test is over
        return httpx.Response(200, content=body(records[offset : offset + 100], total=300))

    client, _ = make_client(api_settings)
    try:
        # A route counts as called only once its stalled answer returns, after the block.
        with respx.mock(assert_all_called=False) as mock:
            mock.get(TASKS_URL).mock(side_effect=page)
            started = time.monotonic()
            with pytest.raises(DeadlineExceeded):
                list_all(client, started + 0.3)
            assert time.monotonic() - started < 5
    finally:
        release.set()
        client.close()


def test_pages_after_the_first_are_fetched_concurrently_within_the_bound(api_settings: ApiSettings) -> None:
    settings = replace(api_settings, rate_limit=0, concurrency=4)
    records = [record(i) for i in range(1_000)]
    # Four requests can only all reach the barrier if four run at once.
    barrier = threading.Barrier(4, timeout=10)
    lock = threading.Lock()
    in_flight = peak = 0

    def page(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        offset = int(request.url.params["offset"])
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        try:
            if 0 < offset <= 400:
                barrier.wait()
            return httpx.Response(200, content=body(records[offset : offset + 100], total=1_000))
        finally:
            with lock:
                in_flight -= 1

    client, _ = make_client(settings)
    with respx.mock() as mock:
        mock.get(TASKS_URL).mock(side_effect=page)
        pages = list_all(client, far_deadline())
    assert sum(len(p.tasks) for p in pages) == 1_000
    assert peak == 4
    client.close()


def test_a_malformed_body_is_not_retried(api_settings: ApiSettings) -> None:
    client, _ = make_client(api_settings)
    with respx.mock() as mock:
        route = mock.get(TASKS_URL).respond(200, content=b"{truncated")
        with pytest.raises(BadResponseError):
            list_all(client, far_deadline())
    assert route.call_count == 1


@contextmanager
def raw_server(answer: Callable[[socket.socket, threading.Event], None]) -> Iterator[str]:
    """A one-connection HTTP server on a real socket that answers with ``answer(connection, stop)``."""
    stop = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            answer(connection, stop)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        listener.close()
        thread.join(5)


def test_an_answer_that_drips_in_is_cut_off_at_the_deadline() -> None:
    def drip(connection: socket.socket, stop: threading.Event) -> None:
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        while not stop.wait(0.1):  # one byte every 0.1 s: the body would take 100 s
            try:
                connection.sendall(b" ")
            except OSError:
                return

    with raw_server(drip) as url:
        client, _ = make_client(ApiSettings(endpoint=url, project_id="p1", rate_limit=0, max_retries=0))
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            list_all(client, started + 0.5)
        assert time.monotonic() - started < 5
        client.close()


def test_a_429_whose_pause_does_not_fit_is_reported_and_still_slows_down(api_settings: ApiSettings) -> None:
    settings = replace(api_settings, rate_limit=1, throttle_backoff=0.001)
    limiter = RateLimiter(settings.rate_limit, 1)
    client, _ = make_client(settings, limiter)
    with respx.mock() as mock:
        route = mock.get(TASKS_URL).mock(
            side_effect=[httpx.Response(429, content=error_body("APIGW.0308", "x"))]
            + [httpx.Response(200, content=body([]))] * 5
        )
        with pytest.raises(ThrottledError, match=r"HTTP 429 APIGW\.0308"):
            list_all(client, time.monotonic() + 0.5)  # a slot at 0.5/s comes after 2 s
    assert route.call_count == 1
    assert limiter.rate == 0.5  # halved once, for the one 429 the API sent


def test_our_own_slowed_limit_is_neither_retried_nor_a_reason_to_slow_down(api_settings: ApiSettings) -> None:
    limiter = RateLimiter(1, 1)
    limiter.throttled(pause=30.0)  # an earlier 429's pause, still running
    client, _ = make_client(replace(api_settings, rate_limit=1), limiter)
    with respx.mock(assert_all_called=False) as mock:
        route = mock.get(TASKS_URL).respond(200, content=body([]))
        with pytest.raises(ThrottledError, match="slowed down by 429s"):
            list_all(client, time.monotonic() + 5)
    assert route.call_count == 0
    assert limiter.rate == 0.5


class RecordingLimiter(RateLimiter):
    """A limiter that also keeps the pause of each ``throttled`` call."""

    def __init__(self, rate: float, burst: int, clock: FakeClock) -> None:
        super().__init__(rate, burst, clock=clock, sleep=clock.sleep)
        self.pauses: list[float] = []

    def throttled(self, pause: float = 0.0) -> None:
        self.pauses.append(pause)
        super().throttled(pause)


def throttled_client(settings: ApiSettings, jitter: float) -> tuple[VodClient, RecordingLimiter, FakeClock]:
    """A client on a fake clock (no wait it decides on is real) with a fixed jitter."""
    clock = FakeClock()
    limiter = RecordingLimiter(settings.rate_limit, 1, clock)
    http = httpx.Client(transport=CountingTransport(httpx.HTTPTransport(), ApiRequestStats(), OPERATION))
    return VodClient(settings, http, clock=clock, jitter=lambda: jitter, limiter=limiter), limiter, clock


@pytest.mark.parametrize(
    ("jitter", "room", "pause"),
    [
        (0.0, 10.0, 2.0),  # the advised window, 2-5 s, jittered across
        (0.5, 10.0, 3.5),
        (1.0, 10.0, 5.0),
        (1.0, 3.0, 3.0),  # only the part of it that fits
        (0.5, 3.0, 2.5),
        (0.0, 2.0, 2.0),
        (0.0, 1.99, None),  # not even 2 s fits: no pause, no retry
    ],
)
def test_a_throttled_retry_pauses_the_advised_2_to_5_s_only_where_it_fits(
    jitter: float, room: float, pause: float | None
) -> None:
    settings = ApiSettings(endpoint=ENDPOINT, project_id=PROJECT)  # throttle_backoff 2 s
    client, _, _ = throttled_client(settings, jitter)
    assert client._backoff(1, throttled=True, room=room) == pytest.approx(pause)


@pytest.mark.parametrize(
    ("attempt", "jitter", "room", "delay"),
    [
        (1, 1.0, 10.0, 0.25),  # base 0.25 s, doubling, jittered down to half
        (2, 0.0, 10.0, 0.25),
        (3, 1.0, 10.0, 1.0),
        (6, 1.0, 10.0, 5.0),  # capped at backoff_max
        (3, 1.0, 1.0, None),  # would end at the deadline: not started
        (3, 1.0, 1.01, 1.0),
    ],
)
def test_a_retry_after_a_5xx_or_network_error_backs_off_exponentially_within_the_room(
    attempt: int, jitter: float, room: float, delay: float | None
) -> None:
    settings = ApiSettings(endpoint=ENDPOINT, project_id=PROJECT)
    client, _, _ = throttled_client(settings, jitter)
    assert client._backoff(attempt, throttled=False, room=room) == pytest.approx(delay)


def test_a_429_pauses_through_the_limiter_and_the_retry_waits_there(api_settings: ApiSettings) -> None:
    settings = replace(api_settings, rate_limit=20, throttle_backoff=0.01)
    client, limiter, clock = throttled_client(settings, jitter=0.5)
    with respx.mock() as mock:
        route = mock.get(TASKS_URL).mock(
            side_effect=[
                httpx.Response(429, content=error_body("APIGW.0308", "x")),
                httpx.Response(200, content=body([record(1)])),
            ]
        )
        pages = list_all(client, clock() + 60)
    assert route.call_count == 2 and len(pages[0].tasks) == 1
    assert limiter.pauses == [pytest.approx(0.0175)]  # 0.01 + 1.5 * 0.01 * 0.5
    assert (limiter.rate, limiter.ceiling) == (pytest.approx(10.36), 18)  # halved, then a step of 2 % of 18


def always_failing_listing(
    client: VodClient, status: int, code: str, deadline: float, error_class: type[ApiError]
) -> int:
    """Lists against an API that always answers ``status``; the calls made before it gave up."""
    with respx.mock() as mock:
        route = mock.get(TASKS_URL).respond(status, content=error_body(code, "failed"))
        with pytest.raises(error_class, match=f"HTTP {status}"):
            list_all(client, deadline)
    return route.call_count


def test_a_429_that_leaves_no_room_for_the_pause_is_not_waited_for(api_settings: ApiSettings) -> None:
    settings = replace(api_settings, rate_limit=20, throttle_backoff=2.0)
    client, limiter, clock = throttled_client(settings, jitter=0.0)
    start = clock()
    # 2 s of pause and then a slot at 10/s do not fit in 2.05 s.
    assert always_failing_listing(client, 429, "APIGW.0308", start + 2.05, ThrottledError) == 1
    assert clock() == start
    assert limiter.pauses == [2.0]  # the episode still pauses every other request
    assert limiter.rate == 10


def test_the_last_429_after_the_retries_still_slows_down_for_a_whole_pause(api_settings: ApiSettings) -> None:
    settings = replace(api_settings, rate_limit=20, max_retries=0, throttle_backoff=2.0)
    client, limiter, clock = throttled_client(settings, jitter=1.0)
    assert always_failing_listing(client, 429, "APIGW.0308", clock() + 1, ThrottledError) == 1
    # No retry of ours waits for it, so the pause is not cut to our deadline: others wait it out.
    assert limiter.pauses == [5.0]
    assert limiter.rate == 10


def test_a_5xx_backoff_that_would_end_past_the_deadline_is_not_started(api_settings: ApiSettings) -> None:
    settings = replace(api_settings, backoff_base=1.0, backoff_max=1.0)
    client, _, clock = throttled_client(settings, jitter=1.0)
    start = clock()
    assert always_failing_listing(client, 503, "APIGW.0613", start + 0.9, ServerError) == 1
    assert clock() == start


def test_fetch_pages_asks_for_exactly_the_pages_given(api_settings: ApiSettings) -> None:
    client, stats = make_client(api_settings)
    seen: list[tuple[str, str]] = []

    def page(request: httpx.Request) -> httpx.Response:
        offset, limit = request.url.params["offset"], request.url.params["limit"]
        seen.append((offset, limit))
        return httpx.Response(200, content=body([record(int(offset))], total=5000))

    with respx.mock() as mock:
        mock.get(TASKS_URL).mock(side_effect=page)
        pages = client.fetch_pages([PageRequest(4900, 100), PageRequest(37, 12)], far_deadline())
    assert [p.offset for p in pages] == [4900, 37]
    assert sorted(seen) == [("37", "12"), ("4900", "100")]
    assert sum(stats.requests().values()) == 2
    client.close()


def test_queries_go_out_in_the_signatures_canonical_form(api_settings: ApiSettings) -> None:
    # Then neither httpx nor the signer has to parse and rebuild the URL of each request.
    client, _ = make_client(api_settings)
    records = [record(i) for i in range(150)]

    def answer(request: httpx.Request) -> httpx.Response:
        if "task_id" in request.url.params:
            return httpx.Response(200, content=body([], total=0))
        offset = int(request.url.params["offset"])
        return httpx.Response(200, content=body(records[offset : offset + 100], total=150))

    with respx.mock() as mock:
        route = mock.get(TASKS_URL).mock(side_effect=answer)
        list_all(client, far_deadline())
        client.fetch_tasks(["a b+c"], far_deadline())
    assert sorted(call.request.url.query for call in route.calls) == [
        b"limit=100&offset=0",
        b"limit=100&offset=100",
        b"task_id=a%20b%2Bc",
    ]
    client.close()


def test_fetch_tasks_asks_by_id_and_tells_a_deleted_task(api_settings: ApiSettings) -> None:
    client, _ = make_client(api_settings)

    def by_id(request: httpx.Request) -> httpx.Response:
        task_id = request.url.params["task_id"]
        assert "offset" not in request.url.params
        found = [record(1, task_id=task_id)] if task_id == "alive" else []
        return httpx.Response(200, content=body(found, total=len(found)))

    with respx.mock() as mock:
        mock.get(TASKS_URL).mock(side_effect=by_id)
        answers = client.fetch_tasks(["alive", "gone"], far_deadline())
    assert [t.task_id for t in answers["alive"].tasks] == ["alive"] and answers["alive"].total == 1
    assert answers["gone"].total == 0 and not answers["gone"].tasks
    client.close()


def test_one_failed_page_fails_the_fetch(api_settings: ApiSettings) -> None:
    client, _ = make_client(api_settings)

    def page(request: httpx.Request) -> httpx.Response:
        if request.url.params["offset"] == "100":
            return httpx.Response(403, content=error_body("APIGW.0302", "no permission"))
        return httpx.Response(200, content=body([record(1)], total=300))

    with respx.mock() as mock:
        mock.get(TASKS_URL).mock(side_effect=page)
        with pytest.raises(AuthError):
            client.fetch_pages(
                [PageRequest(0, 100), PageRequest(100, 100), PageRequest(200, 100)], far_deadline()
            )


def unusable_answer(kind: str) -> bytes:
    """The head (after the status line) and body of a 200 answer that must not become a page."""
    if kind == "broken-gzip":
        packed = b"not gzip at all"
        return b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s" % (len(packed), packed)
    # Valid JSON however large (whitespace is allowed anywhere), so only a bound can refuse it.
    document = b'{"total": 0, "tasks": []}' + b" " * (16 * 1024 * 1024)
    if kind == "huge-body":
        return b"Content-Length: %d\r\n\r\n%s" % (len(document), document)
    packed = gzip.compress(document, compresslevel=1)
    return b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s" % (len(packed), packed)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("broken-gzip", "cannot be decoded"),
        ("gzip-bomb", "larger than 8 MiB"),
        ("huge-body", "larger than 8 MiB"),
    ],
)
def test_an_unusable_body_is_a_bad_response_and_is_billed(kind: str, message: str) -> None:
    def unusable(connection: socket.socket, stop: threading.Event) -> None:
        with contextlib.suppress(OSError):  # the client hangs up once it has seen enough
            connection.sendall(b"HTTP/1.1 200 OK\r\n" + unusable_answer(kind))

    with raw_server(unusable) as url:
        client, stats = make_client(ApiSettings(endpoint=url, project_id="p1", rate_limit=0, max_retries=0))
        with pytest.raises(BadResponseError, match=message):
            list_all(client, time.monotonic() + 10)
        client.close()
    assert stats.requests() == {("list_editing_tasks", "200"): 1}


def test_pages_ask_for_gzip_only(api_settings: ApiSettings) -> None:
    client, _ = make_client(api_settings)
    with respx.mock() as mock:
        route = serve_listing(mock, 1)
        list_all(client, far_deadline())
    assert route.calls[0].request.headers["Accept-Encoding"] == "gzip"
    client.close()


def test_a_403_names_the_project_and_the_permission(api_settings: ApiSettings) -> None:
    client, _ = make_client(api_settings)
    message = "The IAM user is not authorized to access the API."
    with respx.mock() as mock:
        mock.get(TASKS_URL).respond(403, content=error_body("APIGW.0302", message, request_id="rid-7"))
        with pytest.raises(AuthError) as caught:
            list_all(client, far_deadline())
    assert str(caught.value) == (
        f"HTTP 403 APIGW.0302: {message} (request id rid-7); check that --project-id "
        f"{api_settings.project_id} is the project of this region, and that the user has the "
        "IAM permission vod:asset:listEditTask"
    )
    client.close()


def test_a_host_that_does_not_resolve_is_named_with_a_hint(
    api_settings: ApiSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real transport, with the resolver failing as it does for --region cn-north-44.
    def no_such_name(*args: object, **kwargs: object) -> None:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)
    client, _ = make_client(replace(api_settings, max_retries=0))
    with pytest.raises(NetworkError) as caught:
        list_all(client, far_deadline())
    assert str(caught.value) == (
        "cannot reach vod.cn-north-4.myhuaweicloud.com: ConnectError: [Errno -2] Name or service "
        "not known; the host name does not resolve: check --region and --endpoint"
    )
    client.close()


def test_a_refused_connection_names_the_host(api_settings: ApiSettings) -> None:
    client, _ = make_client(replace(api_settings, max_retries=0))
    with respx.mock() as mock:
        mock.get(TASKS_URL).mock(side_effect=httpx.ConnectError("[Errno 111] Connection refused"))
        with pytest.raises(NetworkError) as caught:
            list_all(client, far_deadline())
    assert str(caught.value) == (
        "cannot reach vod.cn-north-4.myhuaweicloud.com: ConnectError: [Errno 111] Connection refused"
    )
    client.close()
