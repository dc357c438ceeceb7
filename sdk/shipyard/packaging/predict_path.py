"""How a generated service predicts: chosen at packaging, and checked against ``mlflow.pyfunc`` first.

For a model of a flavor in :data:`shipyard.monitoring.serving.NATIVE_FLAVORS`
the service loads the files itself and calls the flavor's own method; for any
other it loads ``mlflow.pyfunc``. The input is a float64 matrix when every
column is a number, else a DataFrame. Each choice stands only if it gives
exactly ``mlflow.pyfunc``'s predictions on the model's input example, here on
the host, before the service is written; otherwise the next one is tried, and
the last is ``mlflow.pyfunc`` itself.

A model served from a matrix does not need pandas in its image: a second
check loads and predicts with pandas made unimportable (in a child process),
and only when that gives the same predictions is pandas left out.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..monitoring import serving
from ..monitoring.validation import NUMERIC_TYPES, InputSchema, parse_json, validate_columns
from .service_source import schema_to_dict

PANDAS_CHECK_TIMEOUT_S = 120


@dataclass(frozen=True)
class PredictPath:
    """What the service loads, how it builds the model's input, and what the checks found.

    Attributes:
        loader: the ``loader`` literal of the service (see :mod:`shipyard.monitoring.serving`).
        input_format: ``numpy``, ``pandas`` or ``tensor``.
        needs_mlflow: the image must install MLflow (only the ``python_function`` loader uses it).
        needs_pandas: the image must install pandas.
        checked_rows: rows of the input example both paths predicted identically (0: not checked).
        notes: what was tried and why it was or was not taken, for the build log.
    """

    loader: dict[str, Any]
    input_format: str
    needs_mlflow: bool
    needs_pandas: bool = True
    checked_rows: int = 0
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        flavor = self.loader["flavor"]
        how = "mlflow.pyfunc" if flavor == "python_function" else f"{flavor} {self.loader.get('method', 'predict')}"
        data = {"numpy": "a float64 matrix", "pandas": "a DataFrame", "tensor": "a tensor"}[self.input_format]
        checked = f", same predictions as mlflow.pyfunc on {self.checked_rows} example rows" if self.checked_rows else ""
        return f"predict path: {how} on {data}{checked}"


def native_loader(mlmodel: dict[str, Any]) -> dict[str, Any] | None:
    """The service's ``loader`` for a model whose flavor the service loads itself, else None."""
    flavors = mlmodel.get("flavors") or {}
    pyfunc = flavors.get("python_function") or {}
    module = str(pyfunc.get("loader_module") or "")
    flavor = module.removeprefix("mlflow.")
    if not module.startswith("mlflow.") or flavor not in serving.NATIVE_FLAVORS or flavor not in flavors:
        return None
    conf = flavors[flavor] or {}
    loader: dict[str, Any] = {"flavor": flavor, "method": str(pyfunc.get("predict_fn") or "predict")}
    if flavor == "sklearn":
        loader.update(path=pyfunc.get("model_path") or conf.get("pickled_model"), format=conf.get("serialization_format"))
    else:
        loader.update(path=conf.get("data"), model_class=conf.get("model_class"))
        if conf.get("serialization_format"):
            loader["format"] = conf["serialization_format"]
    if conf.get("skops_trusted_types") is not None:
        loader["trusted"] = list(conf["skops_trusted_types"])
    if pyfunc.get("code"):
        loader["code"] = str(pyfunc["code"])
    if not loader.get("path"):
        return None
    return {k: v for k, v in loader.items() if v is not None}


def choose(model_dir: Path, mlmodel: dict[str, Any], schema: InputSchema) -> PredictPath:
    """The fastest predict path that gives ``mlflow.pyfunc``'s predictions on the model's input example."""
    pyfunc_path = PredictPath({"flavor": "python_function"}, _formats(schema)[-1], needs_mlflow=True)
    loader = native_loader(mlmodel)
    if loader is None:
        flavors = ", ".join(sorted((mlmodel.get("flavors") or {}).keys())) or "none"
        return _with_note(pyfunc_path, f"loaded with mlflow.pyfunc (flavors: {flavors})")
    notes: list[str] = []
    example = _example_columns(model_dir, schema)
    if example is None:
        example = _synthetic_columns(schema)
        if example is None:
            return _with_note(pyfunc_path, "loaded with mlflow.pyfunc: no input example to check a faster path on")
        notes.append("no input example: the paths were compared on rows of -1, 0 and 1")
    columns, rows = example
    try:
        reference = _reference(model_dir, columns, schema)
    except Exception as exc:  # the model's own loader fails here too; the image build will say more
        return _with_note(pyfunc_path, f"loaded with mlflow.pyfunc: it failed on the example here ({exc})")
    schema_dict = schema_to_dict(schema)
    with serving.code_on_path(model_dir, loader), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a model fitted on a DataFrame warns about a matrix; the comparison decides
        try:
            model = serving.load_model(model_dir, loader)
            predict = serving.predict_function(model, loader)
        except Exception as exc:
            return _with_note(pyfunc_path, f"loaded with mlflow.pyfunc: the {loader['flavor']} loader failed ({exc})")
        for fmt in _formats(schema):
            try:
                got = serving.to_json(predict(serving.build_input(columns, schema_dict, fmt)))
            except Exception as exc:
                notes.append(f"{fmt} input refused by the model: {type(exc).__name__}: {str(exc)[:200]}")
                continue
            if _same(got, reference):
                path = PredictPath(loader, fmt, needs_mlflow=False, checked_rows=rows, notes=notes)
                if fmt != "pandas":
                    path = _without_pandas_if_possible(path, model_dir, columns, schema_dict, reference)
                return path
            notes.append(f"{fmt} input gave other predictions than mlflow.pyfunc")
    return replace(pyfunc_path, notes=notes)


