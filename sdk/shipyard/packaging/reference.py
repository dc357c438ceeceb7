"""The reference profile a model is held against in production, frozen when its bento is built.

Which rows it describes, in this order (the first that holds the model's
input columns wins, and the profile's ``source`` names it):

1. the row sample of a dataset the model's run logged (``log_dataset``; the
   one with the most rows first, which is the training set in a usual flow),
   ``source`` = ``training`` when that dataset was logged with the training
   context or ``dataset:<name>`` otherwise;
2. the holdout the version's gate check read (``source`` = ``holdout``);
3. the input example logged with the model (``source`` = ``input_example``:
   a handful of rows, so every drift figure is rough, and the note says so).

The predictions column is the model's own predictions on those rows, made with
``mlflow.pyfunc`` (the image predicts the same: promotion's parity test holds
it to that). The profile is logged on the model's run
(:data:`~shipyard._core.lineage.REFERENCE_ARTIFACT`), its fingerprint is a
version tag and an image label, and ``shipyard monitor`` reads it back with
:func:`reference_for`, so the image and the report compare against the same
numbers.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from .._core import lineage
from .._core.errors import MonitoringError
from ..monitoring.validation import InputSchema
from .model_files import input_example

CATEGORICAL_TYPES = frozenset({"string", "boolean", "binary", "datetime"})
"""MLflow column types profiled by their values' frequencies; the others are numbers."""
CLASS_LIMIT = 50
"""Predictions with at most this many distinct integer or text values are classes, not numbers."""


def build_reference(ws: Any, version: Any, model_dir: Path, schema: InputSchema) -> dict[str, Any]:
    """The reference profile of registered ``version`` (its files in ``model_dir``), described in the module doc.

    Raises:
        MonitoringError: no rows to describe (no logged dataset, no holdout and no input example).
    """
    from ..monitoring import drift

    frame, source, dataset, notes = _reference_rows(ws, version, model_dir, schema)
    kinds = {f.name: "categorical" if f.type in CATEGORICAL_TYPES else "numeric" for f in schema.fields}
    columns = {name: frame[name].to_numpy() for name in kinds if name in frame.columns}
    if schema.tensor_width is not None:  # one numeric column per position of the tensor
        matrix = frame.to_numpy(dtype="float64")
        columns = {str(i): matrix[:, i] for i in range(matrix.shape[1])}
        kinds = dict.fromkeys(columns, "numeric")
    predictions, why = _predictions(model_dir, frame)
    if why:
        notes.append(why)
    profile = drift.reference_profile(columns, predictions=predictions, source=source, dataset=dataset, kinds=kinds)
    profile["notes"] = notes
    profile["fingerprint"] = drift.profile_fingerprint(profile)  # the notes are part of what was frozen
    return profile


def log_reference(ws: Any, version: Any, profile: dict[str, Any]) -> None:
    """Keep ``profile`` on the version's run and its fingerprint on the version, for ``shipyard monitor``."""
    from ..tracking._client import client_for

    client = client_for(ws)
    if version.run_id:
        client.log_dict(version.run_id, profile, lineage.REFERENCE_ARTIFACT)
    client.set_model_version_tag(version.name, version.version, lineage.REFERENCE_TAG, profile["fingerprint"])


def reference_for(name: str, version: str, *, workspace: Any = None) -> dict[str, Any]:
    """The reference profile frozen for model ``name`` version ``version`` when its bento was built.

    A version that was never packaged gets one built now from its run (the same
    rules) and kept, so a later bento freezes the same profile.

    Raises:
        ModelNotFound: no such version.
        MonitoringError: the version's model cannot be read or holds no rows to profile.
    """
    from .. import registry, tracking
    from .._core.workspace import current_workspace
    from ..tracking._client import client_for

    ws = workspace or current_workspace()
    source = registry.resolve(f"{name}/{version}", workspace=ws)
    client = client_for(ws)
    if source.run_id:
        with tempfile.TemporaryDirectory(prefix="shipyard-reference-") as tmp:
            try:
                local = client.download_artifacts(source.run_id, lineage.REFERENCE_ARTIFACT, tmp)
            except Exception:  # not frozen yet: built below
                local = None
            if local is not None:
                return json.loads(Path(local).read_text(encoding="utf-8"))
    from .bento import input_schema

    with tempfile.TemporaryDirectory(prefix="shipyard-reference-") as tmp:
        model_dir = tracking.download_model(source.uri, Path(tmp) / "model", workspace=ws)
        profile = build_reference(ws, source, model_dir, input_schema(source, model_dir))
    log_reference(ws, source, profile)
    return profile


