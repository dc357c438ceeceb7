"""Dataset fingerprints and compact profiles, kept on the run for later drift and contract checks."""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from .._core import lineage
from .._core.errors import TrackingError
from ._context import check_name, current

PROFILE_VERSION = 1
_TOP_CATEGORIES = 50
_HIST_BINS = 10
_QUANTILES = [0.01, 0.25, 0.5, 0.75, 0.99]
SAMPLE_ROWS = 1000
"""Rows of each logged dataset kept beside its profile (``log_dataset(sample_rows=)``)."""
SAMPLE_SEED = 0
_OVERLAP_ROWS = 200_000  # below this, starting a thread costs more than the overlap saves
_COUNTED_ROWS = 10_000  # below this, np.quantile's partition costs less than counting


@dataclass(frozen=True)
class DatasetInfo:
    """What was recorded about one dataset."""

    name: str
    sha256: str
    rows: int
    schema: dict[str, str]
    profile: dict[str, Any] = field(repr=False)
    sample: dict[str, Any] = field(default_factory=dict, repr=False)
    """The rows kept beside the profile: ``rows``, ``path`` and ``notes``, or ``rows: 0`` and ``reason``."""


def to_frame(data: Any) -> Any:
    """A pandas DataFrame view of ``data`` (DataFrame, Series, numpy array, dict of columns)."""
    import numpy as np
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, pd.Series):
        return data.to_frame(name=data.name if data.name is not None else "value")
    if isinstance(data, np.ndarray):
        if data.ndim == 1:
            return pd.DataFrame({"value": data})
        if data.ndim == 2:
            return pd.DataFrame(data, columns=[f"f{i}" for i in range(data.shape[1])])
        raise TrackingError(
            f"log_dataset got a {data.ndim}-dimensional array; only 1-D and 2-D data can be profiled.",
            hint="Reshape it to (rows, columns) first, e.g. x.reshape(len(x), -1).",
        )
    if isinstance(data, dict):
        return pd.DataFrame(data)
    raise TrackingError(
        f"log_dataset cannot read a {type(data).__name__}.",
        hint="Pass a pandas DataFrame or Series, a numpy array, or a dict of columns.",
    )


