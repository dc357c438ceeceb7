"""Parity: does a served model answer what the registered model predicts in-process, row by row?

The rows come from what the run left behind, best first (:func:`choose_rows`):

1. the holdout its gate check read (recorded by :mod:`shipyard.gates` with the report);
2. else the stratified row sample ``shipyard.log_dataset`` kept of a logged dataset;
3. else (a dataset logged with ``sample_rows=0``, or by an older version) rows drawn from its stored profile;
4. else the model's input example, perturbed, and the smoke report says "input example only".

Every choice is bounded (:data:`MAX_PARITY_ROWS`) and deterministic, and a
sample of a larger holdout is stratified: every category of every text or
categorical column and both extremes of every numeric one are in it.

Q: Why rows drawn from a profile at all?
A: A dataset whose rows may not be stored with the run (``sample_rows=0``)
   still has its profile (categories with their counts, quantiles and a
   histogram per numeric column). That is enough for what parity must catch,
   encodings that differ between the image and the notebook: each category
   seen and each numeric extreme is sent at least once, the rest drawn by the
   recorded frequencies. Real rows are better (they keep the columns'
   joint distribution), so the kept sample comes first.

Q: Why are rows serialised without pandas' ``to_json``?
A: It rounds floats to 15 significant digits, so the service would score
   slightly different numbers than the in-process model, and a value near a
   tree's split can flip. ``json.dumps`` writes the shortest exact repr.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .._core import lineage
from .._core.errors import DeployError

MIN_HOLDOUT_ROWS = 100
MAX_PARITY_ROWS = 1000
POST_BATCH_ROWS = 250
FLOAT_RTOL = 1e-9
SAMPLE_SEED = 0


@dataclass(frozen=True)
class ParityResult:
    rows: int
    mismatches: int
    first_mismatch: dict[str, Any] | None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ParityRows:
    """The rows parity is checked on and where they came from.

    Attributes:
        frame: the rows, in the model's input columns (a DataFrame, or a 2-D array for tensor models).
        source: what the smoke report says, e.g. ``"holdout of 250 rows"``.
        kind: ``given``, ``holdout``, ``dataset`` or ``input_example``.
        notes: what was left out or could not be covered, and why.
    """

    frame: Any
    source: str
    kind: str
    notes: tuple[str, ...] = ()


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


def compare(model: Any, frames: list[Any], post: Callable[[list[Any]], list[Any]]) -> ParityResult:
    """Send each frame's rows to ``post`` and compare the answers with ``model.predict``.

    Rows the model cannot score in-process are left out (and said so in ``notes``):
    they say nothing about whether the image serves the same model.
    """
    rows = mismatches = 0
    first: dict[str, Any] | None = None
    notes: list[str] = []
    for frame in frames:
        if frame is None or len(frame) == 0:
            continue
        frame, expected, dropped = _predict_scorable(model, frame)
        if dropped:
            notes.append(dropped)
        body = records(frame)
        served: list[Any] = []
        for start in range(0, len(body), POST_BATCH_ROWS):
            served += list(post(body[start : start + POST_BATCH_ROWS]))
        for i, (want, got) in enumerate(zip(expected, served, strict=False)):
            if not same(want, got):
                mismatches += 1
                if first is None:
                    first = {"row": body[i], "expected": want, "served": got}
        mismatches += abs(len(served) - len(expected))
        rows += len(expected)
    return ParityResult(rows, mismatches, first, tuple(notes))


def _predict_scorable(model: Any, frame: Any) -> tuple[Any, list[Any], str]:
    try:
        return frame, to_json(model.predict(frame)), ""
    except Exception as whole:
        keep, expected = [], []
        for i in range(len(frame)):
            row = _take(frame, [i])
            try:
                expected += to_json(model.predict(row))
                keep.append(i)
            except Exception:
                continue
        if not keep:
            raise DeployError(
                f"The registered model cannot predict any of the {len(frame)} parity rows in-process: "
                f"{type(whole).__name__}: {whole}",
                hint="Check that the model's input example and logged data match what it was trained on.",
            ) from whole
        dropped = len(frame) - len(keep)
        return _take(frame, keep), expected, (
            f"{dropped} row(s) left out: the model cannot score them in-process ({type(whole).__name__})"
        )


def _take(frame: Any, positions: Sequence[int]) -> Any:
    if hasattr(frame, "iloc"):
        return frame.iloc[list(positions)].reset_index(drop=True)
    return frame[list(positions)]


def as_frame(data: Any) -> Any:
    import numpy as np
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return data.reset_index(drop=True)
    if isinstance(data, dict):
        return pd.DataFrame(data)
    return np.asarray(data)


# -- which rows -----------------------------------------------------------------------------------------


def choose_rows(version: Any, model: Any, example: Any, given: Any = None, *, workspace: Any = None) -> ParityRows:
    """The rows to check parity on for registered ``version``: ``given``, else the recorded holdout, else a
    sample of a logged dataset, else the input example (see the module docstring).

    Raises:
        DeployError: ``given`` lacks the model's input columns.
    """
    from .._core.workspace import current_workspace

    if given is not None:
        return holdout_rows(given, example, model=model)
    ws = workspace or current_workspace()
    notes: list[str] = []
    recorded = recorded_holdout(ws, version)
    if recorded is not None:
        rows = _from_holdout(recorded, example, model, "holdout", notes)
        if rows is not None:
            return rows
    profiles = logged_profiles(ws, version.run_id)
    for name, stored in profiles:
        sample = logged_sample(ws, version.run_id, stored)
        if sample is not None:
            rows = _from_holdout(sample, example, model, f"sample of the logged dataset {name!r}", notes)
            if rows is not None:
                source = f"sample of the logged dataset {name!r} ({len(rows.frame)} of its rows)"
                return replace(rows, source=source, kind="dataset")
    for name, stored in profiles:
        rows = rows_from_profile(stored, name, example, model, notes)
        if rows is not None:
            return rows
    frame, source = _perturbed(example)
    return ParityRows(frame, f"input example only ({source})", "input_example", tuple(notes))


def holdout_rows(holdout: Any, example: Any, *, model: Any = None) -> ParityRows:
    """``holdout`` in the model's input columns, or, when it is None, the input example perturbed
    deterministically up to :data:`MIN_HOLDOUT_ROWS` rows.

    Raises:
        DeployError: ``holdout`` lacks the model's input columns.
    """
    if holdout is None:
        frame, source = _perturbed(example)
        return ParityRows(frame, f"input example only ({source})", "input_example")
    rows = _from_holdout(as_frame(holdout), example, model, "given", [], strict=True)
    assert rows is not None  # strict: raises rather than give up
    return rows


def recorded_holdout(ws: Any, version: Any) -> Any:
    """The holdout the recorded gate check of ``version`` read (without its target column), or None."""
    import pandas as pd

    from .. import gates
    from .._core.errors import GateError
    from ..tracking._client import client_for

    try:
        report = gates.load_report(version, workspace=ws)
    except GateError:
        return None
    path = report.data.get("holdout")
    if not path:
        return None
    try:
        with tempfile.TemporaryDirectory(prefix="shipyard-parity-") as tmp:
            local = client_for(ws).download_artifacts(version.run_id, path, tmp)
            frame = pd.read_pickle(local) if path.endswith(".pkl") else pd.read_parquet(local)
    except Exception as exc:
        raise DeployError(
            f"The holdout recorded with the gate report of {version} ({path}) cannot be read: {exc}",
            hint="The run's artifacts may have been deleted; check the gates again, or pass holdout= to promote.",
        ) from exc
    target = report.target or "target"
    return frame.drop(columns=[target]) if target in frame.columns else frame


def logged_profiles(ws: Any, run_id: str) -> list[tuple[str, Mapping[str, Any]]]:
    """``(name, stored profile)`` of every dataset logged on ``run_id``, the most rows first."""
    from ..tracking._client import client_for

    if not run_id:
        return []
    client = client_for(ws)
    try:
        names = sorted(lineage.data_fingerprints(client.get_run(run_id).data.tags))
    except Exception:
        return []
    found = []
    with tempfile.TemporaryDirectory(prefix="shipyard-parity-") as tmp:
        for name in names:
            path = lineage.dataset_artifact(name, "profile")
            try:
                local = client.download_artifacts(run_id, path, tmp)
                stored = json.loads(Path(local).read_text(encoding="utf-8"))
            except Exception:  # a fingerprint tag without its profile: nothing to sample from
                continue
            found.append((name, stored))
    return sorted(found, key=lambda item: -int((item[1].get("profile") or item[1]).get("rows") or 0))


def logged_sample(ws: Any, run_id: str, stored: Mapping[str, Any]) -> Any:
    """The row sample ``log_dataset`` kept beside the profile ``stored``, or None when it kept none."""
    import pandas as pd

    from ..tracking._client import client_for

    path = (stored.get("sample") or {}).get("path")
    if not path:
        return None
    try:
        with tempfile.TemporaryDirectory(prefix="shipyard-parity-") as tmp:
            return pd.read_parquet(client_for(ws).download_artifacts(run_id, path, tmp))
    except Exception as exc:
        raise DeployError(
            f"The row sample of a dataset logged on run {run_id} ({path}) cannot be read: {exc}",
            hint="The run's artifacts may have been deleted; pass holdout= to promote.",
        ) from exc


def _from_holdout(
    frame: Any, example: Any, model: Any, kind: str, notes: list[str], *, strict: bool = False
) -> ParityRows | None:
    import numpy as np
    import pandas as pd

    total = len(frame)
    if isinstance(example, pd.DataFrame):
        if not isinstance(frame, pd.DataFrame):
            frame = pd.DataFrame(frame, columns=list(example.columns))
        missing = [c for c in example.columns if c not in frame.columns]
        if missing:
            if strict:
                raise DeployError(
                    f"The holdout sample lacks the model's input columns {missing}.",
                    hint="Pass the features only, with the columns of the model signature.",
                )
            notes.append(f"the recorded {kind} lacks the model's input columns {missing}")
            return None
        frame = frame[list(example.columns)]
    elif isinstance(frame, pd.DataFrame):
        width = example.shape[1] if example.ndim == 2 else None
        if width is not None and frame.shape[1] != width:
            notes.append(f"the recorded {kind} has {frame.shape[1]} columns, the model takes {width}")
            return None
    frame, dropped = servable(frame, required_columns(model))
    if dropped:
        notes.append(dropped)
    if len(frame) == 0:
        if strict:
            raise DeployError(
                f"None of the {total} holdout rows can be sent to the service: {dropped or 'the holdout is empty'}.",
                hint="Pass rows with finite numbers and a value in every column the model signature marks required.",
            )
        notes.append(f"no row of the {kind} can be sent to the service")
        return None
    frame, sample_notes = stratified_sample(frame)
    notes += sample_notes
    if not isinstance(example, pd.DataFrame):
        frame = frame.to_numpy(dtype=example.dtype) if isinstance(frame, pd.DataFrame) else np.asarray(frame)
    source = f"holdout of {len(frame)} rows"
    if len(frame) < total:
        source += f", a stratified sample of {total}"
    return ParityRows(frame, source, kind, tuple(notes))


def required_columns(model: Any) -> set[str]:
    """Input columns the model's signature marks required (the service rejects a row without them)."""
    try:
        schema = model.metadata.get_input_schema()
    except Exception:
        return set()
    if schema is None or not schema.has_input_names():
        return set()
    return {str(c.name) for c in schema.inputs if getattr(c, "required", True)}


