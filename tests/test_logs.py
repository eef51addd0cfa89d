from __future__ import annotations

import json
import logging

import pytest

from exporter.logs import configure_logging


def test_logfmt_quotes_values_with_spaces(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "logfmt")
    logging.getLogger("exporter.test").warning("listing failed: %s", "reason=auth")
    line = capsys.readouterr().err.strip()
    assert " level=warn logger=exporter.test " in line
    assert line.endswith('msg="listing failed: reason=auth"')


def test_json_lines_and_level_filtering(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("warn", "json")
    logging.getLogger("exporter.test").info("hidden")
    logging.getLogger("exporter.test").error("shown")
    lines = capsys.readouterr().err.strip().splitlines()
    assert [json.loads(line)["msg"] for line in lines] == ["shown"]
    assert json.loads(lines[0])["level"] == "error"


def test_extra_fields_are_keys_of_their_own(capsys: pytest.CaptureFixture[str]) -> None:
    log = logging.getLogger("exporter.test")
    configure_logging("info", "logfmt")
    log.warning("listing failed after %.2fs: %s", 1.5, "denied", extra={"reason": "auth"})
    configure_logging("info", "json")
    log.warning("listing failed after %.2fs: %s", 1.5, "denied", extra={"reason": "auth"})
    logfmt, as_json = capsys.readouterr().err.strip().splitlines()
    assert logfmt.endswith('msg="listing failed after 1.50s: denied" reason=auth')
    assert json.loads(as_json)["reason"] == "auth"
    assert json.loads(as_json)["msg"] == "listing failed after 1.50s: denied"


def test_logfmt_quotes_control_characters(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "logfmt")
    logging.getLogger("exporter.test").warning("a\rb\x1b[2J", extra={"detail": "x\ty"})
    line = capsys.readouterr().err.strip()
    assert line.endswith('msg="a\\rb\\u001b[2J" detail="x\\ty"')


def test_warning_is_a_level_name_too(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("warning", "logfmt")
    logging.getLogger("exporter.test").info("hidden")
    logging.getLogger("exporter.test").warning("shown")
    assert "hidden" not in capsys.readouterr().err


def test_a_burst_of_requests_does_not_log_a_warning_per_queued_request() -> None:
    """waitress warns "Task queue depth is N" for every request that waits for a worker: 200
    connections at once logged 184 warnings, a log flood anyone who reaches the port could cause.
    Only --log.level debug shows them."""
    queue = logging.getLogger("waitress.queue")
    configure_logging("info", "logfmt")
    assert not queue.isEnabledFor(logging.WARNING)
    assert logging.getLogger("waitress").isEnabledFor(logging.WARNING)
    configure_logging("debug", "logfmt")
    assert queue.isEnabledFor(logging.WARNING)
