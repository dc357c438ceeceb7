"""Feature attributions: how much each input matters to a model on its holdout, and the gate that reads them.

:func:`compute` is scikit-learn's ``permutation_importance`` (model-agnostic:
anything that predicts, pipelines with text categories and missing values
included) on a bounded sample of the holdout; :func:`load` reads what a
check stored on the candidate's run (``shipyard/attributions.json`` and a bar
plot beside it). :func:`attribution` is a governance gate on them: no feature
holds more than a share of the total importance, and declared protected
columns stay out of the top ``k``.

Q: Why permutation importance by default, not SHAP?
A: It needs nothing but ``predict``, so it works for every flavor shipyard
   logs, through the same model the gates score, and it is measured in the
   gate's own metric. SHAP (``attribution_method = "shap"``, extra
   ``shipyard[shap]``) explains tree models row by row, but brings numba and
   llvmlite (about 50 MB) and covers fewer models.

Q: Why a time budget and not only a row cap?
A: Cost is one predict per feature and repeat. A model behind a slow
   ``predict`` (a large ensemble, a remote call) would stall every check, so
   one predict is timed first and repeats, then rows, are lowered to fit
   ``attribution_seconds``; the stored record says what was lowered.
"""

from __future__ import annotations

import functools
import io
import json
import math
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from .._core import lineage
from .._core.errors import GateError, MissingDependency
from ._report import GateResult

if TYPE_CHECKING:
    from .._core.workspace import Workspace
    from ._evaluate import EvalContext, Subject

Method = Literal["permutation", "shap"]
MIN_ROWS = 50  # below this, a permuted score is mostly noise; the budget never cuts further
_EPS = 1e-12
# canonical gate metric -> scikit-learn scorer (higher is better, as permutation_importance expects)
_SCORERS = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced_accuracy",
    "r2": "r2",
    "mse": "neg_mean_squared_error",
    "rmse": "neg_root_mean_squared_error",
    "mae": "neg_mean_absolute_error",
    "mape": "neg_mean_absolute_percentage_error",
    "max_error": "max_error",
}


@dataclass(frozen=True)
class Attributions:
    """Each feature's importance to one model, and how it was measured.

    Attributes:
        method: ``permutation`` or ``shap``.
        scoring: the scikit-learn scorer permutation importance used (``mean |SHAP|`` for SHAP).
        seed: seed of the row sample and the permutations.
        n_repeats: permutations per feature (after the time budget).
        rows: holdout rows used (after ``max_rows`` and the time budget).
        features: feature → (importance mean, importance std), in the model's column order.
        baseline: the score on the unpermuted rows.
        seconds: wall time of the computation.
        notes: what the budget lowered, and why.
        error: why the attributions could not be computed (then ``features`` is empty).

    Example:
        >>> a = Attributions("permutation", "accuracy", 0, 5, 100, {"x": (0.3, 0.01), "z": (0.1, 0.02), "w": (-0.02, 0.01)})
        >>> round(a.share()["x"], 3), a.share()["w"]
        (0.75, 0.0)
    """

    method: str
    scoring: str
    seed: int
    n_repeats: int
    rows: int
    features: dict[str, tuple[float, float]]
    baseline: float | None = None
    seconds: float | None = None
    notes: tuple[str, ...] = ()
    error: str | None = None

    def share(self) -> dict[str, float]:
        """Each feature's share of the total positive importance (a negative importance counts as 0)."""
        positive = {f: max(mean, 0.0) for f, (mean, _) in self.features.items()}
        total = sum(positive.values())
        return {f: (v / total if total > 0 else 0.0) for f, v in positive.items()}

    def ranked(self) -> list[str]:
        """Features from most to least important."""
        return sorted(self.features, key=lambda f: -self.features[f][0])

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "scoring": self.scoring,
            "seed": self.seed,
            "n_repeats": self.n_repeats,
            "rows": self.rows,
            "features": {f: [_finite(m), _finite(s)] for f, (m, s) in self.features.items()},
            "baseline": _finite(self.baseline),
            "seconds": self.seconds,
            "notes": list(self.notes),
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Attributions:
        return cls(
            method=str(data.get("method", "permutation")),
            scoring=str(data.get("scoring", "")),
            seed=int(data.get("seed", 0)),
            n_repeats=int(data.get("n_repeats", 0)),
            rows=int(data.get("rows", 0)),
            features={str(f): (float(v[0] or 0.0), float(v[1] or 0.0)) for f, v in (data.get("features") or {}).items()},
            baseline=data.get("baseline"),
            seconds=data.get("seconds"),
            notes=tuple(data.get("notes") or ()),
            error=data.get("error"),
        )

    def figure(self, *, top: int = 20) -> Any:
        """A horizontal bar plot of the ``top`` most important features, with their std as error bars."""
        from matplotlib.figure import Figure  # a bare Figure: the user's pyplot state is untouched

        names = self.ranked()[:top][::-1]
        fig = Figure(figsize=(5.5, 0.8 + 0.28 * max(len(names), 1)), layout="constrained")
        ax = fig.subplots()
        if names:
            ax.barh(names, [self.features[n][0] for n in names], xerr=[self.features[n][1] for n in names],
                    color="#0969da")
        ax.set_xlabel(f"importance ({self.scoring})" if self.method == "permutation" else self.scoring)
        ax.set_title(f"{self.method} importance, {self.rows} rows" + (f" × {self.n_repeats}" if self.n_repeats else ""))
        ax.tick_params(axis="y", labelsize=8)
        return fig

    def figure_png(self) -> bytes:
        buf = io.BytesIO()
        self.figure().savefig(buf, format="png", dpi=96)
        return buf.getvalue()

    def to_html(self) -> str:
        """An HTML section: the bar plot (embedded PNG), or why there are no attributions."""
        import base64
        import html

        if self.error:
            return f"<h4>Feature attributions</h4><p>Not computed: {html.escape(self.error)}</p>"
        png = base64.b64encode(self.figure_png()).decode("ascii")
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in self.notes)
        return (
            f"<h4>Feature attributions</h4><p>{html.escape(self.method)} importance in {html.escape(self.scoring)} "
            f"on {self.rows} holdout rows, {self.n_repeats} repeat(s), seed {self.seed}</p>"
            + (f"<ul>{notes}</ul>" if notes else "")
            + f'<img alt="feature attributions" src="data:image/png;base64,{png}"/>'
        )


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(float(value)) else float(value)