def fingerprint(frame: Any, scans: list[ColumnScan] | None = None) -> str:
    """SHA-256 of the content: column names, dtypes and every value (row order matters).

    ``scans`` is :func:`scan_columns` of ``frame`` when the caller has it already.

    Q: Why may an object column be hashed as a categorical?
    A: ``hash_pandas_object`` does exactly that itself (``categorize=True``):
       it factorizes an object column and hashes the resulting categorical.
       Handing it the factorization the scan already made gives the same
       digest without hashing every value a second time.

    Q: And an object column that cannot be factorized (lists, dicts, bytearrays)?
    A: ``hash_pandas_object`` fails on it, so it is hashed by the text of each value.
    """
    import numpy as np
    import pandas as pd

    digest = hashlib.sha256()
    digest.update(json.dumps([[str(c), str(t)] for c, t in frame.dtypes.items()]).encode())
    hashed = frame
    for position, scan in enumerate(scans if scans is not None else scan_columns(frame)):
        series = frame.iloc[:, position]
        if scan.codes is not None:
            categories = pd.CategoricalDtype(pd.Index(scan.uniques, copy=False), ordered=False)
            column = pd.Categorical.from_codes(scan.codes, dtype=categories)
        elif series.dtype == np.dtype(object):
            column = series.astype(str).astype(object).where(~scan.missing, None)
        else:
            continue
        if hashed is frame:
            hashed = frame.copy(deep=False)
        hashed.isetitem(position, column)
    digest.update(pd.util.hash_pandas_object(hashed, index=False).to_numpy().tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class ColumnScan:
    """One pass over a column, shared by its profile and its MLflow schema.

    Attributes:
        missing: ``isna()`` of each value (numpy booleans).
        codes: for an object column, ``pd.factorize`` codes of its values (-1: missing); else None.
        uniques: the distinct values ``codes`` number, in order of first appearance.
    """

    missing: Any
    codes: Any = None
    uniques: Any = None


def scan_columns(frame: Any) -> list[ColumnScan]:
    """A :class:`ColumnScan` of each column, in order.

    Q: Why factorize object columns here?
    A: Hashing their values is the costly step, and one factorization answers
       both which values are missing (its NA test is ``isna``'s) and how often
       each value occurs, which the profile would otherwise hash again.
    """
    import numpy as np
    import pandas as pd

    scans = []
    for _, series in frame.items():
        if series.dtype == np.dtype(object):
            try:
                codes, uniques = pd.factorize(series.to_numpy(), use_na_sentinel=True)
            except TypeError:  # unhashable values (lists, dicts)
                pass
            else:
                scans.append(ColumnScan(codes < 0, codes, uniques))
                continue
        scans.append(ColumnScan(series.isna().to_numpy(dtype=bool)))
    return scans


def profile(frame: Any, scans: list[ColumnScan] | None = None) -> dict[str, Any]:
    """Per-column statistics: type, nulls, range, quantiles and histogram, or top categories.

    ``scans`` is :func:`scan_columns` of ``frame`` when the caller has it already.

    Q: Why whole-column operations only?
    A: A million rows must profile in a fraction of a second: each statistic
       is one numpy or pandas call over the column, and the top categories
       count the values themselves and turn only the counted keys into text
       (the text of every value of a date column alone took a second).
    """
    columns: dict[str, Any] = {}
    rows = len(frame)
    for (name, series), scan in zip(frame.items(), scans if scans is not None else scan_columns(frame), strict=True):
        nulls = int(scan.missing.sum())
        col: dict[str, Any] = {
            "dtype": str(series.dtype),
            "nulls": nulls,
            "null_rate": nulls / rows if rows else 0.0,
        }
        if _is_numeric(series):
            col.update(_numeric_profile(series, scan.missing, nulls))
        else:
            col.update(_category_profile(series, scan))
        columns[str(name)] = col
    return {"version": PROFILE_VERSION, "rows": int(rows), "columns": columns}


def _is_numeric(series: Any) -> bool:
    import pandas as pd

    dtype = series.dtype
    # complex numbers have no order: they are profiled by their text, like other categories
    return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype) and dtype.kind != "c"


def _numeric_profile(series: Any, missing: Any, nulls: int) -> dict[str, Any]:
    import numpy as np

    if nulls == len(series):
        return {"kind": "numeric"}
    arr = series.to_numpy(dtype="float64", na_value=np.nan)
    if nulls:
        arr = arr[~missing]
    finite = np.isfinite(arr)
    lo, hi = float(arr.min()), float(arr.max())
    if series.dtype.kind in "iu" and len(arr) >= _COUNTED_ROWS and hi - lo <= 4 * len(arr):
        # integers in a narrow range: count each value once (O(n)) instead of partitioning the column
        tally = np.bincount((arr - lo).astype(np.intp))
        seen = np.flatnonzero(tally)
        keys, tally = lo + seen.astype("float64"), tally[seen]
        counts, edges = np.histogram(keys, bins=_HIST_BINS, range=(lo, hi), weights=tally)
        q = _counted_quantiles(keys, tally, _QUANTILES)
    else:
        if finite.all():  # the range np.histogram would compute itself
            counts, edges = np.histogram(arr, bins=_HIST_BINS, range=(lo, hi))
        else:
            counts, edges = np.histogram(arr[finite], bins=_HIST_BINS)
        q = np.quantile(arr, _QUANTILES)
    return {
        "kind": "numeric",
        "min": lo,
        "max": hi,
        "mean": float(arr.mean()),
        "std": float(arr.std()),
        "quantiles": dict(zip(["p01", "p25", "p50", "p75", "p99"], map(float, q), strict=True)),
        "histogram": {"edges": edges.tolist(), "counts": counts.tolist()},
    }


