"""Dataset schema and profile: the whole-column schema equals MLflow's own, value-by-value one.

``dataset_schema`` replaces ``PandasDataset.schema`` (MLflow's per-value
``_infer_schema``) on the logging path, so any difference here is a difference
users would see in the MLflow UI: each case builds a frame, asks MLflow, and
compares. No store, no run: MLflow's inference is pure.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import warnings

import numpy as np
import pandas as pd
import pytest

from shipyard.tracking._datasets import fingerprint, profile, scan_columns
from shipyard.tracking._mlflow import dataset_entity, dataset_schema


class Colour(enum.StrEnum):
    RED = "red"
    BLUE = "blue"


def _mlflow_schema(frame: pd.DataFrame):
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.pandas_dataset import PandasDataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLflow's hint about integer columns in model signatures
        return PandasDataset(frame, source=CodeDatasetSource({}), digest="0" * 16).schema


def _objects(*values) -> pd.Series:
    return pd.Series(list(values), dtype=object)


N = 40  # rows per column: enough for every mix below, and a missing value in each position class


def _spread(values: list, n: int = N) -> list:
    return [values[i % len(values)] for i in range(n)]


def _zero_by_zero(dtype: str) -> pd.Series:
    """A nullable float column holding NaN (0 / 0) that is not NA."""
    zeros = pd.Series(_spread([0.0, 1.0]), dtype=dtype)
    return zeros / zeros


COLUMNS = {
    # numpy dtypes
    "float64 with NaN": pd.Series(_spread([1.5, np.nan, -2.0])),
    "float64 no NaN": pd.Series(_spread([1.5, 0.0])),
    "float32 with NaN": pd.Series(_spread([1.5, np.nan]), dtype="float32"),
    "float16 with NaN": pd.Series(_spread([1.5, np.nan]), dtype="float16"),
    "float with inf": pd.Series(_spread([np.inf, -np.inf, 1.0])),
    **{f"{t}": pd.Series(_spread([0, 1, 7]), dtype=t) for t in ("int8", "int16", "int32", "int64")},
    **{f"{t}": pd.Series(_spread([0, 1, 7]), dtype=t) for t in ("uint8", "uint16", "uint32", "uint64")},
    "bool": pd.Series(_spread([True, False])),
    "datetime64[ns] with NaT": pd.Series(pd.to_datetime(_spread(["2024-01-01 00:00", None, "2024-03-01 10:00"]))),
    "datetime64[us]": pd.Series(pd.to_datetime(_spread(["2024-01-01", "2025-01-01"]))).astype("datetime64[us]"),
    "datetime tz": pd.Series(pd.to_datetime(_spread(["2024-01-01", None])).tz_localize("UTC")),
    "timedelta": pd.Series(pd.to_timedelta(_spread(["1s", "2h"]))),
    "complex": pd.Series(_spread([1 + 2j, 0j])),
    # pandas extension dtypes
    "Int64 with NA": pd.Series(_spread([1, None, 3]), dtype="Int64"),
    "Int32": pd.Series(_spread([1, 3]), dtype="Int32"),
    "UInt8 with NA": pd.Series(_spread([1, None]), dtype="UInt8"),
    "boolean with NA": pd.Series(_spread([True, None, False]), dtype="boolean"),
    "Float64 with NA": pd.Series(_spread([1.5, None]), dtype="Float64"),
    "Float64 with NaN, no NA": _zero_by_zero("Float64"),
    "Float32 with NaN, no NA": _zero_by_zero("Float32"),
    "string": pd.Series(_spread(["a", None, "b"]), dtype="string"),
    "string no NA": pd.Series(_spread(["a", "b"]), dtype="string"),
    "string all NA": pd.Series([None] * N, dtype="string"),
    "string[python]": pd.Series(_spread(["a", None]), dtype="string[python]"),
    "str (NaN)": pd.Series(_spread(["a", None]), dtype=pd.StringDtype(na_value=np.nan)),
    "categorical str with NaN": pd.Series(pd.Categorical(_spread(["x", None, "y"]))),
    "categorical unused category": pd.Series(pd.Categorical(_spread(["x"]), categories=["x", "y", "z"])),
    "categorical int": pd.Series(pd.Categorical(_spread([1, 2, 3]))),
    "categorical int with NaN": pd.Series(pd.Categorical(_spread([1, None, 3]))),
    "categorical float": pd.Series(pd.Categorical(_spread([1.5, None]))),
    "categorical bool": pd.Series(pd.Categorical(_spread([True, False, None]))),
    "categorical datetime": pd.Series(pd.Categorical(pd.to_datetime(_spread(["2024-01-01", None])))),
    "categorical ordered": pd.Series(pd.Categorical(_spread(["lo", "hi"]), categories=["lo", "hi"], ordered=True)),
    "categorical mixed categories": pd.Series(pd.Categorical(_spread([1, "a"]))),
    "categorical all NaN": pd.Series(pd.Categorical([None] * N, categories=["a"])),
    "interval": pd.Series(pd.interval_range(0, N)),
    "period": pd.Series(pd.period_range("2024-01", periods=N, freq="M")),
    "sparse float": pd.Series(pd.arrays.SparseArray(_spread([0.0, np.nan, 1.0]))),
    # object columns: what MLflow types value by value
    "objects: str and None": _objects(*_spread(["a", None, "b"])),
    "objects: None first": _objects(*_spread([None, "a"])),
    "objects: str and NaN": _objects(*_spread(["a", np.nan])),
    "objects: str and NA": _objects(*_spread(["a", pd.NA])),
    "objects: str and NaT": _objects(*_spread(["a", pd.NaT])),
    "objects: NA, str, None and NaN": _objects(*_spread([pd.NA, "a", None, np.nan])),
    "objects: str enum and NA": _objects(*_spread([pd.NA, Colour.BLUE, "x"])),
    "objects: str, NaN and None": _objects(*_spread([np.nan, "a", None])),
    "objects: str only": _objects(*_spread(["a", "b"])),
    "objects: numpy str": _objects(*_spread([np.str_("a"), None])),
    "objects: str enum": _objects(*_spread([Colour.RED, "blue"])),
    "objects: str enum and None": _objects(*_spread([Colour.RED, None])),
    "objects: str and float32 NaN": _objects(*_spread(["a", np.float32("nan")])),
    "objects: str and numpy float64 NaN": _objects(*_spread(["a", np.float64("nan")])),
    "objects: str and datetime64 NaT": _objects(*_spread(["a", np.datetime64("NaT")])),
    "objects: str and Decimal NaN": _objects(*_spread(["a", decimal.Decimal("NaN")])),
    "objects: all None": _objects(*[None] * N),
    "objects: all NaN": _objects(*[np.nan] * N),
    "objects: None and NaN": _objects(*_spread([None, np.nan])),
    "objects: int and str": _objects(*_spread([1, "a"])),
    "objects: str and int": _objects(*_spread(["a", 1])),
    "objects: int": _objects(*_spread([1, 2])),
    "objects: int and None": _objects(*_spread([1, None])),
    "objects: int beyond int64": _objects(*_spread([2**63, 1])),
    "objects: int beyond uint64": _objects(*_spread([2**70, 1])),
    "objects: negative beyond int64": _objects(*_spread([-(2**70), 1, None])),
    "objects: numpy int32": _objects(*_spread([np.int32(1), None, "x"])),
    "objects: numpy int32 only": _objects(*_spread([np.int32(1), np.int32(2)])),
    "objects: numpy float32 only": _objects(*_spread([np.float32(1), None])),
    "objects: int and float": _objects(*_spread([1, 2.5])),
    "objects: bool and None": _objects(*_spread([True, None, False])),
    "objects: bool and int": _objects(*_spread([True, 1])),
    "objects: float and str": _objects(*_spread([1.5, "a"])),
    "objects: Timestamp and None": _objects(*_spread([pd.Timestamp("2024-01-01"), None])),
    "objects: Timestamp and str": _objects(*_spread([pd.Timestamp("2024-01-01"), "a"])),
    "objects: date": _objects(*_spread([dt.date(2024, 1, 1), None])),
    "objects: datetime": _objects(*_spread([dt.datetime(2024, 1, 1), None, dt.datetime(2024, 2, 1)])),
    "objects: datetime and date": _objects(*_spread([dt.datetime(2024, 1, 1), dt.date(2024, 1, 1)])),
    "objects: bytes": _objects(*_spread([b"a", None])),
    "objects: bytes and bytearray": _objects(*_spread([b"a", bytearray(b"b")])),
    "objects: Decimal": _objects(*_spread([decimal.Decimal("1.5"), None])),
    "objects: tuples": _objects(*_spread([(1, 2), None])),
    "objects: lists": _objects(*_spread([[1, 2], [3], None])),
    "objects: lists of str": _objects(*_spread([["a"], []])),
    "objects: lists mixed": _objects(*_spread([[1], ["a"]])),
    "objects: dicts": _objects(*_spread([{"a": 1}, {"b": "x"}, None])),
    "objects: arrays": _objects(*_spread([np.array([1.0, 2.0]), np.array([3.0])])),
    "objects: dict and str": _objects(*_spread([{"a": 1}, "x"])),
    "objects: a custom class": _objects(*_spread([object(), None])),
}


@pytest.mark.parametrize("case", sorted(COLUMNS))
def test_schema_of_each_kind_of_column_is_mlflows(case: str) -> None:
    series = COLUMNS[case]
    for frame in (series.to_frame("col"), series.iloc[::-1].reset_index(drop=True).to_frame("col")):
        assert dataset_schema(frame) == _mlflow_schema(frame), case


def test_schema_of_a_frame_of_every_dtype_is_mlflows() -> None:
    typable = {
        name: series
        for name, series in COLUMNS.items()
        if _mlflow_schema(series.to_frame("c")) is not None
    }
    assert len(typable) > 60
    frame = pd.DataFrame(typable)
    expected = _mlflow_schema(frame)
    assert expected is not None and dataset_schema(frame) == expected
    # one untypable column and MLflow records no schema for the whole dataset
    with_timedelta = frame.assign(delay=COLUMNS["timedelta"])
    assert _mlflow_schema(with_timedelta) is None and dataset_schema(with_timedelta) is None


@pytest.mark.parametrize(
    "frame",
    [
        pd.DataFrame(),
        pd.DataFrame({"a": pd.Series([], dtype=object), "b": pd.Series([], dtype=float)}),
        pd.DataFrame({"a": pd.Series([], dtype="category"), "s": pd.Series([], dtype="string")}),
        pd.DataFrame([[1, "a"], [2, "b"]], columns=["x", "x"]),
        pd.DataFrame({0: [1.0, np.nan], 1: ["a", None]}),
        pd.DataFrame({("a", "b"): [1, 2]}),
    ],
    ids=["no columns", "no rows", "no rows, extension dtypes", "duplicate names", "integer names", "tuple name"],
)
def test_schema_of_degenerate_frames_is_mlflows(frame: pd.DataFrame) -> None:
    assert dataset_schema(frame) == _mlflow_schema(frame)


@pytest.mark.parametrize("seed", range(6))
def test_schema_of_random_missing_patterns_is_mlflows(seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows = 300
    holes = rng.random(rows) < rng.choice([0.0, 0.01, 0.5, 1.0])
    words = np.array(["a", "b", "c"], dtype=object)[rng.integers(0, 3, rows)]
    frame = pd.DataFrame(
        {
            "f": np.where(holes, np.nan, rng.normal(size=rows)),
            "i": pd.Series(rng.integers(0, 9, rows), dtype="Int64").where(~holes, pd.NA)
            if holes.any()
            else rng.integers(0, 9, rows),
            "s": pd.Series(np.where(holes, None, words), dtype=object),
            "t": pd.Series(np.where(holes, None, words), dtype="string"),
            "c": pd.Series(pd.Categorical(np.where(holes, None, words))),
            "d": pd.Series(pd.to_datetime(rng.integers(0, 10**9, rows), unit="s")).where(~holes),
            "m": pd.Series(np.where(holes, None, rng.integers(0, 3, rows)), dtype=object),
        }
    )
    assert dataset_schema(frame) == _mlflow_schema(frame)


def test_precomputed_missing_masks_give_the_same_schema() -> None:
    frame = pd.DataFrame({"s": _objects("a", None), "f": [1.0, np.nan], "n": pd.array([1, None], dtype="Int64")})
    missing = [scan.missing for scan in scan_columns(frame)]
    assert dataset_schema(frame, missing) == dataset_schema(frame) == _mlflow_schema(frame)


def _plain_fingerprint(frame: pd.DataFrame) -> str:
    import hashlib
    import json

    digest = hashlib.sha256()
    digest.update(json.dumps([[str(c), str(t)] for c, t in frame.dtypes.items()]).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def test_fingerprint_from_a_scan_is_the_plain_fingerprint() -> None:
    hashable = {}
    for case, series in COLUMNS.items():
        frame = pd.DataFrame({"col": series, "x": np.arange(len(series))})
        try:
            expected = _plain_fingerprint(frame)
        except TypeError:  # unhashable values: pandas cannot hash them, shipyard hashes their text
            assert fingerprint(frame) == fingerprint(frame.copy()) != fingerprint(frame.iloc[::-1])
            continue
        hashable[case] = series
        assert fingerprint(frame, scan_columns(frame)) == fingerprint(frame) == expected, case
    assert len(hashable) > 80
    frame = pd.DataFrame(hashable)
    assert fingerprint(frame, scan_columns(frame)) == _plain_fingerprint(frame)
    twins = pd.DataFrame([["a", "b"], [None, "a"]], columns=["s", "s"])
    assert fingerprint(twins, scan_columns(twins)) == _plain_fingerprint(twins)
    assert fingerprint(twins.iloc[::-1], scan_columns(twins.iloc[::-1])) != fingerprint(twins)


@pytest.mark.parametrize("case", sorted(COLUMNS))
def test_a_scan_finds_the_values_isna_finds(case: str) -> None:
    series = COLUMNS[case]
    (scan,) = scan_columns(series.to_frame("col"))
    assert scan.missing.tolist() == series.isna().tolist()
    if scan.codes is not None:
        assert [None if c < 0 else scan.uniques[c] for c in scan.codes] == [
            None if m else v for v, m in zip(series, scan.missing, strict=True)
        ]


def test_entity_with_the_computed_schema_is_the_entity_mlflow_builds() -> None:
    import inspect
    from functools import cached_property

    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.pandas_dataset import PandasDataset

    # the adapter sets the cached property's slot; a plain property would ignore it
    assert isinstance(inspect.getattr_static(PandasDataset, "schema"), cached_property)
    frame = pd.DataFrame({"x": [1.0, np.nan], "label": _objects("a", None), "c": pd.Categorical(["u", "v"])})

    def dataset():
        return PandasDataset(frame, source=CodeDatasetSource({"k": "v"}), name="train", digest="0123456789abcdef")

    ours = dataset_entity(dataset(), schema=dataset_schema(frame))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = dataset()._to_mlflow_entity()
    fields = ("name", "digest", "source_type", "source", "schema", "profile")
    assert [getattr(ours, f) for f in fields] == [getattr(theirs, f) for f in fields]
    assert "mlflow_colspec" in ours.schema

    untypable = dataset_entity(dataset(), schema=None)
    assert untypable.schema is None and untypable.profile == theirs.profile


# -- profile ---------------------------------------------------------------------------


def test_profile_numeric_statistics_are_exact() -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(size=1000)
    values[::7] = np.nan
    counts = pd.Series(np.arange(1000) % 13, dtype="Int64").where(np.arange(1000) % 5 > 0)
    frame = pd.DataFrame({"x": values, "n": counts})
    cols = profile(frame)["columns"]
    present = values[~np.isnan(values)]
    x = cols["x"]
    assert x["nulls"] == int(np.isnan(values).sum()) and x["kind"] == "numeric"
    assert (x["min"], x["max"], x["mean"]) == (present.min(), present.max(), present.mean())
    assert list(x["quantiles"].values()) == list(np.quantile(present, [0.01, 0.25, 0.5, 0.75, 0.99]))
    counts, edges = np.histogram(present, bins=10)
    assert x["histogram"] == {"edges": edges.tolist(), "counts": counts.tolist()}
    assert cols["n"]["nulls"] == 200 and cols["n"]["max"] == 12.0


def test_profile_of_infinities_all_missing_and_complex_columns() -> None:
    frame = pd.DataFrame(
        {
            "inf": [1.0, np.inf, -np.inf, 2.0],
            "empty": [np.nan] * 4,
            "z": [1 + 1j, 1 + 1j, 0j, np.nan],
        }
    )
    cols = profile(frame)["columns"]
    assert cols["inf"]["min"] == -np.inf and sum(cols["inf"]["histogram"]["counts"]) == 2
    assert cols["empty"] == {"dtype": "float64", "nulls": 4, "null_rate": 1.0, "kind": "numeric"}
    assert cols["z"]["kind"] == "categorical" and cols["z"]["top"] == {"(1+1j)": 2, "0j": 1}


def test_profile_categories_count_values_and_key_them_by_text() -> None:
    days = pd.to_datetime(["2024-01-01", "2024-01-02", None, "2024-01-01"])
    frame = pd.DataFrame(
        {
            "colour": _objects("red", None, "red", "blue"),
            "cat": pd.Categorical(["x", "x", None, "y"], categories=["x", "y", "unused"]),
            "flag": [True, False, True, True],
            "day": days,
            "mixed": _objects(1, "1", 2.5, None),
            "lists": _objects([1], [1], [2], None),
            "nullable": pd.array([True, None, True, False], dtype="boolean"),
        }
    )
    cols = profile(frame)["columns"]
    assert cols["colour"] | {} == {"dtype": "object", "nulls": 1, "null_rate": 0.25, "kind": "categorical",
                                   "unique": 2, "top": {"red": 2, "blue": 1}}
    assert cols["cat"]["top"] == {"x": 2, "y": 1} and cols["cat"]["unique"] == 2  # the unused category is not seen
    assert cols["flag"]["top"] == {"True": 3, "False": 1} and cols["flag"]["unique"] == 2
    assert cols["day"]["top"] == dict(zip(days.dropna().astype(str).value_counts().index, [2, 1]))
    assert cols["mixed"]["top"] == {"1": 2, "2.5": 1} and cols["mixed"]["unique"] == 3
    assert cols["lists"]["top"] == {"[1]": 2, "[2]": 1}
    assert cols["nullable"]["top"] == {"True": 2, "False": 1} and cols["nullable"]["nulls"] == 1


def test_profile_top_categories_are_the_most_frequent_fifty() -> None:
    values = np.repeat(np.arange(80), np.arange(80) + 1).astype(str)
    stamps = pd.Series(pd.to_datetime(np.repeat(np.arange(80), np.arange(80) + 1), unit="D"))
    cols = profile(pd.DataFrame({"v": values, "d": stamps}))["columns"]
    for col in (cols["v"], cols["d"]):
        assert col["unique"] == 80 and len(col["top"]) == 50
        assert sorted(col["top"].values(), reverse=True) == list(range(80, 30, -1))


@pytest.mark.parametrize("seed", range(8))
def test_profile_of_integer_columns_counted_equals_numpys_quantiles_and_histogram(seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows = int(rng.choice([10_000, 10_001, 25_000, 77_777]))
    span = int(rng.choice([1, 2, 13, 1000, 3 * rows]))
    values = rng.integers(-span // 2, span // 2 + 1, rows) + int(rng.choice([0, 2**40]))
    series = pd.Series(values, dtype=str(rng.choice(["int64", "Int64"])))
    if seed % 2:
        series = series.where(rng.random(rows) > 0.1)
    col = profile(series.to_frame("n"))["columns"]["n"]
    present = series.dropna().to_numpy(dtype="float64")
    assert list(col["quantiles"].values()) == np.quantile(present, [0.01, 0.25, 0.5, 0.75, 0.99]).tolist()
    counts, edges = np.histogram(present, bins=10)
    assert col["histogram"] == {"edges": edges.tolist(), "counts": counts.tolist()}
    assert (col["min"], col["max"], col["mean"]) == (present.min(), present.max(), present.mean())