def _formats(schema: InputSchema) -> list[str]:
    if schema.tensor_width is not None:
        return ["tensor"]
    if schema.fields and all(f.type in NUMERIC_TYPES for f in schema.fields):
        return ["numpy", "pandas"]
    return ["pandas"]


def _with_note(path: PredictPath, note: str) -> PredictPath:
    return replace(path, notes=[note])


def _example_columns(model_dir: Path, schema: InputSchema) -> tuple[dict[str, Any], int] | None:
    """The input example as the service receives it: JSON rows, parsed and validated by the service's own code."""
    from .model_files import input_example

    example = input_example(model_dir)
    if example is None:
        return None
    if schema.tensor_width is not None:
        import numpy as np

        rows = np.asarray(example).tolist()
    elif hasattr(example, "to_dict"):
        from ..deploy.parity import records

        rows = records(example)
    else:
        return None
    try:
        body = json.dumps({"inputs": rows}, allow_nan=False).encode()
        return validate_columns(parse_json(body), schema)
    except (ValueError, Exception):  # an example the service itself would refuse cannot check anything
        return None


def _synthetic_columns(schema: InputSchema) -> tuple[dict[str, Any], int] | None:
    """Rows to compare the paths on when the model has no input example: numbers only, as -1, 0 and 1.

    Any rows show whether two paths compute the same; a signature with text
    or dates needs real values, which only an example has.
    """
    values = (-1.0, 0.0, 1.0)
    if schema.tensor_width is not None:
        return {"": [[v] * schema.tensor_width for v in values]}, len(values)
    if not schema.fields or any(f.type not in NUMERIC_TYPES for f in schema.fields):
        return None
    return {f.name: tuple(int(v) if f.type in ("long", "integer") else v for v in values) for f in schema.fields}, 3


def _reference(model_dir: Path, columns: dict[str, Any], schema: InputSchema) -> Any:
    import mlflow.pyfunc
    import numpy as np
    import pandas as pd

    model = mlflow.pyfunc.load_model(str(model_dir), suppress_warnings=True)
    if schema.tensor_width is not None:
        data: Any = np.asarray(columns[""], dtype=schema.tensor_dtype)
    else:
        data = pd.DataFrame({f.name: list(columns[f.name]) for f in schema.fields})
    return serving.to_json(model.predict(data))


def _same(a: Any, b: Any) -> bool:
    """Exactly equal JSON values, NaN equal to NaN."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


_NO_PANDAS_SCRIPT = """
import json, sys


class NoPandas:  # any import of pandas fails, as in an image without it
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "pandas":
            raise ModuleNotFoundError("No module named 'pandas'", name="pandas")


sys.meta_path.insert(0, NoPandas())
from shipyard.monitoring import serving
spec = json.loads(sys.stdin.read())
with serving.code_on_path(spec["model_dir"], spec["loader"]):
    predictor = serving.Predictor(spec["model_dir"], spec["loader"], spec["schema"], spec["input_format"])
    print(json.dumps(predictor.predict(spec["columns"])))
"""


def _without_pandas_if_possible(
    path: PredictPath, model_dir: Path, columns: dict[str, Any], schema: dict[str, Any], reference: Any
) -> PredictPath:
    spec = {
        "model_dir": str(model_dir),
        "loader": path.loader,
        "schema": schema,
        "input_format": path.input_format,
        "columns": {k: list(v) for k, v in columns.items()},
    }
    try:
        done = subprocess.run(
            [sys.executable, "-c", _NO_PANDAS_SCRIPT],
            input=json.dumps(spec),
            capture_output=True,
            text=True,
            timeout=PANDAS_CHECK_TIMEOUT_S,
        )
        same = done.returncode == 0 and _same(json.loads(done.stdout.strip().splitlines()[-1]), reference)
    except (subprocess.TimeoutExpired, ValueError, IndexError):
        same = False
    note = "pandas left out: the model predicts without it" if same else "pandas kept: the model uses it"
    return replace(path, needs_pandas=not same, notes=[*path.notes, note])


__all__ = ["PredictPath", "choose", "native_loader"]
