"""Generation of the BentoML service source that goes into each bento.

The generated ``service.py`` is meant to be read by whoever reviews the bento:
every fact it relies on (model hash, lineage, input columns) is a literal at
the top, the typed input row is a plain pydantic model, and the two endpoints
are a few lines each. It imports ``shipyard_monitoring`` (a copy of
:mod:`shipyard.monitoring`) for request validation and the hash check, so the
image needs neither shipyard nor its dependencies.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import asdict
from typing import Any

from ..monitoring.validation import InputSchema

PY_TYPES = {
    "double": "float",
    "float": "float",
    "long": "int",
    "integer": "int",
    "boolean": "bool",
    "string": "str",
    "binary": "str",
    "datetime": "str",
}
_RESERVED = {"model_config", "model_fields", "schema", "json", "dict", "copy", "construct", "validate", "fields"}


def field_identifiers(names: list[str]) -> list[str]:
    """Python identifiers for column names: readable, unique, and safe as pydantic fields.

    Example:
        >>> field_identifiers(["sepal length (cm)", "class", "2nd"])
        ['sepal_length_cm', 'class_', 'col_2nd']
    """
    out: list[str] = []
    seen: set[str] = set()
    for name in names:
        ident = re.sub(r"\W+", "_", name).strip("_").lower() or "col"
        if ident[0].isdigit() or ident.startswith("model_") or ident in _RESERVED:
            ident = f"col_{ident}"
        if keyword.iskeyword(ident):
            ident += "_"
        base, n = ident, 2
        while ident in seen:
            ident, n = f"{base}_{n}", n + 1
        seen.add(ident)
        out.append(ident)
    return out


def py_literal(value: Any, indent: int = 0) -> str:
    """A Python literal for JSON-like data, one item per line, so a reviewer can read it.

    Example:
        >>> print(py_literal({"a": [1, None], "b": [{"name": "x", "type": "double"}]}))
        {
            "a": [1, None],
            "b": [
                {"name": "x", "type": "double"},
            ],
        }
    """
    pad = "    " * (indent + 1)
    end = "    " * indent
    if isinstance(value, dict):
        if not value:
            return "{}"
        if all(not isinstance(v, dict | list | tuple) for v in value.values()):
            inline = "{" + ", ".join(f"{_quote(k)}: {py_literal(v)}" for k, v in value.items()) + "}"
            if len(inline) + len(pad) <= 110:
                return inline
        items = "".join(f"{pad}{_quote(k)}: {py_literal(v, indent + 1)},\n" for k, v in value.items())
        return "{\n" + items + end + "}"
    if isinstance(value, list | tuple):
        if not value:
            return "[]"
        if all(not isinstance(v, dict | list | tuple) for v in value) and len(repr(value)) < 80:
            return "[" + ", ".join(py_literal(v) for v in value) + "]"
        items = "".join(f"{pad}{py_literal(v, indent + 1)},\n" for v in value)
        return "[\n" + items + end + "]"
    if isinstance(value, str):
        return _quote(value)
    return repr(value)


def _quote(text: Any) -> str:
    import json

    return json.dumps(str(text), ensure_ascii=False)


def preload_modules(mlmodel: dict[str, Any]) -> list[str]:
    """Modules worth importing before MLflow for this model's serialization format."""
    sklearn = (mlmodel.get("flavors") or {}).get("sklearn") or {}
    return ["skops.io"] if sklearn.get("serialization_format") == "skops" else []


def schema_to_dict(schema: InputSchema) -> dict[str, Any]:
    data = asdict(schema)
    data["fields"] = [dict(f) for f in data["fields"]]
    return data


