"""How each gate kind is evaluated: from specs and data to :class:`GateResult`.

Nothing here writes anywhere; recording is :mod:`shipyard.gates._check`'s job.
Models are reached through :class:`Subject`, so the logic can be tested with
plain Python callables.

Q: Why does a model that cannot score the holdout give a result, not an exception?
A: Imperfect data is exactly when the report matters most: five NaN values
   that make a model's ``predict`` raise also make the data contract fail,
   and the contract's message is the explanation. So a gate that cannot be
   evaluated on *this data* (predict raises, the target or the predictions
   hold NaN, the metric cannot take these labels) raises
   :class:`CannotEvaluate`, which the check turns into a result with status
   ``error``, the cause in its message, blocking like a failure. A gate that
   is *declared* wrongly (a metric never logged, a contract for a column the
   data does not have) is still a :class:`GateError`: that is a mistake in
   the code, not in the data.
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._core.errors import GateError, ShipyardError
from . import _metrics
from ._report import GateResult
from ._specs import (
    OPS,
    ChampionChallenger,
    Column,
    CustomGate,
    DataContract,
    GateSpec,
    SliceParity,
    Threshold,
)

_EPS = 1e-12


class CannotEvaluate(GateError):
    """A gate that cannot be evaluated on the data it was given (the check records status ``error``)."""


@dataclass
class Subject:
    """A model to evaluate: a label for messages and a way to predict.

    Attributes:
        label: how messages name it, e.g. ``iris/1`` or ``run 3f2a…``.
        predict_fn: called with a DataFrame of features; returns predictions.
        feature_names: the inputs the model expects (from its signature), when known.
        info: what the report records about it (run id, model URI, name, version).
    """

    label: str
    predict_fn: Callable[[Any], Any]
    feature_names: list[str] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    # id(frame) -> (frame, predictions). The frame itself is kept beside its
    # predictions: an id is unique only among live objects, so a cache keyed on
    # the bare id handed a collected frame's predictions to the next frame
    # allocated at the same address. Holding the frame keeps it alive, so its
    # id cannot be reused while the entry exists, and the identity check below
    # makes the hit exact. This is O(1) per call; a content hash of the frame
    # (pandas.util.hash_pandas_object) would be correct too but costs a pass
    # over every row on each gate's call. A Subject lives for one check, so
    # the frames it holds are the few that check was given anyway.
    _cache: dict[int, tuple[Any, Any]] = field(default_factory=dict, repr=False)

    def predict(self, frame: Any, *, gate: str, exclude: Sequence[str] = ()) -> Any:
        """Predictions on ``frame`` (cached per frame object), as a 1-D numpy array."""
        import numpy as np
        import pandas as pd

        cached = self._cache.get(id(frame))
        if cached is not None and cached[0] is frame:
            if isinstance(cached[1], CannotEvaluate):  # one failing predict per frame, not one per gate
                raise CannotEvaluate(cached[1].message, hint=cached[1].hint) from cached[1].__cause__
            return cached[1]
        if self.feature_names:
            missing = [c for c in self.feature_names if c not in frame.columns]
            if missing:
                raise GateError(
                    f"Gate {gate!r}: the holdout set lacks column(s) {', '.join(map(repr, missing))} that "
                    f"{self.label} expects (holdout columns: {', '.join(map(str, frame.columns))}).",
                    hint="Pass a holdout set with the model's input columns plus the target column.",
                )
            features = frame[self.feature_names]
        else:
            features = frame.drop(columns=[c for c in exclude if c in frame.columns])
        try:
            raw = self.predict_fn(features)
        except ShipyardError:
            raise
        except Exception as exc:
            problem = CannotEvaluate(
                f"{self.label} cannot score the holdout set: {type(exc).__name__}: {_first_line(exc)}",
                hint="Clean the holdout (missing values, unseen categories, wrong dtypes; the data contract "
                "names them) or make the model handle such rows, e.g. an imputer or "
                "OneHotEncoder(handle_unknown='ignore') in its pipeline.",
            )
            problem.__cause__ = exc
            self._cache[id(frame)] = (frame, problem)
            raise problem from exc
        if isinstance(raw, pd.DataFrame):
            raw = raw.iloc[:, 0]
        predictions = np.asarray(raw)
        if predictions.ndim > 1:
            predictions = predictions.reshape(len(predictions), -1)[:, 0]
        self._cache[id(frame)] = (frame, predictions)
        return predictions


@dataclass
class EvalContext:
    """Everything gates may read during one check."""

    candidate: Subject | None
    logged_metrics: Mapping[str, float]
    run_id: str | None
    holdout: Any = None
    target: str | None = None
    datasets: Mapping[str, Any] = field(default_factory=dict)
    model_name: str | None = None
    champion_lookup: Callable[[str, str], Subject | None] | None = None
    profile_lookup: Callable[[str, str], Mapping[str, Any]] | None = None
    exclude: tuple[str, ...] = ()
    champion_used: dict[str, Any] | None = None
    # the candidate's feature attributions on the holdout, computed on first call (None: no holdout or candidate)
    attributions: Callable[[], Any] | None = None


class GateContext:
    """What a custom gate function receives.

    Attributes:
        holdout: the holdout DataFrame (features and target), or None.
        X: the holdout features (target removed), or None.
        y: the holdout target, or None.
        metrics: metrics the candidate's run logged.
        run_id: the candidate's MLflow run.
        datasets: every dataset given to the check, by name.

    Example:
        >>> def no_constant_predictions(ctx):                 # doctest: +SKIP
        ...     return len(set(ctx.predict())) > 1, "predictions vary"
    """

    def __init__(self, ctx: EvalContext, gate: str) -> None:
        self._ctx = ctx
        self._gate = gate
        self.holdout = ctx.holdout
        self.metrics = dict(ctx.logged_metrics)
        self.run_id = ctx.run_id
        self.datasets = dict(ctx.datasets)
        target = ctx.target
        has_target = ctx.holdout is not None and target in ctx.holdout.columns
        self.X = ctx.holdout.drop(columns=[target]) if has_target else ctx.holdout
        self.y = ctx.holdout[target] if has_target else None

    def predict(self, frame: Any = None) -> Any:
        """The candidate's predictions on ``frame`` (default: the holdout set)."""
        subject = _require_candidate(self._ctx, self._gate)
        frame = self._ctx.holdout if frame is None else frame
        if frame is None:
            raise GateError(f"Gate {self._gate!r}: there is no holdout set to predict on.", hint="Pass holdout=.")
        return subject.predict(frame, gate=self._gate, exclude=self._ctx.exclude)


