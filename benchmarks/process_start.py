"""How long ``vod-exporter --version`` takes, start to exit: the cost of every process start."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.measured_process import child_environment


def version_command() -> list[str]:
    """The installed ``vod-exporter`` script (next to this interpreter, else on PATH), or the module."""
    beside = Path(sys.executable).with_name("vod-exporter")
    if beside.is_file():
        return [str(beside), "--version"]
    found = shutil.which("vod-exporter")
    if found:
        return [found, "--version"]
    return [sys.executable, "-m", "exporter", "--version"]


def measure_process_start(runs: int) -> dict[str, Any]:
    command = version_command()
    environment = child_environment({})
    times: list[float] = []
    output = ""
    for _ in range(runs):
        started = time.perf_counter()
        completed = subprocess.run(
            command, env=environment, capture_output=True, text=True, timeout=60, check=False
        )
        times.append(time.perf_counter() - started)
        if completed.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} exited with {completed.returncode}: {completed.stderr}")
        output = completed.stdout.strip()
    return {
        "command": " ".join(command),
        "output": output,
        "best_seconds": min(times),
        "runs_seconds": times,
    }