# ---- computing ------------------------------------------------------------------------------


@functools.cache
def _predictor_class() -> type:
    """What ``permutation_importance`` needs of a model that is no scikit-learn estimator (an MLflow
    pyfunc, a function): ``predict`` returning one value per row, and the estimator interface its
    checks look for (built on first use: scikit-learn is not imported with shipyard)."""
    from sklearn.base import BaseEstimator

    class Predictor(BaseEstimator):  # type: ignore[misc]
        def __init__(self, predict_fn: Callable[[Any], Any] | None = None) -> None:
            self.predict_fn = predict_fn

        def fit(self, X: Any, y: Any = None) -> Any:
            raise TypeError("an already trained model is explained; it is never fitted here")

        def predict(self, X: Any) -> Any:
            assert self.predict_fn is not None
            return as_1d(self.predict_fn(X))

    return Predictor


def as_1d(raw: Any) -> Any:
    """Predictions as a 1-D numpy array (a DataFrame's first column, a matrix's first column)."""
    import numpy as np
    import pandas as pd

    if isinstance(raw, pd.DataFrame):
        raw = raw.iloc[:, 0]
    values = np.asarray(raw)
    return values.reshape(len(values), -1)[:, 0] if values.ndim > 1 else values


def _estimator(model: Any) -> Any:
    if hasattr(model, "fit") and hasattr(model, "predict") and hasattr(model, "get_params"):
        return model  # a scikit-learn estimator: its scorers may use predict_proba too
    if hasattr(model, "predict"):
        return _predictor_class()(model.predict)
    if callable(model):
        return _predictor_class()(model)
    raise GateError(
        f"Cannot compute attributions of a {type(model).__name__}: it has no predict method.",
        hint="Pass a fitted model (scikit-learn, an MLflow pyfunc) or a function from features to predictions.",
    )


def sample_rows(n: int, max_rows: int, seed: int) -> Any:
    """Positions of the rows attributions use: all ``n``, or ``max_rows`` drawn without replacement
    by ``numpy.random.default_rng(seed)``, in their original order."""
    import numpy as np

    if n <= max_rows:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, max_rows, replace=False))