def _reference_rows(ws: Any, version: Any, model_dir: Path, schema: InputSchema) -> tuple[Any, str, str, list[str]]:
    """``(rows in the model's input columns, source, dataset name, notes)``."""
    import pandas as pd

    from ..deploy import parity

    wanted = [f.name for f in schema.fields]
    notes: list[str] = []

    def usable(frame: Any) -> Any:
        if frame is None or len(frame) == 0:
            return None
        frame = pd.DataFrame(frame)
        if schema.tensor_width is not None:
            return frame if frame.shape[1] == schema.tensor_width else None
        missing = [c for c in wanted if c not in frame.columns]
        if missing:
            notes.append(f"rows without the model's column(s) {', '.join(map(repr, missing[:5]))} were not used")
            return None
        return frame[wanted].reset_index(drop=True)

    contexts = _dataset_contexts(ws, version.run_id)
    for name, stored in parity.logged_profiles(ws, version.run_id):
        frame = usable(parity.logged_sample(ws, version.run_id, stored))
        if frame is not None:
            source = "training" if contexts.get(name) == "training" else f"dataset:{name}"
            total = int((stored.get("profile") or stored).get("rows") or len(frame))
            if total > len(frame):
                notes.append(f"profiled from the {len(frame)}-row sample kept of the {total} rows of {name!r}")
            return frame, source, name, notes
    frame = usable(parity.recorded_holdout(ws, version))
    if frame is not None:
        return frame, "holdout", "", notes
    frame = usable(input_example(model_dir))
    if frame is not None:
        notes.append(
            f"no dataset was logged with the model's run: the reference is its {len(frame)}-row input example, "
            "too few rows for drift figures to mean much; log the training data with shipyard.log_dataset"
        )
        return frame, "input_example", "", notes
    raise MonitoringError(
        f"Model {version.name} version {version.version} has no rows to hold production against: its run logged "
        "no dataset with the model's input columns, its gates read no holdout, and it has no input example.",
        hint="Log the training data in the flow with shipyard.log_dataset(X_train, name='train'), "
        "or log the model with an input_example.",
    )


def _dataset_contexts(ws: Any, run_id: str) -> dict[str, str]:
    """Dataset name -> the context it was logged with (``training``, ``evaluation``, ...) on ``run_id``."""
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    from ..tracking._client import client_for

    if not run_id:
        return {}
    try:
        inputs = client_for(ws).get_run(run_id).inputs.dataset_inputs
    except Exception:
        return {}
    return {
        item.dataset.name: tag.value
        for item in inputs
        for tag in item.tags
        if tag.key == MLFLOW_DATASET_CONTEXT
    }


def _predictions(model_dir: Path, frame: Any) -> tuple[Any, str]:
    """The model's predictions on ``frame`` as one value per row, or ``(None, why not)``."""
    import numpy as np

    try:
        import mlflow.pyfunc

        out = mlflow.pyfunc.load_model(str(model_dir)).predict(frame)
    except Exception as exc:
        return None, f"predictions not profiled: the model could not predict the reference rows ({exc})"
    values = np.asarray(getattr(out, "to_numpy", lambda: out)())
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1 or len(values) != len(frame):
        return None, f"predictions not profiled: the model answers {values.shape} for {len(frame)} rows, not one value each"
    if values.dtype.kind in "biuUSO" and len(set(values.tolist())) <= CLASS_LIMIT:
        # class labels (numbered or named) are counted by class, as the image's metrics count them
        values = np.asarray([str(v) for v in values.tolist()], dtype=object)
    return values, ""


__all__ = ["CATEGORICAL_TYPES", "build_reference", "log_reference", "reference_for"]
