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
import textwrap
from dataclasses import asdict
from typing import Any

from ..monitoring.auth import TOKEN_FILE
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
    loader: dict[str, Any],
    input_format: str,
    workers: int | str = "auto",
    batch_rows: int = 0,
    batch_wait_ms: float = 0.0,
    monitor: dict[str, Any] | None = None,
    auth: bool = False,
) -> str:
    """Return the source of the BentoML service for one model version.

    ``loader`` and ``input_format`` say how the service loads the model and
    builds its input (see :mod:`shipyard.monitoring.serving`; packaging
    chooses and checks them in :mod:`.predict_path`); ``workers`` is a number
    or ``auto`` (one per CPU the container may use); ``batch_rows`` above 0
    turns on adaptive batching (:class:`shipyard.monitoring.serving.Batcher`);
    ``monitor`` holds the monitoring settings
    (:class:`shipyard.monitoring.runtime.MonitorConfig`), which the container's
    environment may override when it starts; ``auth`` makes every endpoint but
    the probes and ``/metrics`` require a bearer token, read when the container
    starts (:mod:`shipyard.monitoring.auth`).
    """
    uri = f"models:/{model_name}/{model_version}"
    if schema.tensor_width is not None:
        row_class = ""
        input_type = f"list[list[{PY_TYPES[schema.tensor_type]}]]"
        to_columns = '        columns = {"": inputs}\n'
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
        to_columns = (
            "        rows = [row.model_dump(by_alias=True) for row in inputs]\n"
            "        columns = {name: [row[name] for row in rows] for name in COLUMNS}\n"
        )
        columns_literal = py_literal(names)
    flavor = loader["flavor"]
    if flavor == "python_function":
        how = "The model is loaded with mlflow.pyfunc, as MLflow loads it in-process (MODEL_LOADER)"
    else:
        data = {"numpy": "a float64 matrix", "pandas": "a DataFrame", "tensor": "a tensor"}[input_format]
        how = (
            f"The model is loaded by its {flavor} flavor, as MLflow's loader reads it (MODEL_LOADER), "
            f"and predicts with its own `{loader.get('method', 'predict')}` on {data} (INPUT_FORMAT)"
        )
    how = textwrap.fill(f"{how}; it predicts its input example once at start.", width=75, subsequent_indent="     ")
    workers_literal = _quote(workers) if isinstance(workers, str) else repr(workers)
    lineage_literal = py_literal(dict(sorted(lineage.items())))
    monitor_literal = py_literal(dict(monitor) if monitor is not None else {"enabled": False})
    schema_literal = py_literal(schema_to_dict(schema))
    return f'''\
"""BentoML service for MLflow model {model_name!r} version {model_version}.

Generated by shipyard {shipyard_version} from {uri}; regenerate it with
`shipyard package {uri}` rather than editing it.

  1. On import, the files under ./model are hashed; the service refuses to
     start (exit code 78) when the SHA-256 differs from MODEL_SHA256, the
     digest taken when this bento was built from the registry.
  2. {how}
  3. POST /predict takes {{"inputs": [row, ...]}} (one row or a batch) and
     returns {{"predictions": [...]}} in the order of the rows.
  4. POST /metadata returns the model version, its lineage and input schema.
  5. Every prediction's rows are handed to shipyard_monitoring's Monitor,
     which measures drift against reference_profile.json (frozen when this
     bento was built) off the request path; GET /metrics has the figures.
  6. With AUTH_REQUIRED (or SHIPYARD_SERVING_AUTH=1 when the container
     starts), every path but /livez, /readyz, /healthz and /metrics needs
     `Authorization: Bearer <token>`. The token is read at start from the
     file SHIPYARD_SERVING_TOKEN_FILE names (default
     {TOKEN_FILE}) or from SHIPYARD_SERVING_TOKEN, never from the
     image; without one the service refuses to start (exit code 78).

HTTP requests are validated, and /predict answered, by shipyard_monitoring:
the body is parsed once, checked against INPUT_SCHEMA column by column, and
the model's input built from those columns. Bad input gets a 4xx naming the
problem, and every error is {{"error": message}}. The predict method below
serves calls made in-process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bentoml
import pydantic

from shipyard_monitoring.auth import BearerAuthMiddleware, tokens_or_exit
from shipyard_monitoring.integrity import verify_or_exit
from shipyard_monitoring.runtime import Monitor, MonitorConfig, load_reference
from shipyard_monitoring.serving import Predictor, example_columns, is_client_error, worker_count
from shipyard_monitoring.validation import RequestValidationMiddleware

MODEL_NAME = {_quote(model_name)}
MODEL_VERSION = {_quote(model_version)}
MODEL_DIR = Path(__file__).resolve().parent / "model"
MODEL_SHA256 = {_quote(model_sha256)}
MODEL_LOADER = {py_literal(loader)}
INPUT_FORMAT = {_quote(input_format)}
LINEAGE = {lineage_literal}
INPUT_SCHEMA = {schema_literal}
COLUMNS = {columns_literal}
WORKERS = worker_count({workers_literal})  # SHIPYARD_SERVING_WORKERS overrides it when the container starts
BATCH_ROWS = {batch_rows!r}  # adaptive batching: most rows per model call (0: off)
BATCH_WAIT_MS = {batch_wait_ms!r}
MONITOR_SETTINGS = {monitor_literal}
MONITOR = MonitorConfig.from_settings(MONITOR_SETTINGS)  # SHIPYARD_MONITORING=0, SHIPYARD_CAPTURE=1, ... at start
REFERENCE = load_reference(Path(__file__).resolve().parent / "reference_profile.json")

AUTH_REQUIRED = {auth!r}  # serving_auth: requests need a bearer token (SHIPYARD_SERVING_AUTH=1 requires one at start)

verify_or_exit(MODEL_DIR, MODEL_SHA256)
TOKENS = tokens_or_exit(AUTH_REQUIRED)  # None: no token required


{row_class}@bentoml.service(name={_quote(service_name)}, workers=WORKERS, traffic={{"timeout": 30}})
class ModelService:
    """Serves {uri} with its lineage."""

    def __init__(self) -> None:
        example = example_columns(MODEL_DIR, INPUT_SCHEMA)
        self.predictor = Predictor(
            MODEL_DIR,
            MODEL_LOADER,
            INPUT_SCHEMA,
            INPUT_FORMAT,
            example=example,
            batch_rows=BATCH_ROWS,
            batch_wait_ms=BATCH_WAIT_MS,
        )
        self.monitor = Monitor(
            REFERENCE,
            MONITOR,
            model=MODEL_NAME,
            version=MODEL_VERSION,
            digest=MODEL_SHA256,
            service={_quote(service_name)},
            tensor={schema.tensor_width is not None!r},
        ).start()

    @bentoml.on_shutdown
    def stop_monitoring(self) -> None:
        """Drain the monitor's queue and flush captured rows before the worker exits."""
        self.monitor.stop()

    @bentoml.api(route="/predict")
    def predict(self, inputs: {input_type}) -> dict[str, Any]:
        """Predict for one or many rows; answers {{"predictions": [...]}}."""
{to_columns}        return {{"predictions": self.predictor.predict(columns)}}

    @bentoml.api(route="/metadata")
    def metadata(self) -> dict[str, Any]:
        """Model version, lineage, model hash, input schema and how this service predicts."""
        return {{
            "model": {{"name": MODEL_NAME, "version": MODEL_VERSION, "uri": {_quote(uri)}}},
            "model_sha256": MODEL_SHA256,
            "lineage": LINEAGE,
            "input_schema": INPUT_SCHEMA,
            "serving": {{
                "loader": MODEL_LOADER["flavor"],
                "method": MODEL_LOADER.get("method", "predict"),
                "input_format": INPUT_FORMAT,
                "workers": WORKERS,
                "batch_rows": BATCH_ROWS,
                "batch_wait_ms": BATCH_WAIT_MS,
            }},
        }}


async def _predict(columns: dict[str, Any], rows: int) -> Any:
    service = bentoml.get_current_service()
    predictions = await service.predictor.predict_async(columns, rows)
    service.monitor.observe(columns, rows, predictions)
    return predictions


def _refused(status: int, model_refused: bool) -> None:
    bentoml.get_current_service().monitor.problem(status, model_refused=model_refused)


if TOKENS is not None:
    # Added first, so it runs first: a request without a valid token is refused before its body is read.
    ModelService.add_asgi_middleware(
        BearerAuthMiddleware, tokens=TOKENS, realm={_quote(service_name)}, on_refused=_refused
    )
ModelService.add_asgi_middleware(
    RequestValidationMiddleware,
    schema=INPUT_SCHEMA,
    paths=("/predict",),
    no_input_paths=("/metadata",),
    predict=_predict,
    client_error=is_client_error,
    on_refused=_refused,
)
'''


__all__ = ["field_identifiers", "py_literal", "render_service", "schema_to_dict"]