def default_scoring(y: Any, metrics: Sequence[str] = ()) -> str:
    """The scorer for permutation importance: the first of ``metrics`` that is a scikit-learn scorer
    (gate names such as ``rmse`` translated), else ``r2`` for a continuous target and ``accuracy`` otherwise.

    Example:
        >>> default_scoring([0.5, 1.7, 2.2], ["rmse"])
        'neg_root_mean_squared_error'
    """
    import numpy as np
    from sklearn.metrics import get_scorer_names
    from sklearn.utils.multiclass import type_of_target

    from ._metrics import canonical

    y = np.asarray(y)
    names = set(get_scorer_names())
    for metric in metrics:
        name = canonical(metric)
        if name in ("precision", "recall", "f1"):
            return name if set(np.unique(y).tolist()) <= {0, 1} else f"{name}_macro"
        if name in _SCORERS:
            return _SCORERS[name]
        if metric in names:
            return metric
    try:
        kind = type_of_target(y)
    except ValueError:
        kind = "unknown"
    return "r2" if kind.startswith("continuous") else "accuracy"


def compute(
    model: Any,
    X: Any,
    y: Any,
    *,
    scoring: str,
    seed: int = 0,
    n_repeats: int = 5,
    max_rows: int = 2000,
    max_seconds: float | None = 30.0,
    method: Method = "permutation",
) -> Attributions:
    """Permutation importance of each column of ``X`` for ``model``, within a budget.

    Rows: all of ``X``, or ``max_rows`` of them (:func:`sample_rows`). One
    predict on those rows is timed first; when ``n_features × n_repeats``
    predicts would take longer than ``max_seconds``, repeats are lowered, and
    then rows, and ``notes`` says so. The numbers are then exactly
    ``sklearn.inspection.permutation_importance(model, X_rows, y_rows,
    scoring=scoring, n_repeats=n_repeats, random_state=seed)``.

    Args:
        model: a fitted scikit-learn estimator, anything with ``predict`` (an MLflow pyfunc), or a function.
        X: the features (a DataFrame keeps its column names and dtypes: text, categories, NaN).
        y: the target.
        scoring: a scikit-learn scorer name (see :func:`default_scoring`).
        method: ``"shap"`` for mean absolute SHAP values of a tree model (needs ``shipyard[shap]``).

    Raises:
        GateError: nothing to explain, or an unknown scorer.
        MissingDependency: ``method="shap"`` without the shap package.
        Exception: whatever the model's predict raises (the gate check records it as an error note).

    Example:
        >>> a = compute(fitted_pipeline, X_test, y_test, scoring="accuracy", seed=0)   # doctest: +SKIP
        >>> a.ranked()[:3]                                                              # doctest: +SKIP
        ['petal width (cm)', 'petal length (cm)', 'sepal length (cm)']
    """
    import numpy as np
    import pandas as pd

    started = time.perf_counter()
    if method not in ("permutation", "shap"):
        raise GateError(f"Unknown attribution method {method!r}.", hint='Use "permutation" or "shap".')
    frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(np.asarray(X))
    target = np.asarray(y)
    if len(frame) == 0 or frame.shape[1] == 0 or len(target) != len(frame):
        raise GateError(
            f"Cannot compute attributions on {len(frame)} rows × {frame.shape[1]} features with {len(target)} "
            "target values.",
            hint="Pass the holdout features and a target with one value per row.",
        )
    if n_repeats < 1 or max_rows < 1:
        raise GateError("Attributions need n_repeats >= 1 and max_rows >= 1.")
    rows = sample_rows(len(frame), max_rows, seed)
    frame, target = frame.iloc[rows].reset_index(drop=True), target[rows]
    if method == "shap":
        return _shap(model, frame, seed, started)
    from sklearn.inspection import permutation_importance
    from sklearn.metrics import get_scorer_names

    if scoring not in get_scorer_names():
        raise GateError(
            f"{scoring!r} is not a scikit-learn scorer name.",
            hint="Use one of sklearn.metrics.get_scorer_names(), e.g. 'accuracy', 'f1_macro', 'r2', "
            "'neg_root_mean_squared_error'.",
        )
    from sklearn.metrics import get_scorer

    estimator = _estimator(model)
    tick = time.perf_counter()
    # one predict, timed; a model that cannot predict these rows fails here, before any budget is spent
    baseline = float(get_scorer(scoring)(estimator, frame, target))
    one = max(time.perf_counter() - tick, 1e-6)
    notes: list[str] = []
    features = frame.shape[1]
    if max_seconds is not None and one * features * n_repeats > max_seconds:
        fitting = max(1, int(max_seconds / (one * features)))
        notes.append(
            f"one predict on {len(frame)} rows took {one:.3g} s: n_repeats lowered from {n_repeats} to {fitting} "
            f"to fit {max_seconds:g} s"
        )
        n_repeats = fitting
        if one * features > max_seconds and len(frame) > MIN_ROWS:
            fewer = max(MIN_ROWS, int(len(frame) * max_seconds / (one * features)))
            keep = sample_rows(len(frame), fewer, seed)
            frame, target = frame.iloc[keep].reset_index(drop=True), target[keep]
            notes.append(f"rows lowered from {len(rows)} to {fewer} to fit {max_seconds:g} s")
    result = permutation_importance(
        estimator, frame, target, scoring=scoring, n_repeats=n_repeats, random_state=seed
    )
    return Attributions(
        method="permutation",
        scoring=scoring,
        seed=seed,
        n_repeats=n_repeats,
        rows=len(frame),
        features={
            str(c): (float(m), float(s))
            for c, m, s in zip(frame.columns, result.importances_mean, result.importances_std, strict=True)
        },
        baseline=baseline,
        seconds=round(time.perf_counter() - started, 3),
        notes=tuple(notes),
    )


