"""Scrapes under a tight API quota: does a 429 slow the exporter down enough, and soon enough?

The simulator runs as ``vod-exporter simulate`` in a process of its own, with a request quota
(``--rate-limit``, 5 calls/s by default: a quarter of the exporter's own default limit) and a
project of about 3,000 tasks that keeps gaining tasks. The exporter runs as ``vod-exporter serve``
at its default API flags (20 calls/s, 4 at once, 3 retries). The harness scrapes ``/metrics``
over loopback every few seconds as Prometheus would (``X-Prometheus-Scrape-Timeout-Seconds: 10``),
for a bounded time, and reports per scrape: ``up``, the time it took against the 10 s deadline,
and the API calls and 429s the exporter counted since the scrape before
(``huaweicloud_vod_api_requests_total``, background listings included).

A scrape that answers ``up 1`` is checked for consistency: its counts by status add up to the
API's own ``total``, which never shrinks (the project only gains tasks).

With the exporter's default ``--scrape.min-interval`` (20 s), scrapes that come sooner are served
the last listing; ``--min-interval 0`` makes every scrape list.

    python -m benchmarks.throttled                          # about 2 minutes
    python -m benchmarks.throttled --seconds 60 --interval 3 --json out.json

It prints a table and a summary (scrapes up, slowest as a share of the deadline); nothing is
asserted.
"""

from __future__ import annotations

import argparse
import json
import math
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.measured_process import MeasuredProcessFailed, child_environment, credentials_environment
from benchmarks.simulator_process import SimulatorProcess

PROJECT_ID = "0123456789abcdef0123456789abcdef"
SCRAPE_TIMEOUT = 10.0  # what Prometheus announces
# The share of the deadline the slowest scrape may take: one more throttled wait still fits.
SLOWEST_TARGET = 0.6
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
PREFIX = "huaweicloud_vod_"


@dataclass(frozen=True)
class Settings:
    tasks: int = 3000
    # New tasks a second. Few: a complete listing (the first one, at least) fails as inconsistent
    # when a task arrives while it reads, and at 5 calls/s one of 3,000 tasks takes over 6 s.
    arrival_rate: float = 0.02
    quota: float = 5.0  # the simulator's --rate-limit: listing calls a second before 429
    seconds: float = 120.0  # how long scrapes go on
    interval: float = 5.0  # between the starts of two scrapes
    min_interval: str | None = None  # the exporter's --scrape.min-interval; None: its default
    seed: int = 1


@dataclass(frozen=True)
class Scrape:
    index: int
    at_seconds: float  # since the first scrape started
    up: bool
    wall_seconds: float
    deadline_share: float  # wall_seconds / SCRAPE_TIMEOUT
    calls: int  # API requests since the scrape before, every code
    throttled: int  # of those, answered 429
    errors: dict[str, float]  # listing failures counted since the scrape before, by reason
    reported: int | None  # the API's total, as published
    consistent: bool | None  # None: up 0, nothing to check


