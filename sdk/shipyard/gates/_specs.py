"""Gate specs: frozen, declarative descriptions of a check, and their JSON form.

A spec says *what* to check; :mod:`shipyard.gates._evaluate` says *how*. Specs
are stored with every report as JSON, so ``shipyard gates check`` can rebuild
and re-run exactly the gates the notebook ran.

Q: How can a custom gate defined in a notebook be re-run by the CLI?
A: Its function is serialised with cloudpickle (which MLflow already depends
   on) into the spec. Loading it executes code from the workspace's own
   artifact store, which is as trusted as the models stored there.

Q: And a gate imported from a module of the project (``from checks import
   agreement``), re-run by a CI job that has the project's packages but not
   its source tree?
A: cloudpickle stores a function of an importable module *by reference*
   (module and name), which fails wherever that module cannot be imported.
   So while pickling, every module the gate reaches that no installed
   distribution provides (the project's own code, editable installs
   included) is registered with ``cloudpickle.register_pickle_by_value``:
   its functions and classes travel inside the spec. Modules of installed
   distributions stay by reference (the CI job installs them), and their
   ``distribution==version`` is stored so that a job lacking one is told what
   to install. The function's source text is stored beside it, for the
   person reading the report; it is never executed.
"""

from __future__ import annotations

import base64
import json
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal, Union

from .._core.errors import GateError

Op = Literal[">=", ">", "<=", "<"]
OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": lambda a, b: a >= b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    "<": lambda a, b: a < b,
}
RESERVED_NAMES = frozenset({"verdict", "override", "report"})
_NAME = re.compile(r"^[\w.\-/: ]{1,200}$")
_EXPR = re.compile(r"^\s*(?P<metric>[^<>=\s]+)\s*(?P<op>>=|<=|>|<)\s*(?P<value>[-+0-9.eE]+)\s*$")


def _check_name(name: str) -> str:
    if not _NAME.match(name) or name in RESERVED_NAMES:
        raise GateError(
            f"Gate name {name!r} is not usable as a tag name.",
            hint="Use letters, digits and _ . - / : (not 'verdict', 'override' or 'report').",
        )
    return name


def _check_blocking(blocking: object, gate: str) -> None:
    if not isinstance(blocking, bool):
        raise GateError(f"Gate {gate!r}: blocking must be True or False, not {blocking!r}.")


@dataclass(frozen=True)
class Threshold:
    """A metric must satisfy ``metric op value`` (e.g. ``accuracy >= 0.9``).

    ``source="logged"`` reads the metric the run logged, ``"holdout"``
    computes it on the holdout set, ``"auto"`` prefers the logged one.
    """

    metric: str
    op: Op
    value: float
    source: Literal["auto", "logged", "holdout"] = "auto"
    blocking: bool = True
    name: str | None = None
    kind: ClassVar[str] = "threshold"

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise GateError(f"Threshold on {self.metric!r}: unknown operator {self.op!r}.", hint="Use >=, >, <= or <.")
        if self.source not in ("auto", "logged", "holdout"):
            raise GateError(f"Threshold on {self.metric!r}: source must be 'auto', 'logged' or 'holdout'.")
        _check_blocking(self.blocking, self.gate_name)
        _check_name(self.gate_name)

    @property
    def gate_name(self) -> str:
        return self.name or f"threshold.{self.metric}"


