"""Gate specs: constructors, validation, the decorator's recorded spec, and the JSON round trip."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from shipyard._core.errors import GateError
from shipyard.gates import (
    ChampionChallenger,
    Column,
    CustomGate,
    StepGates,
    champion_challenger,
    custom,
    data_contract,
    gate,
    slice_parity,
    spec_from_dict,
    spec_to_dict,
    threshold,
)
from shipyard.gates._decorator import GATES_ATTR, find_step_gates


def test_threshold_reads_expressions_and_parts() -> None:
    t = threshold("accuracy >= 0.9")
    assert (t.metric, t.op, t.value, t.gate_name, t.blocking) == ("accuracy", ">=", 0.9, "threshold.accuracy", True)
    assert threshold("val/rmse<3.2").op == "<"
    assert threshold("rmse", "<=", 3.2, blocking=False).blocking is False


@pytest.mark.parametrize("bad", ["accuracy", "accuracy => 0.9", "accuracy >= high", ">= 0.9"])
def test_unreadable_threshold_is_a_gate_error(bad: str) -> None:
    with pytest.raises(GateError):
        threshold(bad)


def test_specs_are_frozen() -> None:
    t = threshold("accuracy >= 0.9")
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.value = 0.1  # type: ignore[misc]


def test_bad_declarations_are_gate_errors_naming_the_gate() -> None:
    with pytest.raises(GateError, match="tolerance"):
        champion_challenger("accuracy", tolerance=-0.1)
    with pytest.raises(GateError, match="direction"):
        champion_challenger("auc", directions={"auc": "up"})
    with pytest.raises(GateError, match="no columns and no reference"):
        data_contract()
    with pytest.raises(GateError, match="not usable as a tag name"):
        threshold("accuracy >= 0.9", name="verdict")
    with pytest.raises(GateError, match="blocking"):
        slice_parity("sex", blocking="yes")  # type: ignore[arg-type]
    with pytest.raises(GateError, match="needs a function"):
        CustomGate(42)  # type: ignore[arg-type]
    with pytest.raises(GateError, match="max_null_rate"):
        Column("x", max_null_rate=2)


def _double(ctx):
    return 2 * len(ctx.holdout), "twice the rows"


@pytest.mark.parametrize(
    "spec",
    [
        threshold("accuracy >= 0.9", source="holdout"),
        champion_challenger(["accuracy", "auc"], tolerance=0.02, directions={"auc": "higher"}, model_name="iris"),
        champion_challenger("rmse", min_improvement=0.5, blocking=False, name="beats-champion"),
        data_contract(
            {"age": {"dtype": "numeric", "min": 0, "max": 120, "categories": None}}, allow_extra_columns=False
        ),
        data_contract([Column("site", categories=("a", "b"))], reference=("0" * 32, "train"), range_slack=0.1),
        slice_parity("sex", "f1", max_gap=0.05, min_rows=20, bins=3),
    ],
)
def test_specs_survive_a_json_round_trip(spec) -> None:
    stored = json.loads(json.dumps(spec_to_dict(spec)))
    assert spec_from_dict(stored) == spec


def test_custom_gate_function_survives_a_json_round_trip_by_value() -> None:
    spec = custom(_double, bound=10, op=">")
    rebuilt = spec_from_dict(json.loads(json.dumps(spec_to_dict(spec))))
    assert isinstance(rebuilt, CustomGate) and rebuilt.gate_name == "custom._double"
    assert (rebuilt.bound, rebuilt.op) == (10, ">")

    class Ctx:
        holdout = [1, 2, 3]

    assert rebuilt.fn(Ctx()) == (6, "twice the rows")


def test_unknown_stored_kind_is_a_gate_error() -> None:
    with pytest.raises(GateError, match="unknown kind"):
        spec_from_dict({"kind": "vibes", "name": "x"})


def test_gate_decorator_only_records_a_frozen_spec_in_both_forms() -> None:
    t = threshold("accuracy >= 0.9")

    @gate(t, model_name="iris", holdout="test_df")
    def train(self):
        return "trained"

    recorded = getattr(train, GATES_ATTR)
    assert isinstance(recorded, StepGates)
    assert recorded.gates == (t,) and recorded.model_name == "iris" and recorded.holdout == "test_df"
    assert train(None) == "trained"
    with pytest.raises(dataclasses.FrozenInstanceError):
        recorded.on_fail = "stop"  # type: ignore[misc]

    @gate
    def evaluate(self):
        return None

    assert find_step_gates(evaluate) == StepGates()

    @gate(slice_parity("sex"))
    @gate(t)
    def both(self):
        return None

    assert [g.gate_name for g in find_step_gates(both).gates] == ["threshold.accuracy", "slice.sex"]


def test_gate_decorator_rejects_what_is_not_a_gate() -> None:
    with pytest.raises(GateError, match="not a gate"):
        gate("accuracy >= 0.9")
    with pytest.raises(GateError, match="on_fail"):
        gate(threshold("accuracy >= 0.9"), on_fail="explode")  # type: ignore[arg-type]


def test_champion_challenger_defaults() -> None:
    cc = ChampionChallenger()
    assert cc.metrics == ("accuracy",) and cc.tolerance == 0.0 and cc.alias == "champion"


def test_importing_gates_and_registry_loads_no_heavy_package() -> None:
    code = (
        "import sys, json\nimport shipyard.gates, shipyard.registry\n"
        "shipyard.gates.threshold('accuracy >= 0.9')\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = set(json.loads(out.strip().splitlines()[-1]))
    assert not loaded & {"mlflow", "metaflow", "matplotlib", "pandas", "sklearn", "bentoml", "docker"}