def evaluate(spec: GateSpec, ctx: EvalContext) -> GateResult:
    """Evaluate one gate. Bad declarations and bad inputs raise :class:`GateError`.

    Example:
        >>> ctx = EvalContext(None, {"accuracy": 0.95}, "r1")
        >>> evaluate(Threshold("accuracy", ">=", 0.9), ctx).status
        'pass'
    """
    if isinstance(spec, Threshold):
        return _threshold(spec, ctx)
    if isinstance(spec, ChampionChallenger):
        return _champion_challenger(spec, ctx)
    if isinstance(spec, DataContract):
        return _data_contract(spec, ctx)
    if isinstance(spec, SliceParity):
        return _slice_parity(spec, ctx)
    if isinstance(spec, CustomGate):
        return _custom(spec, ctx)
    if spec.kind == "attribution":
        from ._attributions import evaluate_gate

        return evaluate_gate(spec, ctx)  # type: ignore[arg-type]
    raise GateError(
        f"{spec!r} is not a gate.",
        hint="Build gates with shipyard.gates.threshold(), champion_challenger(), data_contract(), "
        "slice_parity() or custom().",
    )


def _failed(spec: Any) -> str:
    return "fail" if spec.blocking else "warn"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4g}"


def _require_holdout(ctx: EvalContext, gate: str) -> Any:
    if ctx.holdout is None:
        raise GateError(
            f"Gate {gate!r} needs a holdout set, and none was given.",
            hint="Pass holdout=<DataFrame with the target column> (or (X, y)) to shipyard.check / @shipyard.gate.",
        )
    return ctx.holdout


def _require_candidate(ctx: EvalContext, gate: str) -> Subject:
    if ctx.candidate is None:
        raise GateError(
            f"Gate {gate!r} needs the candidate model, but run {ctx.run_id} logged no model.",
            hint="Log it with shipyard.log_model(model, name=...) and pass model=<that name>.",
        )
    return ctx.candidate


