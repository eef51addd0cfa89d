"""The simulator as ``vod-exporter simulate``, in a process of its own.

Serving pages then never competes with the measured process for its interpreter lock, and the
simulator's memory is not counted in the measured process' RSS. The world is frozen by default, so
every listing returns the same pages and each repetition does the same work; ``world_options``
replaces that (arrivals, tie order, ...), and ``world_starts`` then says when each project's world
started, which is what it takes to recompute its tasks here (``command.world_settings``).
"""

from __future__ import annotations

import queue
import re
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from types import TracebackType
from urllib.parse import urlsplit

import httpx

from benchmarks.measured_process import PAGE_SIZE, child_environment, credentials_environment
from exporter.cloud.auth import AkSkAuth

LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")
WORLD_START = re.compile(r"project ([0-9a-f]+): seed -?\d+, world start ([0-9.]+)")
FROZEN = ("--frozen", "--arrival-rate", "0")
# Building a world of 100k tasks takes a few seconds on a slow machine.
START_TIMEOUT = 120.0
STOP_TIMEOUT = 10.0


class SimulatorFailed(RuntimeError):
    """The simulator did not start, or did not serve; the message ends with its log."""


class SimulatorProcess:
    def __init__(
        self,
        *,
        project_id: str,
        tasks: int,
        latency: float,
        access_key: str,
        secret_key: str,
        seed: int = 1,
        world_options: Sequence[str] = FROZEN,
        more_projects: Sequence[str] = (),
    ) -> None:
        self.project_id = project_id
        self.world_options = tuple(world_options)
        self.more_projects = tuple(more_projects)
        self.world_starts: dict[str, float] = {}  # project id: its world's start, from the log
        self.tasks = tasks
        self.latency = latency
        self._access_key = access_key
        self._secret_key = secret_key
        self._seed = seed
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._log: deque[str] = deque(maxlen=50)
        self._url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("the simulator is not started")
        return self._url

    def start(self) -> None:
        args = [sys.executable, "-m", "exporter", "simulate", *self.simulate_arguments()]
        args += ["--latency", repr(self.latency), "--web.listen-address", "127.0.0.1:0"]
        process = subprocess.Popen(
            args,
            env=child_environment(credentials_environment(self._access_key, self._secret_key)),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._process = process
        lines: queue.Queue[str | None] = queue.Queue()
        # Keeps draining the log after start-up, so a chatty simulator never blocks on a full pipe.
        self._reader = threading.Thread(target=self._read_log, args=(process, lines), daemon=True)
        self._reader.start()
        deadline = time.monotonic() + START_TIMEOUT
        try:
            self._url = self._wait_for_url(lines, deadline)
            self._wait_until_serving(deadline)
        except BaseException:
            self.stop()
            raise

    def simulate_arguments(self) -> list[str]:
        """What ``vod-exporter simulate`` is given, without the listen address."""
        args = [
            arg
            for project_id in (self.project_id, *self.more_projects)
            for arg in ("--project-id", project_id)
        ]
        return [*args, "--tasks", str(self.tasks), "--seed", str(self._seed), *self.world_options]

    def _read_log(self, process: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
        assert process.stderr is not None
        for line in process.stderr:
            self._log.append(line.rstrip())
            lines.put(line)
        lines.put(None)

    def _wait_for_url(self, lines: queue.Queue[str | None], deadline: float) -> str:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._failure(f"no 'listening on' line within {START_TIMEOUT:g}s")
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise self._failure("the simulator exited")
            started = WORLD_START.search(line)
            if started:
                self.world_starts[started.group(1)] = float(started.group(2))
            match = LISTENING.search(line)
            if match:
                return match.group(1)

    def _wait_until_serving(self, deadline: float) -> None:
        parts = urlsplit(self.url)
        assert parts.hostname is not None and parts.port is not None
        while True:
            try:
                with socket.create_connection((parts.hostname, parts.port), timeout=1.0):
                    return
            except OSError:
                if time.monotonic() >= deadline:
                    raise self._failure("the simulator does not accept connections") from None
                time.sleep(0.05)

    def _failure(self, what: str) -> SimulatorFailed:
        return SimulatorFailed(what + ":\n" + "\n".join(self._log))

    def warm_up(self) -> int:
        """Read every page once, sequentially; returns the number of pages.

        The simulator renders a finished task's record once and then reuses it: without this, the
        first measured listing would also pay for that rendering.
        """
        path = f"{self.url}/v1/{self.project_id}/asset/editing/tasks"
        pages = 0
        with httpx.Client(auth=AkSkAuth(self._access_key, self._secret_key)) as http:
            offset, total = 0, 1
            while offset < total:
                response = http.get(path, params={"offset": str(offset), "limit": str(PAGE_SIZE)})
                response.raise_for_status()
                total = int(response.json()["total"])
                offset += PAGE_SIZE
                pages += 1
        return pages

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._reader is not None:
            self._reader.join(STOP_TIMEOUT)
            self._reader = None
        self._url = None

    def __enter__(self) -> SimulatorProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
