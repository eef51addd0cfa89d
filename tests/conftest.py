"""Shared test data: task records and API bodies as the real API writes them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest

from exporter.config import ApiSettings

PROJECT = "0123456789abcdef0123456789abcdef"
ENDPOINT = "https://vod.cn-north-4.myhuaweicloud.com"
TASKS_URL = f"{ENDPOINT}/v1/{PROJECT}/asset/editing/tasks"


def record(
    index: int,
    status: str = "SUCCEED",
    *,
    progress: int | None = None,
    create_time: str = "2026-11-28T09:00:00Z",
    end_time: str | None = "2026-11-28T09:05:00Z",
    **overrides: Any,
) -> dict[str, Any]:
    """One entry of the API's ``tasks`` array."""
    data: dict[str, Any] = {
        "task_id": f"task-{index:06d}",
        "asset_id": f"asset-{index:06d}",
        "status": status,
        "progress": progress if progress is not None else (100 if status == "SUCCEED" else 0),
        "create_time": create_time,
    }
    if end_time is not None and status in ("SUCCEED", "FAILED", "CANCEL"):
        data["end_time"] = end_time
    data.update(overrides)
    return data


def body(records: Sequence[dict[str, Any]], total: int | None = None) -> bytes:
    return json.dumps({"total": len(records) if total is None else total, "tasks": list(records)}).encode()


def error_body(code: str, message: str, request_id: str = "req-1") -> bytes:
    return json.dumps({"error_code": code, "error_msg": message, "request_id": request_id}).encode()


class FakeClock:
    """A clock that only moves when told to; ``sleep`` moves it."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def api_settings() -> ApiSettings:
    # No rate limit and tiny backoffs: the unit tests count calls, they do not wait.
    return ApiSettings(
        endpoint=ENDPOINT,
        project_id=PROJECT,
        rate_limit=0,
        backoff_base=0.001,
        backoff_max=0.002,
        throttle_backoff=0.001,
    )


def paged(records: Sequence[dict[str, Any]], limit: int = 100) -> Iterator[tuple[int, bytes]]:
    for offset in range(0, max(len(records), 1), limit):
        yield offset, body(records[offset : offset + limit], total=len(records))


def free_port() -> int:
    """A loopback port that was free a moment ago, for a server started as another process."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0, every: float = 0.2) -> Any:
    """``check()``'s first truthy answer, polled until ``timeout`` seconds; fails naming ``what``."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        pause.wait(every)
    pytest.fail(f"gave up waiting for {what}")


@contextmanager
def exporter_command(
    args: Sequence[str], env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[str]]:
    """``vod-exporter ARGS`` as a process with its output piped; killed on the way out if it still runs."""
    process = subprocess.Popen(
        [sys.executable, "-m", "exporter", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def terminate(process: subprocess.Popen[str]) -> tuple[str, str]:
    """SIGTERM, as a service manager stops it; its stdout and stderr once it has exited."""
    process.send_signal(signal.SIGTERM)
    return process.communicate(timeout=20)