@dataclass(frozen=True)
class ChampionChallenger:
    """The candidate must not be worse than the current champion on the same holdout.

    Per metric, with its direction (higher or lower is better): the candidate
    passes when it is at most ``tolerance`` worse than the champion, or, when
    ``min_improvement`` is set, at least that much better.
    """

    metrics: tuple[str, ...] = ("accuracy",)
    tolerance: float = 0.0
    min_improvement: float | None = None
    directions: tuple[tuple[str, str], ...] = ()
    model_name: str | None = None
    alias: str = "champion"
    blocking: bool = True
    name: str | None = None
    kind: ClassVar[str] = "champion_challenger"

    def __post_init__(self) -> None:
        if not self.metrics:
            raise GateError("champion_challenger needs at least one metric.", hint='e.g. metrics=["accuracy"].')
        if self.tolerance < 0 or (self.min_improvement is not None and self.min_improvement < 0):
            raise GateError(
                f"Gate {self.gate_name!r}: tolerance and min_improvement must be >= 0.",
                hint="tolerance is how much worse the candidate may be; min_improvement how much better it must be.",
            )
        for _, direction in self.directions:
            if direction not in ("higher", "lower"):
                raise GateError(f"Gate {self.gate_name!r}: direction must be 'higher' or 'lower', not {direction!r}.")
        _check_blocking(self.blocking, self.gate_name)
        _check_name(self.gate_name)

    @property
    def gate_name(self) -> str:
        return self.name or "champion_challenger"


@dataclass(frozen=True)
class Column:
    """What one column of a dataset must look like.

    Attributes:
        name: column name.
        dtype: exact pandas dtype (``"float64"``) or a family: ``numeric``, ``integer``,
            ``float``, ``string``, ``category``, ``bool``, ``datetime``.
        min: smallest allowed value (numeric columns).
        max: largest allowed value (numeric columns).
        categories: the only values allowed.
        max_null_rate: largest allowed share of missing values (0.0 = none allowed).
    """

    name: str
    dtype: str | None = None
    min: float | None = None
    max: float | None = None
    categories: tuple[str, ...] | None = None
    max_null_rate: float | None = None

    def __post_init__(self) -> None:
        if self.categories is not None and not isinstance(self.categories, tuple):
            object.__setattr__(self, "categories", tuple(self.categories))
        if self.max_null_rate is not None and not 0 <= self.max_null_rate <= 1:
            raise GateError(f"Column {self.name!r}: max_null_rate must be between 0 and 1.")


@dataclass(frozen=True)
class DataContract:
    """A dataset must honour declared column rules and/or the profile of a reference dataset.

    ``reference=(run_id, dataset_name)`` derives rules from the profile that
    ``shipyard.log_dataset`` stored on that run: same columns and dtypes,
    values inside the reference range (widened by ``range_slack`` times the
    range), only categories seen there (when the profile lists them all), and
    null rates at most ``null_tolerance`` above the reference.
    """

    columns: tuple[Column, ...] = ()
    dataset: str = "holdout"
    reference: tuple[str, str] | None = None
    allow_extra_columns: bool = True
    range_slack: float = 0.0
    null_tolerance: float = 0.0
    blocking: bool = True
    name: str | None = None
    kind: ClassVar[str] = "data_contract"

    def __post_init__(self) -> None:
        if not self.columns and self.reference is None:
            raise GateError(
                f"Gate {self.gate_name!r} declares no columns and no reference profile.",
                hint="Pass columns=[Column(...)] or reference=(run_id, dataset_name), or both.",
            )
        if self.reference is not None and (len(self.reference) != 2 or not all(self.reference)):
            raise GateError(f"Gate {self.gate_name!r}: reference must be (run_id, dataset_name).")
        _check_blocking(self.blocking, self.gate_name)
        _check_name(self.gate_name)

    @property
    def gate_name(self) -> str:
        return self.name or f"contract.{self.dataset}"


@dataclass(frozen=True)
class SliceParity:
    """The gap of ``metric`` between the best and worst group of ``column`` stays under ``max_gap``.

    Groups with fewer than ``min_rows`` rows are reported but not compared.
    A numeric column with more than ``bins`` distinct values is cut into
    ``bins`` quantile bins.
    """

    column: str
    metric: str = "accuracy"
    max_gap: float = 0.1
    min_rows: int = 10
    bins: int = 4
    blocking: bool = True
    name: str | None = None
    kind: ClassVar[str] = "slice_parity"

    def __post_init__(self) -> None:
        if self.max_gap < 0 or self.min_rows < 1 or self.bins < 2:
            raise GateError(f"Gate {self.gate_name!r}: need max_gap >= 0, min_rows >= 1 and bins >= 2.")
        _check_blocking(self.blocking, self.gate_name)
        _check_name(self.gate_name)

    @property
    def gate_name(self) -> str:
        return self.name or f"slice.{self.column}"


