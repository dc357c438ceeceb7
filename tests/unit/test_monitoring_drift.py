"""Unit tests of the drift math and reference profiles (:mod:`shipyard.monitoring.drift`).

scipy is the oracle for the distances: ``wasserstein`` and ``jensen_shannon`` must equal
``scipy.stats.wasserstein_distance`` and ``scipy.spatial.distance.jensenshannon``, and the
profile-based normalized Wasserstein must stay within a stated tolerance of Evidently's
``wasserstein_distance(ref, cur) / max(np.std(ref), 0.001)`` on the raw samples.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import jensenshannon
from scipy.stats import wasserstein_distance

from shipyard.monitoring import drift
from shipyard.monitoring.drift import (
    DATASET_SHARE,
    DEFAULT_THRESHOLD,
    NUMERIC_BINS,
    OTHER,
    QUANTILE_POINTS,
    TOP_CATEGORIES,
    ColumnDrift,
    DriftResult,
    column_drift,
    column_reference,
    compute_drift,
    jensen_shannon,
    profile_fingerprint,
    psi,
    reference_profile,
    wasserstein,
)

# numpy must not warn (overflow, division by zero) on any input these tests feed in.
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

EXACT = 1e-9
# Profile-based normalized Wasserstein vs scipy on raw samples (10k reference rows, 5k window rows):
# smooth light-tailed columns within LIGHT, heavy tails and discrete values within HEAVY.
LIGHT = 0.005
HEAVY = 0.025
DRIFT_PY = Path(drift.__file__)


def evidently_wasserstein_norm(reference: np.ndarray, current: np.ndarray) -> float:
    """Evidently's stattest (wasserstein_distance_norm.py), written out with scipy."""
    return wasserstein_distance(reference, current) / max(np.std(reference), 0.001)


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=EXACT, abs_tol=EXACT)


# ---------------------------------------------------------------- exact distances


def test_wasserstein_known_values() -> None:
    assert wasserstein([0, 1, 3], [5, 6, 8]) == pytest.approx(5.0, abs=EXACT)
    assert wasserstein([0, 1], [0, 1]) == 0.0
    for u, v in ([[0, 1, 3], [5, 6, 8]], [[3.4, 3.9, 7.5, 7.8], [4.5, 1.4]], [[1.0], [2.0, 3.0, 4.0]]):
        assert close(wasserstein(u, v), wasserstein_distance(u, v))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=60),
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=60),
)
def test_wasserstein_equals_scipy(u: list[float], v: list[float]) -> None:
    assert math.isclose(wasserstein(u, v), wasserstein_distance(u, v), rel_tol=EXACT, abs_tol=1e-9)


def test_wasserstein_equals_scipy_on_random_distributions() -> None:
    rng = np.random.default_rng(7)
    for u, v in [
        (rng.normal(size=5000), rng.normal(0.3, 1.2, size=3000)),
        (rng.lognormal(size=2000), rng.exponential(size=2000)),
        (rng.integers(0, 5, 1000).astype(float), rng.integers(0, 6, 999).astype(float)),
    ]:
        assert close(wasserstein(u, v), wasserstein_distance(u, v))


def test_wasserstein_drops_nulls_and_refuses_empty() -> None:
    assert close(wasserstein([0, 1, None, np.nan, np.inf], [5, 6]), wasserstein_distance([0, 1], [5, 6]))
    with pytest.raises(ValueError, match="finite value"):
        wasserstein([None, np.nan], [1.0])


def test_jensen_shannon_known_values() -> None:
    # Disjoint supports: sqrt(ln 2) in the natural base Evidently uses (scipy's default, base=None).
    assert jensen_shannon([1, 0], [0, 1]) == pytest.approx(math.sqrt(math.log(2)), abs=EXACT)
    assert jensen_shannon([0.2, 0.8], [0.2, 0.8]) == 0.0
    # Counts are normalized like shares.
    assert close(jensen_shannon([2, 8], [5, 5]), jensen_shannon([0.2, 0.8], [0.5, 0.5]))
    assert close(jensen_shannon([0.1, 0.2, 0.7], [0.3, 0.3, 0.4]), jensenshannon([0.1, 0.2, 0.7], [0.3, 0.3, 0.4]))


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 12).flatmap(
        lambda n: st.tuples(
            st.lists(st.floats(0, 1e6, allow_nan=False), min_size=n, max_size=n),
            st.lists(st.floats(0, 1e6, allow_nan=False), min_size=n, max_size=n),
        )
    )
)
def test_jensen_shannon_equals_scipy(pq: tuple[list[float], list[float]]) -> None:
    p, q = pq
    if sum(p) == 0 or sum(q) == 0:
        with pytest.raises(ValueError, match="no mass"):
            jensen_shannon(p, q)
        return
    assert math.isclose(jensen_shannon(p, q), float(jensenshannon(p, q)), rel_tol=EXACT, abs_tol=1e-7)


