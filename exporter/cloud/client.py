"""Pages through ``GET /v1/{project_id}/asset/editing/tasks``: retries, concurrency, deadline.

The listing asks for pages by offset and limit (and tasks by id); they are fetched concurrently, at
most ``concurrency`` at a time and under the request-rate limit, and handed to the caller in the
order they arrive. At most twice ``concurrency`` pages are held at once (those being folded and
those in flight), so memory does not grow with the number of tasks.

Every page, the first included, is fetched by a worker thread and waited for with the deadline, so
the caller gets its answer in time even when the API stalls mid-body; the workers stop reading at
the deadline too. API calls are counted by ``api_metrics.CountingTransport`` under the HTTP client.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

import httpx

from exporter.cloud.bodies import ACCEPT_ENCODING, read_body
from exporter.cloud.errors import (
    ApiError,
    BadResponseError,
    RequestTimeout,
    SlowedDown,
    ThrottledError,
    classify_response,
    is_retryable,
    unreachable,
)
from exporter.cloud.signing import canonical_query
from exporter.cloud.throttle import RateLimiter
from exporter.config import ApiSettings
from exporter.deadline import Deadline, DeadlineExceeded
from exporter.tasks import InvalidPage, Page, PageRequest, parse_page
from exporter.timestamps import TimestampMemo

log = logging.getLogger(__name__)

OPERATION = "list_editing_tasks"
LIST_PERMISSION = "vod:asset:listEditTask"  # the IAM action this call needs


@dataclass(frozen=True, slots=True)
class _Query:
    """One request of the listing: a page by offset and limit, or one task by its id."""

    offset: int
    limit: int
    task_id: str | None = None

    def query_string(self) -> str:
        # Written in the signature's canonical form, so that neither httpx (merging params) nor
        # the signer (sorting them) has to parse and rebuild the URL: each was a tenth of a
        # request's CPU.
        if self.task_id is not None:
            return canonical_query([("task_id", self.task_id)])
        return canonical_query([("limit", str(self.limit)), ("offset", str(self.offset))])


@dataclass(frozen=True, slots=True)
class _Answer:
    """A 200 answer's body, parsed by the consumer rather than by the worker that fetched it."""

    offset: int
    body: bytes
    request_id: str | None

    def parse(self, parse_time: Callable[[str], float]) -> Page:
        try:
            return parse_page(self.offset, self.body, parse_time)
        except InvalidPage as error:
            raise BadResponseError(str(error), request_id=self.request_id) from None


