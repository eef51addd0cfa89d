"""``vod-exporter demo``: the simulator and the exporter in one process, wired with throwaway
AK/SK credentials, so a new user sees live metrics in seconds without a cloud account.

Tasks keep arriving and finishing, so rates and histograms move. The exporter goes through its
real path: AK/SK signing, paging over HTTP, the store and the collector.
"""

from __future__ import annotations

import secrets
from dataclasses import replace

from exporter.app import Exporter
from exporter.cloud.credentials import AkSkCredentials
from exporter.config import Config
from exporter.serving.server import HttpServer
from exporter.simulator.server import Simulator
from exporter.simulator.world import WorldSettings

DEMO_PROJECT_ID = "de0de0de0de0de0de0de0de0de0de0de"

# A busy little pipeline: a task every two seconds, a minute or two of processing each.
DEMO_WORLD = WorldSettings(
    tasks=500,
    seed=7,
    arrival_rate=0.5,
    wait_mean=15.0,
    duration_median=60.0,
    duration_sigma=0.7,
    history=1800.0,
)


class Demo:
    """A started simulator and exporter; ``stop()`` ends both."""

    def __init__(self, host: str, port: int, world: WorldSettings = DEMO_WORLD) -> None:
        access_key, secret_key = "DEMO" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30)
        self.simulator = Simulator(
            project_id=DEMO_PROJECT_ID, world_settings=world, access_key=access_key, secret_key=secret_key
        )
        self.simulator.start()
        try:
            options = {
                "endpoint": self.simulator.url,
                "project_id": DEMO_PROJECT_ID,
                "scrape_timeout": "10s",
                "listen_address": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
            }
            config = Config.from_options(options, {}, needs_iam=False)
            self.exporter = Exporter(config, AkSkCredentials(access_key, secret_key))
        except BaseException:
            self.simulator.stop()
            raise
        try:
            self.app = self.exporter.wsgi_app(description="Demo mode: listing a built-in simulated VOD API.")
            self.server = HttpServer(self.app, host, port)
        except BaseException:
            self.exporter.close()
            self.simulator.stop()
            raise
        self.server.start()
        self.config = replace(config, web=replace(config.web, port=self.server.port))

    @property
    def metrics_url(self) -> str:
        host = self.config.web.host or "127.0.0.1"
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.server.port}{self.config.web.telemetry_path}"

    def stop(self) -> None:
        """As ``serve`` stops: unready, the listing in flight drained, then the server stopped."""
        self.app.shutting_down.set()
        self.exporter.close()
        self.server.stop()
        self.simulator.stop()