def servable(frame: Any, required: set[str]) -> tuple[Any, str]:
    """``frame`` without the rows the service rejects by contract: a missing value in a required column,
    or an infinite number anywhere. Returns the rows kept and a note on what was left out."""
    import numpy as np
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        arr = np.asarray(frame)
        if not np.issubdtype(arr.dtype, np.number):
            return arr, ""
        keep = np.isfinite(arr.reshape(len(arr), -1)).all(axis=1)
        return arr[keep], "" if keep.all() else f"{int((~keep).sum())} row(s) with NaN or infinity left out"
    bad = pd.Series(False, index=frame.index)
    for name in frame.columns:
        col = frame[name]
        if str(name) in required:
            bad |= col.isna()
        if pd.api.types.is_float_dtype(col):
            bad |= np.isinf(col.to_numpy(dtype=float, na_value=np.nan))
    if not bad.any():
        return frame.reset_index(drop=True), ""
    return frame[~bad].reset_index(drop=True), (
        f"{int(bad.sum())} row(s) left out: a missing value in a required column or an infinite number, "
        "which the service rejects by contract"
    )


def stratified_sample(frame: Any, limit: int = MAX_PARITY_ROWS, seed: int = SAMPLE_SEED) -> tuple[Any, list[str]]:
    """At most ``limit`` rows of ``frame`` covering every category and numeric extreme, the same on every
    call: the sampling rule ``log_dataset`` keeps its rows by (:func:`shipyard.tracking._datasets.stratified_sample`)."""
    from ..tracking._datasets import stratified_sample as sample

    return sample(frame, limit, seed)


