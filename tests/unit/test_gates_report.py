"""GateReport: verdicts, JSON round trip, HTML page with an embedded figure."""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser

import pytest

from shipyard._core.errors import GateError, GateFailed
from shipyard.gates import GateReport, GateResult


def _report() -> GateReport:
    return GateReport(
        candidate={"run_id": "a" * 32, "model_name": "iris", "version": "3", "model_uri": "models:/iris/3"},
        results=[
            GateResult(
                "champion_challenger",
                "fail",
                -0.05,
                -0.01,
                "accuracy: candidate 0.9 vs champion iris/2 0.95",
                True,
                "champion_challenger",
                {
                    "metrics": {
                        "accuracy": {"candidate": 0.9, "champion": 0.95},
                        "f1": {"candidate": 0.88, "champion": 0.9},
                    }
                },
            ),
            GateResult(
                "slice.sex",
                "warn",
                0.2,
                0.1,
                "gap 0.2",
                False,
                "slice_parity",
                {"metric": "accuracy", "groups": {"f": {"value": 0.8, "rows": 50}, "m": {"value": 1.0, "rows": 50}}},
            ),
            GateResult("threshold.accuracy", "pass", 0.9, 0.85, "ok", True, "threshold"),
            GateResult("latency", "pass", float("nan"), 250.0, "p95 n/a", True, source="smoke"),
        ],
        created_at="2026-01-01T00:00:00+00:00",
        author="ada",
        notes=["something worth knowing"],
    )


def test_verdict_failed_and_warnings() -> None:
    report = _report()
    assert report.verdict == "fail" and not report.passed
    assert [r.name for r in report.failed] == ["champion_challenger"]
    assert [r.name for r in report.warnings] == ["slice.sex"]
    with pytest.raises(GateFailed) as err:
        report.raise_for_verdict()
    assert err.value.report is report and "iris/3 is blocked" in str(err.value)
    with pytest.raises(KeyError, match="no gate named 'nope'"):
        report["nope"]


def test_json_round_trip_is_standard_json() -> None:
    report = _report()
    text = report.to_json()
    data = json.loads(text)
    assert data["results"][3]["value"] is None  # NaN is not valid JSON
    again = GateReport.from_dict(data)
    assert [(r.name, r.status, r.source) for r in again.results] == [
        (r.name, r.status, r.source) for r in report.results
    ]
    assert again.verdict == "fail" and again.notes == report.notes


def test_with_results_replaces_and_appends() -> None:
    merged = _report().with_results(
        [
            GateResult("champion_challenger", "overridden", None, None, "ok", True),
            GateResult("parity", "pass", 0, 0, "same", True),
        ]
    )
    assert merged.verdict == "overridden"
    assert [r.name for r in merged.results][-1] == "parity"


def test_unknown_status_is_rejected() -> None:
    with pytest.raises(GateError, match="status 'ok'"):
        GateResult("x", "ok", None, None, "", True)


def test_html_page_embeds_the_figure_and_escapes_text() -> None:
    report = _report()
    report.results.append(GateResult("custom.x", "pass", None, None, "<script>alert(1)</script>", True, "custom"))
    page = report.to_html()

    class Parse(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.imgs: list[str] = []
            self.scripts = 0

        def handle_starttag(self, tag, attrs):
            if tag == "img":
                self.imgs.append(dict(attrs)["src"])
            if tag == "script":
                self.scripts += 1

    parser = Parse()
    parser.feed(page)
    assert parser.scripts == 0
    assert len(parser.imgs) == 1 and parser.imgs[0].startswith("data:image/png;base64,")
    assert base64.b64decode(parser.imgs[0].split(",", 1)[1]).startswith(b"\x89PNG")
    assert page.startswith("<!DOCTYPE html>") and "iris/3" in page and "FAIL" in page
    assert report._repr_html_().startswith('<div class="shipyard-gate-report">')


def test_figure_has_champion_slice_and_threshold_panels() -> None:
    fig = _report().figure()
    titles = [ax.get_title() for ax in fig.axes]
    assert (
        titles[0].startswith("champion_challenger") and titles[1].startswith("slice.sex") and titles[2] == "thresholds"
    )
    bare = GateReport(candidate={"run_id": "r"}, results=[GateResult("custom.x", "pass", None, None, "ok", True)])
    assert [ax.get_title() for ax in bare.figure().axes] == ["gates by status"]
