"""The predict path of generated model services: the model's own flavor, fed from validated columns.

This module runs inside model images, copied next to the service as
``shipyard_monitoring.serving``. It imports numpy (and pandas, the model's
library, MLflow) only when a model needs them, so a service starts with no
more imported than a prediction uses.

A service describes its model with two literals that packaging wrote after
checking them (``shipyard.packaging.predict_path``):

* ``loader``: how to load the files and which method predicts, e.g.
  ``{"flavor": "sklearn", "path": "model.skops", "format": "skops",
  "trusted": [], "method": "predict"}``. The flavors in
  :data:`NATIVE_FLAVORS` are loaded as MLflow's own loaders read them;
  ``{"flavor": "python_function"}`` loads any other model with
  ``mlflow.pyfunc``.
* ``input_format``: ``"numpy"`` (one float64 matrix, columns in signature
  order), ``"pandas"`` (a DataFrame with the signature's dtypes) or
  ``"tensor"`` (a matrix of the model's tensor dtype).

Q: Why not call ``mlflow.pyfunc``'s ``predict`` for every model?
A: Its schema enforcement rebuilds the input frame column by column on every
   call (about 3.5 ms for 30 columns, more than the model takes), importing
   MLflow adds about a second to the start and its dependencies about 65 MB
   to the image. For the flavors here, pyfunc's ``predict`` is the flavor's
   own method on the loaded object once the input passed that enforcement;
   the service validated the request against the same signature already
   (:mod:`.validation`). Packaging compares this path with ``mlflow.pyfunc``
   on the model's input example before it writes the service, and every
   promotion compares the served predictions with ``mlflow.pyfunc`` on held-out
   rows, so the two cannot drift apart unnoticed.

Q: Why predict on the event loop instead of a worker thread?
A: A prediction of a few rows takes well under a millisecond; handing it to
   a thread and back costs about as much again, and under load a request
   waits for the loop to wake up. Requests of more than
   :data:`INLINE_MAX_ROWS` rows go to a thread so a large batch does not hold
   up the health probes.

Q: Why freeze the garbage collector after loading?
A: A full collection walks every object the process holds, and a loaded
   model plus its libraries are millions of them: under load that was a
   120–165 ms pause several times a minute, which became the p99. Objects
   that exist once the model is loaded and warmed up live as long as the
   process, so ``gc.freeze()`` moves them out of the collector's sight.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

NATIVE_FLAVORS = ("sklearn", "xgboost", "lightgbm")
"""Flavors whose files this module loads itself, without MLflow."""

INLINE_MAX_ROWS = 1000
"""Requests up to this many rows are predicted on the event loop; larger ones in a thread."""

WORKERS_VARIABLE = "SHIPYARD_SERVING_WORKERS"
"""Environment variable that overrides, when the container starts, how many workers the service runs."""

# numpy dtype for each MLflow column type, as MLflow's schema enforcement gives the model.
COLUMN_DTYPES = {"double": "float64", "float": "float32", "long": "int64", "integer": "int32", "boolean": "bool"}


def load_model(model_dir: str | os.PathLike[str], loader: Mapping[str, Any]) -> Any:
    """The model object as MLflow's loader for its flavor would return it (``loader``: see the module doc).

    Raises:
        ValueError: a flavor or serialization format this module does not load.
    """
    model_dir = Path(model_dir)
    flavor = loader["flavor"]
    if flavor == "python_function":
        import mlflow.pyfunc

        return mlflow.pyfunc.load_model(str(model_dir), suppress_warnings=True)
    path = model_dir / loader["path"]
    model_class = loader.get("model_class")
    if flavor == "xgboost":
        model = _class(model_class or "xgboost.core.Booster")()
        model.load_model(str(path))
        return model
    if flavor == "lightgbm" and (model_class or "lightgbm.basic.Booster") == "lightgbm.basic.Booster":
        import lightgbm

        return lightgbm.Booster(model_file=str(path))
    if flavor in ("sklearn", "lightgbm"):  # a LightGBM scikit-learn estimator is serialized like scikit-learn's
        return _deserialize(path, loader.get("format") or "pickle", loader.get("trusted"))
    raise ValueError(f"no loader for the {flavor!r} flavor here")


def code_folder(model_dir: str | os.PathLike[str], loader: Mapping[str, Any]) -> str | None:
    """The folder of the model's own code (MLflow ``code_paths``), if it ships any."""
    code = loader.get("code")
    return str(Path(model_dir) / code) if code else None