@dataclass(frozen=True)
class CustomGate:
    """A user function decides. It gets a :class:`~shipyard.gates.GateContext` and returns
    ``True``/``False``, a score (compared with ``op bound``), or either of those with a message
    as a ``(result, message)`` tuple. If it raises, the gate fails with the exception."""

    fn: Callable[..., Any] = field(compare=False)
    bound: float | None = None
    op: Op = ">="
    blocking: bool = True
    name: str | None = None
    kind: ClassVar[str] = "custom"

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise GateError(f"custom() needs a function, not {type(self.fn).__name__}.")
        if self.op not in OPS:
            raise GateError(f"Gate {self.gate_name!r}: unknown operator {self.op!r}.", hint="Use >=, >, <= or <.")
        _check_blocking(self.blocking, self.gate_name)
        _check_name(self.gate_name)

    @property
    def gate_name(self) -> str:
        return self.name or f"custom.{getattr(self.fn, '__name__', 'gate').strip('<>')}"


# Drift gates judge production data (``shipyard monitor``); they live beside their evaluation and use the
# name checks above, hence the import here rather than at the top.
from ._attributions import AttributionGate
from ._drift import Drift, PredictionDrift

GateSpec = Union[
    Threshold, ChampionChallenger, DataContract, SliceParity, CustomGate, AttributionGate, Drift, PredictionDrift
]
SPEC_TYPES: dict[str, type] = {
    cls.kind: cls
    for cls in (
        Threshold, ChampionChallenger, DataContract, SliceParity, CustomGate, AttributionGate, Drift, PredictionDrift
    )
}


# ---- constructors users call --------------------------------------------------------------


def threshold(
    metric: str,
    op: Op | None = None,
    value: float | None = None,
    *,
    source: Literal["auto", "logged", "holdout"] = "auto",
    blocking: bool = True,
    name: str | None = None,
) -> Threshold:
    """A metric threshold, written as one expression or as three parts.

    Example:
        >>> threshold("accuracy >= 0.9").value
        0.9
        >>> threshold("rmse", "<=", 3.2, blocking=False).blocking
        False
    """
    if op is None and value is None:
        match = _EXPR.match(metric)
        if match is None:
            raise GateError(
                f"Cannot read the threshold {metric!r}.",
                hint='Write it as "metric op number", e.g. "accuracy >= 0.9" or "rmse <= 3.2".',
            )
        metric, op, raw = match["metric"], match["op"], match["value"]
        try:
            value = float(raw)
        except ValueError as exc:
            raise GateError(f"Threshold {raw!r} is not a number.") from exc
    if op is None or value is None:
        raise GateError(f"Threshold on {metric!r} needs both an operator and a value.", hint='e.g. "accuracy >= 0.9".')
    return Threshold(metric, op, float(value), source, blocking, name)


def champion_challenger(
    metrics: str | Sequence[str] = ("accuracy",),
    *,
    tolerance: float = 0.0,
    min_improvement: float | None = None,
    directions: Mapping[str, str] | None = None,
    model_name: str | None = None,
    alias: str = "champion",
    blocking: bool = True,
    name: str | None = None,
) -> ChampionChallenger:
    """Candidate vs the current champion, both evaluated on the same holdout in the same call.

    Example:
        >>> champion_challenger(["accuracy", "f1"], tolerance=0.01).metrics
        ('accuracy', 'f1')
    """
    metric_tuple = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    return ChampionChallenger(
        metric_tuple,
        float(tolerance),
        None if min_improvement is None else float(min_improvement),
        tuple(sorted((directions or {}).items())),
        model_name,
        alias,
        blocking,
        name,
    )


