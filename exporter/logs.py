"""Log set-up: ``--log.level`` and ``--log.format`` (logfmt or json), to stderr.

Fields given with ``extra=`` (``log.warning(..., extra={"reason": "auth"})``) are keys of their
own after ``msg``, so a log pipeline can filter on them without parsing the message.
"""

from __future__ import annotations

import json
import logging
import sys
import time

LEVELS = ("debug", "info", "warn", "warning", "error")  # warning: Python's name for warn
FORMATS = ("logfmt", "json")

# What every LogRecord carries; anything else on a record came from ``extra=``.
_RECORD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class _Formatter(logging.Formatter):
    def fields(self, record: logging.LogRecord) -> dict[str, str]:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        fields = {
            "ts": stamp,
            "level": "warn" if record.levelno == logging.WARNING else record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES and key not in fields:
                fields[key] = str(value)
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        return fields


class _LogfmtFormatter(_Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{key}={_logfmt_value(value)}" for key, value in self.fields(record).items())


class _JsonFormatter(_Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(self.fields(record))


def _logfmt_value(value: str) -> str:
    # Quoted (JSON escapes) when it holds a separator or any control character, so that an
    # upstream string can never start a line of its own or move the terminal's cursor.
    if value and value.isprintable() and not any(c in value for c in ' ="\\'):
        return value
    return json.dumps(value)


def configure_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if level.startswith("warn") else getattr(logging, level.upper()))
    # httpx logs every request at info; that is our own debug detail, not the operator's.
    logging.getLogger("httpx").setLevel(max(root.level, logging.WARNING))
    logging.getLogger("httpcore").setLevel(max(root.level, logging.WARNING))
    # waitress warns once for every request that waits for a worker: a burst of connections, which
    # anyone who reaches the port can send, would flood the log. Shown at debug only.
    logging.getLogger("waitress.queue").setLevel(
        logging.DEBUG if root.level <= logging.DEBUG else logging.ERROR
    )