@contextlib.contextmanager
def code_on_path(model_dir: str | os.PathLike[str], loader: Mapping[str, Any]) -> Iterator[None]:
    """The model's own code (MLflow ``code_paths``, ``loader["code"]``) importable while the block runs.

    Pickled project classes are found by module name; MLflow puts the
    model's ``code`` folder on ``sys.path`` before loading for the same reason.
    """
    folder = code_folder(model_dir, loader)
    if folder is None or folder in sys.path:
        yield
        return
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)


def _deserialize(path: Path, fmt: str, trusted: Sequence[str] | None) -> Any:
    # The service checked the files' SHA-256 against the registered digest before this runs.
    if fmt == "skops":
        import skops.io

        return skops.io.load(path, trusted=list(trusted) if trusted is not None else None)
    with path.open("rb") as fh:
        if fmt == "cloudpickle":
            import cloudpickle

            return cloudpickle.load(fh)
        if fmt == "pickle":
            import pickle

            return pickle.load(fh)  # noqa: S301 - the registered model's own file, verified by hash
    raise ValueError(f"unknown serialization format {fmt!r}")


def _class(dotted: str) -> type:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def predict_function(model: Any, loader: Mapping[str, Any]) -> Callable[[Any], Any]:
    """The call that predicts, as MLflow's pyfunc wrapper of the flavor makes it."""
    flavor = loader["flavor"]
    method = loader.get("method") or "predict"
    if flavor == "python_function":
        return model.predict
    if flavor == "xgboost":
        import xgboost

        if isinstance(model, xgboost.Booster):
            return lambda data: model.predict(xgboost.DMatrix(data), validate_features=True)
        fn = getattr(model, method)
        if isinstance(model, xgboost.XGBModel):
            return lambda data: fn(data, validate_features=True)
        return fn
    return getattr(model, method)


def build_input(columns: Mapping[str, list[Any]], schema: Mapping[str, Any], input_format: str) -> Any:
    """The model input for validated ``columns`` (name -> values; for a tensor: ``{"": rows}``).

    Example:
        >>> schema = {"fields": [{"name": "x", "type": "double"}, {"name": "n", "type": "long"}]}
        >>> build_input({"x": [1.5, 2.0], "n": [3, 4]}, schema, "numpy").tolist()
        [[1.5, 3.0], [2.0, 4.0]]
    """
    import numpy as np

    if input_format == "tensor":
        return np.asarray(columns[""], dtype=schema.get("tensor_dtype", "float64"))
    if input_format == "numpy":
        # None (an optional double left out) becomes NaN, as in MLflow's float64 column.
        return np.array([columns[f["name"]] for f in schema["fields"]], dtype=np.float64).T
    import pandas as pd

    data: dict[str, Any] = {}
    for spec in schema["fields"]:
        values = columns[spec["name"]]
        dtype = COLUMN_DTYPES.get(spec["type"])
        if dtype is None or (dtype != "float64" and dtype != "float32" and None in values):
            data[spec["name"]] = values  # text, dates, or ints/booleans with gaps: pandas infers, as MLflow's frame
        else:
            data[spec["name"]] = np.array(values, dtype=dtype)
    return pd.DataFrame(data, columns=[f["name"] for f in schema["fields"]])


def to_json(predictions: Any) -> Any:
    """Predictions as JSON-ready Python values (a DataFrame as records, arrays as lists)."""
    if hasattr(predictions, "to_dict") and hasattr(predictions, "columns"):
        return predictions.to_dict(orient="records")
    if hasattr(predictions, "tolist"):
        return predictions.tolist()
    return list(predictions)


