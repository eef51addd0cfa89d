"""What vod-exporter's commands share: options that can also be set in the environment, and the
wait for SIGTERM or SIGINT that ends a server."""

from __future__ import annotations

import logging
import signal
import socket
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

log = logging.getLogger(__name__)


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
    """Block until SIGTERM or SIGINT (Ctrl-C). SIGHUP is logged and ignored: nothing can be reloaded
    yet, and its default action would kill the server."""
    # The kernel may hand a signal to any thread, and Python runs its handler only once the main
    # thread wakes: the wakeup fd's byte, written whichever thread got the signal, is what wakes it.
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    for handled in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(handled, _ignore)
    previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    try:
        while (signum := reader.recv(1)[0]) == signal.SIGHUP:
            log.info("ignored SIGHUP: there is no configuration to reload")
        log.debug("received signal %d", signum)
    finally:
        signal.set_wakeup_fd(previous)
        reader.close()
        writer.close()


def _ignore(_signum: int, _frame: object) -> None:
    """Stands in for the default action (which ends the process); the wakeup fd does the rest."""