def _counted_quantiles(keys: Any, tally: Any, quantiles: list[float]) -> Any:
    """``np.quantile`` (method "linear") of the values ``keys`` (sorted) seen ``tally`` times each, to the bit.

    numpy's own steps: virtual index (n - 1) * q, its floor and the next
    order statistic (the last one at or past the end), and its two-sided lerp.
    """
    import numpy as np

    n = int(tally.sum())
    virtual = (n - 1) * np.asarray(quantiles, dtype="float64")
    previous = np.floor(virtual)
    following = previous + 1
    above = virtual >= n - 1
    previous[above] = following[above] = -1
    previous_i, following_i = previous.astype(np.intp), following.astype(np.intp)
    gamma = np.asarray(virtual - previous_i, dtype="float64")
    ends = np.cumsum(tally)

    def order_statistic(index: Any) -> Any:
        return keys[np.searchsorted(ends, np.where(index < 0, n - 1, index), side="right")]

    a, b = order_statistic(previous_i), order_statistic(following_i)
    diff = b - a
    out = a + diff * gamma
    np.subtract(b, diff * (1 - gamma), out=out, where=gamma >= 0.5)
    return out


def _category_profile(series: Any, scan: ColumnScan) -> dict[str, Any]:
    import numpy as np
    import pandas as pd

    dtype, missing = series.dtype, scan.missing
    if isinstance(dtype, np.dtype) and dtype.kind in "bMm":
        # booleans, dates and durations: count the machine values, no boxed values
        values = series.to_numpy()[~missing]
        if dtype.kind == "b":
            true = int(np.count_nonzero(values))
            keys, counts = np.array([False, True]), np.array([len(values) - true, true])
            keys, counts = keys[counts > 0], counts[counts > 0]
        else:
            keys, counts = np.unique(values.view("i8"), return_counts=True)
            keys = keys.view(dtype)
        if len(counts) > _TOP_CATEGORIES:
            head = np.argpartition(-counts, _TOP_CATEGORIES - 1)[:_TOP_CATEGORIES]
            order = head[np.lexsort((head, -counts[head]))]
        else:
            order = np.argsort(-counts, kind="stable")
        return _top(pd.Index(keys[order]), counts[order], unique=len(keys))
    if scan.codes is not None:
        tally = np.bincount(scan.codes + 1, minlength=len(scan.uniques) + 1)[1:]
        order = np.argsort(-tally, kind="stable")
        counted = pd.Series(tally[order], index=pd.Index(scan.uniques[order], dtype=object))
    else:
        try:
            counted = series.value_counts(dropna=True)
        except TypeError:  # unhashable values (lists, dicts): count their text
            counted = series[~missing].astype(str).value_counts()
    counted = counted[counted.to_numpy() > 0]  # a categorical also lists the categories it does not use
    unique = len(counted)
    values_dtype = getattr(dtype, "categories", series).dtype
    if values_dtype == np.dtype(object) and pd.api.types.infer_dtype(counted.index, skipna=False) != "string":
        # distinct values may share a text (1 and "1"): count by text, which is what data contracts compare
        by_text = counted.groupby(counted.index.astype(str).to_numpy()).sum()
        counted = by_text.sort_values(ascending=False, kind="stable")
    top = counted.head(_TOP_CATEGORIES)
    return _top(top.index, top.to_numpy(), unique=unique)


def _top(keys: Any, counts: Any, *, unique: int) -> dict[str, Any]:
    # the text of the keys alone: when a contract derives categories, they are every distinct value
    return {
        "kind": "categorical",
        "unique": int(unique),
        "top": {str(k): int(v) for k, v in zip(keys.astype(str), counts)},
    }