def data_contract(
    columns: Iterable[Column] | Mapping[str, Mapping[str, Any]] = (),
    *,
    dataset: str = "holdout",
    reference: tuple[str, str] | None = None,
    allow_extra_columns: bool = True,
    range_slack: float = 0.0,
    null_tolerance: float = 0.0,
    blocking: bool = True,
    name: str | None = None,
) -> DataContract:
    """A data contract from declared columns, a reference profile, or both.

    Example:
        >>> c = data_contract({"age": {"dtype": "numeric", "min": 0, "max": 120, "max_null_rate": 0.0}})
        >>> c.columns[0].max
        120
    """
    if isinstance(columns, Mapping):
        cols = tuple(Column(str(k), **dict(v)) for k, v in columns.items())
    else:
        cols = tuple(columns)
    return DataContract(
        cols,
        dataset,
        tuple(reference) if reference else None,
        allow_extra_columns,  # type: ignore[arg-type]
        float(range_slack),
        float(null_tolerance),
        blocking,
        name,
    )


def slice_parity(
    column: str,
    metric: str = "accuracy",
    *,
    max_gap: float = 0.1,
    min_rows: int = 10,
    bins: int = 4,
    blocking: bool = True,
    name: str | None = None,
) -> SliceParity:
    """Largest gap of ``metric`` across groups of ``column`` must stay within ``max_gap``.

    Example:
        >>> slice_parity("sex", "accuracy", max_gap=0.05).gate_name
        'slice.sex'
    """
    return SliceParity(column, metric, float(max_gap), int(min_rows), int(bins), blocking, name)


def custom(
    fn: Callable[..., Any] | None = None,
    *,
    bound: float | None = None,
    op: Op = ">=",
    blocking: bool = True,
    name: str | None = None,
) -> Any:
    """A gate decided by ``fn(ctx)``; usable as ``custom(fn)`` or as a decorator ``@custom(bound=0.8)``.

    Example:
        >>> def has_rows(ctx):
        ...     return len(ctx.holdout) > 100, f"{len(ctx.holdout)} holdout rows"
        >>> custom(has_rows).gate_name
        'custom.has_rows'
    """
    if fn is None:
        return lambda f: CustomGate(f, bound, op, blocking, name)
    return CustomGate(fn, bound, op, blocking, name)


# ---- JSON form ----------------------------------------------------------------------------


def spec_to_dict(spec: GateSpec) -> dict[str, Any]:
    """JSON-ready form of ``spec`` (custom functions pickled by value)."""
    out: dict[str, Any] = {"kind": spec.kind, "name": spec.gate_name}
    for f in fields(spec):
        value = getattr(spec, f.name)
        if f.name == "fn":
            out["fn"] = _function_to_dict(value)
        elif f.name == "columns" and isinstance(spec, DataContract):
            out["columns"] = [{k: v for k, v in _column_dict(c).items() if v is not None} for c in value]
        elif f.name == "name":
            continue
        elif isinstance(value, tuple):
            out[f.name] = [list(v) if isinstance(v, tuple) else v for v in value]
        else:
            out[f.name] = value
    out["spec_name"] = spec.name
    return out


def _column_dict(column: Column) -> dict[str, Any]:
    return {
        "name": column.name,
        "dtype": column.dtype,
        "min": column.min,
        "max": column.max,
        "categories": list(column.categories) if column.categories is not None else None,
        "max_null_rate": column.max_null_rate,
    }


