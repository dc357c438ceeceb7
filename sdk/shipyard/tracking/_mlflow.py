"""The MLflow adapter: every use shipyard makes of MLflow's process-wide state and private API.

Everything else in shipyard talks to MLflow through the workspace's explicit
``MlflowClient`` (:func:`shipyard.tracking._client.client_for`), which changes
no global state. What cannot be done that way is here, each with why, and
``tests/integration/test_adapters_mlflow.py`` runs each of them against a real
store and fails when the installed MLflow is outside :data:`SUPPORTED`, the
range this was written and checked for:

* :func:`fluent_store` — MLflow's process-wide tracking and registry URIs,
  set for one block and then put back exactly as they were
  (:func:`fluent_state` reads them as set, from MLflow's module globals);
* :func:`metric_history_page` — one page of a metric's history
  (``MlflowClient._tracking_client.store``);
* :func:`dataset_entity` — the tracking entity of an ``mlflow.data`` dataset
  (``Dataset._to_mlflow_entity``), with a schema computed beforehand
  (``PandasDataset.schema`` is a ``functools.cached_property``);
* :func:`dataset_schema` — the schema ``PandasDataset.schema`` infers, from
  MLflow's own per-dtype and per-type rules (``mlflow.types.utils``) applied
  to whole columns instead of to every value.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from mlflow.entities import Dataset as DatasetEntity
    from mlflow.entities import Metric
    from mlflow.store.entities.paged_list import PagedList
    from mlflow.tracking import MlflowClient
    from mlflow.types import Schema

    from .._core.workspace import Workspace

SUPPORTED = "mlflow>=3.5,<4"
"""The MLflow versions this adapter was written for (as in ``pyproject.toml``)."""

# what mlflow.set_tracking_uri / set_registry_uri also write, so that subprocesses inherit the URIs
URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")

# Q: Why a re-entrant lock?
# A: The URIs are one per process, so two shipyard threads pointing them at two
#    workspaces must take turns; and a block may run code that opens another
#    block on the same thread, which must not wait for itself.
_fluent_lock = threading.RLock()


@dataclass(frozen=True)
class FluentState:
    """MLflow's process-wide URIs as they are set: what :func:`fluent_store` puts back.

    Attributes:
        tracking_uri: what ``mlflow.set_tracking_uri`` set; None when never set
            (MLflow then reads ``MLFLOW_TRACKING_URI`` or its default).
        registry_uri: likewise for ``mlflow.set_registry_uri``.
        environment: ``MLFLOW_TRACKING_URI`` and ``MLFLOW_REGISTRY_URI`` in ``os.environ`` (None: unset).
    """

    tracking_uri: str | None
    registry_uri: str | None
    environment: tuple[tuple[str, str | None], ...]


def fluent_state() -> FluentState:
    """The URIs MLflow's fluent API uses now, as set (not as resolved).

    Q: Why read MLflow's module globals?
    A: "Never set" is only visible there: ``mlflow.get_tracking_uri()``
       answers with the environment or the default instead, and restoring
       that answer would pin it, so a later change of the environment
       variable would no longer be followed.
    """
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    return FluentState(
        tracking_uri=tracking_utils._tracking_uri,  # noqa: SLF001 - see above
        registry_uri=registry_utils._registry_uri,  # noqa: SLF001 - see above
        environment=tuple((name, os.environ.get(name)) for name in URI_VARIABLES),
    )


def restore_fluent_state(state: FluentState) -> None:
    """Put MLflow's fluent URIs (and their environment variables) back to ``state``."""
    import mlflow

    mlflow.set_tracking_uri(state.tracking_uri)  # type: ignore[arg-type] - None: back to "never set"
    mlflow.set_registry_uri(state.registry_uri)  # type: ignore[arg-type]
    for name, value in state.environment:  # the setters write (and unset) these: put them back as found
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@contextlib.contextmanager
def fluent_store(ws: Workspace) -> Iterator[None]:
    """Point MLflow's fluent API at ``ws``'s store for the block, then restore exactly what was there.

    Q: Which MLflow calls need it?
    A: Those that find their store through the process-wide URIs and take no
       client or URI of their own: a flavor's ``log_model`` (``Model.log``
       builds its ``MlflowClient`` from the fluent tracking URI and registers
       through the fluent registry), and the SQL registry store's
       ``create_model_version`` of a ``models:/m-…`` source (it looks the
       logged model up with a bare ``MlflowClient()``). Downloads do not:
       :func:`shipyard.tracking.download_model` resolves ``models:/`` URIs with
       the workspace's client.

    Q: What exactly is restored?
    A: The :class:`FluentState`: the URIs as ``mlflow.set_tracking_uri`` and
       ``set_registry_uri`` left them, "never set" included, and the two
       environment variables those setters write for subprocesses.

    Q: What can it not prevent?
    A: While the block runs, a user's own ``mlflow.*`` call on another thread
       sees the workspace's store: the URIs are MLflow's, and process-wide.
       Shipyard opens a block only around a call that needs it.

    Example:
        >>> with fluent_store(ws):                                    # doctest: +SKIP
        ...     mlflow.sklearn.log_model(model, name="model", run_id=run_id)
    """
    import mlflow

    with _fluent_lock:
        before = fluent_state()
        try:
            mlflow.set_tracking_uri(ws.tracking_uri)
            mlflow.set_registry_uri(ws.registry_uri)
            yield
        finally:
            restore_fluent_state(before)