class Predictor:
    """A loaded model and the one way the service predicts with it.

    Args:
        model_dir: the model files (already verified by hash).
        loader: how to load them (see the module doc).
        schema: the service's input schema (``InputSchema`` as a dict).
        input_format: ``numpy``, ``pandas`` or ``tensor``.
        example: validated columns to predict once while starting (warms the model's code paths).
        batch_rows: above 0, adaptive batching: requests that arrive while the model is busy are
            predicted together, up to this many rows in one call (see :class:`Batcher`).
        batch_wait_ms: how long a request may wait for others to join its batch (bounded; 0: none).
    """

    def __init__(
        self,
        model_dir: str | os.PathLike[str],
        loader: Mapping[str, Any],
        schema: Mapping[str, Any],
        input_format: str,
        example: Mapping[str, list[Any]] | None = None,
        batch_rows: int = 0,
        batch_wait_ms: float = 0.0,
    ) -> None:
        started = time.monotonic()
        self.loader = dict(loader)
        self.schema = dict(schema)
        self.input_format = input_format
        folder = code_folder(model_dir, loader)
        if folder is not None and folder not in sys.path:  # for the process's life: pickles name its modules
            sys.path.insert(0, folder)
        self.model = load_model(model_dir, loader)
        self._predict = predict_function(self.model, loader)
        if input_format == "numpy":
            # A model fitted on a DataFrame warns on every matrix it gets; the column order is the
            # signature's, which packaging checked against the model's own on the input example.
            warnings.filterwarnings("ignore", message="X does not have valid feature names")
        if example:
            try:
                self.predict(example)
            except Exception as exc:  # a warm-up only: requests are validated and answered on their own
                logging.getLogger("shipyard.service").warning(
                    "the model's input example did not predict (%s: %s); serving without warming up",
                    type(exc).__name__,
                    str(exc)[:200],
                )
        self.batcher = Batcher(self, batch_rows, batch_wait_ms / 1000) if batch_rows > 0 else None
        self.load_seconds = time.monotonic() - started
        freeze_garbage()

    def predict(self, columns: Mapping[str, list[Any]]) -> Any:
        """JSON-ready predictions for validated columns, in row order."""
        return to_json(self._predict(build_input(columns, self.schema, self.input_format)))

    async def predict_async(self, columns: Mapping[str, Sequence[Any]], rows: int) -> Any:
        """:meth:`predict` for one request: batched when batching is on, else on the event loop
        for small requests and in a thread for large ones."""
        if self.batcher is not None and rows < self.batcher.max_rows:
            return await self.batcher.submit(columns, rows)
        if rows <= INLINE_MAX_ROWS:
            return self.predict(columns)
        return await asyncio.to_thread(self.predict, columns)


class Batcher:
    """Adaptive batching: the requests that wait while the model predicts are predicted together next.

    A request that finds the model idle is predicted at once (after
    ``max_wait`` seconds at most, if set, for others to join); while that
    prediction runs in a thread, arriving requests queue, and the next call
    takes them all, up to ``max_rows`` rows. The batch size follows the load
    with no tuning: one row at a time when it is light, many when it is heavy.
    A batch the model refuses is predicted again request by request, so one
    bad request fails alone.

    Q: Why not BentoML's ``@bentoml.api(batchable=True)``?
    A: Its batching sits behind BentoML's request parsing, which the service's
       predict path does not take (requests are parsed and validated once, in
       front of it); this batches the same validated columns.
    """

    def __init__(self, predictor: Predictor, max_rows: int, max_wait: float = 0.0) -> None:
        self.predictor = predictor
        self.max_rows = max_rows
        self.max_wait = max_wait
        self._queue: list[tuple[Mapping[str, Sequence[Any]], int, asyncio.Future[Any]]] = []
        self._draining = False
        self.batches = 0  # calls made, and the requests they answered: for measuring
        self.requests = 0

    async def submit(self, columns: Mapping[str, Sequence[Any]], rows: int) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((columns, rows, future))
        if not self._draining:
            self._draining = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._queue:
                if self.max_wait and sum(item[1] for item in self._queue) < self.max_rows:
                    await asyncio.sleep(self.max_wait)
                batch, rows = [], 0
                while self._queue and rows + self._queue[0][1] <= self.max_rows:
                    item = self._queue.pop(0)
                    batch.append(item)
                    rows += item[1]
                if not batch:  # a request of max_rows rows or more never comes here (predict_async)
                    batch.append(self._queue.pop(0))
                await self._predict(batch)
        finally:
            self._draining = False

    async def _predict(self, batch: list[tuple[Mapping[str, Sequence[Any]], int, asyncio.Future[Any]]]) -> None:
        self.batches += 1
        self.requests += len(batch)
        names = list(batch[0][0])
        merged = {name: [v for columns, _, _ in batch for v in columns[name]] for name in names}
        try:
            predictions = await asyncio.to_thread(self.predictor.predict, merged)
            if len(predictions) != sum(rows for _, rows, _ in batch):
                raise ValueError("the model gave a different number of predictions than rows")
        except Exception:
            for columns, _, future in batch:  # one by one, so only a bad request fails
                try:
                    result = self.predictor.predict(columns)
                except Exception as exc:
                    if not future.done():
                        future.set_exception(exc)
                else:
                    if not future.done():
                        future.set_result(result)
            return
        start = 0
        for _, rows, future in batch:
            if not future.done():
                future.set_result(predictions[start : start + rows])
            start += rows