def spec_from_dict(data: Mapping[str, Any]) -> GateSpec:
    """Rebuild a spec from :func:`spec_to_dict` output.

    Raises:
        GateError: the stored spec is of an unknown kind or cannot be loaded.
    """
    kind = data.get("kind")
    cls = SPEC_TYPES.get(str(kind))
    if cls is None:
        raise GateError(f"Stored gate {data.get('name')!r} has unknown kind {kind!r}.")
    values: dict[str, Any] = {}
    for f in fields(cls):
        if f.name == "name":
            values["name"] = data.get("spec_name")
        elif f.name not in data:
            continue
        elif f.name == "fn":
            values["fn"] = _function_from_dict(str(data.get("name")), data["fn"])
        elif f.name == "columns" and cls is DataContract:
            values["columns"] = tuple(Column(**c) for c in data["columns"])
        elif f.name in ("metrics", "directions", "reference") and data[f.name] is not None:
            raw = data[f.name]
            values[f.name] = tuple(tuple(v) if isinstance(v, list) else v for v in raw)
        else:
            values[f.name] = data[f.name]
    return cls(**values)  # type: ignore[no-any-return]


# ---- custom functions by value ------------------------------------------------------------


def _function_to_dict(fn: Callable[..., Any]) -> dict[str, Any]:
    """``fn`` pickled with the project's own modules by value, its source, and what it needs installed."""
    import cloudpickle

    by_value, requires = _reached_modules(fn)
    already = set(cloudpickle.list_registry_pickle_by_value())
    registered = [m for m in by_value if m.__name__ not in already]
    for module in registered:
        cloudpickle.register_pickle_by_value(module)
    try:
        payload = cloudpickle.dumps(fn)
    finally:
        for module in registered:
            cloudpickle.unregister_pickle_by_value(module)
    out: dict[str, Any] = {
        "qualname": f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}",
        "cloudpickle": base64.b64encode(payload).decode("ascii"),
        "by_value": sorted(m.__name__ for m in by_value),
        "requires": requires,
    }
    source = _source_of(fn)
    if source is not None:
        out["source"] = source
    return out


def _function_from_dict(gate: str, stored: Mapping[str, Any]) -> Callable[..., Any]:
    """The function stored by :func:`_function_to_dict`.

    Raises:
        GateError: it cannot be loaded here; the message names the missing module and how to provide it.
    """
    import cloudpickle

    qualname = stored.get("qualname")
    try:
        return cloudpickle.loads(base64.b64decode(stored["cloudpickle"]))  # type: ignore[no-any-return]
    except ImportError as exc:
        missing = exc.name or str(exc)
        dist = (stored.get("requires") or {}).get(missing.split(".")[0])
        how = (
            f"Install {dist} in this environment (pip install '{dist}')."
            if dist
            else f"Install the distribution that provides {missing!r} here, or put the folder that holds it on "
            "PYTHONPATH; or re-run the check with this shipyard, which stores the project's own modules by value."
        )
        raise GateError(
            f"Custom gate {gate!r} ({qualname}) cannot be loaded here: it needs module {missing!r}, "
            "which this environment cannot import.",
            hint=how,
        ) from exc
    except Exception as exc:
        raise GateError(
            f"Custom gate {gate!r} ({qualname}) cannot be loaded here: {type(exc).__name__}: {exc}",
            hint="Run `shipyard gates check` with the Python and package versions the gate was recorded with "
            "(see the run's lock file), or re-run the check here.",
        ) from exc


def _source_of(fn: Callable[..., Any]) -> str | None:
    import inspect
    import textwrap

    try:
        return textwrap.dedent(inspect.getsource(fn))[:20_000]
    except (OSError, TypeError):
        return None