def test_jensen_shannon_refuses_unusable_vectors() -> None:
    with pytest.raises(ValueError, match="same length"):
        jensen_shannon([0.5, 0.5], [1.0])
    with pytest.raises(ValueError, match="non-negative"):
        jensen_shannon([-0.5, 1.5], [0.5, 0.5])


# ---------------------------------------------------------------- PSI


def test_psi_textbook_example() -> None:
    expected = [0.25, 0.25, 0.25, 0.25]
    actual = [0.10, 0.20, 0.30, 0.40]
    by_hand = sum((e - a) * math.log(e / a) for e, a in zip(expected, actual))
    assert psi(expected, actual) == pytest.approx(by_hand, abs=EXACT)
    assert psi(expected, actual) == pytest.approx(0.228217, abs=1e-6)  # a "moderate" shift (0.1-0.25)
    assert psi(expected, expected) == 0.0
    # Counts work like shares, and PSI is symmetric.
    assert close(psi([25, 25, 25, 25], [10, 20, 30, 40]), psi(expected, actual))
    assert close(psi(actual, expected), psi(expected, actual))


def test_psi_decile_example() -> None:
    # Ten reference deciles against a window that moved mass into the top deciles.
    expected = [0.1] * 10
    actual = [0.05, 0.05, 0.07, 0.08, 0.1, 0.1, 0.12, 0.13, 0.15, 0.15]
    by_hand = sum((e - a) * math.log(e / a) for e, a in zip(expected, actual))
    assert psi(expected, actual) == pytest.approx(by_hand, abs=EXACT)
    assert 0.1 <= psi(expected, actual) < 0.25


def test_psi_fills_empty_bins_as_evidently() -> None:
    # Smallest non-empty share above 1e-4: empty bins become 1e-4 (evidently stattests/utils.py).
    fill = 1e-4
    by_hand = 2 * (0.5 - 0.4) * math.log(0.5 / 0.4) + (fill - 0.2) * math.log(fill / 0.2)
    assert psi([0.5, 0.5, 0.0], [0.4, 0.4, 0.2]) == pytest.approx(by_hand, abs=EXACT)
    # Smallest non-empty share at or below 1e-4: empty bins become that share / 1e6.
    small = 5e-5
    expected = [1 - small, small, 0.0]
    actual = [0.5, 0.3, 0.2]
    filled = [1 - small, small, small / 1e6]
    by_hand = sum((e - a) * math.log(e / a) for e, a in zip(filled, actual))
    assert psi(expected, actual) == pytest.approx(by_hand, rel=EXACT)


def test_psi_refuses_unusable_vectors() -> None:
    with pytest.raises(ValueError, match="no mass"):
        psi([0, 0], [1, 1])
    with pytest.raises(ValueError, match="same length"):
        psi([1, 1], [1, 1, 1])
    with pytest.raises(ValueError, match="finite"):
        psi([1, np.nan], [1, 1])


# ---------------------------------------------------------------- Evidently's stated defaults


def test_evidently_defaults() -> None:
    # docs.evidentlyai.com/reference/data-drift-algorithm: > 1000 rows, threshold 0.1 for both methods,
    # dataset drift when at least half the columns drift; the std floor is wasserstein_distance_norm.py's.
    assert DEFAULT_THRESHOLD == 0.1
    assert DATASET_SHARE == 0.5
    assert drift.STD_FLOOR == 0.001
    assert (QUANTILE_POINTS, NUMERIC_BINS, TOP_CATEGORIES, OTHER) == (101, 20, 50, "__other__")


