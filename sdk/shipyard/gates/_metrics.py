"""Metrics computed on a holdout set, and which direction of each is better.

Names follow scikit-learn's short names; MLflow's evaluator names
(``accuracy_score``, ``root_mean_squared_error`` ...) are accepted as aliases
so a threshold may be written either way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._core.errors import GateError

HIGHER_IS_BETTER = frozenset({"accuracy", "balanced_accuracy", "precision", "recall", "f1", "r2"})
LOWER_IS_BETTER = frozenset({"rmse", "mse", "mae", "mape", "max_error"})
ALIASES = {
    "accuracy_score": "accuracy",
    "precision_score": "precision",
    "recall_score": "recall",
    "f1_score": "f1",
    "r2_score": "r2",
    "root_mean_squared_error": "rmse",
    "mean_squared_error": "mse",
    "mean_absolute_error": "mae",
    "mean_absolute_percentage_error": "mape",
}
SUPPORTED = HIGHER_IS_BETTER | LOWER_IS_BETTER


def canonical(metric: str) -> str:
    """The short name of ``metric`` (``accuracy_score`` → ``accuracy``; ``val/accuracy`` → ``accuracy``)."""
    base = metric.rsplit("/", 1)[-1]
    return ALIASES.get(base, base)


def can_compute(metric: str) -> bool:
    return canonical(metric) in SUPPORTED


def direction(metric: str, overrides: Mapping[str, str] | None = None, *, gate: str = "") -> str:
    """``"higher"`` or ``"lower"``: which way ``metric`` is better.

    Raises:
        GateError: the direction of an unknown metric was not given.

    Example:
        >>> direction("rmse")
        'lower'
    """
    if overrides and metric in overrides:
        return overrides[metric]
    name = canonical(metric)
    if name in HIGHER_IS_BETTER:
        return "higher"
    if name in LOWER_IS_BETTER:
        return "lower"
    raise GateError(
        f"Gate {gate!r}: shipyard does not know whether higher or lower {metric!r} is better.",
        hint=f'Pass directions={{"{metric}": "higher"}} (or "lower").',
    )


def compute(metric: str, y_true: Any, y_pred: Any, *, gate: str = "") -> float:
    """Compute ``metric`` from true and predicted values.

    Precision, recall and F1 use the binary average for 0/1 labels and the
    macro average otherwise.

    Raises:
        GateError: the metric is not one shipyard can compute.

    Example:
        >>> compute("accuracy", [0, 1, 1], [0, 1, 0])
        0.6666666666666666
    """
    import numpy as np
    from sklearn import metrics as skm

    name = canonical(metric)
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_pred.ndim > 1:
        y_pred = y_pred.reshape(len(y_pred), -1)[:, 0]
    if name in ("precision", "recall", "f1"):
        labels = set(np.unique(y_true).tolist()) | set(np.unique(y_pred).tolist())
        average = "binary" if labels <= {0, 1} else "macro"
        fn = {"precision": skm.precision_score, "recall": skm.recall_score, "f1": skm.f1_score}[name]
        return float(fn(y_true, y_pred, average=average, zero_division=0))
    table = {
        "accuracy": skm.accuracy_score,
        "balanced_accuracy": skm.balanced_accuracy_score,
        "r2": skm.r2_score,
        "mse": skm.mean_squared_error,
        "mae": skm.mean_absolute_error,
        "mape": skm.mean_absolute_percentage_error,
        "max_error": skm.max_error,
    }
    if name == "rmse":
        return float(np.sqrt(skm.mean_squared_error(y_true, y_pred)))
    if name in table:
        return float(table[name](y_true, y_pred))
    raise GateError(
        f"Gate {gate!r}: shipyard cannot compute {metric!r} on a holdout set.",
        hint=f"Use one of {', '.join(sorted(SUPPORTED))}, or log it in the run and gate on the logged value.",
    )