def _first_line(exc: BaseException) -> str:
    """The informative part of a library's message: MLflow's schema errors open with a repr of
    the whole frame and end with ``Error: <the cause>``."""
    text = str(exc).strip()
    if "Error: " in text:
        return text[text.rindex("Error: ") + len("Error: ") :].strip()[:500]
    lines = text.splitlines()
    return lines[0][:500] if lines else ""


def _holdout_metric(ctx: EvalContext, subject: Subject, metric: str, gate: str, frame: Any = None) -> float:
    holdout = _require_holdout(ctx, gate) if frame is None else frame
    predictions = subject.predict(holdout, gate=gate, exclude=ctx.exclude)
    y_true = holdout[ctx.target].to_numpy()
    _require_scorable(subject, y_true, predictions, ctx.target)
    return _score(metric, y_true, predictions, subject, gate)


def _score(metric: str, y_true: Any, predictions: Any, subject: Subject, gate: str) -> float:
    try:
        return _metrics.compute(metric, y_true, predictions, gate=gate)
    except GateError:
        raise
    except (ValueError, TypeError) as exc:
        raise CannotEvaluate(
            f"{metric} cannot be computed from the target and {subject.label}'s predictions: "
            f"{type(exc).__name__}: {_first_line(exc)}",
            hint="Check that the target column holds the labels the model predicts (same type and classes).",
        ) from exc


def _missing(values: Any) -> Any:
    """Boolean mask of missing values (None, NaN, NaT) in a 1-D array of any dtype."""
    import pandas as pd

    return pd.isna(values)


def _require_scorable(subject: Subject, y_true: Any, predictions: Any, target: str | None) -> None:
    """Raise :class:`CannotEvaluate` when a metric over these rows would be undefined."""
    if len(predictions) != len(y_true):
        raise CannotEvaluate(
            f"{subject.label} returned {len(predictions)} predictions for {len(y_true)} holdout rows.",
            hint="The model's predict must return one prediction per input row.",
        )
    for what, values, fix in (
        (f"the target column {target!r}", y_true, "Drop the unlabelled rows from the holdout, or label them."),
        (
            f"{subject.label}'s predictions",
            predictions,
            "The model predicts a missing value for some rows; the data contract shows which inputs are unusual.",
        ),
    ):
        missing = _missing(values)
        count = int(missing.sum())
        if count:
            rows = missing.nonzero()[0][:5].tolist()
            raise CannotEvaluate(
                f"{what} has {count} missing value(s) of {len(values)} (rows {', '.join(map(str, rows))}"
                f"{' ...' if count > 5 else ''}); a metric over them is undefined.",
                hint=fix,
            )


# ---- threshold ------------------------------------------------------------------------------


def _threshold(spec: Threshold, ctx: EvalContext) -> GateResult:
    gate = spec.gate_name
    logged = spec.metric in ctx.logged_metrics
    computable = _metrics.can_compute(spec.metric) and ctx.holdout is not None
    if spec.source == "logged" or (spec.source == "auto" and (logged or not computable)):
        if not logged:
            known = ", ".join(sorted(ctx.logged_metrics)) or "none"
            raise GateError(
                f"Gate {gate!r}: metric {spec.metric!r} was never logged by run {ctx.run_id} (logged: {known}).",
                hint="Log it with shipyard.log_metric, fix the name, or pass holdout= so a metric shipyard knows "
                f"({', '.join(sorted(_metrics.SUPPORTED))}) is computed on it.",
            )
        value = float(ctx.logged_metrics[spec.metric])
        where = "logged by the run"
    else:
        value = _holdout_metric(ctx, _require_candidate(ctx, gate), spec.metric, gate)
        where = f"on {len(ctx.holdout)} holdout rows"
    ok = not math.isnan(value) and OPS[spec.op](value, spec.value)
    if ok:
        message = f"{spec.metric} {_fmt(value)} {spec.op} {_fmt(spec.value)} ({where})"
    else:
        message = f"{spec.metric} is {_fmt(value)}, which fails {spec.metric} {spec.op} {_fmt(spec.value)} ({where})"
    return GateResult(
        gate,
        "pass" if ok else _failed(spec),
        value,
        spec.value,
        message,
        spec.blocking,
        spec.kind,
        {"metric": spec.metric, "op": spec.op, "source": where},
    )


