"""What packaging reads from a model's own files: its MLmodel, Python version and input schema.

The files come from :func:`shipyard.tracking.download_model`; which version
they belong to comes from :func:`shipyard.registry.resolve`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .._core.errors import PackagingError
from ..monitoring.validation import KNOWN_TYPES, FieldSpec, InputSchema


def read_mlmodel(model_dir: Path) -> dict[str, Any]:
    import yaml

    return yaml.safe_load((model_dir / "MLmodel").read_text(encoding="utf-8")) or {}


def input_example(model_dir: Path) -> Any:
    """The input example logged with the model in ``model_dir``, or None when it has none or it cannot be read."""
    try:
        from mlflow.models import Model

        return Model.load(str(model_dir)).load_input_example(str(model_dir))
    except Exception:
        return None


def training_python(mlmodel: dict[str, Any]) -> str | None:
    """Python major.minor recorded by MLflow when the model was logged."""
    full = (mlmodel.get("flavors", {}).get("python_function") or {}).get("python_version")
    if not full:
        return None
    parts = str(full).split(".")
    return ".".join(parts[:2])


def signature_inputs(mlmodel: dict[str, Any]) -> list[dict[str, Any]] | None:
    raw = (mlmodel.get("signature") or {}).get("inputs")
    if not raw:
        return None
    return json.loads(raw) if isinstance(raw, str) else list(raw)


# numpy dtype of a tensor input -> the MLflow column type whose range requests are checked against
_TENSOR_KINDS = {"float32": "float", "float16": "float", "int32": "integer", "int16": "integer", "int8": "integer",
                 "uint8": "integer", "uint16": "integer", "int64": "long", "uint32": "long", "bool": "boolean"}


def _numpy_dtype(name: Any) -> str:
    """The canonical numpy name of a tensor-spec dtype; a typed error for one numpy does not know."""
    import numpy as np

    try:
        dtype = np.dtype(str(name))
    except TypeError as exc:
        raise PackagingError(
            f"The model's tensor input has dtype {name!r}, which is not a numpy dtype.",
            hint="Log the model with a numeric tensor signature or with named columns.",
        ) from exc
    if dtype.kind not in "biuf":
        raise PackagingError(
            f"The model's tensor input has dtype {dtype.name}; only numbers and booleans can be served as a tensor.",
            hint="Log the model with a numeric tensor signature or with named columns.",
        )
    return dtype.name


def input_schema_from_signature(inputs: list[dict[str, Any]]) -> InputSchema:
    """Map MLflow signature inputs (its JSON form) to the :class:`InputSchema` a service enforces.

    Example:
        >>> input_schema_from_signature([{"type": "double", "name": "x", "required": True}]).fields
        (FieldSpec(name='x', type='double', required=True, allow_non_finite=False),)
    """
    if not inputs:
        raise PackagingError(
            "The model signature has no inputs.", hint="Log the model with a signature or input example."
        )
    if inputs[0].get("type") == "tensor":
        if len(inputs) != 1:
            raise PackagingError(
                "Models with several named tensor inputs are not supported yet.",
                hint="Log the model with one 2-D tensor input or a column-based signature.",
            )
        spec = inputs[0].get("tensor-spec", {})
        shape = list(spec.get("shape") or [])
        if len(shape) != 2 or shape[1] in (-1, None):
            raise PackagingError(
                f"The model's tensor input has shape {shape}; only 2-D inputs with a fixed width are supported.",
                hint="Log the model with a signature of shape (-1, n_features) or with named columns.",
            )
        dtype = _numpy_dtype(spec.get("dtype", "float64"))
        return InputSchema(tensor_width=int(shape[1]), tensor_type=_TENSOR_KINDS.get(dtype, "double"), tensor_dtype=dtype)
    fields: list[FieldSpec] = []
    unsupported = [c for c in inputs if c.get("type") not in KNOWN_TYPES]
    if unsupported:
        described = ", ".join(f"{c.get('name', '?')} ({c.get('type')})" for c in unsupported)
        raise PackagingError(
            f"The model signature has column types shipyard cannot serve yet: {described}.",
            hint="Flatten them into scalar columns (double, long, boolean, string) before logging the model.",
        )
    if any(not c.get("name") for c in inputs):
        kinds = {c["type"] for c in inputs}
        kind = "double" if kinds & {"double", "float"} or len(kinds) > 1 else next(iter(kinds))
        dtype = {"float": "float32", "long": "int64", "integer": "int32", "boolean": "bool"}.get(kind, "float64")
        return InputSchema(tensor_width=len(inputs), tensor_type=kind, tensor_dtype=dtype)
    for col in inputs:
        fields.append(FieldSpec(name=str(col["name"]), type=str(col["type"]), required=bool(col.get("required", True))))
    return InputSchema(fields=tuple(fields))


__all__ = [
    "input_schema_from_signature",
    "read_mlmodel",
    "signature_inputs",
    "training_python",
]