def rows_from_profile(
    stored: Mapping[str, Any], name: str, example: Any, model: Any, notes: list[str]
) -> ParityRows | None:
    """Rows drawn from the profile ``log_dataset`` stored for dataset ``name``: every recorded category and
    numeric extreme at least once, then values drawn by the recorded frequencies, up to
    :data:`MIN_HOLDOUT_ROWS` rows (more when there are more categories, at most :data:`MAX_PARITY_ROWS`).
    None when the profile does not describe every input column of the model."""
    import numpy as np
    import pandas as pd

    profile = stored.get("profile", stored)
    columns: Mapping[str, Any] = profile.get("columns") or {}
    if not isinstance(example, pd.DataFrame):
        notes.append(f"logged dataset {name!r}: the model takes an array, not named columns")
        return None
    missing = [c for c in example.columns if str(c) not in columns]
    if missing:
        notes.append(f"logged dataset {name!r} lacks the model's input columns {missing}")
        return None
    rng = np.random.default_rng(SAMPLE_SEED)
    required = required_columns(model)
    core: dict[Any, list[Any]] = {}
    draw: dict[Any, Callable[[int], list[Any]]] = {}
    for c in example.columns:
        spec = columns[str(c)]
        core[c], draw[c] = _column_values(spec, example[c], rng)
        if int(spec.get("unique") or 0) > len(spec.get("top") or {}) and spec.get("kind") == "categorical":
            notes.append(
                f"column {c!r}: the profile of {name!r} keeps {len(spec['top'])} of its {spec['unique']} "
                "categories, the most frequent; those are sent"
            )
    n_core = max(len(v) for v in core.values())
    total = min(MAX_PARITY_ROWS, max(MIN_HOLDOUT_ROWS, n_core))
    data = {}
    for c in example.columns:
        values = [core[c][i % len(core[c])] for i in range(min(n_core, total))]
        data[c] = values + draw[c](total - len(values))
    frame = pd.DataFrame(data)
    for i, c in enumerate(c for c in example.columns if str(c) not in required and columns[str(c)].get("nulls")):
        frame.loc[(n_core + i) % total, c] = None  # the dataset had missing values here: send one
    frame = _cast_like(frame, example)
    frame, dropped = servable(frame, required)
    if dropped:
        notes.append(dropped)
    return ParityRows(
        frame, f"sample of the logged dataset {name!r} ({len(frame)} rows drawn from its profile)", "dataset",
        tuple(notes),
    )