# ---- champion / challenger --------------------------------------------------------------------


def _champion_challenger(spec: ChampionChallenger, ctx: EvalContext) -> GateResult:
    gate = spec.gate_name
    model_name = spec.model_name or ctx.model_name
    if not model_name:
        raise GateError(
            f"Gate {gate!r} needs the registered model name to find its champion.",
            hint="Check a registered version (e.g. 'iris/2'), or pass model_name= to the gate or to shipyard.check.",
        )
    candidate = _require_candidate(ctx, gate)
    holdout = _require_holdout(ctx, gate)
    directions = dict(spec.directions)
    for metric in spec.metrics:
        _metrics.direction(metric, directions, gate=gate)
    champion = ctx.champion_lookup(model_name, spec.alias) if ctx.champion_lookup else None
    cand_values = {m: _holdout_metric(ctx, candidate, m, gate) for m in spec.metrics}
    if champion is None:
        note = f"no {spec.alias} of {model_name!r} yet: the first model passes without a comparison"
        return GateResult(
            gate,
            "pass",
            None,
            None,
            note.capitalize() + ".",
            spec.blocking,
            spec.kind,
            {"metrics": {m: {"candidate": v, "champion": None} for m, v in cand_values.items()}, "note": note},
        )
    ctx.champion_used = dict(champion.info)
    rows: dict[str, Any] = {}
    problems: list[str] = []
    summaries: list[str] = []
    limit = spec.min_improvement if spec.min_improvement is not None else -spec.tolerance
    worst: float | None = None
    for metric in spec.metrics:
        cand = cand_values[metric]
        champ = _holdout_metric(ctx, champion, metric, gate, holdout)
        better = _metrics.direction(metric, directions, gate=gate)
        improvement = (cand - champ) if better == "higher" else (champ - cand)
        ok = improvement >= limit - _EPS
        worst = improvement if worst is None else min(worst, improvement)
        rows[metric] = {
            "candidate": cand,
            "champion": champ,
            "improvement": improvement,
            "direction": better,
            "passed": ok,
        }
        facts = (
            f"{metric}: candidate {_fmt(cand)} vs champion {champion.label} {_fmt(champ)} "
            f"({better} is better, {len(holdout)} holdout rows)"
        )
        if ok:
            summaries.append(facts)
        elif spec.min_improvement is not None:
            problems.append(
                f"{facts}: improvement {_fmt(improvement)} is less than the required minimum improvement "
                f"{_fmt(spec.min_improvement)}"
            )
        else:
            problems.append(f"{facts}: worse by {_fmt(-improvement)}, more than the tolerance {_fmt(spec.tolerance)}")
    status = "fail" if problems and spec.blocking else ("warn" if problems else "pass")
    message = "; ".join(problems) if problems else "; ".join(summaries)
    if not problems:
        message += (
            f" (within tolerance {_fmt(spec.tolerance)})"
            if spec.min_improvement is None
            else f" (improves by at least {_fmt(spec.min_improvement)})"
        )
    return GateResult(
        gate,
        status,
        worst,
        limit,
        message,
        spec.blocking,
        spec.kind,
        {
            "metrics": rows,
            "champion": champion.label,
            "tolerance": spec.tolerance,
            "min_improvement": spec.min_improvement,
        },
    )


# ---- data contract ----------------------------------------------------------------------------

_DTYPE_FAMILIES = {
    "numeric": "is_numeric_dtype",
    "integer": "is_integer_dtype",
    "float": "is_float_dtype",
    "string": "is_string_dtype",
    "object": "is_object_dtype",
    "category": "isinstance_categorical",
    "bool": "is_bool_dtype",
    "datetime": "is_datetime64_any_dtype",
}


def _dtype_ok(series: Any, expected: str) -> bool:
    import pandas as pd

    family = _DTYPE_FAMILIES.get(expected)
    if family is None:
        return str(series.dtype) == expected
    if family == "isinstance_categorical":
        return isinstance(series.dtype, pd.CategoricalDtype)
    if expected == "numeric" and pd.api.types.is_bool_dtype(series):
        return False
    if expected == "string" and pd.api.types.is_object_dtype(series):
        return bool(series.dropna().map(lambda v: isinstance(v, str)).all())
    return bool(getattr(pd.api.types, family)(series))


