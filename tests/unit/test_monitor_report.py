"""The drift report's HTML and figures, drift gates and their JSON form, and Prometheus errors: no services."""

from __future__ import annotations

import base64
import json
import math
from html.parser import HTMLParser

import numpy as np
import pytest
from shipyard._core.errors import GateError, MonitoringError
from shipyard.gates import Drift, PredictionDrift, drift, prediction_drift, spec_from_dict, spec_to_dict
from shipyard.gates._drift import evaluate_drift, failed_columns
from shipyard.monitoring.drift import compute_drift, reference_profile
from shipyard.production import DriftReport, _monitor, _report

from tests.conftest import free_port

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def measured():
    rng = np.random.default_rng(0)
    reference = {
        "age": rng.normal(40, 10, 2000),
        "income": rng.normal(50, 5, 2000),
        "city": rng.choice(["lyon", "oslo", "rome"], 2000),
        "flat": np.full(2000, 3.0),
    }
    profile = reference_profile(reference, predictions=rng.integers(0, 2, 2000), source="training")
    current = {
        "age": reference["age"][:800],
        "income": reference["income"][:800] + 20,
        "city": np.array(["lyon", "paris"] * 400, dtype=object),
        "flat": np.full(800, 3.0),
    }
    result = compute_drift(profile, current, predictions=rng.integers(0, 2, 800))
    return profile, current, result


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str]] = []
        self.drifted: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        if tag == "img":
            self.images.append(a)
        if tag == "tr" and "data-column" in a:
            self.drifted[a["data-column"]] = a["data-drifted"]


def _report_of(result, gates, **extra) -> DriftReport:
    verdict = "fail" if any(g.blocks for g in gates) else "pass"
    return DriftReport("m", "3", "data", result.rows, result, gates, verdict, "", None, **extra)


def test_the_page_holds_one_png_per_drifting_column_and_a_row_per_column(measured):
    profile, current, result = measured
    assert result.drifted_columns == ["income", "city"]
    gates = [evaluate_drift(drift(), result)]
    report = _report_of(result, gates, notes=("a note",))
    figures = {
        c: _report.column_figure_png(
            c, profile["columns"][c], list(current[c]), next(x for x in result.columns if x.column == c)
        )
        for c in result.drifted_columns
    }
    page = _report.page(_report.report_body(report, figures), "Drift report m/3")
    parsed = _Page()
    parsed.feed(page)
    assert [i["alt"] for i in parsed.images] == ["income: reference vs current", "city: reference vs current"]
    for image in parsed.images:
        assert base64.b64decode(image["src"].removeprefix("data:image/png;base64,"))[:8] == PNG
    assert parsed.drifted == {"age": "false", "income": "true", "city": "true", "flat": "false", "prediction": "false"}
    assert "a note" in page and _report.body_of(page).startswith('<div class="shipyard-drift-report"')
    assert "<img" not in report._repr_html_()  # no file yet: the tables only


def test_figures_without_current_rows_and_of_a_constant_column(measured):
    profile, _, result = measured
    by_name = {c.column: c for c in result.columns}
    assert _report.column_figure_png("income", profile["columns"]["income"], None, by_name["income"])[:8] == PNG
    assert _report.column_figure_png("city", profile["columns"]["city"], None, by_name["city"])[:8] == PNG
    values = [3.0, None, float("nan"), 4.0]
    assert _report.column_figure_png("flat", profile["columns"]["flat"], values, by_name["flat"])[:8] == PNG


def test_drift_gates_judge_a_result(measured):
    _, _, result = measured
    failing = evaluate_drift(drift(), result)
    assert failing.status == "fail" and failing.kind == "drift" and failing.blocking
    assert failed_columns(failing) == ["income", "city"]
    assert failing.value == max(c.distance for c in result.columns) and failing.threshold == 0.1
    assert evaluate_drift(drift(["age", "flat"]), result).status == "pass"
    assert evaluate_drift(drift("income", blocking=False), result).status == "warn"
    missing = evaluate_drift(drift(["age", "height"]), result)
    assert missing.status == "error" and missing.blocks and "height" in missing.message
    assert evaluate_drift(drift(max_distance=1e9), result).status == "pass"
    assert evaluate_drift(prediction_drift(), result).status in ("pass", "fail")
    no_predictions = compute_drift(reference_profile({"x": list(range(100))}, source="t"), {"x": list(range(100))})
    unmeasured = evaluate_drift(prediction_drift(blocking=False), no_predictions)
    assert unmeasured.status == "error" and not unmeasured.blocks


def test_drift_specs_round_trip_and_refuse_bad_bounds():
    for spec in (drift(), drift(["a", "b"], max_distance=0.3, name="drift.inputs"), prediction_drift(blocking=False)):
        stored = json.loads(json.dumps(spec_to_dict(spec)))
        assert spec_from_dict(stored) == spec
    assert isinstance(spec_from_dict(spec_to_dict(drift("a"))), Drift)
    assert drift("a").columns == ("a",)
    assert isinstance(prediction_drift(), PredictionDrift)
    for bad in (0, -1, math.nan, math.inf):
        with pytest.raises(GateError, match="max_distance"):
            drift(max_distance=bad)
    with pytest.raises(GateError):
        drift([])
    with pytest.raises(GateError):
        drift(name="verdict")


def test_report_json_is_standard_json_with_nan_as_null(measured):
    _, _, result = measured
    report = _report_of(result, [evaluate_drift(drift(), result)])
    out = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert out["verdict"] == "fail" and out["result"]["drifted_columns"] == ["income", "city"]
    assert "income" in report.summary() and repr(report).startswith("<DriftReport m/3 fail")


def test_prometheus_that_does_not_answer_is_a_typed_error_naming_the_url():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(MonitoringError) as caught:
        _monitor._query(url, "up")
    assert url in caught.value.message and caught.value.hint


def test_a_source_is_required_before_anything_is_read():
    with pytest.raises(MonitoringError, match="exactly one source"):
        _monitor.monitor("m", capture="/nowhere", prometheus="http://127.0.0.1:1")
    with pytest.raises(MonitoringError, match="not a drift gate"):
        from shipyard.gates import threshold

        _monitor.monitor("m", data={"x": [1]}, gates=[threshold("accuracy >= 0.9")])