def _column_values(spec: Mapping[str, Any], like: Any, rng: Any) -> tuple[list[Any], Callable[[int], list[Any]]]:
    """A column's must-send values (categories; extremes and quantiles) and a sampler of further ones."""
    import numpy as np

    if spec.get("kind") == "categorical" and spec.get("top"):
        top: Mapping[str, Any] = spec["top"]
        cats = list(top)
        weights = np.asarray([float(top[k]) for k in cats])
        p = weights / weights.sum() if weights.sum() > 0 else None
        return cats, lambda n: [cats[i] for i in rng.choice(len(cats), size=n, p=p)] if n > 0 else []
    if spec.get("kind") == "numeric" and spec.get("min") is not None:
        quantiles = spec.get("quantiles") or {}
        points = [spec["min"], *(quantiles[k] for k in sorted(quantiles)), spec["max"]]
        core = list(dict.fromkeys(float(v) for v in points))
        hist = spec.get("histogram") or {}
        edges, counts = hist.get("edges") or [], hist.get("counts") or []
        if len(edges) == len(counts) + 1 and sum(counts) > 0:
            weights = np.asarray(counts, dtype=float) / sum(counts)

            def sample(n: int) -> list[Any]:
                bins = rng.choice(len(counts), size=n, p=weights)
                return [float(rng.uniform(edges[b], edges[b + 1])) for b in bins]

            return core, sample
        return core, lambda n: [float(v) for v in rng.uniform(spec["min"], spec["max"], size=n)]
    seen = [v for v in like.tolist() if v is not None]  # nothing recorded to draw from: the example's values
    seen = seen or [None]
    return seen, lambda n: [seen[i % len(seen)] for i in range(n)]


