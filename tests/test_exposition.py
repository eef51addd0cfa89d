"""Rendering is total: whatever string reaches a label value, /metrics answers 200 in both
formats, with huaweicloud_vod_up in it, and the answer parses.

Records like these are refused when a page is parsed; these tests put them straight into a view,
past that check, to prove the exposition does not rely on it.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence

import pytest
from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from exporter.cloud.api_metrics import ApiRequestStats
from exporter.serving.collector import VodCollector
from exporter.serving.exposition import MAX_LABEL_VALUE_LENGTH
from exporter.store import Snapshot, StoreView
from exporter.tasks import Task
from tests.conftest import one_target

NOW = 1_795_860_000.0
TEXT = "text/plain;version=0.0.4"
# What Prometheus 2.42 sends: OpenMetrics first.
OPENMETRICS = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)

HOSTILE = [
    "a\ud800",  # a lone high surrogate, as JSON "a\ud800" decodes
    "a\udfff",  # a lone low surrogate
    "\ud83c\udfac",  # a surrogate pair left as two code points
    "nul\x00cr\rtab\tesc\x1bdel\x7f",
    "line\u2028sep\x85nel",
    'quote " backslash \\ newline \n end',
    "",
    "🎬 ünïcödé",
    "x" * 1_000_000,
    "x" * 999_999 + "y",  # differs from the one above only at its end
]


def hostile_view() -> StoreView:
    tasks = tuple(
        Task(
            task_id=text,
            asset_id=text,
            status=text,
            progress=50,
            created=NOW - 60,
            ended=None if index % 2 else NOW - 10,
        )
        for index, text in enumerate(HOSTILE)
    )
    snapshot = Snapshot(
        taken_at=NOW,
        counts={"WAITING": 0, **{text: 1 for text in HOSTILE}},
        reported_total=len(HOSTILE),
        invalid=0,
        oldest_created={"WAITING": NOW - 60},
        series_tasks=tasks,
        series_dropped=0,
    )
    return StoreView(
        project_id="p1",
        up=True,
        scrape_duration=0.5,
        last_success=NOW,
        errors={"timeout": 1},
        last_error=None,
        snapshot=snapshot,
        created_total=len(HOSTILE),
        finished_total={text: 1 for text in HOSTILE},
        finished_durations={},
        tracked_tasks=0,
    )


def scrape(accept: str, query: str = "") -> tuple[str, dict[str, str], bytes]:
    registry = CollectorRegistry()
    registry.register(VodCollector(one_target(hostile_view), ApiRequestStats()))
    answers: list[tuple[str, dict[str, str]]] = []
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics", "HTTP_ACCEPT": accept, "QUERY_STRING": query}
    body = b"".join(
        make_wsgi_app(registry)(environ, lambda status, headers: answers.append((status, dict(headers))))  # type: ignore[arg-type]
    )
    ((status, headers),) = answers
    return status, headers, body


def task_ids(families: Sequence[object]) -> list[str]:
    return [
        sample.labels["task_id"]
        for family in families
        if family.name == "huaweicloud_vod_editing_task_info"  # type: ignore[attr-defined]
        for sample in family.samples  # type: ignore[attr-defined]
    ]


def test_hostile_label_values_give_a_parseable_text_exposition_with_up() -> None:
    status, headers, body = scrape(TEXT)
    assert status == "200 OK"
    assert headers["Content-Type"].startswith("text/plain")
    text = body.decode("utf-8")  # strict: the answer is valid UTF-8
    assert 'huaweicloud_vod_up{project_id="p1"} 1.0\n' in text
    families = list(parse_text(text))
    assert len(set(task_ids(families))) == len(HOSTILE), "distinct tasks stay distinct series"


def test_hostile_label_values_give_a_parseable_openmetrics_exposition_with_up() -> None:
    status, headers, body = scrape(OPENMETRICS)
    assert status == "200 OK"
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    text = body.decode("utf-8")
    assert 'huaweicloud_vod_up{project_id="p1"} 1.0\n' in text
    assert text.endswith("# EOF\n")
    families = list(parse_openmetrics(text))
    assert len(set(task_ids(families))) == len(HOSTILE)


@pytest.mark.parametrize("accept", [TEXT, OPENMETRICS])
def test_a_huge_label_value_is_bounded(accept: str) -> None:
    _, _, body = scrape(accept)
    # Six per-task families and two status families repeat each value: unbounded, 16 MB.
    assert len(body) < 200 * MAX_LABEL_VALUE_LENGTH
    assert max(len(line) for line in body.decode().splitlines()) < 3 * MAX_LABEL_VALUE_LENGTH


@pytest.mark.parametrize("accept", [TEXT, OPENMETRICS])
def test_ordinary_label_values_are_written_as_they_are(accept: str) -> None:
    _, _, body = scrape(accept)
    text = body.decode()
    assert 'task_id="🎬 ünïcödé"' in text
    assert 'task_id="quote \\" backslash \\\\ newline \\n end"' in text
    assert 'task_id="nul\x00cr\rtab\tesc\x1bdel\x7f"' in text


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool (Debian package prometheus) is not installed"
)
def test_prometheus_parses_the_hostile_exposition() -> None:
    _, _, body = scrape(TEXT)
    result = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, check=False)
    assert result.returncode == 0, result.stderr.decode() + result.stdout.decode()
