"""Shared test data: task records and API bodies as the real API writes them."""

from __future__ import annotations

import ipaddress
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
from exporter.serving.collector import TargetView
from exporter.store import StoreView

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


def one_target(view: Callable[[], StoreView], region: str = "cn-north-4") -> Callable[[], list[TargetView]]:
    """A collector's targets, for tests of one: ``view`` read on every scrape, as a store's is."""
    return lambda: [TargetView(region, view())]


@pytest.fixture(autouse=True)
def no_traffic_but_loopback(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every connection a test (or a thread it starts) opens goes to a loopback address, or is
    refused and fails the test: never Huawei Cloud, never 169.254.169.254. The processes tests
    start are kept to loopback by their options and ``no_real_metadata_service``."""
    reached: list[str] = []
    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex

    def allowed(address: Any) -> bool:
        if not isinstance(address, tuple):
            return True  # a Unix socket
        try:
            return ipaddress.ip_address(address[0]).is_loopback
        except ValueError:
            return False

    def guarded_connect(sock: socket.socket, address: Any) -> None:
        if not allowed(address):
            reached.append(str(address[0]))
            raise ConnectionRefusedError(f"a test may reach loopback only, not {address[0]}")
        connect(sock, address)

    def guarded_connect_ex(sock: socket.socket, address: Any) -> int:
        if not allowed(address):
            reached.append(str(address[0]))
            raise ConnectionRefusedError(f"a test may reach loopback only, not {address[0]}")
        return connect_ex(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect_ex)
    yield
    assert not reached, f"the test tried to reach {sorted(set(reached))}"


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy from the environment, and no name lookup but 127.0.0.1: for the official SDK,
    which would otherwise reach for Huawei Cloud's own endpoints."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("HUAWEICLOUD_SDK_IAM_ENDPOINT", raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    resolve = socket.getaddrinfo

    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in ("127.0.0.1", b"127.0.0.1"):
            raise AssertionError(f"the SDK tried to reach {host!r}")
        return resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)


METADATA_ENDPOINT_VARIABLE = "VOD_EXPORTER_AUTH_METADATA_ENDPOINT"


def is_setting(name: str) -> bool:
    """An environment variable the exporter or the SDK reads, which a test clears so that only its
    own settings count; all but the metadata endpoint that ``no_real_metadata_service`` points at
    a closed port, lest the credential chain ask 169.254.169.254."""
    return name.startswith(("HUAWEICLOUD_SDK_", "VOD_EXPORTER_")) and name != METADATA_ENDPOINT_VARIABLE


def environment_without_settings() -> dict[str, str]:
    """This process's environment, for a process a test starts, without ``is_setting``'s."""
    return {name: value for name, value in os.environ.items() if not is_setting(name)}


@pytest.fixture(scope="session")
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound, never listening, held for the session so
    that nothing else can take it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


@pytest.fixture(autouse=True)
def no_real_metadata_service(monkeypatch: pytest.MonkeyPatch, closed_port: int) -> str:
    """Every test that runs the credential chain (``auto`` asks the metadata service last) asks a
    closed loopback port instead of 169.254.169.254, in this process and in the ones it starts.
    A test that wants the simulator's metadata service sets the variable again."""
    endpoint = f"http://127.0.0.1:{closed_port}"
    monkeypatch.setenv(METADATA_ENDPOINT_VARIABLE, endpoint)
    return endpoint


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