def log_dataset(
    data: Any, name: str = "dataset", *, context: str = "training", sample_rows: int = SAMPLE_ROWS
) -> DatasetInfo:
    """Record a dataset on the active run: fingerprint, schema, row count, profile and a sample of its rows.

    The profile is stored as ``datasets/<name>.profile.json``; the fingerprint
    (over every row) as tag ``shipyard.data.<name>.sha256``. MLflow's own
    dataset tracking gets the dataset too, so it shows in the MLflow UI.

    Up to ``sample_rows`` rows are kept as ``datasets/<name>.sample.parquet``:
    a stratified sample that holds every value of each text, categorical and
    boolean column and each numeric column's extremes (see
    :func:`stratified_sample`). ``promote`` checks that the served image
    predicts like the model on them when the flow left no holdout. Pass
    ``sample_rows=0`` for data whose rows must not be stored with the run.

    Example:
        >>> info = shipyard.log_dataset(train_df, name="train")   # doctest: +SKIP
        >>> info.rows, info.sha256[:12]                          # doctest: +SKIP
    """
    import mlflow.data
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    from ._client import client_for
    from ._mlflow import dataset_entity, dataset_schema

    run = current()
    check_name(name, "dataset")
    frame = to_frame(data)
    scans = scan_columns(frame)
    # The fingerprint (pandas' row hashing) and the profile (numpy's partitions and histograms) both spend
    # most of their time in code that releases the GIL, so on a large frame they overlap on two cores.
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="shipyard-fingerprint") as pool:
        digest = pool.submit(fingerprint, frame, scans) if len(frame) >= _OVERLAP_ROWS else None
        stats = profile(frame, scans)
        sha256 = digest.result() if digest is not None else fingerprint(frame, scans)
    info = DatasetInfo(
        name=name,
        sha256=sha256,
        rows=int(len(frame)),
        schema={str(c): str(t) for c, t in frame.dtypes.items()},
        profile=stats,
    )
    client = client_for(run.workspace)
    info = replace(info, sample=_log_sample(client, run.run_id, name, frame, scans, sample_rows))
    client.log_dict(run.run_id, asdict(info), lineage.dataset_artifact(name, "profile"))
    mlflow_dataset = mlflow.data.from_pandas(frame, name=name, digest=info.sha256[:16])
    entity = dataset_entity(mlflow_dataset, schema=dataset_schema(frame, [scan.missing for scan in scans]))
    client.log_inputs(
        run.run_id,
        datasets=[DatasetInput(entity, tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)])],
    )
    run.buffer.put_tags(
        {
            lineage.data_tag(name, "sha256"): info.sha256,
            lineage.data_tag(name, "rows"): str(info.rows),
            lineage.data_tag(name, "columns"): str(len(info.schema)),
        }
    )
    return info


# --- rows kept with the profile -------------------------------------------------------------------



def _first_positions(codes: Any) -> Any:
    """Position of the first row of each distinct code, for codes numbered in order of first appearance
    (``pd.factorize``'s); -1 (missing) is left out. One pass, no sort."""
    import numpy as np

    if len(codes) == 0:
        return np.empty(0, dtype=np.int64)
    reached = np.maximum.accumulate(codes)
    return np.flatnonzero(np.diff(reached, prepend=-1) > 0)


_FEW_CODES = 64  # up to this many categories, one comparison pass per category beats a sort


def _distinct_firsts(series: Any, scan: ColumnScan) -> Any:
    """First row of each distinct value of a text, categorical or boolean column (None: not comparable)."""
    import numpy as np
    import pandas as pd

    if scan.codes is not None:
        return _first_positions(scan.codes)
    if pd.api.types.is_bool_dtype(series) and not scan.missing.any():
        values = series.to_numpy(dtype=bool)
        return np.unique([int(np.argmax(values)), int(np.argmin(values))])
    if isinstance(series.dtype, pd.CategoricalDtype) and len(series.cat.categories) <= _FEW_CODES:
        codes = series.cat.codes.to_numpy()
        return np.sort([int(hit.argmax()) for c in range(len(series.cat.categories)) if (hit := codes == c).any()])
    try:
        codes, _ = series.factorize(use_na_sentinel=True)  # native for categorical, Arrow and boolean columns
    except TypeError:  # unhashable cells (lists, dicts): compare them by their text
        try:
            codes, _ = series.map(repr, na_action="ignore").factorize(use_na_sentinel=True)
        except Exception:
            return None
    return _first_positions(codes)


def _extreme_positions(series: Any, scan: ColumnScan) -> list[int]:
    """Rows of a numeric or time column's minimum, maximum and first missing value."""
    import numpy as np
    import pandas as pd

    present = ~scan.missing
    found: list[int] = []
    if present.any():
        if pd.api.types.is_numeric_dtype(series):
            found += _finite_extremes(series)
        elif series.dtype.kind in "mM":
            ordinal = series.to_numpy().view("i8")
            idx = np.flatnonzero(present)
            found += [int(idx[ordinal[idx].argmin()]), int(idx[ordinal[idx].argmax()])]
    if scan.missing.any():
        found.append(int(np.argmax(scan.missing)))
    return found