def metric_history_page(
    client: MlflowClient, run_id: str, key: str, *, max_results: int, page_token: str | None
) -> PagedList[Metric]:
    """One page of ``key``'s history in MLflow's stored order; its ``token`` is the next page's (None: the last).

    Q: Why through the client's store?
    A: ``MlflowClient.get_metric_history`` has no paging arguments: it reads
       the whole history on every call. Only the store's method (SQL and REST
       alike) takes ``max_results`` and ``page_token``, and a live view that
       polls a long run must not re-read it all each second.
    """
    store = client._tracking_client.store  # noqa: SLF001 - the paged history call lives on the store
    return store.get_metric_history(run_id, key, max_results=max_results, page_token=page_token)


_INFER: Any = object()
"""``dataset_entity(schema=...)`` not given: MLflow infers the schema itself."""


def dataset_entity(dataset: Any, *, schema: Schema | None = _INFER) -> DatasetEntity:
    """The tracking entity of an ``mlflow.data`` dataset, for ``MlflowClient.log_inputs``.

    Args:
        dataset: an ``mlflow.data`` dataset.
        schema: for a ``PandasDataset``, the schema :func:`dataset_schema` computed
            for its frame (None: no schema, as MLflow records when it cannot infer
            one); not given, MLflow infers it.

    Q: Why the private method?
    A: The client logs inputs as entities, and only the dataset builds its own
       entity (source type, source, schema, profile); the public way,
       ``mlflow.log_input``, logs to the fluent active run, which a shipyard
       run is not.

    Q: Why hand MLflow the schema rather than build the entity here?
    A: ``PandasDataset`` infers its schema value by value (seconds for a
       million rows). Its ``schema`` is a ``functools.cached_property``, so a
       value already in the instance's ``__dict__`` is the one it serialises,
       and the entity stays in MLflow's own format, field for field.
    """
    if schema is not _INFER:
        vars(dataset)["schema"] = schema  # the cached property's slot: see above
    return dataset._to_mlflow_entity()  # noqa: SLF001 - see above


class _Untypable(Exception):
    """A column MLflow's inference fails on: the dataset then has no schema, as in MLflow."""


def dataset_schema(frame: pd.DataFrame, missing: Sequence[np.ndarray] | None = None) -> Schema | None:
    """The schema ``mlflow.data.from_pandas(frame).schema`` infers, from whole columns instead of every value.

    Args:
        frame: the dataset.
        missing: ``frame[c].isna()`` of each column, in order, when the caller has them already.

    None where MLflow's is None: when a column cannot be typed (timedeltas,
    complex numbers, an object column mixing strings and numbers, duplicate
    column names), ``PandasDataset.schema`` records no schema at all.

    Q: Why is it MLflow's answer?
    A: MLflow types a column (``_infer_pandas_column``) from its dtype, except
       object-kind columns, whose values it types one by one and merges; and a
       column is optional (``_infer_required``) when any value is None, NaN,
       NA or NaT. Here:

       * a dtype that is not object-kind: MLflow's own ``_infer_numpy_dtype``;
       * optional: MLflow's own per-value test, run only on the values pandas
         marks missing (plus NaN in nullable or Arrow float columns, which it
         does not mark): every value that test accepts is among them;
       * an object column of strings with None, NaN or NA, and ``string``/``str``
         columns: string (Any when every value is missing), which is what
         MLflow's loop and its string fallback answer for every such mix;
       * a categorical: MLflow's own inference on one value per category in
         use (and NaN when one is missing);
       * other object columns: pandas' ``infer_objects`` as MLflow calls it,
         then MLflow's own typing of one value per Python type (a value's type
         decides its answer, and the merge depends neither on order nor on
         repeats); lists, dicts and arrays, typed by their contents, and other
         extension dtypes go through MLflow's own per-value loop.

       ``tests/unit/test_tracking_datasets.py`` compares the two on every
       dtype and many mixes, and fails on any difference.
    """
    from mlflow.types import ColSpec, Schema

    if not frame.columns.is_unique:
        return None  # MLflow's frame[name] is then a frame, which it cannot type
    masks = missing if missing is not None else [frame[name].isna().to_numpy(dtype=bool) for name in frame.columns]
    try:
        return Schema(
            [
                ColSpec(type=_column_type(frame[name], mask), name=name, required=_column_required(frame[name], mask))
                for name, mask in zip(frame.columns, masks, strict=True)
            ]
        )
    except Exception:  # noqa: BLE001 - as PandasDataset.schema: no schema rather than no dataset
        return None