class LiveSimulator(SimulatorProcess):
    """The simulator with its clock running (tasks arrive and progress) and a request quota."""

    def __init__(self, settings: Settings, access_key: str, secret_key: str) -> None:
        super().__init__(
            project_id=PROJECT_ID,
            tasks=settings.tasks,
            latency=0.0,
            access_key=access_key,
            secret_key=secret_key,
            seed=settings.seed,
        )
        self._settings = settings

    def start(self) -> None:
        # The parent starts a frozen world with no quota; this one differs in its arguments only.
        # Its port is chosen here, so readiness is the port accepting; the log goes to our stderr.
        port = free_port()
        args = [sys.executable, "-m", "exporter", "simulate", "--project-id", self.project_id]
        args += ["--tasks", str(self.tasks), "--seed", str(self._settings.seed)]
        args += [
            "--arrival-rate",
            repr(self._settings.arrival_rate),
            "--rate-limit",
            repr(self._settings.quota),
        ]
        args += ["--web.listen-address", f"127.0.0.1:{port}", "--log.level", "warning"]
        keys = credentials_environment(self._access_key, self._secret_key)
        self._process = subprocess.Popen(args, env=child_environment(keys), stdin=subprocess.DEVNULL)
        self._url = f"http://127.0.0.1:{port}"
        try:
            self._wait_until_serving(time.monotonic() + START_TIMEOUT)
        except BaseException:
            self.stop()
            raise


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def exporter_serving(settings: Settings, simulator_url: str, keys: dict[str, str]) -> Iterator[str]:
    """``vod-exporter serve`` at its default API flags against the simulator; yields its URL."""
    port = free_port()
    args = [
        sys.executable,
        "-m",
        "exporter",
        "serve",
        "--project-id",
        PROJECT_ID,
        "--endpoint",
        simulator_url,
    ]
    args += ["--web.listen-address", f"127.0.0.1:{port}", "--log.level", "warning"]
    if settings.min_interval is not None:
        args += ["--scrape.min-interval", settings.min_interval]
    process = subprocess.Popen(
        args,
        env=child_environment(keys),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        give_up = time.monotonic() + START_TIMEOUT
        while not _healthy(url):
            if process.poll() is not None:
                raise MeasuredProcessFailed(
                    f"the exporter exited with {process.returncode} (its log is above)"
                )
            if time.monotonic() > give_up:
                raise MeasuredProcessFailed(
                    f"the exporter did not answer /-/healthy within {START_TIMEOUT:g}s"
                )
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/-/healthy", timeout=1.0).status_code == 200
    except httpx.TransportError:
        return False


@dataclass
class Counters:
    """What one exposition says, reduced to the figures a scrape is judged by."""

    up: bool = False
    calls: float = 0.0
    throttled: float = 0.0
    errors: dict[str, float] | None = None
    reported: int | None = None
    counted: int = 0  # tasks over every status


def read_exposition(text: str) -> Counters:
    found = Counters(errors={})
    assert found.errors is not None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels, value = sample.name.removeprefix(PREFIX), sample.labels, sample.value
            if name == "up":
                found.up = value == 1
            elif name == "api_requests_total":
                found.calls += value
                found.throttled += value if labels.get("code") == "429" else 0
            elif name == "scrape_errors_total":
                found.errors[labels["reason"]] = value
            elif name == "editing_tasks_reported":
                found.reported = int(value)
            elif name == "editing_tasks":
                found.counted += int(value)
    return found


class Run:
    def __init__(self, settings: Settings, url: str) -> None:
        self.settings = settings
        self.url = url
        self.scrapes: list[Scrape] = []
        self._before = Counters(errors={})
        self._largest_total = 0

    def scrape(self, index: int, at: float) -> Scrape:
        started = time.monotonic()
        headers = {"X-Prometheus-Scrape-Timeout-Seconds": f"{SCRAPE_TIMEOUT:g}"}
        response = httpx.get(f"{self.url}/metrics", headers=headers, timeout=SCRAPE_TIMEOUT + 5)
        wall = time.monotonic() - started
        response.raise_for_status()
        now = read_exposition(response.text)
        before, self._before = self._before, now
        consistent: bool | None = None
        if now.up:
            total = now.reported if now.reported is not None else -1
            consistent = total == now.counted and total >= max(self._largest_total, self.settings.tasks)
            self._largest_total = max(self._largest_total, total)
        assert now.errors is not None and before.errors is not None
        errors = {
            r: n - before.errors.get(r, 0.0) for r, n in now.errors.items() if n > before.errors.get(r, 0.0)
        }
        return Scrape(
            index=index,
            at_seconds=at,
            up=now.up,
            wall_seconds=wall,
            deadline_share=wall / SCRAPE_TIMEOUT,
            calls=int(now.calls - before.calls),
            throttled=int(now.throttled - before.throttled),
            errors=errors,
            reported=now.reported,
            consistent=consistent,
        )

    def go(self, progress: Callable[[str], None]) -> list[Scrape]:
        """Scrapes every ``interval`` seconds until ``seconds`` have passed; a slow scrape delays
        the next, as Prometheus would, and never more than ``seconds / interval + 1`` scrapes."""
        first = time.monotonic()
        limit = math.floor(self.settings.seconds / self.settings.interval) + 1
        for index in range(limit):
            due = first + index * self.settings.interval
            if due - first > self.settings.seconds:
                break
            time.sleep(max(0.0, due - time.monotonic()))  # pacing, not waiting for readiness
            scrape = self.scrape(index, time.monotonic() - first)
            self.scrapes.append(scrape)
            progress(format_row(scrape))
        return self.scrapes


def summarize(settings: Settings, scrapes: Sequence[Scrape]) -> dict[str, object]:
    slowest = max(scrapes, key=lambda s: s.wall_seconds)
    # Once a listing has succeeded, the exporter has learned the quota: what it does from then on.
    learned = next((i for i, s in enumerate(scrapes) if s.up), len(scrapes))
    after = scrapes[learned + 1 :]
    return {
        "settings": asdict(settings),
        "scrapes": len(scrapes),
        "up": sum(1 for s in scrapes if s.up),
        "consistent": sum(1 for s in scrapes if s.consistent),
        "inconsistent": sum(1 for s in scrapes if s.consistent is False),
        "slowest_seconds": slowest.wall_seconds,
        "slowest_share": slowest.deadline_share,
        "first_up": learned if learned < len(scrapes) else None,
        "slowest_share_after_first_up": max((s.deadline_share for s in after), default=None),
        "calls": sum(s.calls for s in scrapes),
        "throttled": sum(s.throttled for s in scrapes),
        "target_met": all(s.up and s.consistent for s in scrapes)
        and slowest.deadline_share <= SLOWEST_TARGET,
        "per_scrape": [asdict(s) for s in scrapes],
    }


def format_row(scrape: Scrape) -> str:
    errors = ",".join(f"{reason} {count:g}" for reason, count in scrape.errors.items()) or "-"
    exact = {True: "yes", False: "NO", None: "-"}[scrape.consistent]
    return (
        f"| {scrape.index:3d} | {scrape.at_seconds:6.1f} | {int(scrape.up)} | {scrape.wall_seconds:5.2f} "
        f"| {scrape.deadline_share:4.0%} | {scrape.calls:4d} | {scrape.throttled:4d} | {errors} | {exact} |"
    )


TABLE_HEAD = (
    "| scrape | at s | up | seconds | of deadline | calls | 429s | errors | consistent |\n"
    "|---:|---:|---:|---:|---:|---:|---:|---|---|"
)


def format_summary(summary: dict[str, object]) -> str:
    verdict = "met" if summary["target_met"] else "MISSED"
    return (
        f"scrapes up: {summary['up']}/{summary['scrapes']}, consistent: {summary['consistent']}, "
        f"slowest: {summary['slowest_seconds']:.2f} s = {summary['slowest_share']:.0%} of the "
        f"{SCRAPE_TIMEOUT:g} s deadline (after the first up 1: {_share(summary)}), "
        f"calls: {summary['calls']}, 429s: {summary['throttled']}; "
        f"target (every scrape up 1 and consistent, slowest ≤ {SLOWEST_TARGET:.0%}): {verdict}"
    )


def _share(summary: dict[str, object]) -> str:
    share = summary["slowest_share_after_first_up"]
    return "-" if not isinstance(share, float) else f"slowest {share:.0%}"


def measure(settings: Settings, progress: Callable[[str], None]) -> dict[str, object]:
    access_key, secret_key = "BENCH" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30)
    keys = credentials_environment(access_key, secret_key)
    with (
        LiveSimulator(settings, access_key, secret_key) as simulator,
        exporter_serving(settings, simulator.url, keys) as url,
    ):
        progress(TABLE_HEAD)
        scrapes = Run(settings, url).go(progress)
    return summarize(settings, scrapes)