def _shap(model: Any, frame: Any, seed: int, started: float) -> Attributions:
    """Mean absolute SHAP values of a tree model (the last step of a pipeline, on its transformed inputs)."""
    import numpy as np

    try:
        import shap
    except ImportError as exc:
        raise MissingDependency(
            "SHAP attributions need the shap package, which is not installed.",
            hint="pip install 'shipyard[shap]', or set attribution_method = \"permutation\" (the default).",
        ) from exc
    raw = model.get_raw_model() if hasattr(model, "get_raw_model") else model
    data, names = frame, [str(c) for c in frame.columns]
    if hasattr(raw, "steps"):  # a scikit-learn Pipeline: explain its last step on what the others make of X
        data = raw[:-1].transform(frame)
        names = [str(n) for n in raw[:-1].get_feature_names_out()]
        raw = raw[-1]
    try:
        values = np.asarray(shap.TreeExplainer(raw).shap_values(data))
    except Exception as exc:
        raise GateError(
            f"SHAP cannot explain a {type(raw).__name__}: {type(exc).__name__}: {exc}",
            hint='SHAP attributions cover tree models; use attribution_method = "permutation" for this one.',
        ) from exc
    if values.ndim == 3 and values.shape[0] != len(names) and values.shape[1] == len(names):
        magnitude = np.abs(values).mean(axis=2)  # rows × features × classes
    elif values.ndim == 3:
        magnitude = np.abs(values).mean(axis=0)  # classes × rows × features (older shap)
    else:
        magnitude = np.abs(values)
    return Attributions(
        method="shap",
        scoring="mean |SHAP|",
        seed=seed,
        n_repeats=0,
        rows=len(frame),
        features={n: (float(m), float(s)) for n, m, s in zip(names, magnitude.mean(0), magnitude.std(0), strict=True)},
        seconds=round(time.perf_counter() - started, 3),
    )


# ---- at gate time ------------------------------------------------------------------------------