def test_drifted_at_the_threshold_itself() -> None:
    # Evidently: drift_detected = score >= threshold.
    reference = column_reference(["a", "b"] * 1000)
    result = column_drift(reference, ["a"] * 3 + ["b"] * 1, column="c", threshold=0.0)
    assert result.drifted
    same = column_drift(reference, ["a", "b"] * 10, column="c", threshold=0.0)
    assert same.distance == 0.0 and same.drifted


# ---------------------------------------------------------------- profile vs raw samples

GENERATORS = {
    "normal": (lambda rng, n: rng.normal(5, 2, n), LIGHT),
    "uniform": (lambda rng, n: rng.uniform(-3, 9, n), LIGHT),
    "lognormal": (lambda rng, n: rng.lognormal(0, 1, n), HEAVY),
    "student-t3": (lambda rng, n: rng.standard_t(3, n), HEAVY),
    "discrete ints": (lambda rng, n: rng.poisson(3, n).astype(float), HEAVY),
    "binary": (lambda rng, n: (rng.random(n) < 0.3).astype(float), HEAVY),
}


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_profile_wasserstein_close_to_scipy_on_raw_samples(name: str) -> None:
    generate, tolerance = GENERATORS[name]
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    for _ in range(5):
        reference = generate(rng, 10_000)
        profile = column_reference(reference)
        for current in (generate(rng, 5000), generate(rng, 5000) * 1.1 + 0.3, generate(rng, 5000) + 2.0):
            measured = column_drift(profile, current, column=name).distance
            assert measured == pytest.approx(evidently_wasserstein_norm(reference, current), abs=tolerance)


def test_profile_wasserstein_constant_column_is_exact() -> None:
    reference = np.full(5000, 3.0)
    profile = column_reference(reference)
    assert profile["std"] == 0.0 and profile["edges"] == [3.0] and profile["counts"] == [5000]
    for current in (np.full(100, 3.0), np.full(100, 3.5), np.r_[np.full(50, 3.0), np.full(50, 4.0)]):
        measured = column_drift(profile, current, column="c").distance
        assert measured == pytest.approx(evidently_wasserstein_norm(reference, current), rel=1e-9)
    assert column_drift(profile, np.full(100, 3.5), column="c").distance == pytest.approx(500.0)


# ---------------------------------------------------------------- drift decisions


def test_in_distribution_windows_stay_below_threshold() -> None:
    rng = np.random.default_rng(11)
    categories = np.array(["red", "green", "blue", "black"], dtype=object)
    weights = [0.4, 0.3, 0.2, 0.1]
    training = {
        "x": rng.normal(10, 3, 20_000),
        "y": rng.lognormal(1, 0.8, 20_000),
        "n": rng.poisson(4, 20_000),
        "colour": rng.choice(categories, 20_000, p=weights),
    }
    profile = reference_profile(training, source="training")
    for _ in range(5):
        window = {
            "x": rng.normal(10, 3, 5000),
            "y": rng.lognormal(1, 0.8, 5000),
            "n": rng.poisson(4, 5000),
            "colour": rng.choice(categories, 5000, p=weights),
        }
        result = compute_drift(profile, window)
        assert all(c.distance < DEFAULT_THRESHOLD for c in result.columns), result.to_dict()
        assert all(c.psi < 0.1 for c in result.columns), result.to_dict()
        assert not result.dataset_drift and result.share == 0.0 and result.rows == 5000


def test_a_one_sigma_shift_and_a_replaced_category_drift() -> None:
    rng = np.random.default_rng(12)
    categories = np.array(["red", "green", "blue", "black"], dtype=object)
    profile = reference_profile(
        {"x": rng.normal(10, 3, 20_000), "colour": rng.choice(categories, 20_000)}, source="training"
    )
    shifted = compute_drift(profile, {"x": rng.normal(13, 3, 5000), "colour": rng.choice(categories, 5000)})
    assert shifted.drifted_columns == ["x"]
    assert shifted.columns[0].distance == pytest.approx(1.0, abs=0.05) and shifted.columns[0].psi >= 0.25
    assert shifted.share == 0.5 and shifted.dataset_drift  # at least half the columns: dataset drift
    replaced = np.where(rng.choice(categories, 5000) == "blue", "purple", "red")
    result = compute_drift(profile, {"x": rng.normal(10, 3, 5000), "colour": replaced})
    assert result.drifted_columns == ["colour"]
    assert result.columns[1].method == "jensenshannon" and result.columns[1].distance >= 0.1