def render_service(
    *,
    model_name: str,
    model_version: str,
    service_name: str,
    model_sha256: str,
    lineage: dict[str, str],
    schema: InputSchema,
    shipyard_version: str,
    preload: list[str] | None = None,
) -> str:
    """Return the source of the BentoML service for one model version.

    ``preload`` names modules imported before MLflow when the service starts
    (see :func:`preload_modules`).
    """
    uri = f"models:/{model_name}/{model_version}"
    if schema.tensor_width is not None:
        row_class = ""
        input_type = f"list[list[{PY_TYPES[schema.tensor_type]}]]"
        dtype = f"np.{schema.tensor_dtype}"  # the model's own dtype: a float32 network refuses float64 input
        to_model_input = f"        import numpy as np\n\n        batch = np.asarray(inputs, dtype={dtype})\n"
        columns_literal = "None"
    else:
        names = [f.name for f in schema.fields]
        idents = field_identifiers(names)
        lines = [
            "class InputRow(pydantic.BaseModel):",
            '    """One row of model input: the columns of the model signature, by their own names."""',
            "",
            '    model_config = pydantic.ConfigDict(extra="forbid")',
            "",
        ]
        for spec, ident in zip(schema.fields, idents, strict=True):
            py = PY_TYPES[spec.type]
            kwargs = [f"alias={_quote(spec.name)}"]
            if py == "float":
                kwargs.append(f"allow_inf_nan={spec.allow_non_finite}")
            annotation = py if spec.required else f"{py} | None"
            default = "" if spec.required else "None, "
            lines.append(f"    {ident}: {annotation} = pydantic.Field({default}{', '.join(kwargs)})")
        row_class = "\n".join(lines) + "\n\n\n"
        input_type = "list[InputRow]"
        to_model_input = (
            "        import pandas as pd\n\n"
            "        batch = pd.DataFrame([row.model_dump(by_alias=True) for row in inputs], columns=COLUMNS)\n"
        )
        columns_literal = py_literal(names)

    preload_lines = ""
    if preload:
        preload_lines = (
            "        # Imported before MLflow: skops scans every loaded module once, which is faster while few are.\n"
            + "".join(f"        import {m}  # noqa: F401\n" for m in preload)
        )
    lineage_literal = py_literal(dict(sorted(lineage.items())))
    schema_literal = py_literal(schema_to_dict(schema))
    return f'''\
"""BentoML service for MLflow model {model_name!r} version {model_version}.

Generated by shipyard {shipyard_version} from {uri}; regenerate it with
`shipyard package {uri}` rather than editing it.

  1. On import, the files under ./model are hashed; the service refuses to
     start (exit code 78) when the SHA-256 differs from MODEL_SHA256, the
     digest taken when this bento was built from the registry.
  2. The model is loaded with mlflow.pyfunc, as MLflow loads it in-process.
  3. POST /predict takes {{"inputs": [row, ...]}} (one row or a batch) and
     returns {{"predictions": [...]}} in the order of the rows.
  4. POST /metadata returns the model version, its lineage and input schema.

Requests are validated before the model sees them (shipyard_monitoring.validation):
bad input gets a 4xx naming the problem, and every error is {{"error": message}}.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import bentoml
import pydantic

from shipyard_monitoring.integrity import ModelIntegrityError, verify_directory
from shipyard_monitoring.validation import RequestValidationMiddleware

MODEL_NAME = {_quote(model_name)}
MODEL_VERSION = {_quote(model_version)}
MODEL_DIR = Path(__file__).resolve().parent / "model"
MODEL_SHA256 = {_quote(model_sha256)}
LINEAGE = {lineage_literal}
INPUT_SCHEMA = {schema_literal}
COLUMNS = {columns_literal}

log = logging.getLogger("shipyard.service")


def _verify_model() -> None:
    try:
        verify_directory(MODEL_DIR, MODEL_SHA256)
    except (ModelIntegrityError, FileNotFoundError) as exc:
        message = f"shipyard: refusing to start: {{exc}}"
        print(message, file=sys.stderr, flush=True)
        log.critical(message)
        raise SystemExit(78) from None


_verify_model()


{row_class}def _to_json(predictions: Any) -> Any:
    if hasattr(predictions, "to_dict") and hasattr(predictions, "columns"):
        return predictions.to_dict(orient="records")
    if hasattr(predictions, "tolist"):
        return predictions.tolist()
    return list(predictions)


@bentoml.service(name={_quote(service_name)}, workers=1, traffic={{"timeout": 30}})
class ModelService:
    """Serves {uri} with its lineage."""

    def __init__(self) -> None:
{preload_lines}        import mlflow.pyfunc

        # The image pins the model's requirements itself; MLflow's check of them only slows the start.
        self.model = mlflow.pyfunc.load_model(str(MODEL_DIR), suppress_warnings=True)

    @bentoml.api(route="/predict")
    def predict(self, inputs: {input_type}) -> dict[str, Any]:
        """Predict for one or many rows; answers {{"predictions": [...]}} (or a 422 response)."""
        from mlflow.exceptions import MlflowException
        from starlette.responses import JSONResponse

{to_model_input}        try:
            predictions = self.model.predict(batch)
        except (MlflowException, ValueError, TypeError) as exc:
            # Rows that passed validation but that the model cannot score (a category it never saw,
            # a value its schema enforcement refuses) are the client's to fix: a 422 that says why,
            # logged on one line, where BentoML would answer 500 and log a traceback.
            reason = f"{{type(exc).__name__}}: {{str(exc).strip()[:500]}}"
            log.warning("predict refused the input: %s", reason.splitlines()[0] if reason else reason)
            return JSONResponse({{"error": f"the model could not score the input: {{reason}}"}}, status_code=422)
        return {{"predictions": _to_json(predictions)}}

    @bentoml.api(route="/metadata")
    def metadata(self) -> dict[str, Any]:
        """Model version, lineage, model hash and input schema."""
        return {{
            "model": {{"name": MODEL_NAME, "version": MODEL_VERSION, "uri": {_quote(uri)}}},
            "model_sha256": MODEL_SHA256,
            "lineage": LINEAGE,
            "input_schema": INPUT_SCHEMA,
        }}


ModelService.add_asgi_middleware(
    RequestValidationMiddleware, schema=INPUT_SCHEMA, paths=("/predict",), no_input_paths=("/metadata",)
)
'''


__all__ = ["field_identifiers", "preload_modules", "py_literal", "render_service", "schema_to_dict"]
