"""The served predict path: column checks that agree with the row checks, inputs, loaders, workers."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shipyard.monitoring import serving
from shipyard.monitoring.validation import (
    FieldSpec,
    InputSchema,
    RequestProblem,
    validate_columns,
    validate_payload,
)
from shipyard.packaging.predict_path import native_loader

SCHEMA = InputSchema(
    fields=(
        FieldSpec("x", "double"),
        FieldSpec("n", "long"),
        FieldSpec("i", "integer", required=False),
        FieldSpec("f", "float"),
        FieldSpec("y", "double", required=False, allow_non_finite=True),
        FieldSpec("s", "string", required=False),
        FieldSpec("b", "boolean", required=False),
    )
)

# Values of every JSON type, including the edges each check is about.
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.sampled_from([2**31, -(2**31) - 1, 2**63, -(2**63), 10**309, 2**63 - 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([3.5e38, -3.5e38, 1.0, 2.5, float("nan")]),
    st.text(max_size=3),
    st.lists(st.integers(), max_size=2),
)
ROWS = st.lists(
    st.dictionaries(st.sampled_from(["x", "n", "i", "f", "y", "s", "b", "zz"]), VALUES, max_size=8),
    min_size=1,
    max_size=4,
)


def _outcome(check, payload):
    try:
        return ("ok", check(payload))
    except RequestProblem as problem:
        return ("refused", problem.status, problem.message)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ROWS)
def test_column_checks_accept_and_refuse_exactly_what_the_row_checks_do(rows) -> None:
    payload = {"inputs": rows}
    by_rows = _outcome(lambda p: validate_payload(p, SCHEMA), payload)
    by_columns = _outcome(lambda p: validate_columns(p, SCHEMA), payload)
    assert by_rows[0] == by_columns[0]
    if by_rows[0] == "refused":
        assert by_rows == by_columns  # the same first problem, in the same words
    else:
        columns, count = by_columns[1]
        assert count == len(rows)
        for spec in SCHEMA.fields:
            assert list(columns[spec.name]) == [row.get(spec.name) for row in rows]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(VALUES, min_size=0, max_size=4), min_size=1, max_size=4))
def test_tensor_column_checks_agree_with_the_row_checks(rows) -> None:
    schema = InputSchema(tensor_width=3, tensor_type="long")
    payload = {"inputs": rows}
    by_rows = _outcome(lambda p: validate_payload(p, schema), payload)
    by_columns = _outcome(lambda p: validate_columns(p, schema), payload)
    assert by_rows[0] == by_columns[0]
    if by_rows[0] == "refused":
        assert by_rows == by_columns
    else:
        assert by_columns[1] == ({"": rows}, len(rows))


def test_a_matrix_input_keeps_signature_order_and_turns_gaps_into_nan() -> None:
    schema = {"fields": [{"name": "b", "type": "double"}, {"name": "a", "type": "long"}]}
    matrix = serving.build_input({"a": (1, 2), "b": (0.5, None)}, schema, "numpy")
    assert matrix.dtype == np.float64 and matrix.shape == (2, 2)
    assert matrix[0].tolist() == [0.5, 1.0] and math.isnan(matrix[1, 0])


def test_a_frame_input_has_the_signatures_dtypes() -> None:
    schema = {
        "fields": [
            {"name": "x", "type": "double"},
            {"name": "n", "type": "long"},
            {"name": "i", "type": "integer"},
            {"name": "f", "type": "float"},
            {"name": "s", "type": "string"},
            {"name": "gap", "type": "long"},
        ]
    }
    frame = serving.build_input(
        {"x": (1, 2.5), "n": (3, 4), "i": (5, 6), "f": (1.5, 2), "s": ("a", None), "gap": (1, None)}, schema, "pandas"
    )
    assert list(frame.columns) == ["x", "n", "i", "f", "s", "gap"]
    assert [str(frame[c].dtype) for c in ["x", "n", "i", "f"]] == ["float64", "int64", "int32", "float32"]
    assert frame["s"].tolist()[0] == "a" and frame["gap"].isna().tolist() == [False, True]


def test_predictions_become_json_values() -> None:
    import pandas as pd

    assert serving.to_json(np.array([1, 2], dtype=np.int64)) == [1, 2]
    assert serving.to_json(pd.DataFrame({"p": [0.5]})) == [{"p": 0.5}]
    assert serving.to_json((1, 2)) == [1, 2]


def test_client_errors_are_named_by_class_without_importing_the_library() -> None:
    class LightGBMError(Exception):
        pass

    assert serving.is_client_error(ValueError("unknown category"))
    assert serving.is_client_error(LightGBMError("bad"))
    assert not serving.is_client_error(RuntimeError("bug"))
    assert not serving.is_client_error(MemoryError())


def test_workers_follow_the_setting_the_environment_and_the_cpu_quota(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv(serving.WORKERS_VARIABLE, raising=False)
    assert serving.worker_count(3) == 3
    monkeypatch.setenv(serving.WORKERS_VARIABLE, "2")
    assert serving.worker_count("auto") == 2
    for bad in ("0", "many"):
        monkeypatch.setenv(serving.WORKERS_VARIABLE, bad)
        with pytest.raises(ValueError, match=serving.WORKERS_VARIABLE):
            serving.worker_count("auto")
    monkeypatch.delenv(serving.WORKERS_VARIABLE)
    assert 1 <= serving.worker_count("auto") <= (serving.os.cpu_count() or 1)

    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")
    assert serving.cpu_quota(v2) == 1.5
    (v2 / "cpu.max").write_text("max 100000\n")
    assert serving.cpu_quota(v2) is None
    v1 = tmp_path / "v1" / "cpu"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("50000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert serving.cpu_quota(tmp_path / "v1") == 0.5
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")
    assert serving.cpu_quota(tmp_path / "v1") is None
    monkeypatch.setattr(serving, "cpu_quota", lambda: 0.5)
    assert serving.worker_count("auto") == 1  # a fraction of a CPU still runs one worker


def test_native_loaders_are_read_from_mlmodel() -> None:
    sklearn = {
        "flavors": {
            "python_function": {"loader_module": "mlflow.sklearn", "model_path": "model.skops", "predict_fn": "predict_proba"},
            "sklearn": {"pickled_model": "model.skops", "serialization_format": "skops", "skops_trusted_types": ["x.Y"]},
        }
    }
    assert native_loader(sklearn) == {
        "flavor": "sklearn",
        "method": "predict_proba",
        "path": "model.skops",
        "format": "skops",
        "trusted": ["x.Y"],
    }
    xgb = {
        "flavors": {
            "python_function": {"loader_module": "mlflow.xgboost", "data": "model.xgb", "code": "code"},
            "xgboost": {"data": "model.xgb", "model_class": "xgboost.sklearn.XGBRegressor"},
        }
    }
    assert native_loader(xgb) == {
        "flavor": "xgboost",
        "method": "predict",
        "path": "model.xgb",
        "model_class": "xgboost.sklearn.XGBRegressor",
        "code": "code",
    }
    custom = {"flavors": {"python_function": {"loader_module": "mlflow.pyfunc.model"}}}
    assert native_loader(custom) is None
    assert native_loader({"flavors": {"python_function": {"loader_module": "mlflow.catboost"}, "catboost": {}}}) is None


def test_a_pickled_model_is_loaded_and_predicts_with_its_own_method(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    X = np.array([[0.0, 1.0], [1.0, 0.0], [0.2, 0.9], [0.9, 0.1]])
    model = LogisticRegression().fit(X, [0, 1, 0, 1])
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(model))
    loader = {"flavor": "sklearn", "path": "model.pkl", "format": "pickle", "method": "predict_proba"}
    schema = {"fields": [{"name": "a", "type": "double"}, {"name": "b", "type": "double"}]}
    predictor = serving.Predictor(tmp_path, loader, schema, "numpy", example={"a": [0.0], "b": [1.0]})
    serving.gc.unfreeze()  # the service freezes what it loaded for its life; this test process goes on
    assert predictor.predict({"a": [0.0, 1.0], "b": [1.0, 0.0]}) == model.predict_proba(X[:2]).tolist()
    with pytest.raises(ValueError, match="serialization format"):
        serving.load_model(tmp_path, {**loader, "format": "marshal"})


class _CountingModel:
    """Predicts 2*x per row, slowly, and refuses negative values (as a model refuses an unknown category)."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict(self, columns):
        import time as _time

        xs = list(columns["x"])
        self.calls.append(len(xs))
        _time.sleep(0.01)
        if any(x < 0 for x in xs):
            raise ValueError("negative")
        return [2 * x for x in xs]