def _cast_like(frame: Any, example: Any) -> Any:
    """``frame``'s columns in the dtypes of the input example (profile values are text or floats)."""
    import numpy as np
    import pandas as pd

    for c in example.columns:
        dtype = example[c].dtype
        col = frame[c]
        try:
            if pd.api.types.is_bool_dtype(dtype):
                frame[c] = col.map({"True": True, "False": False, True: True, False: False})
                if not col.isna().any():
                    frame[c] = frame[c].astype(dtype)
            elif pd.api.types.is_integer_dtype(dtype):
                rounded = pd.to_numeric(col).round()
                frame[c] = rounded if rounded.isna().any() else rounded.astype(dtype)
            elif pd.api.types.is_float_dtype(dtype):
                frame[c] = pd.to_numeric(col).astype(dtype)
            elif pd.api.types.is_datetime64_any_dtype(dtype):
                frame[c] = pd.to_datetime(col).astype(dtype)
            elif isinstance(dtype, pd.CategoricalDtype):
                frame[c] = pd.Categorical(col.astype(object), categories=dtype.categories)
            else:
                frame[c] = col.astype(object).where(col.notna(), np.nan if dtype == object else None)
        except (TypeError, ValueError):
            continue  # kept as drawn: the model's own checks say what is wrong with it
    return frame


def _perturbed(example: Any) -> tuple[Any, str]:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(SAMPLE_SEED)
    reps = math.ceil(MIN_HOLDOUT_ROWS / max(len(example), 1))
    if isinstance(example, pd.DataFrame):
        frame = pd.concat([example] * reps, ignore_index=True).iloc[:MIN_HOLDOUT_ROWS].copy()
        for col in frame.columns:
            if pd.api.types.is_float_dtype(frame[col]):
                frame[col] = frame[col] * rng.uniform(0.8, 1.2, len(frame))
        return frame, f"{len(frame)} rows perturbed from its {len(example)}"
    arr = np.concatenate([example] * reps)[:MIN_HOLDOUT_ROWS]
    if np.issubdtype(arr.dtype, np.floating):
        arr = arr * rng.uniform(0.8, 1.2, arr.shape)
    return arr, f"{len(arr)} rows perturbed from its {len(example)}"


# -- what goes over the wire ----------------------------------------------------------------------------


def records(frame: Any) -> list[Any]:
    """Rows as the service's JSON body takes them: exact floats, ``null`` for a missing value,
    ISO 8601 text for times."""
    import pandas as pd

    if isinstance(frame, pd.DataFrame):
        rows = frame.astype(object).to_dict(orient="records")
        return [{str(k): _json_value(v) for k, v in row.items()} for row in rows]
    if hasattr(frame, "tolist"):
        return [[_json_value(v) for v in row] if isinstance(row, list) else _json_value(row) for row in frame.tolist()]
    return list(frame)


def _json_value(value: Any) -> Any:
    import numpy as np
    import pandas as pd

    if value is None or value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, float | np.floating):
        return None if math.isnan(value) else float(value)
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, pd.Timestamp | np.datetime64):
        return pd.Timestamp(value).isoformat()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def to_json(predictions: Any) -> list[Any]:
    import pandas as pd

    if isinstance(predictions, pd.DataFrame):
        return records(predictions)
    if hasattr(predictions, "tolist"):
        return predictions.tolist()
    return list(predictions)


def same(want: Any, got: Any) -> bool:
    if isinstance(want, float) or isinstance(got, float):
        try:
            a, b = float(want), float(got)
        except (TypeError, ValueError):
            return False
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=FLOAT_RTOL, abs_tol=1e-12)
    if isinstance(want, list | tuple) and isinstance(got, list | tuple):
        return len(want) == len(got) and all(same(a, b) for a, b in zip(want, got, strict=True))
    if isinstance(want, dict) and isinstance(got, dict):
        return want.keys() == got.keys() and all(same(want[k], got[k]) for k in want)
    return want == got