def test_small_shifts_below_threshold_and_large_above() -> None:
    rng = np.random.default_rng(13)
    profile = column_reference(rng.normal(0, 1, 20_000))
    assert column_drift(profile, rng.normal(0.02, 1, 5000), column="x").distance < 0.1
    assert column_drift(profile, rng.normal(0.3, 1, 5000), column="x").drifted


def test_unseen_categories_fall_in_other() -> None:
    reference = column_reference(["a", "b", "c"] * 500)
    assert reference["frequencies"] == pytest.approx({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})
    assert reference["other"] == 0.0
    result = column_drift(reference, ["a", "b", "z", "y"] * 100, column="letter")
    # With no OTHER mass in the reference this equals Evidently's one-bin-per-value Jensen-Shannon.
    evidently = jensenshannon([1 / 3, 1 / 3, 1 / 3, 0, 0], [0.25, 0.25, 0, 0.25, 0.25])
    assert result.distance == pytest.approx(float(evidently), abs=EXACT)
    assert result.drifted


def test_top_categories_and_other() -> None:
    values = [f"v{i}" for i in range(80) for _ in range(80 - i)]
    reference = column_reference(values)
    assert len(reference["frequencies"]) == TOP_CATEGORIES
    assert "v0" in reference["frequencies"] and "v79" not in reference["frequencies"]
    assert sum(reference["frequencies"].values()) + reference["other"] == pytest.approx(1.0)
    same = column_drift(reference, values, column="v")
    assert same.distance == pytest.approx(0.0, abs=1e-7) and not same.drifted


# ---------------------------------------------------------------- awkward input


def test_nulls_count_in_null_rate_and_are_left_out() -> None:
    values = list(np.arange(1000.0))
    reference = column_reference(values + [None, np.nan])
    assert reference["rows"] == 1002 and reference["null_rate"] == pytest.approx(2 / 1002)
    assert reference["mean"] == pytest.approx(499.5)
    result = column_drift(reference, values + [None, np.nan, np.inf, -np.inf], column="x")
    assert result.rows == 1004 and result.null_rate == pytest.approx(4 / 1004)
    assert result.reference_null_rate == pytest.approx(2 / 1002)
    assert result.distance == pytest.approx(0.0, abs=LIGHT) and result.psi == pytest.approx(0.0, abs=1e-12)
    categorical = column_reference(["a", None, "b", float("nan"), pd.NA, "a"])
    assert categorical["null_rate"] == pytest.approx(3 / 6)
    assert categorical["frequencies"] == pytest.approx({"a": 2 / 3, "b": 1 / 3})


def test_all_null_and_empty_windows_are_not_measured() -> None:
    profile = reference_profile({"x": np.arange(2000.0), "c": ["a", "b"] * 1000}, source="training")
    for window in ({"x": [None] * 10, "c": [None] * 10}, {"x": [], "c": []}, {"x": np.array([]), "c": np.array([])}):
        result = compute_drift(profile, window)
        assert [c.distance for c in result.columns] == [0.0, 0.0]
        assert not any(c.drifted or c.measured for c in result.columns)
        assert result.share == 0.0 and not result.dataset_drift
    assert compute_drift(profile, {}).columns == ()


def test_all_null_reference_never_drifts() -> None:
    numeric = column_reference([None, np.nan], kind="numeric")
    assert numeric["quantiles"] == [] and numeric["null_rate"] == 1.0
    assert not column_drift(numeric, [1.0, 2.0], column="x").drifted
    categorical = column_reference([None, None], kind="categorical")
    assert categorical["frequencies"] == {} and not column_drift(categorical, ["a"], column="c").drifted
    assert column_reference([])["rows"] == 0


def test_huge_numbers_do_not_overflow() -> None:
    rng = np.random.default_rng(5)
    reference = rng.uniform(-1, 1, 3000) * 1.5e308
    profile = column_reference(reference)
    assert math.isfinite(profile["std"]) and math.isfinite(profile["mean"])
    json.dumps(profile, allow_nan=False)
    same = column_drift(profile, rng.uniform(-1, 1, 3000) * 1.5e308, column="x")
    assert math.isfinite(same.distance) and same.distance < 0.1
    moved = column_drift(profile, rng.uniform(1, 1.7, 3000) * 1e308, column="x")
    assert math.isfinite(moved.distance) and moved.drifted
    # An int past float range is no number a float column can hold: counted as null, not a crash.
    ints = column_reference([10**400, 1, 2, 3], kind="numeric")
    assert ints["null_rate"] == 0.25


