"""Reloading the targets file (SIGHUP, ``POST /-/reload``): a bad file is refused and logged, and
the running targets stay as they were; a good one is applied (see ``Exporter.apply``).

The outcome is exported as Prometheus exports its own, so that the same alert fits:
``huaweicloud_vod_config_last_reload_successful`` and
``huaweicloud_vod_config_last_reload_success_timestamp_seconds``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter.cloud.errors import one_line
from exporter.config import ConfigError
from exporter.targets import TargetSetup

log = logging.getLogger(__name__)


class Reloader(Collector):
    def __init__(
        self,
        describe: str,
        load: Callable[[], Sequence[TargetSetup]],
        apply: Callable[[Sequence[TargetSetup]], None],
        *,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """``describe``: what is reloaded, for the log; ``load`` reads it and ``apply`` puts it in
        place, either raising ``ConfigError``. The start-up load counts as the first success."""
        self._describe = describe
        self._load = load
        self._apply = apply
        self._wall_clock = wall_clock
        self._lock = threading.Lock()  # one reload at a time: a signal and a POST may meet
        self._successful = True
        self._success_at = wall_clock()

    def reload(self) -> str | None:
        """Reads the file again and applies it; returns None, or why it was refused."""
        with self._lock:
            try:
                setups = self._load()
                self._apply(setups)  # changes nothing when it refuses (a project not found)
            except ConfigError as error:
                self._successful = False
                problem = one_line(str(error))
                log.error("reload refused, the running configuration stays: %s", problem)
                return problem
            except Exception as error:
                # A bug, not a bad file. SIGHUP runs this on the main thread, where an escaping
                # error would end the process: the targets running now are worth more than that.
                self._successful = False
                log.exception("reload failed, the running configuration stays")
                return f"internal error: {type(error).__name__} (see the log)"
            self._successful = True
            self._success_at = self._wall_clock()
        log.info("reloaded %s: %d targets", self._describe, len(setups))
        return None

    def describe(self) -> Iterable[Metric]:
        return self.collect()

    def collect(self) -> Iterable[Metric]:
        successful = GaugeMetricFamily(
            "huaweicloud_vod_config_last_reload_successful",
            "1 if the last reload of --config.file succeeded (the start-up load counts), else 0.",
            value=1 if self._successful else 0,
        )
        success_at = GaugeMetricFamily(
            "huaweicloud_vod_config_last_reload_success_timestamp_seconds",
            "When --config.file was last loaded successfully.",
            value=self._success_at,
        )
        return [successful, success_at]