class VodClient:
    def __init__(
        self,
        settings: ApiSettings,
        http: httpx.Client,
        *,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
        limiter: RateLimiter | None = None,
    ) -> None:
        self._settings = settings
        self._http = http
        self._clock = clock
        self._jitter = jitter
        self._limiter = limiter or RateLimiter(settings.rate_limit, settings.concurrency, clock=clock)
        self._url = f"{settings.endpoint}/v1/{settings.project_id}/asset/editing/tasks"
        self._host = httpx.URL(settings.endpoint).host
        self._pool = ThreadPoolExecutor(settings.concurrency, thread_name_prefix="vod-page")
        self._times = TimestampMemo()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def stream_pages(
        self, requests: Iterable[PageRequest], deadline: Deadline
    ) -> Generator[Page, None, None]:
        """The pages asked for, in the order they arrive, at most ``concurrency`` in flight under
        the rate limit; the next request goes out before an answer is parsed.

        ``deadline`` is re-read at every check, so that whoever runs the listing can move it while
        pages are fetched. Raises an ``ApiError``
        subclass when a page cannot be had (after the retries the rules allow) or the deadline
        passes; stopping early abandons the pages not yet answered.
        """
        abandoned = threading.Event()
        queries = (_Query(request.offset, request.limit) for request in requests)
        pending: set[Future[_Answer]] = set()
        try:
            self._top_up(pending, queries, deadline, abandoned)
            while pending:
                answers = self._collect(pending, deadline)
                # The next requests go out before these pages are parsed and folded, so that no
                # slot waits on our own CPU work.
                self._top_up(pending, queries, deadline, abandoned)
                for answer in answers:
                    yield answer.parse(self._times.parse)
        finally:
            # Reached on error, on deadline and when the caller stops early: stop the workers'
            # retries and reads, and drop pages not yet started.
            abandoned.set()
            for future in pending:
                future.cancel()

    def fetch_pages(self, requests: Sequence[PageRequest], deadline: Deadline) -> list[Page]:
        """The pages asked for (any offset, any limit up to the page size), fetched at most
        ``concurrency`` at a time under the rate limit; in the order asked."""
        answers = self._fetch_all([_Query(request.offset, request.limit) for request in requests], deadline)
        return [answer.parse(self._times.parse) for answer in answers]

    def fetch_tasks(self, task_ids: Sequence[str], deadline: Deadline) -> dict[str, Page]:
        """Each task asked for by ``task_id``: a page of it alone, or an empty one (total 0) for a
        task the API no longer has."""
        answers = self._fetch_all([_Query(0, 1, task_id) for task_id in task_ids], deadline)
        return {
            task_id: answer.parse(self._times.parse)
            for task_id, answer in zip(task_ids, answers, strict=True)
        }

    def _fetch_all(self, queries: Sequence[_Query], deadline: Deadline) -> list[_Answer]:
        abandoned = threading.Event()
        futures = [self._pool.submit(self._fetch_page, query, deadline, abandoned) for query in queries]
        try:
            pending = set(futures)
            while pending:
                self._collect(pending, deadline)  # re-raises the first error
            return [future.result() for future in futures]
        finally:
            abandoned.set()
            for future in futures:
                future.cancel()

    def _top_up(
        self,
        pending: set[Future[_Answer]],
        queries: Iterator[_Query],
        deadline: Deadline,
        abandoned: threading.Event,
    ) -> None:
        while len(pending) < self._settings.concurrency:
            query = next(queries, None)
            if query is None:
                return
            pending.add(self._pool.submit(self._fetch_page, query, deadline, abandoned))

    def _collect(self, pending: set[Future[_Answer]], deadline: Deadline) -> list[_Answer]:
        """The answers that have arrived, waiting until one does or the deadline passes."""
        while True:
            done, _ = wait(pending, timeout=max(0.0, deadline() - self._clock()), return_when=FIRST_COMPLETED)
            if done:
                break
            if self._clock() >= deadline():  # not moved later while this waited
                raise _past_deadline()
        pending.difference_update(done)
        return [future.result() for future in done]  # re-raises a page's error

    def _fetch_page(self, query: _Query, deadline: Deadline, abandoned: threading.Event) -> _Answer:
        attempt = 0
        while True:
            try:
                return self._request_page(query, deadline, abandoned)
            except SlowedDown:
                raise
            except ApiError as error:
                attempt += 1
                retrying = (
                    is_retryable(error) and attempt <= self._settings.max_retries and not abandoned.is_set()
                )
                if isinstance(error, ThrottledError):
                    # Every 429 slows the limiter down, the last one too. The pause is one per
                    # episode and shared: the limiter holds every slot until it ends, so the retry
                    # waits for its slot in ``acquire``, which raises ``SlowedDown`` rather than
                    # start a wait that would end past the deadline.
                    room = self._limiter.longest_pause(deadline) if retrying else math.inf
                    pause = self._backoff(attempt, throttled=True, room=room)
                    self._limiter.throttled(self._settings.throttle_backoff if pause is None else pause)
                    if not retrying or pause is None:
                        raise  # when no pause fits before the deadline, the 429 is the cause
                    log.debug("retrying %s after a pause of %.2fs after %s", query, pause, error)
                    continue
                if not retrying:
                    raise
                delay = self._backoff(attempt, throttled=False, room=deadline() - self._clock())
                if delay is None:
                    raise  # waiting would miss the deadline; report the cause, not the clock
                log.debug("retrying %s in %.2fs after %s", query, delay, error)
                if abandoned.wait(delay):
                    raise

    def _backoff(self, attempt: int, *, throttled: bool, room: float) -> float | None:
        """The wait before retry ``attempt`` (1 for the first), jittered; ``None`` when no wait
        the rules allow ends within ``room`` seconds (a retry must still have time to be sent)."""
        if throttled:
            # Huawei advises 2-5 s after APIGW.0308; spread replicas across that window, within
            # the part of it that fits. Never shorter: that is the advice.
            shortest = self._settings.throttle_backoff
            longest = min(2.5 * shortest, room)
            return None if longest < shortest else shortest + (longest - shortest) * self._jitter()
        ceiling: float = min(self._settings.backoff_max, self._settings.backoff_base * 2.0 ** (attempt - 1))
        delay = ceiling * (0.5 + 0.5 * self._jitter())
        return delay if delay < room else None

    def _request_page(self, query: _Query, deadline: Deadline, abandoned: threading.Event) -> _Answer:
        if deadline() - self._clock() <= 0:
            raise _past_deadline()
        self._limiter.acquire(deadline, abandoned)
        remaining = deadline() - self._clock()
        if remaining <= 0 or abandoned.is_set():
            raise _past_deadline()
        url = f"{self._url}?{query.query_string()}"
        timeout = min(self._settings.request_timeout, remaining)
        try:
            with self._http.stream("GET", url, headers=ACCEPT_ENCODING, timeout=timeout) as response:
                body = self._read_body(response, deadline, abandoned)
        except httpx.TimeoutException as error:
            if self._clock() >= deadline():
                raise _past_deadline() from error
            raise RequestTimeout(f"no answer within {self._settings.request_timeout:g}s") from error
        except httpx.TransportError as error:
            raise unreachable(self._host, error) from error
        request_id = response.headers.get("X-Request-Id")
        if response.status_code != 200:
            rejection = classify_response(response.status_code, body, request_id)
            if response.status_code == 403:
                # The gateway's 0302 speaks of IAM, but a mistyped project id gets the same answer.
                rejection.hint = (
                    f"check that --project-id {self._settings.project_id} is the project of this "
                    f"region, and that the user has the IAM permission {LIST_PERMISSION}"
                )
            raise rejection
        self._limiter.succeeded()
        return _Answer(query.offset, body, request_id)

    def _read_body(self, response: httpx.Response, deadline: Deadline, abandoned: threading.Event) -> bytes:
        # httpx's timeouts bound each read, not the whole body: an API that drips its answer
        # would hold this thread past the deadline, so the deadline is checked at every chunk.
        def check() -> None:
            if abandoned.is_set() or self._clock() >= deadline():
                raise _past_deadline()

        return read_body(response, check=check)


def _past_deadline() -> DeadlineExceeded:
    return DeadlineExceeded("the listing did not finish before the scrape deadline")