def _reached_modules(fn: Callable[..., Any]) -> tuple[list[Any], dict[str, str]]:
    """Top-level modules ``fn`` reaches that no installed distribution provides, and the
    ``distribution==version`` of those that one does.

    Reached means: the function's own module, and the modules of the functions,
    classes and modules its code names through its globals and closure,
    followed through functions of the project's own modules.
    """
    import types

    installed = _installed_top_levels()
    by_value: dict[str, Any] = {}
    requires: dict[str, str] = {}
    seen: set[int] = set()
    todo: list[Any] = [fn]
    while todo and len(seen) < 500:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        module_name = obj.__name__ if isinstance(obj, types.ModuleType) else getattr(obj, "__module__", None)
        top = str(module_name or "").split(".")[0]
        kind = _module_kind(top, installed)
        if kind == "installed":
            requires.setdefault(top, _distribution_pin(top, installed))
            continue
        if kind == "project" and top in sys.modules:
            by_value.setdefault(top, sys.modules[top])
        elif kind != "main":
            continue
        function = getattr(obj, "__func__", obj)
        if isinstance(function, types.FunctionType):
            todo.extend(_names_used(function))
        elif isinstance(obj, type):
            todo.extend(v for v in vars(obj).values() if isinstance(v, (types.FunctionType, classmethod, staticmethod)))
    return list(by_value.values()), requires


def _names_used(fn: Any) -> list[Any]:
    """Objects that ``fn``'s code reads from its globals and closure (nested code included)."""
    import types

    names: set[str] = set()
    codes = [fn.__code__]
    while codes:
        code = codes.pop()
        names.update(code.co_names)
        codes.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    found = [fn.__globals__[n] for n in names if n in fn.__globals__]
    for cell in fn.__closure__ or ():
        try:
            found.append(cell.cell_contents)
        except ValueError:  # an empty cell
            continue
    return [f for f in found if isinstance(f, (types.FunctionType, types.ModuleType, type)) or hasattr(f, "__func__")]


def _module_kind(top: str, installed: Mapping[str, Sequence[str]]) -> str:
    """``main`` (a notebook or script: cloudpickle stores it by value anyway), ``installed``,
    ``project`` (importable here but from no installed distribution) or ``skip`` (standard
    library, shipyard itself, builtins)."""
    if not top or top == "builtins" or top in sys.builtin_module_names or top in sys.stdlib_module_names:
        return "skip"
    if top == "__main__":
        return "main"
    if top == "shipyard":  # the runtime that loads the gate, never part of it
        return "skip"
    if top in installed:
        return "installed"
    module = sys.modules.get(top)
    if module is None:
        return "skip"
    if _in_site_packages(getattr(module, "__file__", None)):
        return "installed"
    return "project"


def _in_site_packages(path: str | None) -> bool:
    if not path:
        return False
    import site
    import sysconfig
    from pathlib import Path

    roots = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages()}
    resolved = Path(path).resolve()
    return any(resolved.is_relative_to(Path(r).resolve()) for r in roots if r)


_INSTALLED: dict[str, list[str]] | None = None


def _installed_top_levels() -> Mapping[str, Sequence[str]]:
    """Importable top-level names → the distributions that install them (read once per process)."""
    global _INSTALLED
    if _INSTALLED is None:
        from importlib.metadata import packages_distributions

        _INSTALLED = {k: list(v) for k, v in packages_distributions().items()}
    return _INSTALLED


def _distribution_pin(top: str, installed: Mapping[str, Sequence[str]]) -> str:
    from importlib.metadata import PackageNotFoundError, version

    dist = installed[top][0]
    try:
        return f"{dist}=={version(dist)}"
    except PackageNotFoundError:
        return dist


def spec_identity(data: Mapping[str, Any] | None) -> str:
    """What makes two stored specs the same gate: every setting, and for a custom gate its
    function's name and source (a pickle's bytes differ between processes for the same code).

    Example:
        >>> strict, lenient = threshold("rmse <= 75"), threshold("rmse <= 1000")
        >>> spec_identity(spec_to_dict(strict)) == spec_identity(spec_to_dict(lenient))
        False
    """
    if not data:
        return ""
    plain = {k: v for k, v in data.items() if k not in ("check",)}
    fn = plain.get("fn")
    if isinstance(fn, Mapping):
        plain["fn"] = {"qualname": fn.get("qualname"), "source": fn.get("source") or fn.get("cloudpickle")}
    return json.dumps(plain, sort_keys=True, default=str)
