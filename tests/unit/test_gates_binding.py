"""The binding report: how a new check merges into what was recorded (no services)."""

from __future__ import annotations

import sys
import types

from shipyard.gates import GateResult, custom, threshold
from shipyard.gates._check import apply_override, bind
from shipyard.gates._report import GateReport
from shipyard.gates._specs import _reached_modules, spec_identity, spec_to_dict


def _report(check_id: str, *pairs: tuple[object, str]) -> GateReport:
    results, specs = [], []
    for spec, status in pairs:
        message = f"{spec.gate_name} {status}"
        results.append(GateResult(spec.gate_name, status, None, None, message, spec.blocking, spec.kind))
        specs.append({**spec_to_dict(spec), "check": check_id})
    return GateReport(candidate={"run_id": "r"}, results=results, specs=specs, check_id=check_id)


def test_a_lenient_gate_under_the_same_name_does_not_lift_a_recorded_failure() -> None:
    flow = _report("c1", (threshold("rmse <= 75"), "fail"), (threshold("r2 >= 0.3"), "pass"))
    lenient = _report("c2", (threshold("rmse <= 1000"), "pass"))
    bound = bind(flow, lenient)
    assert bound.verdict == "fail"
    assert bound["threshold.rmse"].details["carried_from"] == "c1"
    assert bound["threshold.r2"].status == "pass"
    assert [s["value"] for s in bound.specs if s["name"] == "threshold.rmse"] == [75.0]
    assert any("different gate under that name (rmse <= 1000, pass)" in n for n in bound.notes)


def test_the_same_gate_passing_lifts_the_failure_and_failing_again_drops_an_override() -> None:
    flow = _report("c1", (threshold("rmse <= 75"), "fail"))
    assert bind(flow, _report("c2", (threshold("rmse <= 75"), "pass"))).verdict == "pass"
    overridden = apply_override(flow, ["threshold.rmse"], by="grace", at="t", reason="RFC-12")
    assert overridden.verdict == "overridden"
    again = bind(overridden, _report("c3", (threshold("rmse <= 75"), "fail")))
    assert again.verdict == "fail" and again.override is None
    untouched = bind(overridden, _report("c3", (threshold("r2 >= 0.1"), "pass")))
    assert untouched.verdict == "overridden" and untouched.override["by"] == "grace"


def test_a_blocking_error_stays_and_a_warning_only_error_blocks_nothing() -> None:
    flow = _report("c1", (threshold("rmse <= 75"), "error"), (threshold("mae <= 9", blocking=False), "error"))
    assert flow.verdict == "fail" and [r.name for r in flow.failed] == ["threshold.rmse"]
    assert bind(flow, _report("c2", (threshold("rmse <= 80"), "pass"))).verdict == "fail"


def test_overrides_accumulate_and_the_earlier_one_is_kept() -> None:
    report = _report("c1", (threshold("rmse <= 75"), "fail"), (threshold("mae <= 9"), "fail"))
    first = apply_override(report, ["threshold.rmse"], by="grace", at="t1", reason="one")
    second = apply_override(first, ["threshold.mae"], by="alan", at="t2", reason="two")
    assert second.verdict == "overridden"
    assert second.override["by"] == "alan" and second.override["previous"][0]["by"] == "grace"
    assert "override of threshold.rmse by grace at t1: one" in second.summary()


def test_a_custom_gate_is_the_same_gate_only_with_the_same_source() -> None:
    def agreement(ctx):
        return True

    same = spec_identity(spec_to_dict(custom(agreement)))
    assert same == spec_identity(spec_to_dict(custom(agreement)))

    def agreement(ctx):  # noqa: F811  (same name, laxer body)
        return 1 == 1

    assert spec_identity(spec_to_dict(custom(agreement))) != same


def test_project_modules_go_by_value_and_installed_ones_are_pinned(monkeypatch) -> None:
    import numpy as np

    project = types.ModuleType("acme_checks")
    project.__file__ = "/srv/acme/acme_checks/__init__.py"
    source = "import numpy as np\ndef helper(x):\n    return np.mean(x)\ndef gate(ctx):\n    return helper([1.0]) > 0\n"
    exec(compile(source, project.__file__, "exec"), project.__dict__)
    monkeypatch.setitem(sys.modules, "acme_checks", project)
    by_value, requires = _reached_modules(project.gate)
    assert [m.__name__ for m in by_value] == ["acme_checks"]
    assert requires == {"numpy": f"numpy=={np.__version__}"}
    # shipyard and the standard library are never carried
    import json

    assert _reached_modules(json.dumps) == ([], {})
    assert _reached_modules(threshold) == ([], {})
