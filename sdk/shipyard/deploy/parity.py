"""Parity: does a served model answer what the registered model predicts in-process, row by row?"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._core.errors import DeployError

MIN_HOLDOUT_ROWS = 100
FLOAT_RTOL = 1e-9


@dataclass(frozen=True)
class ParityResult:
    rows: int
    mismatches: int
    first_mismatch: dict[str, Any] | None


def load_reference(uri: str, dst: Path) -> tuple[Any, Any]:
    """The registered model at ``uri``, loaded in-process from a downloaded copy, and its input example."""
    import mlflow.pyfunc
    from mlflow.models import Model

    from .. import tracking

    local = tracking.download_model(uri, dst)
    model = mlflow.pyfunc.load_model(str(local), suppress_warnings=True)
    example = Model.load(str(local)).load_input_example(str(local))
    if example is None:
        raise DeployError(
            f"{uri} has no logged input example; smoke needs one to know what a valid request is.",
            hint="Log the model with input_example=X[:5].",
        )
    return model, as_frame(example)


def compare(model: Any, frames: list[Any], post: Any) -> ParityResult:
    """Send each frame's rows to ``post`` and compare the answers with ``model.predict``."""
    rows = mismatches = 0
    first: dict[str, Any] | None = None
    for frame in frames:
        if frame is None or len(frame) == 0:
            continue
        expected = to_json(model.predict(frame))
        served = post(records(frame))
        for i, (want, got) in enumerate(zip(expected, served, strict=False)):
            if not same(want, got):
                mismatches += 1
                if first is None:
                    row = records(frame.iloc[[i]] if hasattr(frame, "iloc") else frame[i : i + 1])[0]
                    first = {"row": row, "expected": want, "served": got}
        mismatches += abs(len(served) - len(expected))
        rows += len(expected)
    return ParityResult(rows, mismatches, first)


def as_frame(data: Any) -> Any:
    import numpy as np
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return data.reset_index(drop=True)
    if isinstance(data, dict):
        return pd.DataFrame(data)
    return np.asarray(data)


def holdout_rows(holdout: Any, example: Any) -> tuple[Any, str]:
    """The rows to compare on and where they came from: ``holdout`` in the model's columns, else the example
    perturbed deterministically up to :data:`MIN_HOLDOUT_ROWS` rows."""
    import numpy as np
    import pandas as pd

    if holdout is not None:
        frame = as_frame(holdout)
        if isinstance(example, pd.DataFrame) and isinstance(frame, pd.DataFrame):
            missing = [c for c in example.columns if c not in frame.columns]
            if missing:
                raise DeployError(
                    f"The holdout sample lacks the model's input columns {missing}.",
                    hint="Pass the features only, with the columns of the model signature.",
                )
            frame = frame[list(example.columns)]
        return frame, f"holdout of {len(frame)} rows"
    rng = np.random.default_rng(0)
    reps = math.ceil(MIN_HOLDOUT_ROWS / max(len(example), 1))
    if isinstance(example, pd.DataFrame):
        frame = pd.concat([example] * reps, ignore_index=True).iloc[:MIN_HOLDOUT_ROWS].copy()
        for col in frame.columns:
            if pd.api.types.is_float_dtype(frame[col]):
                frame[col] = frame[col] * rng.uniform(0.8, 1.2, len(frame))
        return frame, f"{len(frame)} rows perturbed from the input example"
    arr = np.concatenate([example] * reps)[:MIN_HOLDOUT_ROWS]
    if np.issubdtype(arr.dtype, np.floating):
        arr = arr * rng.uniform(0.8, 1.2, arr.shape)
    return arr, f"{len(arr)} rows perturbed from the input example"


def records(frame: Any) -> list[Any]:
    """Rows as the service's JSON body takes them."""
    if hasattr(frame, "to_dict"):
        return json.loads(frame.to_json(orient="records", double_precision=15))
    return frame.tolist()


def to_json(predictions: Any) -> list[Any]:
    if hasattr(predictions, "to_dict") and hasattr(predictions, "columns"):
        return json.loads(predictions.to_json(orient="records", double_precision=15))
    if hasattr(predictions, "tolist"):
        return predictions.tolist()
    return list(predictions)


def same(want: Any, got: Any) -> bool:
    if isinstance(want, float) or isinstance(got, float):
        try:
            return math.isclose(float(want), float(got), rel_tol=FLOAT_RTOL, abs_tol=1e-12)
        except (TypeError, ValueError):
            return False
    if isinstance(want, list | tuple) and isinstance(got, list | tuple):
        return len(want) == len(got) and all(same(a, b) for a, b in zip(want, got, strict=True))
    if isinstance(want, dict) and isinstance(got, dict):
        return want.keys() == got.keys() and all(same(want[k], got[k]) for k in want)
    return want == got
