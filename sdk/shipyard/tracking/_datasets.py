"""Dataset fingerprints and compact profiles, kept on the run for later drift and contract checks."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from .._core import lineage
from .._core.errors import TrackingError
from ._context import check_name, current

PROFILE_VERSION = 1
_TOP_CATEGORIES = 50
_HIST_BINS = 10


@dataclass(frozen=True)
class DatasetInfo:
    """What was recorded about one dataset."""

    name: str
    sha256: str
    rows: int
    schema: dict[str, str]
    profile: dict[str, Any] = field(repr=False)


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


def fingerprint(frame: Any) -> str:
    """SHA-256 of the content: column names, dtypes and every value (row order matters)."""
    import pandas as pd

    digest = hashlib.sha256()
    digest.update(json.dumps([[str(c), str(t)] for c, t in frame.dtypes.items()]).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def profile(frame: Any) -> dict[str, Any]:
    """Per-column statistics: type, nulls, range, quantiles and histogram, or top categories."""
    import numpy as np
    import pandas as pd

    columns: dict[str, Any] = {}
    for name, series in frame.items():
        nulls = int(series.isna().sum())
        col: dict[str, Any] = {
            "dtype": str(series.dtype),
            "nulls": nulls,
            "null_rate": nulls / len(series) if len(series) else 0.0,
        }
        values = series.dropna()
        if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
            if len(values):
                arr = values.to_numpy(dtype=float)
                counts, edges = np.histogram(arr[np.isfinite(arr)], bins=_HIST_BINS)
                q = np.quantile(arr, [0.01, 0.25, 0.5, 0.75, 0.99])
                col.update(
                    kind="numeric",
                    min=float(arr.min()),
                    max=float(arr.max()),
                    mean=float(arr.mean()),
                    std=float(arr.std()),
                    quantiles=dict(zip(["p01", "p25", "p50", "p75", "p99"], map(float, q))),
                    histogram={"edges": edges.tolist(), "counts": counts.tolist()},
                )
            else:
                col.update(kind="numeric")
        else:
            top = values.astype(str).value_counts().head(_TOP_CATEGORIES)
            col.update(
                kind="categorical",
                unique=int(values.nunique()),
                top={str(k): int(v) for k, v in top.items()},
            )
        columns[str(name)] = col
    return {"version": PROFILE_VERSION, "rows": int(len(frame)), "columns": columns}


def log_dataset(data: Any, name: str = "dataset", *, context: str = "training") -> DatasetInfo:
    """Record a dataset on the active run: fingerprint, schema, row count and profile.

    The profile is stored as ``datasets/<name>.profile.json``; the fingerprint
    as tag ``shipyard.data.<name>.sha256``. MLflow's own dataset tracking gets
    the dataset too, so it shows in the MLflow UI.

    Example:
        >>> info = shipyard.log_dataset(train_df, name="train")   # doctest: +SKIP
        >>> info.rows, info.sha256[:12]                          # doctest: +SKIP
    """
    import mlflow.data
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    from ._client import client_for
    from ._mlflow import dataset_entity

    run = current()
    check_name(name, "dataset")
    frame = to_frame(data)
    info = DatasetInfo(
        name=name,
        sha256=fingerprint(frame),
        rows=int(len(frame)),
        schema={str(c): str(t) for c, t in frame.dtypes.items()},
        profile=profile(frame),
    )
    client = client_for(run.workspace)
    client.log_dict(run.run_id, asdict(info), f"{lineage.DATASET_ARTIFACT_DIR}/{name}.profile.json")
    mlflow_dataset = mlflow.data.from_pandas(frame, name=name, digest=info.sha256[:16])
    client.log_inputs(
        run.run_id,
        datasets=[DatasetInput(dataset_entity(mlflow_dataset), tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)])],
    )
    run.buffer.put_tags(
        {
            lineage.data_tag(name, "sha256"): info.sha256,
            lineage.data_tag(name, "rows"): str(info.rows),
            lineage.data_tag(name, "columns"): str(len(info.schema)),
        }
    )
    return info