def _finite_extremes(series: Any) -> list[int]:
    """Rows of the smallest and the largest finite value (no copy of the column when it has no infinities)."""
    import numpy as np

    values = series.to_numpy()
    if values.dtype.kind in "iub":
        return [int(values.argmin()), int(values.argmax())]
    if values.dtype.kind != "f":
        values = series.to_numpy(dtype=float, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        lo, hi = np.nanmin(values), np.nanmax(values)
    if np.isfinite(lo) and np.isfinite(hi):
        return [int(np.argmax(values == lo)), int(np.argmax(values == hi))]
    finite = np.isfinite(values)
    if not finite.any():
        return []
    idx = np.flatnonzero(finite)
    return [int(idx[values[idx].argmin()]), int(idx[values[idx].argmax()])]


def is_categorical(series: Any) -> bool:
    """Text, categorical and boolean columns, whose every value parity and sampling should cover."""
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(series) or pd.api.types.is_timedelta64_dtype(series):
        return False
    return not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)


def stratified_sample(
    frame: Any, limit: int = SAMPLE_ROWS, seed: int = SAMPLE_SEED, scans: list[ColumnScan] | None = None
) -> tuple[Any, list[str]]:
    """At most ``limit`` rows of ``frame``, the same ones on every call, and notes on what could not be covered.

    First come the rows that bring each value of each text, categorical or
    boolean column (the columns with fewest values first, so a high-cardinality
    column such as an id cannot crowd out the others) and each numeric or time
    column's minimum, maximum and first missing value; the rest are drawn at
    random (seeded) from the remaining rows. Linear in the rows: it reuses the
    factorization of :func:`scan_columns`.
    """
    import numpy as np
    import pandas as pd

    data = pd.DataFrame(frame).reset_index(drop=True)
    if len(data) <= limit:
        return data, []
    scans = scans if scans is not None else scan_columns(data)
    notes: list[str] = []
    chosen: dict[int, None] = {}
    firsts: dict[Any, Any] = {}
    for (name, series), scan in zip(data.items(), scans):
        if is_categorical(series):
            positions = _distinct_firsts(series, scan)
            if positions is None:
                notes.append(f"column {name!r} holds values that cannot be compared; its rows are sampled at random")
            else:
                firsts[name] = positions
        else:
            chosen.update(dict.fromkeys(_extreme_positions(series, scan)))
    for name in sorted(firsts, key=lambda c: len(firsts[c])):
        new = [int(i) for i in firsts[name] if int(i) not in chosen]
        if len(chosen) + len(new) > limit:
            notes.append(
                f"column {name!r} has {len(firsts[name])} distinct values, more than fit in {limit} rows "
                "beside the other columns' values; a random part of them is in the sample"
            )
            continue
        chosen.update(dict.fromkeys(new))
    must = np.fromiter(chosen, dtype=np.int64, count=len(chosen))[:limit]
    taken = np.zeros(len(data), dtype=bool)
    taken[must] = True
    fill = np.random.default_rng(seed).choice(np.flatnonzero(~taken), size=limit - len(must), replace=False)
    positions = np.sort(np.concatenate([must, fill]))
    return data.iloc[positions].reset_index(drop=True), notes


def _log_sample(client: Any, run_id: str, name: str, frame: Any, scans: list[ColumnScan], limit: int) -> dict[str, Any]:
    """Store the stratified sample of ``frame`` on the run; what was stored, or why nothing was."""
    import tempfile
    import warnings
    from pathlib import Path

    if limit <= 0:
        return {"rows": 0, "reason": "not kept (sample_rows=0)"}
    rows, notes = stratified_sample(frame, limit, scans=scans)
    path = lineage.dataset_artifact(name, "sample")
    with tempfile.TemporaryDirectory(prefix="shipyard-sample-") as tmp:
        local = Path(tmp) / Path(path).name
        try:
            rows.to_parquet(local, index=False)
        except Exception as exc:  # pyarrow refuses some object columns (mixed types, nested objects)
            reason = f"not kept: Parquet cannot store these rows ({type(exc).__name__}: {exc})"
            warnings.warn(f"Dataset {name!r}: rows {reason}; parity falls back to its profile.", stacklevel=3)
            return {"rows": 0, "reason": reason}
        client.log_artifact(run_id, str(local), lineage.DATASET_ARTIFACT_DIR)
    return {"rows": int(len(rows)), "path": path, "notes": notes}