class AtGateTime:
    """The candidate's attributions on the check's holdout, computed once, on first use.

    The check asks for them when the ``attributions`` setting is on or an
    :func:`attribution` gate needs them. A model that cannot predict the
    permuted rows gives an :class:`Attributions` whose ``error`` says why.
    """

    def __init__(self, ws: Workspace, ctx: EvalContext, metrics: Sequence[str]) -> None:
        self._ws = ws
        self._ctx = ctx
        self._metrics = list(metrics)
        self.value: Attributions | None = None

    def __call__(self) -> Attributions:
        if self.value is None:
            self.value = self._compute()
        return self.value

    def _compute(self) -> Attributions:
        from .._core.errors import ShipyardError

        ctx, settings = self._ctx, self._ws.settings
        subject: Subject | None = ctx.candidate
        holdout = ctx.holdout
        assert subject is not None and holdout is not None
        scoring = "?"
        try:
            subject.predict(holdout, gate="attributions", exclude=ctx.exclude)  # loads the model, learns its inputs
            columns = subject.feature_names or [c for c in holdout.columns if c not in ctx.exclude]
            y = holdout[ctx.target].to_numpy()
            scoring = default_scoring(y, self._metrics)
            model: Any = subject.predict_fn
            if settings.attribution_method == "shap":
                from .. import tracking

                model = tracking.load_model(subject.info["model_uri"], workspace=self._ws)
            return compute(
                model,
                holdout[columns],
                y,
                scoring=scoring,
                seed=0,
                n_repeats=settings.attribution_repeats,
                max_rows=settings.attribution_max_rows,
                max_seconds=settings.attribution_seconds,
                method=settings.attribution_method,
            )
        except MissingDependency:
            raise
        except Exception as exc:  # noqa: BLE001  (the model, not the check, failed: recorded, never raised)
            cause = exc.message if isinstance(exc, ShipyardError) else f"{type(exc).__name__}: {exc}"
            return Attributions(
                settings.attribution_method, scoring, 0, 0, 0, {}, error=f"{subject.label}: {cause}"[:2000]
            )


def metrics_of(specs: Sequence[Any]) -> list[str]:
    """The metrics the gates of a check are about, in order (the first scorer among them is used)."""
    found: list[str] = []
    for spec in specs:
        found += [getattr(spec, "metric", None) or "", *getattr(spec, "metrics", ())]
    return [m for m in found if m]


def log(ws: Workspace, run_id: str, attributions: Attributions) -> None:
    """Store ``attributions`` on run ``run_id``: :data:`~shipyard._core.lineage.ATTRIBUTIONS_ARTIFACT`
    (JSON) and the bar plot beside it (when there is one)."""
    from ._candidate import client

    json_name = Path(lineage.ATTRIBUTIONS_ARTIFACT).name
    folder = str(Path(lineage.ATTRIBUTIONS_ARTIFACT).parent)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / json_name).write_text(json.dumps(attributions.to_dict(), indent=2), encoding="utf-8")
        if not attributions.error:
            (root / Path(lineage.ATTRIBUTIONS_PLOT_ARTIFACT).name).write_bytes(attributions.figure_png())
        client(ws).log_artifacts(run_id, tmp, folder)


def load(version_or_run_id: Any, *, workspace: Workspace | None = None) -> Attributions | None:
    """The attributions a check stored for a run or registered version, or None when none were.

    Example:
        >>> load("churn/4").ranked()[:3]      # doctest: +SKIP
        ['tenure', 'plan', 'monthly_charges']
    """
    from mlflow.exceptions import MlflowException

    from .._core.workspace import current_workspace
    from ._candidate import client, resolve_candidate

    ws = workspace or current_workspace()
    cand = resolve_candidate(version_or_run_id, workspace=ws)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            local = client(ws).download_artifacts(cand.run_id, lineage.ATTRIBUTIONS_ARTIFACT, tmp)
            return Attributions.from_dict(json.loads(Path(local).read_text(encoding="utf-8")))
    except (MlflowException, FileNotFoundError, OSError) as exc:
        if isinstance(exc, MlflowException) and exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
            raise GateError(
                f"Could not read the attributions of run {cand.run_id}: {exc}",
                hint="Check that the tracking server and artifact store are reachable, then try again.",
            ) from exc
        return None


# ---- the gate ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttributionGate:
    """A governance gate on the candidate's feature attributions (on the check's holdout).

    ``max_share``: no single feature holds more than this share of the total
    positive importance. ``protected``: none of these columns is among the
    ``top_k`` most important features (a column the model does not take passes).
    """

    max_share: float | None = 0.6
    protected: tuple[str, ...] = ()
    top_k: int = 3
    blocking: bool = True
    name: str | None = None
    kind: ClassVar[str] = "attribution"

    def __post_init__(self) -> None:
        if isinstance(self.protected, str):
            object.__setattr__(self, "protected", (self.protected,))
        elif not isinstance(self.protected, tuple):
            object.__setattr__(self, "protected", tuple(str(c) for c in self.protected))
        if self.max_share is None and not self.protected:
            raise GateError(
                f"Gate {self.gate_name!r} checks nothing.", hint="Pass max_share=0.6, or protected=[...] and top_k=."
            )
        if self.max_share is not None and not 0 < self.max_share <= 1:
            raise GateError(f"Gate {self.gate_name!r}: max_share must be in (0, 1], not {self.max_share!r}.")
        if not isinstance(self.top_k, int) or self.top_k < 1:
            raise GateError(f"Gate {self.gate_name!r}: top_k must be a whole number >= 1, not {self.top_k!r}.")
        from ._specs import _check_blocking, _check_name  # _specs lists this gate among its kinds

        _check_blocking(self.blocking, self.gate_name)
        _check_name(self.gate_name)

    @property
    def gate_name(self) -> str:
        return self.name or "attribution"


