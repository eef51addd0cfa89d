"""What vod-exporter's commands share: options that can also be set in the environment, and the
wait for SIGTERM or SIGINT that ends a server."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def env_name(prefix: str, flag: str) -> str:
    """``--api.rate-limit`` with prefix ``VOD_EXPORTER_`` is ``VOD_EXPORTER_API_RATE_LIMIT``."""
    name = flag.split("/", 1)[0].lstrip("-")
    return prefix + name.replace(".", "_").replace("-", "_").upper()


def env_option(prefix: str) -> Callable[..., Callable[[F], F]]:
    """A ``click.option`` factory whose options are also read from ``<prefix><NAME>``."""

    def option(flag: str, dest: str, **kwargs: Any) -> Callable[[F], F]:
        kwargs.setdefault("show_default", True)
        return click.option(flag, dest, envvar=env_name(prefix, flag), show_envvar=True, **kwargs)

    return option


def compose(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    """Several option decorators as one, applied in the order listed (as if stacked)."""

    def apply(function: F) -> F:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply


def wait_for_termination() -> None:
    """Block until SIGTERM or SIGINT (Ctrl-C)."""
    stop = threading.Event()

    def handle(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    stop.wait()
