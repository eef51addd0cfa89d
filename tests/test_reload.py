"""The reloader on its own: whatever goes wrong in a reload, the running targets stay."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest

from exporter.reload import Reloader
from exporter.targets import TargetSetup


def test_a_reload_that_fails_unexpectedly_keeps_the_running_targets(caplog: pytest.LogCaptureFixture) -> None:
    # SIGHUP runs the reload on the main thread: an error that escaped it would end the process.
    applied: list[Sequence[TargetSetup]] = []

    def load() -> Sequence[TargetSetup]:
        raise RuntimeError("a bug in reading the file")

    reloader = Reloader("targets.yml", load, applied.append, wall_clock=lambda: 1000.0)
    with caplog.at_level(logging.ERROR, logger="exporter.reload"):
        refused = reloader.reload()
    assert refused == "internal error: RuntimeError (see the log)"
    assert applied == []
    gauges = {sample.name: sample.value for family in reloader.collect() for sample in family.samples}
    assert gauges == {
        "huaweicloud_vod_config_last_reload_successful": 0,
        "huaweicloud_vod_config_last_reload_success_timestamp_seconds": 1000.0,
    }
    (record,) = caplog.records
    assert record.getMessage() == "reload failed, the running configuration stays" and record.exc_info