CLIENT_ERROR_NAMES = frozenset({"MlflowException", "XGBoostError", "LightGBMError", "CatBoostError"})


def is_client_error(exc: BaseException) -> bool:
    """True when a prediction failed on what the client sent (a category the model never saw), not on the server.

    The model's libraries are named, not imported: the service decides this
    without importing a library the model does not use.
    """
    if isinstance(exc, ValueError | TypeError | KeyError | IndexError):
        return True
    return any(cls.__name__ in CLIENT_ERROR_NAMES for cls in type(exc).__mro__)


def freeze_garbage() -> None:
    """Move everything allocated so far out of the collector's sight (see the module doc)."""
    gc.collect()
    gc.freeze()


def example_columns(model_dir: str | os.PathLike[str], schema: Mapping[str, Any]) -> dict[str, list[Any]] | None:
    """The model's input example (``input_example.json`` of MLflow's ``split`` layout) as columns, if it has one."""
    import json

    path = Path(model_dir) / "input_example.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if schema.get("tensor_width") is not None:
        rows = data.get("inputs", data) if isinstance(data, dict) else data
        return {"": rows} if isinstance(rows, list) and rows else None
    if not isinstance(data, dict) or "columns" not in data or "data" not in data:
        return None
    names = [f["name"] for f in schema["fields"]]
    position = {name: i for i, name in enumerate(data["columns"])}
    if not data["data"] or any(name not in position for name in names):
        return None
    return {name: [row[position[name]] for row in data["data"]] for name in names}


def worker_count(setting: int | str = "auto") -> int:
    """Workers to run: ``setting`` (a number, or ``auto`` for one per CPU the container may use).

    ``SHIPYARD_SERVING_WORKERS`` in the container's environment overrides the
    setting baked in at packaging. ``auto`` counts the CPUs the process may
    run on and caps them by the container's CPU quota (cgroup v2 ``cpu.max``,
    v1 ``cpu.cfs_quota_us``), rounded up: a pod limited to 1.5 CPUs runs 2.
    """
    value = os.environ.get(WORKERS_VARIABLE, "").strip() or str(setting)
    if value != "auto":
        try:
            count = int(value)
        except ValueError:
            raise ValueError(f"{WORKERS_VARIABLE}={value!r} is not a number of workers or 'auto'") from None
        if count < 1:
            raise ValueError(f"{WORKERS_VARIABLE}={value!r}: a service needs at least one worker")
        return count
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = cpu_quota()
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)


def cpu_quota(root: str | os.PathLike[str] = "/sys/fs/cgroup") -> float | None:
    """The CPUs the container's cgroup allows (``2.5`` for 250 ms per 100 ms), or None without a quota."""
    root = Path(root)
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    for folder in (root / "cpu", root / "cpu,cpuacct", root):
        try:
            quota_us = int((folder / "cpu.cfs_quota_us").read_text())
            period_us = int((folder / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us
    return None


__all__ = [
    "COLUMN_DTYPES",
    "Batcher",
    "INLINE_MAX_ROWS",
    "NATIVE_FLAVORS",
    "WORKERS_VARIABLE",
    "Predictor",
    "build_input",
    "code_folder",
    "code_on_path",
    "cpu_quota",
    "example_columns",
    "freeze_garbage",
    "is_client_error",
    "load_model",
    "predict_function",
    "to_json",
    "worker_count",
]
