"""Gate evaluation logic with plain Python models (fakes for MLflow, nothing else)."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pandas as pd
import pytest

from shipyard._core.errors import GateError
from shipyard.gates import Column, GateResult, champion_challenger, custom, data_contract, slice_parity, threshold
from shipyard.gates._check import apply_override
from shipyard.gates._evaluate import EvalContext, Subject, contract_from_profile, evaluate
from shipyard.gates._metrics import compute, direction
from shipyard.gates._report import GateReport


def _holdout(n: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    x = rng.normal(size=n)
    return pd.DataFrame({"x": x, "group": np.where(np.arange(n) % 2, "a", "b"), "target": (x > 0).astype(int)})


def _subject(label: str, flip_every: int = 0, feature_names=None) -> Subject:
    def predict(frame):
        out = (frame["x"].to_numpy() > 0).astype(int)
        if flip_every:
            out[::flip_every] = 1 - out[::flip_every]
        return out

    return Subject(label, predict, feature_names, {"model_name": "m", "version": label[-1], "model_uri": "x"})


def _ctx(candidate, champion=None, holdout=None, **kw) -> EvalContext:
    frame = _holdout() if holdout is None else holdout
    return EvalContext(
        candidate=candidate,
        logged_metrics=kw.pop("logged", {"val_accuracy": 0.93}),
        run_id="r" * 32,
        holdout=frame,
        target="target",
        datasets={"holdout": frame},
        model_name="m",
        champion_lookup=(lambda name, alias: champion),
        exclude=("target", "group"),
        **kw,
    )


def test_metrics_and_directions() -> None:
    assert compute("accuracy_score", [1, 0, 1, 1], [1, 0, 0, 1]) == 0.75
    assert compute("rmse", [0.0, 0.0], [3.0, 4.0]) == pytest.approx(np.sqrt(12.5))
    assert compute("f1", [0, 1, 2, 2], [0, 1, 2, 1]) == pytest.approx(0.7777, abs=1e-3)  # macro for multiclass
    assert direction("val/rmse") == "lower" and direction("f1_score") == "higher"
    with pytest.raises(GateError, match="higher or lower"):
        direction("auc_pr", gate="cc")
    with pytest.raises(GateError, match="cannot compute 'auc_pr'"):
        compute("auc_pr", [1], [1], gate="t")


def test_threshold_on_logged_and_holdout_metrics() -> None:
    ctx = _ctx(_subject("candidate v2"))
    logged = evaluate(threshold("val_accuracy >= 0.9"), ctx)
    assert (logged.status, logged.value, logged.threshold) == ("pass", 0.93, 0.9)
    assert "logged by the run" in logged.message
    computed = evaluate(threshold("accuracy >= 0.99"), _ctx(_subject("candidate v2", flip_every=5)))
    assert computed.status == "fail" and computed.value == pytest.approx(0.8)
    assert "accuracy is 0.8, which fails accuracy >= 0.99 (on 200 holdout rows)" == computed.message
    warn = evaluate(threshold("accuracy >= 0.99", blocking=False), _ctx(_subject("c", flip_every=5)))
    assert warn.status == "warn"


def test_threshold_on_an_unlogged_metric_names_gate_and_metric() -> None:
    with pytest.raises(GateError) as err:
        evaluate(threshold("val_auc >= 0.9"), _ctx(_subject("c")))
    assert "'threshold.val_auc'" in str(err.value) and "'val_auc' was never logged" in str(err.value)
    assert "val_accuracy" in str(err.value)


def test_champion_challenger_pass_fail_equal_and_first_model() -> None:
    champion = _subject("m/1", flip_every=10)
    better = evaluate(champion_challenger("accuracy", tolerance=0.01), _ctx(_subject("c"), champion))
    assert better.status == "pass" and better.details["metrics"]["accuracy"]["improvement"] == pytest.approx(0.1)

    worse = evaluate(champion_challenger("accuracy", tolerance=0.01), _ctx(_subject("c", flip_every=4), champion))
    assert worse.status == "fail"
    assert worse.message == (
        "accuracy: candidate 0.75 vs champion m/1 0.9 (higher is better, 200 holdout rows): "
        "worse by 0.15, more than the tolerance 0.01"
    )

    equal = evaluate(champion_challenger("accuracy"), _ctx(_subject("c", flip_every=10), champion))
    assert equal.status == "pass" and "within tolerance 0" in equal.message

    first = evaluate(champion_challenger("accuracy"), _ctx(_subject("c"), None))
    assert first.status == "pass" and first.details["note"].startswith("no champion of 'm' yet")

    lower = evaluate(
        champion_challenger("mae", min_improvement=0.05), _ctx(_subject("c", flip_every=10), _subject("m/1", 4))
    )
    assert lower.status == "pass" and lower.details["metrics"]["mae"]["direction"] == "lower"


def test_champion_challenger_needs_model_name_and_holdout() -> None:
    ctx = _ctx(_subject("c"))
    ctx.model_name = None
    with pytest.raises(GateError, match="registered model name"):
        evaluate(champion_challenger("accuracy"), ctx)
    ctx = _ctx(_subject("c"))
    ctx.holdout = None
    with pytest.raises(GateError, match="needs a holdout set"):
        evaluate(champion_challenger("accuracy"), ctx)


def test_holdout_missing_model_columns_names_gate_and_columns() -> None:
    subject = _subject("candidate m/2", feature_names=["x", "age"])
    with pytest.raises(GateError) as err:
        evaluate(threshold("accuracy >= 0.5", source="holdout"), _ctx(subject))
    assert "'threshold.accuracy'" in str(err.value) and "'age'" in str(err.value)


def test_prediction_cache_never_serves_a_collected_frames_predictions() -> None:
    # A cache keyed on id(frame) alone failed this: CPython hands a collected
    # frame's address to the next frame, which then got the old predictions.
    calls: list[int] = []

    def doubled(frame):
        calls.append(len(frame))
        return frame["x"].to_numpy() * 2

    subject = Subject("m", doubled)
    for i in range(30):
        frame = pd.DataFrame({"x": [float(i)] * 3})
        assert subject.predict(frame, gate="g").tolist() == [2.0 * i] * 3
        del frame
        # the young generation is enough to free it (every iteration then reuses the address); a full
        # collection of a long-lived test process costs seconds each
        gc.collect(0)
    assert len(calls) == 30


def test_prediction_cache_hits_the_same_frame_and_keeps_it_alive() -> None:
    calls: list[int] = []
    subject = Subject("m", lambda frame: calls.append(1) or frame["x"].to_numpy())
    frame = pd.DataFrame({"x": [1.0, 2.0]})
    first = subject.predict(frame, gate="a")
    assert subject.predict(frame, gate="b") is first and len(calls) == 1
    equal_copy = frame.copy()
    assert subject.predict(equal_copy, gate="c").tolist() == [1.0, 2.0] and len(calls) == 2
    alive = weakref.ref(frame)
    del frame
    gc.collect()
    assert alive() is not None  # held by the cache, so its id cannot be handed to another frame


def test_data_contract_checks() -> None:
    frame = pd.DataFrame(
        {
            "age": [20.0, 30.0, 200.0, None],
            "site": ["n", "s", "e", "n"],
            "income": ["1", "2", "3", "4"],
            "score": ["0.1", None, "0.3", "0.4"],
        }
    )
    contract = data_contract(
        [
            Column("age", dtype="float64", min=0, max=120, max_null_rate=0.1),
            Column("site", categories=("n", "s")),
            Column("income", dtype="numeric"),
            Column("score", dtype="float64", min=0, max=1, max_null_rate=0.0),
        ],
        allow_extra_columns=True,
    )
    result = evaluate(contract, _ctx(None, holdout=frame))
    found = {(v["check"], v["column"]) for v in result.details["violations"]}
    assert found == {
        ("range", "age"),
        ("nulls", "age"),
        ("categories", "site"),
        ("dtype", "income"),
        ("dtype", "score"),
        ("nulls", "score"),  # a wrong dtype does not hide the column's other violations
    }
    assert result.status == "fail" and result.value == 6.0
    with pytest.raises(GateError, match="names column 'agee'"):
        evaluate(data_contract([Column("agee")]), _ctx(None, holdout=frame))
    strict = evaluate(data_contract([Column("age")], allow_extra_columns=False), _ctx(None, holdout=frame))
    assert {v["column"] for v in strict.details["violations"]} == {"site", "income", "score"}
    with pytest.raises(GateError, match="dataset 'train', which was not given"):
        evaluate(data_contract([Column("age")], dataset="train"), _ctx(None, holdout=frame))


def test_contract_from_profile() -> None:
    profile = {
        "columns": {
            "x": {"dtype": "float64", "kind": "numeric", "min": 0.0, "max": 10.0, "null_rate": 0.1},
            "c": {"dtype": "object", "kind": "categorical", "unique": 2, "top": {"a": 5, "b": 3}, "null_rate": 0.0},
            "wide": {"dtype": "object", "kind": "categorical", "unique": 500, "top": {"a": 5}, "null_rate": 0.0},
        }
    }
    rules = contract_from_profile(profile, range_slack=0.1, null_tolerance=0.05)
    assert (rules["x"].min, rules["x"].max, rules["x"].max_null_rate) == (-1.0, 11.0, pytest.approx(0.15))
    assert rules["c"].categories == ("a", "b")
    assert rules["wide"].categories is None  # the profile does not list every category


def test_slice_parity_reports_every_group() -> None:
    holdout = _holdout()

    def biased(frame):
        out = (frame["x"].to_numpy() > 0).astype(int)
        out[: len(out) // 2][::3] ^= 1  # errors only in the first half of the rows
        return out

    frame = holdout.assign(half=np.where(np.arange(len(holdout)) < 100, "first", "second"))
    ctx = _ctx(Subject("c", biased), holdout=frame)
    ctx.exclude = ("target", "group", "half")
    result = evaluate(slice_parity("half", max_gap=0.05), ctx)
    groups = result.details["groups"]
    assert set(groups) == {"first", "second"} and groups["second"]["value"] == 1.0
    assert result.status == "fail" and result.value == pytest.approx(1.0 - groups["first"]["value"])
    assert "first=" in result.message and "second=1 (n=100)" in result.message
    tiny = evaluate(slice_parity("half", min_rows=150), ctx)
    assert tiny.status == "pass" and "fewer than 2 groups" in tiny.message
    binned = evaluate(slice_parity("x", bins=4, max_gap=1.0), ctx)
    assert len(binned.details["groups"]) == 4


def test_custom_gate_outcomes() -> None:
    ctx = _ctx(_subject("c"))

    def boom(ctx):
        raise KeyError("no such feature")

    raised = evaluate(custom(boom), ctx)
    assert raised.status == "error" and raised.message == "cannot be evaluated: the gate function raised KeyError: 'no such feature'"
    assert raised.blocks
    assert evaluate(custom(lambda c: (True, "fine"), name="custom.ok"), ctx).message == "fine"
    assert evaluate(custom(lambda c: False, name="custom.no", blocking=False), ctx).status == "warn"
    scored = evaluate(custom(lambda c: float((c.predict() == c.y).mean()), bound=0.9, name="custom.acc"), ctx)
    assert scored.status == "pass" and scored.value == 1.0
    unbounded = evaluate(custom(lambda c: 0.5, name="custom.score"), ctx)
    assert unbounded.status == "fail" and "no bound" in unbounded.message
    weird = evaluate(custom(lambda c: object(), name="custom.weird"), ctx)
    assert weird.status == "fail" and "must return a bool" in weird.message


def test_override_marks_only_failed_gates_and_records_who_when_why() -> None:
    report = GateReport(
        candidate={"run_id": "r", "model_name": "m", "version": "2"},
        results=[
            GateResult("a", "fail", 0.1, 0.2, "too low", True),
            GateResult("b", "pass", 1.0, 0.5, "ok", True),
            GateResult("c", "fail", 3.0, 1.0, "too slow", True),
        ],
    )
    assert report.verdict == "fail"
    done = apply_override(report, ["a", "b"], by="ada", at="2026-01-01T00:00:00+00:00", reason="known issue")
    assert [r.status for r in done.results] == ["overridden", "pass", "fail"]
    assert done.override == {"gates": ["a"], "by": "ada", "at": "2026-01-01T00:00:00+00:00", "reason": "known issue"}
    assert done.verdict == "fail"
    all_done = apply_override(done, ["c"], by="ada", at="t", reason="ok")
    assert all_done.verdict == "overridden"
