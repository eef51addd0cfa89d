"""What vod-exporter's commands share: options that can also be set in the environment, old
spellings kept as deprecated aliases, warnings about unknown variables, and the wait for SIGTERM
or SIGINT that ends a server."""

from __future__ import annotations

import difflib
import logging
import signal
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import click
from click.core import ParameterSource

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


@dataclass(frozen=True)
class Alias:
    """An old spelling of an option, still read (from argv and from its old variable) but hidden."""

    old_flag: str
    new_flag: str
    dest: str  # the new option's parameter name

    @property
    def alias_dest(self) -> str:
        return "deprecated_" + self.old_flag.lstrip("-").replace("-", "_").replace(".", "_")


def alias_option(prefix: str, alias: Alias, **kwargs: Any) -> Callable[[F], F]:
    """The hidden option for ``alias``; its old variable is read only where it differs from the new."""
    old_env, new_env = env_name(prefix, alias.old_flag), env_name(prefix, alias.new_flag)
    return click.option(
        alias.old_flag,
        alias.alias_dest,
        envvar=old_env if old_env != new_env else None,
        hidden=True,
        default=None,
        **kwargs,
    )


def resolve_aliases(
    prefix: str, aliases: Iterable[Alias], ctx: click.Context, options: dict[str, Any]
) -> list[str]:
    """Move each alias's value to its new option, unless that one was set too (the new name wins);
    returns one deprecation warning per alias used."""
    warnings = []
    for alias in aliases:
        value = options.pop(alias.alias_dest, None)
        if value is None:
            continue
        if ctx.get_parameter_source(alias.alias_dest) == ParameterSource.ENVIRONMENT:
            old, new = env_name(prefix, alias.old_flag), env_name(prefix, alias.new_flag)
        else:
            old, new = alias.old_flag, alias.new_flag
        warnings.append(f"{old} is deprecated and will be removed, use {new}")
        if ctx.get_parameter_source(alias.dest) in (None, ParameterSource.DEFAULT):
            options[alias.dest] = value
    return warnings


def unknown_variables(prefix: str, known: Iterable[str], env: Mapping[str, str]) -> list[str]:
    """One warning per ``<prefix>*`` variable nothing reads (a typo is otherwise silently ignored),
    naming the nearest variable that is read."""
    names = sorted(set(known))
    warnings = []
    for name in sorted(n for n in env if n.startswith(prefix) and n not in names):
        nearest = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
        hint = f" (did you mean {nearest[0]}?)" if nearest else ""
        warnings.append(f"ignoring unknown environment variable {name}{hint}")
    return warnings


def compose(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    """Several option decorators as one, applied in the order listed (as if stacked)."""

    def apply(function: F) -> F:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply


def wait_for_termination(on_hangup: Callable[[], object] | None = None) -> None:
    """Block until SIGTERM or SIGINT (Ctrl-C). SIGHUP calls ``on_hangup`` (a reload of the
    configuration file); without one it is logged and ignored, since its default action would
    kill the server."""
    # The kernel may hand a signal to any thread, and Python runs its handler only once the main
    # thread wakes: the wakeup fd's byte, written whichever thread got the signal, is what wakes it.
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    for handled in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(handled, _ignore)
    previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    try:
        while (signum := reader.recv(1)[0]) == signal.SIGHUP:
            if on_hangup is None:
                log.info("ignored SIGHUP: there is no configuration to reload")
            else:
                on_hangup()
        log.debug("received signal %d", signum)
    finally:
        signal.set_wakeup_fd(previous)
        reader.close()
        writer.close()


def _ignore(_signum: int, _frame: object) -> None:
    """Stands in for the default action (which ends the process); the wakeup fd does the rest."""