def contract_from_profile(
    profile: Mapping[str, Any], *, range_slack: float = 0.0, null_tolerance: float = 0.0
) -> dict[str, Column]:
    """Column rules derived from a dataset profile written by ``shipyard.log_dataset``.

    Example:
        >>> p = {"columns": {"x": {"dtype": "float64", "kind": "numeric", "min": 0.0, "max": 1.0, "null_rate": 0.0}}}
        >>> contract_from_profile(p)["x"].max
        1.0
    """
    rules: dict[str, Column] = {}
    for name, col in (profile.get("columns") or {}).items():
        lo = col.get("min")
        hi = col.get("max")
        if lo is not None and hi is not None and range_slack:
            span = (hi - lo) * range_slack
            lo, hi = lo - span, hi + span
        categories = None
        top = col.get("top")
        if col.get("kind") == "categorical" and top is not None and col.get("unique", 0) <= len(top):
            categories = tuple(sorted(top))
        rules[name] = Column(
            name,
            dtype=col.get("dtype"),
            min=lo if col.get("kind") == "numeric" else None,
            max=hi if col.get("kind") == "numeric" else None,
            categories=categories,
            max_null_rate=min(1.0, float(col.get("null_rate", 0.0)) + null_tolerance),
        )
    return rules


def _data_contract(spec: DataContract, ctx: EvalContext) -> GateResult:
    import pandas as pd

    gate = spec.gate_name
    frame = ctx.datasets.get(spec.dataset)
    if frame is None:
        raise GateError(
            f"Gate {gate!r} checks dataset {spec.dataset!r}, which was not given "
            f"(given: {', '.join(sorted(ctx.datasets)) or 'none'}).",
            hint=f"Pass holdout= or datasets={{{spec.dataset!r}: df}} to shipyard.check.",
        )
    rules: dict[str, Column] = {}
    missing_from_reference: list[str] = []
    if spec.reference is not None:
        if ctx.profile_lookup is None:
            raise GateError(f"Gate {gate!r}: no way to read the reference profile {spec.reference}.")
        profile = ctx.profile_lookup(*spec.reference)
        rules = contract_from_profile(profile, range_slack=spec.range_slack, null_tolerance=spec.null_tolerance)
        missing_from_reference = [c for c in rules if c not in frame.columns]
    for column in spec.columns:
        if column.name not in frame.columns:
            raise GateError(
                f"Gate {gate!r}: the contract names column {column.name!r}, which dataset {spec.dataset!r} does "
                f"not have (columns: {', '.join(map(str, frame.columns))}).",
                hint="Fix the column name in the contract, or pass the dataset that has it.",
            )
        if spec.reference is not None and rules and column.name not in rules:
            raise GateError(
                f"Gate {gate!r}: the contract names column {column.name!r}, which the reference profile "
                f"{spec.reference[1]!r} of run {spec.reference[0]} does not have.",
                hint="Fix the column name, or drop reference= to check that column on its own.",
            )
        rules[column.name] = column
    violations: list[dict[str, Any]] = []

    def add(column: str, check: str, message: str) -> None:
        violations.append({"column": column, "check": check, "message": message})

    for name in missing_from_reference:
        add(name, "columns", f"column {name!r} is missing (present in the reference profile)")
        rules.pop(name)
    if not spec.allow_extra_columns:
        for name in frame.columns:
            if str(name) not in rules:
                add(str(name), "columns", f"column {name!r} is not in the contract")
    checked: dict[str, Any] = {}
    for name, rule in rules.items():
        series = frame[name]
        null_rate = float(series.isna().mean()) if len(series) else 0.0
        checked[name] = {"dtype": str(series.dtype), "null_rate": null_rate}
        wrong_dtype = rule.dtype is not None and not _dtype_ok(series, rule.dtype)
        if wrong_dtype:
            add(name, "dtype", f"{name}: dtype {series.dtype}, expected {rule.dtype}")
        values = series.dropna()
        numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
        if rule.min is not None or rule.max is not None:
            if not numeric:
                if not wrong_dtype:  # a wrong dtype already says why the range cannot be checked
                    bounds = f"{_fmt(rule.min)}..{_fmt(rule.max)}"
                    add(name, "range", f"{name}: range {bounds} declared but dtype {series.dtype} is not numeric")
            elif len(values):
                low = values[values < rule.min] if rule.min is not None else values.iloc[:0]
                high = values[values > rule.max] if rule.max is not None else values.iloc[:0]
                checked[name].update(min=float(values.min()), max=float(values.max()))
                if len(low) or len(high):
                    add(
                        name,
                        "range",
                        f"{name}: {len(low) + len(high)} value(s) outside [{_fmt(rule.min)}, {_fmt(rule.max)}] "
                        f"(seen {_fmt(float(values.min()))}..{_fmt(float(values.max()))})",
                    )
        if rule.categories is not None:
            allowed = {str(c) for c in rule.categories}
            # distinct values first: str() of each of a million rows is the slow part, not the compare
            unseen = sorted({str(v) for v in pd.unique(values.to_numpy())} - allowed)
            if unseen:
                shown = ", ".join(repr(u) for u in unseen[:5]) + (" ..." if len(unseen) > 5 else "")
                add(name, "categories", f"{name}: unseen categor{'y' if len(unseen) == 1 else 'ies'} {shown}")
        if rule.max_null_rate is not None and null_rate > rule.max_null_rate + _EPS:
            add(name, "nulls", f"{name}: null rate {null_rate:.1%} exceeds the allowed {rule.max_null_rate:.1%}")
    ok = not violations
    source = "declared contract" + (
        f" and reference {spec.reference[1]!r} of run {spec.reference[0]}" if spec.reference else ""
    )
    if ok:
        message = f"{len(rules)} column(s) of {spec.dataset!r} honour the {source}"
    else:
        message = (
            f"{len(violations)} violation(s) of the {source} in {spec.dataset!r}: "
            + "; ".join(v["message"] for v in violations[:8])
            + (" ..." if len(violations) > 8 else "")
        )
    return GateResult(
        gate,
        "pass" if ok else _failed(spec),
        float(len(violations)),
        0.0,
        message,
        spec.blocking,
        spec.kind,
        {"violations": violations, "columns": checked, "dataset": spec.dataset},
    )


