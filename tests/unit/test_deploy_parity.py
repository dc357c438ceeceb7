"""Choosing parity rows and putting them on the wire (no services; the container watch with a fake)."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pandas as pd
import pytest

from shipyard import ContainerFailed, DeployError
from shipyard.deploy import container as container_module
from shipyard.deploy.parity import (
    MAX_PARITY_ROWS,
    MIN_HOLDOUT_ROWS,
    compare,
    holdout_rows,
    records,
    rows_from_profile,
    same,
    servable,
    stratified_sample,
)
from shipyard.tracking._datasets import profile


def _frame(n: int = 20_000, seed: int = 3, cities: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    names = [f"city-{i}" for i in range(cities - 1)]
    frame = pd.DataFrame(
        {
            "city": rng.choice(names, size=n),
            "plan": pd.Categorical(rng.choice(["free", "pro", "team"], size=n)),
            "active": rng.random(n) > 0.5,
            "age": rng.integers(18, 90, size=n),
            "income": rng.normal(50_000, 20_000, size=n),
        }
    )
    if n > 200:
        frame.loc[n - 7, "city"] = f"city-{cities - 1}"  # a rare category, once, far into the frame
        frame.loc[123, "income"] = np.nan
        frame.loc[n - 3, "income"] = 1e9
    return frame


def test_stratified_sample_covers_every_category_and_extreme_and_is_bounded_and_deterministic() -> None:
    frame = _frame()
    sample, notes = stratified_sample(frame)
    assert len(sample) == MAX_PARITY_ROWS and notes == []
    for col in ("city", "plan", "active"):
        assert set(sample[col].astype(object)) == set(frame[col].astype(object)), col
    assert sample["age"].min() == frame["age"].min() and sample["age"].max() == frame["age"].max()
    assert sample["income"].max() == 1e9 and sample["income"].isna().any()
    again, _ = stratified_sample(frame)
    pd.testing.assert_frame_equal(sample, again)
    assert stratified_sample(frame.head(50))[0].equals(frame.head(50))


def test_a_column_with_more_categories_than_fit_is_named_not_fatal() -> None:
    frame = pd.DataFrame({"id": [f"user-{i}" for i in range(5000)], "kind": ["a", "b"] * 2500})
    sample, notes = stratified_sample(frame, limit=100)
    assert len(sample) == 100 and set(sample["kind"]) == {"a", "b"}
    assert any("'id' has 5000 distinct values" in n for n in notes)


def test_times_count_as_extremes_and_list_cells_are_categories_too() -> None:
    n = 3000
    frame = pd.DataFrame(
        {
            "at": pd.date_range("2026-01-01", periods=n, freq="h"),
            "tags": [["a", str(i % 3)] for i in range(n)],
            "x": np.where(np.arange(n) == 17, np.inf, np.arange(n, dtype=float)),
        }
    )
    sample, notes = stratified_sample(frame, limit=50)
    assert len(sample) == 50
    assert sample["at"].min() == frame["at"].min() and sample["at"].max() == frame["at"].max()
    assert sample["x"].max() == n - 1  # the largest finite value; the infinite one is for servable() to drop
    assert {tuple(t) for t in sample["tags"]} == {("a", "0"), ("a", "1"), ("a", "2")} and notes == []


def test_records_are_exact_json_with_null_for_missing_and_iso_times() -> None:
    value = 0.1234567890123456789
    frame = pd.DataFrame(
        {
            "x": [value, np.nan],
            "n": pd.array([1, None], dtype="Int64"),
            "s": ["a", None],
            "t": pd.to_datetime(["2026-01-02T03:04:05", None]),
            "c": pd.Categorical(["u", "v"]),
        }
    )
    rows = records(frame)
    text = json.dumps({"inputs": rows}, allow_nan=False)  # what JsonClient sends
    back = json.loads(text)["inputs"]
    assert back[0] == {"x": value, "n": 1, "s": "a", "t": "2026-01-02T03:04:05", "c": "u"}
    assert back[1] == {"x": None, "n": None, "s": None, "t": None, "c": "v"}
    assert records(np.array([[1.5, 2.0]])) == [[1.5, 2.0]]


def test_servable_leaves_out_rows_the_service_rejects_by_contract() -> None:
    frame = pd.DataFrame({"a": [1.0, np.nan, 3.0, np.inf], "b": [np.nan, 1.0, 2.0, 3.0]})
    kept, note = servable(frame, required={"a"})
    assert kept["a"].tolist() == [1.0, 3.0] and math.isnan(kept["b"][0])
    assert note.startswith("2 row(s) left out")


class _Schema:
    def __init__(self, required: dict[str, bool]) -> None:
        self.inputs = [type("Col", (), {"name": k, "required": v})() for k, v in required.items()]

    def has_input_names(self) -> bool:
        return True


class _Model:
    """Predicts a number from the columns; raises on a missing income like many estimators do."""

    def __init__(self, required: dict[str, bool]) -> None:
        self.metadata = type("Meta", (), {"get_input_schema": lambda _self: _Schema(required)})()

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        if frame["income"].isna().any():
            raise ValueError("Input contains NaN")
        return frame["income"].to_numpy() * 2 + frame["city"].str.len().to_numpy()


def test_rows_from_a_logged_profile_cover_its_categories_and_extremes() -> None:
    frame = _frame(5000, cities=40)
    example = frame.head(5)
    stored = {"name": "train", "profile": profile(frame)}
    model = _Model({c: c != "income" for c in frame.columns})
    notes: list[str] = []
    rows = rows_from_profile(stored, "train", example, model, notes)
    assert rows is not None and rows.kind == "dataset"
    assert rows.source.startswith("sample of the logged dataset 'train'")
    got = rows.frame
    assert MIN_HOLDOUT_ROWS <= len(got) <= MAX_PARITY_ROWS
    assert set(got["city"]) == set(frame["city"]) and set(got["plan"].astype(str)) == {"free", "pro", "team"}
    assert set(got["active"]) == {True, False} and got["active"].dtype == bool
    assert got["age"].dtype == frame["age"].dtype
    assert got["age"].min() == frame["age"].min() and got["age"].max() == frame["age"].max()
    assert got["income"].max() == 1e9 and got["income"].isna().sum() == 1  # the dataset had a missing income
    again = rows_from_profile(stored, "train", example, model, [])
    pd.testing.assert_frame_equal(got, again.frame)
    assert rows_from_profile(stored, "train", example.assign(extra=1), model, notes) is None
    assert "lacks the model's input columns ['extra']" in notes[-1]
    wide = _frame(5000, cities=80)  # more categories than a profile keeps: the kept ones, and a note
    notes = []
    rows = rows_from_profile({"profile": profile(wide)}, "train", wide.head(5), model, notes)
    assert set(rows.frame["city"]) == set(profile(wide)["columns"]["city"]["top"])
    assert any("keeps 50 of its 80 categories" in n for n in notes)


def test_compare_leaves_out_rows_the_model_cannot_score_in_process() -> None:
    frame = _frame(201)
    model = _Model({c: True for c in frame.columns})
    sent: list[list[dict]] = []

    def post(rows: list[dict]) -> list[float]:
        sent.append(rows)
        return [r["income"] * 2 + len(r["city"]) for r in rows]

    result = compare(model, [frame], post)
    assert result.rows == 200 and result.mismatches == 0
    assert result.notes == ("1 row(s) left out: the model cannot score them in-process (ValueError)",)
    lying = compare(model, [frame.dropna()], lambda rows: [0.0] * len(rows))
    assert lying.mismatches == 200 and lying.first_mismatch["served"] == 0.0


def test_given_holdout_must_have_the_model_columns_and_none_means_input_example_only() -> None:
    example = _frame(5)
    with pytest.raises(DeployError, match="lacks the model's input columns"):
        holdout_rows(example.drop(columns=["city"]), example)
    only = holdout_rows(None, example)
    assert only.source.startswith("input example only") and only.kind == "input_example"
    assert same(1.0, 1.0 + 1e-12) and not same(1.0, 1.001) and same(float("nan"), float("nan"))


class _FakeContainer:
    """The few docker-py Container members the readiness watch reads."""

    def __init__(self, logs: str, status: str = "running", code: int = 0) -> None:
        self._logs, self.status, self.attrs = logs, status, {"State": {"ExitCode": code}, "Config": {"Image": "img:1"}}

    def reload(self) -> None:
        pass

    def logs(self, tail: int) -> bytes:
        return "\n".join(self._logs.splitlines()[-tail:]).encode()


def test_a_server_that_gives_up_starting_is_reported_at_once_with_its_log() -> None:
    log = "\n".join(
        [f"line {i}" for i in range(40)]
        + ["ModuleNotFoundError: No module named 'xgboost'", "[ERROR] [:1] Application startup failed. Exiting."]
    )
    t0 = time.monotonic()
    with pytest.raises(ContainerFailed) as info:
        container_module._wait_ready(_FakeContainer(log), port=1, timeout=60, started=t0)
    assert time.monotonic() - t0 < 5
    err = info.value
    assert err.exit_code is None and "No module named 'xgboost'" in str(err)
    assert len(err.log_tail.splitlines()) == container_module.LOG_TAIL_LINES
    assert "Application startup failed" in err.log_tail and "img:1" in err.message


def test_an_exited_container_carries_its_exit_code() -> None:
    with pytest.raises(ContainerFailed, match="exited with code 3") as info:
        container_module._wait_ready(_FakeContainer("boom\nSystemExit: 3", "exited", 3), 1, 60, time.monotonic())
    assert info.value.exit_code == 3 and info.value.log_tail.endswith("SystemExit: 3")


def test_the_parity_verdict_names_the_source_the_first_differing_row_and_what_was_left_out() -> None:
    from shipyard.deploy.image_smoke import _verdicts
    from shipyard.deploy.parity import ParityResult

    differing = ParityResult(105, 1, {"row": {"city": "Zanzibar", "seats": 3}, "expected": 2.5, "served": 3.0})
    parity, latency = _verdicts(
        differing, pd.DataFrame({"a": range(100)}), "holdout of 100 rows", (3.0, 5.0, 40), 250.0,
        ("2 row(s) left out: the model cannot score them in-process (ValueError)",),
    )
    assert parity.status == "fail" and latency.status == "pass"
    assert parity.message == (
        '104/105 rows identical (holdout of 100 rows); first differing row {"city": "Zanzibar", "seats": 3}: '
        "expected 2.5, served 3.0; 2 row(s) left out: the model cannot score them in-process (ValueError)"
    )