def attribution(
    max_share: float | None = None,
    *,
    protected: str | Sequence[str] = (),
    top_k: int = 3,
    blocking: bool = True,
    name: str | None = None,
) -> AttributionGate:
    """A gate on feature attributions: no feature above ``max_share`` of the total importance, and/or
    no ``protected`` column among the ``top_k`` most important. With neither, ``max_share=0.6``.

    Example:
        >>> attribution(0.6).max_share
        0.6
        >>> attribution(protected=["sex", "age"], top_k=3).max_share is None
        True
    """
    cols = (protected,) if isinstance(protected, str) else tuple(str(c) for c in protected)
    share = 0.6 if max_share is None and not cols else max_share
    return AttributionGate(None if share is None else float(share), cols, int(top_k), blocking, name)


def evaluate_gate(spec: AttributionGate, ctx: EvalContext) -> GateResult:
    """Judge ``spec`` on the candidate's attributions.

    Raises:
        GateError: there is no holdout or candidate to compute them on.
        CannotEvaluate: they could not be computed (the model failed on permuted rows).
    """
    from ._evaluate import CannotEvaluate, _require_candidate, _require_holdout

    gate = spec.gate_name
    _require_holdout(ctx, gate)
    _require_candidate(ctx, gate)
    assert ctx.attributions is not None
    found: Attributions = ctx.attributions()
    if found.error:
        raise CannotEvaluate(
            f"the feature attributions could not be computed: {found.error}",
            hint="Make the model predict any mix of its inputs' values (an imputer, "
            "OneHotEncoder(handle_unknown='ignore')), or drop this gate.",
        )
    shares = found.share()
    ranked = found.ranked()
    problems: list[str] = []
    lines: list[str] = []
    details: dict[str, Any] = {
        "shares": {f: shares[f] for f in ranked[:20]},
        "scoring": found.scoring,
        "rows": found.rows,
        "n_repeats": found.n_repeats,
        "method": found.method,
    }
    value: float | None = None
    threshold: float | None = None
    if spec.max_share is not None:
        top = ranked[0] if ranked and shares[ranked[0]] > 0 else None
        value, threshold = (shares[top] if top else 0.0), spec.max_share
        if top is None:
            lines.append("no feature has a positive importance")
        elif shares[top] > spec.max_share + _EPS:
            problems.append(f"feature {top!r} holds {shares[top]:.1%} of the total importance, above {spec.max_share:.0%}")
        else:
            lines.append(f"largest share: {top!r} with {shares[top]:.1%} (at most {spec.max_share:.0%})")
    ranks: dict[str, int | None] = {}
    for column in spec.protected:
        if column not in found.features:
            ranks[column] = None
            lines.append(f"protected column {column!r} is not a model input")
            continue
        rank = ranked.index(column) + 1
        ranks[column] = rank
        where = f"ranks {rank} of {len(ranked)} by importance (share {shares[column]:.1%})"
        if rank <= spec.top_k and found.features[column][0] > 0:
            problems.append(f"protected column {column!r} {where}, within the top {spec.top_k}")
        else:
            lines.append(f"protected column {column!r} {where}, outside the top {spec.top_k}")
    if spec.protected:
        details["protected_ranks"] = ranks
        if value is None:
            known = [r for r in ranks.values() if r is not None]
            value, threshold = (float(min(known)) if known else None), float(spec.top_k)
    how = f" ({found.method} importance in {found.scoring}, {found.rows} holdout rows)"
    message = "; ".join(problems or lines) + how
    status = "pass" if not problems else ("fail" if spec.blocking else "warn")
    return GateResult(gate, status, value, threshold, message, spec.blocking, spec.kind, details)