def _column_required(series: pd.Series, missing: np.ndarray) -> bool:
    """MLflow's ``_infer_required``: no value is None, NaN, NA or NaT."""
    import numpy as np
    from mlflow.types.utils import _is_none_or_nan

    candidates = missing
    if series.dtype.kind == "f" and not isinstance(series.dtype, np.dtype):
        candidates = candidates | np.isnan(series.to_numpy(dtype="float64", na_value=np.nan))
    where = np.flatnonzero(candidates)
    # all candidates together: a masked array boxes its values differently when it holds a missing one
    return where.size == 0 or not any(_is_none_or_nan(value) for value in series.iloc[where])


def _column_type(series: pd.Series, missing: np.ndarray) -> Any:
    """MLflow's ``_infer_pandas_column``, from the dtype or from one value per kind of value."""
    import numpy as np
    import pandas as pd
    from mlflow.types.utils import _infer_numpy_dtype, _infer_pandas_column

    dtype = series.dtype
    if dtype.kind != "O":
        return _infer_numpy_dtype(dtype)
    if isinstance(dtype, pd.CategoricalDtype):
        codes = np.asarray(series.array.codes, dtype=np.intp)
        used = np.flatnonzero(np.bincount(codes + 1, minlength=1)) - 1
        return _infer_pandas_column(pd.Series(pd.Categorical.from_codes(used, dtype=dtype)))
    if isinstance(dtype, pd.StringDtype) and pd.api.types.is_string_dtype(series):
        from mlflow.types import DataType
        from mlflow.types.schema import AnyType

        # every value is a str or missing; a str subclass makes MLflow's loop fail and its fallback say string
        return AnyType() if len(series) and bool(missing.all()) else DataType.string
    if isinstance(dtype, np.dtype):
        return _object_column_type(series, missing)
    return _infer_pandas_column(series)


def _object_column_type(series: pd.Series, missing: np.ndarray) -> Any:
    import numpy as np
    import pandas as pd
    from mlflow.types import DataType
    from mlflow.types.utils import _infer_colspec_type, _infer_numpy_dtype, _infer_pandas_column

    values = series.to_numpy()
    if len(values) and not missing.all() and pd.api.types.infer_dtype(values, skipna=True) == "string":
        if set(map(type, values[missing])) <= {type(None), float, type(pd.NA)}:
            # infer_objects makes these a str column (pandas >= 3): MLflow's loop or fallback says string;
            # kept as objects, a str subclass fails the loop, and the fallback says string only without None
            if _strings_become_str_dtype() or not missing.any():
                return DataType.string
            if set(map(type, values[~missing])) <= {str, np.str_}:
                return DataType.string
    converted = series.infer_objects()
    if converted.dtype.kind != "O":
        return _infer_numpy_dtype(converted.dtype)
    samples = _one_per_type(converted.to_list()) if isinstance(converted.dtype, np.dtype) else None
    if samples is None:
        return _infer_pandas_column(series)
    try:
        return _infer_colspec_type(samples).dtype
    except Exception as exc:  # MLflow's own fallback, for backwards compatibility with string columns
        if pd.api.types.is_string_dtype(converted):
            return DataType.string
        raise _Untypable(f"column {series.name!r} mixes types MLflow cannot merge") from exc


@functools.cache
def _strings_become_str_dtype() -> bool:
    """Whether ``infer_objects`` turns an object column of strings and None into a ``str`` column (pandas >= 3)."""
    import pandas as pd

    return isinstance(pd.Series(["a", None], dtype=object).infer_objects().dtype, pd.StringDtype)


def _one_per_type(values: list[Any]) -> list[Any] | None:
    """One value of each Python type (NaN apart from other floats); None when a value is a container."""
    import numpy as np

    samples: dict[Any, Any] = {}
    for value in values:
        kind = type(value)
        key = (kind, value != value) if isinstance(value, float) else kind  # noqa: PLR0124 - NaN test
        if key not in samples:
            if isinstance(value, (list, dict, np.ndarray)):
                return None
            samples[key] = value
    return list(samples.values())
