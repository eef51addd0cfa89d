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