# ---- slice parity -----------------------------------------------------------------------------


def _slice_parity(spec: SliceParity, ctx: EvalContext) -> GateResult:
    gate = spec.gate_name
    holdout = _require_holdout(ctx, gate)
    if spec.column not in holdout.columns:
        raise GateError(
            f"Gate {gate!r}: the holdout set has no column {spec.column!r} to slice by "
            f"(columns: {', '.join(map(str, holdout.columns))}).",
            hint="Add the column to the holdout set (it need not be a model input), or fix the name.",
        )
    _metrics.direction(spec.metric, gate=gate)
    candidate = _require_candidate(ctx, gate)
    predictions = candidate.predict(holdout, gate=gate, exclude=ctx.exclude)
    column = holdout[spec.column]
    y = holdout[ctx.target].to_numpy()
    _require_scorable(candidate, y, predictions, ctx.target)
    positions = _group_rows(column, spec.bins)
    per_group: dict[str, Any] = {}
    for group, rows_at in positions.items():
        rows = len(rows_at)
        value = _score(spec.metric, y[rows_at], predictions[rows_at], candidate, gate)
        per_group[str(group)] = {"value": value, "rows": rows, "compared": rows >= spec.min_rows}
    compared = {g: v for g, v in per_group.items() if v["compared"]}
    listing = ", ".join(f"{g}={_fmt(v['value'])} (n={v['rows']})" for g, v in per_group.items())
    details = {"metric": spec.metric, "column": spec.column, "groups": per_group}
    if len(compared) < 2:
        return GateResult(
            gate,
            "pass",
            None,
            spec.max_gap,
            f"fewer than 2 groups of {spec.column!r} have at least {spec.min_rows} rows; nothing to compare "
            f"(per group: {listing})",
            spec.blocking,
            spec.kind,
            details,
        )
    best = max(compared, key=lambda g: compared[g]["value"])
    worst = min(compared, key=lambda g: compared[g]["value"])
    gap = compared[best]["value"] - compared[worst]["value"]
    ok = gap <= spec.max_gap + _EPS
    message = (
        f"{spec.metric} across {spec.column!r} ranges from {_fmt(compared[worst]['value'])} ({worst!r}) to "
        f"{_fmt(compared[best]['value'])} ({best!r}): gap {_fmt(gap)} "
        f"{'within' if ok else 'exceeds'} the bound {_fmt(spec.max_gap)}; per group: {listing}"
    )
    return GateResult(
        gate, "pass" if ok else _failed(spec), gap, spec.max_gap, message, spec.blocking, spec.kind, details
    )


