"""The throttled-scrapes benchmark, end to end at a tiny size, and its reading of an exposition.

No timing is asserted: what is checked is that each scrape is reported with the figures it is
judged by, and that the calls and 429s are read from the exporter's own counters.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from benchmarks import throttled

EXPOSITION = """\
# TYPE huaweicloud_vod_up gauge
huaweicloud_vod_up{project_id="p"} 1
# TYPE huaweicloud_vod_api_requests_total counter
huaweicloud_vod_api_requests_total{operation="list_editing_tasks",code="200"} 31
huaweicloud_vod_api_requests_total{operation="list_editing_tasks",code="429"} 4
# TYPE huaweicloud_vod_scrape_errors_total counter
huaweicloud_vod_scrape_errors_total{project_id="p",reason="throttled"} 2
huaweicloud_vod_scrape_errors_total{project_id="p",reason="timeout"} 0
# TYPE huaweicloud_vod_editing_tasks gauge
huaweicloud_vod_editing_tasks{project_id="p",status="SUCCEED"} 2990
huaweicloud_vod_editing_tasks{project_id="p",status="PROCESSING"} 12
# TYPE huaweicloud_vod_editing_tasks_reported gauge
huaweicloud_vod_editing_tasks_reported{project_id="p"} 3002
"""


def test_an_exposition_is_read_into_calls_429s_errors_and_counts() -> None:
    found = throttled.read_exposition(EXPOSITION)
    assert found.up is True
    assert (found.calls, found.throttled) == (35, 4)
    assert found.errors == {"throttled": 2, "timeout": 0}
    assert (found.reported, found.counted) == (3002, 3002)


def test_a_tiny_run_reports_every_scrape(tmp_path: Path) -> None:
    output = tmp_path / "throttled.json"
    args = ["--tasks", "300", "--arrival-rate", "0", "--seconds", "2", "--interval", "1"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert throttled.main([*args, "--min-interval", "0", "--json", str(output)]) == 0
    summary = json.loads(output.read_text())
    assert summary["scrapes"] == 3 == len(summary["per_scrape"])
    # 3 pages fit the quota's burst of 5: nothing is throttled, every scrape lists and is exact.
    assert (summary["up"], summary["consistent"], summary["throttled"]) == (3, 3, 0)
    assert summary["first_up"] == 0 and summary["slowest_share_after_first_up"] > 0
    first = summary["per_scrape"][0]
    assert first["calls"] == 3 and first["reported"] == 300
    assert first["wall_seconds"] > 0
    assert first["deadline_share"] == pytest.approx(first["wall_seconds"] / throttled.SCRAPE_TIMEOUT)
    assert "scrapes up: 3/3, consistent: 3" in printed.getvalue()
    assert "|   0 |" in printed.getvalue()