def test_bools_and_mixed_objects() -> None:
    flags = column_reference([True, False, True, None])
    assert flags["kind"] == "categorical" and flags["frequencies"] == pytest.approx({"True": 2 / 3, "False": 1 / 3})
    assert column_drift(flags, np.array([True, True, False]), column="f").distance < 0.1
    mixed = column_reference(np.array([1, "1", "a", 2.0, True, None], dtype=object))
    assert mixed["kind"] == "categorical"
    assert mixed["frequencies"] == pytest.approx({"1": 2 / 5, "a": 1 / 5, "2": 1 / 5, "True": 1 / 5})
    assert column_reference(np.array([1, 2.5, None], dtype=object))["kind"] == "numeric"
    # A numeric column asked to measure text: the text is no number, so it counts as null.
    numbers = column_reference(np.arange(2000.0))
    odd = column_drift(numbers, ["12", "abc", None, 15.5], column="n")
    assert odd.rows == 4 and odd.null_rate == 0.5
    # Integral floats (an int column that went through pandas with a NaN) match the int categories.
    codes = column_reference([1, 2, 3] * 500, kind="categorical")
    assert column_drift(codes, [1.0, 2.0, 3.0, np.nan] * 100, column="code").distance == pytest.approx(0.0)


def test_pandas_series_and_dataframe_inputs() -> None:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"x": rng.normal(size=3000), "c": pd.Series(rng.choice(["a", "b"], 3000), dtype="category")})
    frame.loc[::10, "x"] = np.nan
    profile = reference_profile(frame, predictions=pd.Series(rng.integers(0, 2, 3000)), source="holdout")
    assert profile["columns"]["x"]["null_rate"] == pytest.approx(0.1)
    assert profile["columns"]["c"]["kind"] == "categorical"
    result = compute_drift(profile, frame, predictions=pd.Series(rng.integers(0, 2, 3000)))
    assert [c.column for c in result.columns] == ["x", "c"]
    assert result.prediction is not None and result.prediction.column == "prediction"
    assert not result.dataset_drift
    nullable = column_reference(pd.Series([1, None, 3], dtype="Int64"))
    assert nullable["kind"] == "numeric" and nullable["null_rate"] == pytest.approx(1 / 3)


def test_truly_unusable_input_is_a_clear_value_error() -> None:
    with pytest.raises(ValueError, match="scalar"):
        column_reference(5)
    with pytest.raises(ValueError, match="single string"):
        column_reference("abc")
    with pytest.raises(ValueError, match="one value per row"):
        column_reference(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="kind"):
        column_reference([1, 2], kind="text")
    with pytest.raises(ValueError, match="different|rows"):
        reference_profile({"a": [1, 2], "b": [1, 2, 3]}, source="training")
    with pytest.raises(ValueError, match="version-1"):
        compute_drift({"version": 99, "columns": {}}, {})
    with pytest.raises(ValueError, match="column_reference"):
        column_drift({"kind": "sparkles"}, [1], column="x")


# ---------------------------------------------------------------- profiles


def test_numeric_reference_shape() -> None:
    values = np.random.default_rng(1).normal(size=4000)
    reference = column_reference(values)
    assert set(reference) == {"kind", "rows", "null_rate", "mean", "std", "quantiles", "edges", "counts"}
    assert len(reference["quantiles"]) == QUANTILE_POINTS
    assert reference["quantiles"] == pytest.approx(list(np.quantile(values, np.linspace(0, 1, QUANTILE_POINTS))))
    assert len(reference["edges"]) == NUMERIC_BINS + 1 and sum(reference["counts"]) == 4000
    assert len(reference["counts"]) == NUMERIC_BINS
    assert reference["std"] == pytest.approx(np.std(values))  # population std, as Evidently's np.std
    # Repeated values collapse quantile edges: edges stay strictly increasing, every row is in a bin.
    ints = column_reference(np.r_[np.zeros(900), np.ones(100)])
    assert ints["edges"][0] == 0.0 and ints["edges"][-1] == 1.0 and np.all(np.diff(ints["edges"]) > 0)
    assert ints["counts"][0] == 900 and sum(ints["counts"]) == 1000