def _group_rows(column: Any, bins: int) -> dict[str, Any]:
    """Group label → row positions, in display order (bins in order, else labels sorted), missing last.

    Rows are grouped by integer codes (one pass over the column), and a label
    is made per distinct value, not per row.
    """
    import numpy as np
    import pandas as pd

    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column) and column.nunique() > bins:
        binned = pd.qcut(column, bins, duplicates="drop")
        codes = binned.cat.codes.to_numpy()
        labels = [f"({iv.left:.4g}, {iv.right:.4g}]" for iv in binned.cat.categories]
        ordered = list(range(len(labels)))
    else:
        codes, uniques = pd.factorize(column, use_na_sentinel=True)
        labels = [str(u) for u in uniques]
        ordered = sorted(range(len(labels)), key=lambda i: labels[i])
    by_code = pd.Series(np.arange(len(codes))).groupby(codes).indices
    groups: dict[str, Any] = {}
    for code in ordered:
        if code in by_code:  # values whose text is the same (1 and "1") share a group, as they share a label
            found = groups.get(labels[code])
            groups[labels[code]] = by_code[code] if found is None else np.sort(np.concatenate([found, by_code[code]]))
    if -1 in by_code:
        groups["<missing>"] = by_code[-1]
    return groups


# ---- custom -----------------------------------------------------------------------------------


def _custom(spec: CustomGate, ctx: EvalContext) -> GateResult:
    gate = spec.gate_name
    try:
        outcome = spec.fn(GateContext(ctx, gate))
    except Exception as exc:
        tail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-3:])
        return GateResult(
            gate,
            "error",
            None,
            spec.bound,
            f"cannot be evaluated: the gate function raised {type(exc).__name__}: {exc}",
            spec.blocking,
            spec.kind,
            {"exception": f"{type(exc).__name__}: {exc}", "traceback": tail[-4000:]},
        )
    message = ""
    if isinstance(outcome, GateResult):
        return GateResult(
            gate,
            outcome.status,
            outcome.value,
            outcome.threshold,
            outcome.message,
            spec.blocking,
            spec.kind,
            dict(outcome.details),
        )
    if isinstance(outcome, tuple) and len(outcome) == 2:
        outcome, message = outcome
        message = str(message)
    if isinstance(outcome, bool) or (hasattr(outcome, "dtype") and str(getattr(outcome, "dtype", "")) == "bool"):
        ok = bool(outcome)
        return GateResult(
            gate,
            "pass" if ok else _failed(spec),
            None,
            None,
            message or ("the gate function returned True" if ok else "the gate function returned False"),
            spec.blocking,
            spec.kind,
        )
    try:
        score = float(outcome)
    except (TypeError, ValueError):
        return GateResult(
            gate,
            _failed(spec),
            None,
            spec.bound,
            f"the gate function returned {type(outcome).__name__}; it must return a bool, a number, "
            "or (either, message)",
            spec.blocking,
            spec.kind,
        )
    if spec.bound is None:
        return GateResult(
            gate,
            _failed(spec),
            score,
            None,
            f"the gate function returned the score {_fmt(score)} but the gate has no bound to compare it with",
            spec.blocking,
            spec.kind,
        )
    ok = not math.isnan(score) and OPS[spec.op](score, spec.bound)
    text = f"score {_fmt(score)} {'satisfies' if ok else 'fails'} {spec.op} {_fmt(spec.bound)}"
    return GateResult(
        gate,
        "pass" if ok else _failed(spec),
        score,
        spec.bound,
        f"{message}: {text}" if message else text,
        spec.blocking,
        spec.kind,
    )