def test_batching_predicts_waiting_requests_together_and_a_bad_one_fails_alone() -> None:
    import asyncio

    model = _CountingModel()
    batcher = serving.Batcher(model, max_rows=64)

    async def scenario():
        first = asyncio.ensure_future(batcher.submit({"x": (0, 0.5)}, 2))
        await asyncio.sleep(0.003)  # the model is busy with the first request, in its thread
        good = [batcher.submit({"x": (i, i + 0.5)}, 2) for i in range(1, 10)]
        bad = batcher.submit({"x": (-1,)}, 1)
        return await asyncio.gather(first, *good, bad, return_exceptions=True)

    results = asyncio.run(scenario())
    assert results[:10] == [[2 * i, 2 * i + 1.0] for i in range(10)]
    assert isinstance(results[10], ValueError)
    # The first request found the model idle; the rest waited and went in one call, which failed on the
    # bad one and was then predicted request by request.
    assert model.calls == [2, 19, *[2] * 9, 1]
    assert batcher.batches == 2 and batcher.requests == 11


def test_batches_never_exceed_their_row_limit() -> None:
    import asyncio

    model = _CountingModel()
    batcher = serving.Batcher(model, max_rows=5, max_wait=0.005)

    async def scenario():
        return await asyncio.gather(*(batcher.submit({"x": (i, i)}, 2) for i in range(9)))

    assert asyncio.run(scenario()) == [[2 * i, 2 * i] for i in range(9)]
    assert max(model.calls) <= 5 and sum(model.calls) == 18
