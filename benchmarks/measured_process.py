"""The protocol between the harness and the processes it measures.

Each measured side (the exporter, the naive baseline) runs in a fresh interpreter so that its CPU
time and peak RSS are its own. It reads the simulator's credentials from the environment (never
from its arguments, where ``ps`` would show them) and prints one JSON object on stdout.
"""

from __future__ import annotations

import json
import math
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

REPOSITORY = Path(__file__).resolve().parent.parent
ACCESS_KEY_VARIABLE = "HUAWEICLOUD_SDK_AK"
SECRET_KEY_VARIABLE = "HUAWEICLOUD_SDK_SK"
PAGE_SIZE = 100
PROBE_ITERATIONS = 200_000
# The Accept header of Prometheus 2.42's scrapes, as a real server sent it; later versions also
# ask for OpenMetrics first.
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


class MeasuredProcessFailed(RuntimeError):
    """A measured process exited with an error; the message ends with its stderr."""


# A credential chain run by a benchmark must never reach a real metadata service
# (169.254.169.254): its children ask a loopback port where nothing listens instead.
NO_METADATA_SERVICE = {"VOD_EXPORTER_AUTH_METADATA_ENDPOINT": "http://127.0.0.1:1"}


def child_environment(extra: dict[str, str]) -> dict[str, str]:
    """The environment for a child: ours, the repository importable, no metadata service, and
    ``extra``."""
    paths = [str(REPOSITORY), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, **NO_METADATA_SERVICE, "PYTHONPATH": os.pathsep.join(paths), **extra}


def credentials_environment(access_key: str, secret_key: str) -> dict[str, str]:
    return {ACCESS_KEY_VARIABLE: access_key, SECRET_KEY_VARIABLE: secret_key}


def credentials_from_environment() -> tuple[str, str]:
    try:
        return os.environ[ACCESS_KEY_VARIABLE], os.environ[SECRET_KEY_VARIABLE]
    except KeyError as missing:
        raise SystemExit(f"set {missing.args[0]} (the simulator's access key pair)") from None


def peak_rss_bytes() -> int:
    """This process' resident-set high-water mark (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def speed_probe_seconds() -> float:
    """CPU time of a fixed pure-Python workload, best of three: a yardstick of the machine's speed.

    On a shared machine the same code can run twice as slowly for seconds at a time; a probe that
    took longer than usual says the figures around it were taken on a slowed machine.
    """
    best = math.inf
    for _ in range(3):
        started = time.thread_time()
        total = 0
        for number in range(PROBE_ITERATIONS):
            total += number % 7
        best = min(best, time.thread_time() - started)
    return best


def count_samples(exposition: bytes) -> int:
    return sum(1 for line in exposition.split(b"\n") if line and not line.startswith(b"#"))


def emit(result: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


def run_measured(module: str, args: list[str], extra_env: dict[str, str], timeout: float) -> dict[str, Any]:
    """Run ``python -m module args`` and return the JSON object it printed."""
    completed = subprocess.run(
        [sys.executable, "-m", module, *args],
        env=child_environment(extra_env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if completed.returncode != 0:
        tail = completed.stderr.strip().splitlines()[-20:]
        raise MeasuredProcessFailed(f"{module} exited with {completed.returncode}:\n" + "\n".join(tail))
    lines = completed.stdout.strip().splitlines()
    if not lines:
        raise MeasuredProcessFailed(f"{module} printed no result")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serving_exporter(
    options: Sequence[str], extra_env: dict[str, str], start_timeout: float = 60.0
) -> Iterator[tuple[str, int]]:
    """``vod-exporter serve options`` on a free loopback port, until ``/-/healthy`` answers (polled,
    within ``start_timeout``); yields its URL and process id, and stops it afterwards."""
    port = free_port()
    args = [sys.executable, "-m", "exporter", "serve", *options, "--web.listen-address", f"127.0.0.1:{port}"]
    process = subprocess.Popen(
        args,
        env=child_environment(extra_env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            if process.poll() is not None:
                raise MeasuredProcessFailed(f"the exporter exited: {process.communicate()[1][-2000:]}")
            try:
                if httpx.get(f"{url}/-/healthy", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise MeasuredProcessFailed("the exporter did not answer /-/healthy")
            time.sleep(0.1)
        yield url, process.pid
    finally:
        process.terminate()
        try:
            process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