def test_profile_round_trips_through_json_with_a_stable_fingerprint() -> None:
    rng = np.random.default_rng(2)
    columns = {"x": rng.normal(size=1500), "c": rng.choice(["a", "b", "é"], 1500), "n": rng.integers(0, 9, 1500)}
    profile = reference_profile(columns, predictions=rng.random(1500), source="training", dataset="iris@3")
    assert set(profile) == {"version", "source", "dataset", "rows", "columns", "prediction", "fingerprint"}
    assert profile["version"] == 1 and profile["rows"] == 1500 and len(profile["fingerprint"]) == 64
    text = json.dumps(profile, allow_nan=False)
    again = json.loads(text)
    assert again == profile
    assert profile_fingerprint(again) == profile["fingerprint"]
    assert (
        reference_profile(columns, predictions=None, source="training", dataset="iris@3")["fingerprint"]
        != (profile["fingerprint"])
    )
    assert (
        reference_profile(columns, predictions=rng.random(1500), source="holdout")["fingerprint"]
        != (profile["fingerprint"])
    )
    changed = dict(columns, x=columns["x"] + 1e-9)
    assert (
        reference_profile(changed, source="training")["fingerprint"]
        != (reference_profile(columns, source="training")["fingerprint"])
    )
    assert (
        reference_profile(columns, source="training")["fingerprint"]
        == (reference_profile(dict(columns), source="training")["fingerprint"])
    )
    result = compute_drift(again, columns)
    assert not result.dataset_drift


def test_kinds_override_inference() -> None:
    profile = reference_profile({"code": [1, 2, 3] * 400}, source="training", kinds={"code": "categorical"})
    assert profile["columns"]["code"]["kind"] == "categorical"
    assert compute_drift(profile, {"code": [1, 2, 3]}).columns[0].method == "jensenshannon"


def test_results_serialize() -> None:
    profile = reference_profile({"x": np.arange(2000.0)}, predictions=["yes", "no"] * 1000, source="training")
    result = compute_drift(profile, {"x": np.arange(1000.0, 3000.0)}, predictions=["yes"] * 2000)
    assert isinstance(result, DriftResult) and isinstance(result.columns[0], ColumnDrift)
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["drifted_columns"] == ["x"] and data["dataset_drift"] is True
    assert data["prediction"]["method"] == "jensenshannon" and data["prediction"]["drifted"] is True
    assert data["columns"][0]["method"] == "wasserstein"
    assert set(data["columns"][0]) == {
        "column", "kind", "method", "distance", "psi", "threshold", "drifted", "rows", "null_rate",
        "reference_null_rate",
    }  # fmt: skip


# ---------------------------------------------------------------- image constraints


def test_drift_module_needs_numpy_only() -> None:
    """Loaded by path with pandas and scipy made unimportable, as in a numpy-only model image."""
    code = f"""
import importlib.util, sys
for name in ("pandas", "scipy", "shipyard"):
    sys.modules[name] = None
spec = importlib.util.spec_from_file_location("shipyard_monitoring_drift", {str(DRIFT_PY)!r})
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
profile = module.reference_profile({{"x": [1.0, 2.0, 3.0] * 500, "c": ["a", "b", None] * 500}}, source="t")
result = module.compute_drift(profile, {{"x": [1.0, 2.5, None] * 50, "c": ["a", "z"] * 50}})
assert not any(m in sys.modules and sys.modules[m] is not None for m in ("pandas", "scipy")), "imported"
print(result.share)
"""
    completed = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr


def test_compute_drift_on_a_large_window_is_fast() -> None:
    rng = np.random.default_rng(0)
    categories = np.array([f"c{i}" for i in range(30)], dtype=object)
    training = {f"n{i}": rng.normal(size=20_000) for i in range(10)}
    training |= {f"c{i}": categories[rng.integers(0, 30, 20_000)] for i in range(10)}
    window = {f"n{i}": rng.normal(size=100_000) for i in range(10)}
    window |= {f"c{i}": list(categories[rng.integers(0, 30, 100_000)]) for i in range(10)}
    profile = reference_profile(training, source="training")
    start = time.process_time()
    result = compute_drift(profile, window)
    elapsed = time.process_time() - start
    assert len(result.columns) == 20 and not result.dataset_drift
    # About 0.15-0.25 s measured; the bound leaves room for a loaded machine.
    assert elapsed < 1.0