def parse_args(argv: Sequence[str] | None) -> tuple[Settings, str | None]:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.throttled",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    defaults = Settings()
    parser.add_argument("--tasks", type=int, default=defaults.tasks, help="tasks at start")
    parser.add_argument(
        "--arrival-rate", type=float, default=defaults.arrival_rate, help="new tasks a second"
    )
    parser.add_argument("--quota", type=float, default=defaults.quota, help="the API's calls a second")
    parser.add_argument("--seconds", type=float, default=defaults.seconds, help="how long to scrape")
    parser.add_argument("--interval", type=float, default=defaults.interval, help="seconds between scrapes")
    parser.add_argument("--min-interval", help="the exporter's --scrape.min-interval (default: its own)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--json", help="also write every figure, every scrape included, to this file")
    args = parser.parse_args(argv)
    if args.tasks < 1 or args.quota <= 0 or not 0 < args.seconds <= 3600 or args.interval < 0.5:
        parser.error("--tasks and --quota must be positive, --seconds in (0, 3600], --interval at least 0.5")
    settings = Settings(
        tasks=args.tasks,
        arrival_rate=args.arrival_rate,
        quota=args.quota,
        seconds=args.seconds,
        interval=args.interval,
        min_interval=args.min_interval,
        seed=args.seed,
    )
    return settings, args.json


def main(argv: Sequence[str] | None = None) -> int:
    settings, output = parse_args(argv)
    summary = measure(settings, lambda line: print(line, flush=True))
    print()
    print(format_summary(summary))
    if output:
        with open(output, "w") as out:
            json.dump(summary, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
