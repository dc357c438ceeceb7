"""Drift gates: production data held against the reference profile frozen at packaging.

:func:`drift` bounds the drift distance of input columns, :func:`prediction_drift`
that of the model's predictions. They judge a drift result (what
``shipyard.monitoring.drift.compute_drift`` returns), so they run in
``shipyard monitor``, not in :func:`shipyard.gates.check`, whose gates judge a
candidate on its holdout.

Q: Why is a column at exactly ``max_distance`` a failure?
A: The drift computation flags a column as drifted when its distance is at
   least the threshold; a gate with the same bound must say the same thing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from .._core.errors import GateError
from ._report import GateResult
from ._specs import _check_blocking, _check_name

ALL_COLUMNS = "*"


def _check_distance(value: float, gate: str) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise GateError(
            f"Gate {gate!r}: max_distance must be a positive number, not {value!r}.",
            hint="Distances are normalized Wasserstein (numbers) or Jensen-Shannon (categories); 0.1 is the default.",
        )


@dataclass(frozen=True)
class Drift:
    """Input columns must not drift further than ``max_distance`` from the reference profile.

    Attributes:
        columns: ``"*"`` (every column the profile and the production data share) or column names.
        max_distance: largest allowed distance; a column at or above it fails the gate.
    """

    columns: str | tuple[str, ...] = ALL_COLUMNS
    max_distance: float = 0.1
    blocking: bool = True
    name: str | None = None
    kind: ClassVar[str] = "drift"

    def __post_init__(self) -> None:
        if not isinstance(self.columns, str):
            object.__setattr__(self, "columns", tuple(str(c) for c in self.columns))
            if not self.columns:
                raise GateError("A drift gate needs '*' or at least one column name.", hint='e.g. columns=["age"].')
        elif self.columns != ALL_COLUMNS:
            object.__setattr__(self, "columns", (self.columns,))
        _check_distance(self.max_distance, self.gate_name)
        _check_blocking(self.blocking, self.gate_name)
        _check_name(self.gate_name)

    @property
    def gate_name(self) -> str:
        return self.name or "drift"


@dataclass(frozen=True)
class PredictionDrift:
    """The model's predictions must not drift further than ``max_distance`` from the reference ones."""

    max_distance: float = 0.1
    blocking: bool = True
    name: str | None = None
    kind: ClassVar[str] = "prediction_drift"

    def __post_init__(self) -> None:
        _check_distance(self.max_distance, self.gate_name)
        _check_blocking(self.blocking, self.gate_name)
        _check_name(self.gate_name)

    @property
    def gate_name(self) -> str:
        return self.name or "prediction_drift"


def drift(
    columns: str | Sequence[str] = ALL_COLUMNS,
    *,
    max_distance: float = 0.1,
    blocking: bool = True,
    name: str | None = None,
) -> Drift:
    """A gate on the drift distance of input columns in production.

    Example:
        >>> drift(["age", "income"], max_distance=0.2).columns
        ('age', 'income')
        >>> drift().gate_name
        'drift'
    """
    return Drift(columns if isinstance(columns, str) else tuple(columns), float(max_distance), blocking, name)


def prediction_drift(*, max_distance: float = 0.1, blocking: bool = True, name: str | None = None) -> PredictionDrift:
    """A gate on the drift distance of the model's predictions in production.

    Example:
        >>> prediction_drift(max_distance=0.05).max_distance
        0.05
    """
    return PredictionDrift(float(max_distance), blocking, name)


def evaluate_drift(spec: Drift | PredictionDrift, result: Any) -> GateResult:
    """Judge a drift result (``DriftResult``) with one drift gate.

    A column the gate names that the production data lacks, or predictions
    that were not measured, give status ``error``: the gate could not be
    evaluated, which blocks like a failure when the gate is blocking.

    Example:
        >>> evaluate_drift(drift(), result).status       # doctest: +SKIP
        'fail'
    """
    failed = "fail" if spec.blocking else "warn"
    common = {"blocking": spec.blocking, "kind": spec.kind, "threshold": spec.max_distance, "source": "monitor"}
    if isinstance(spec, PredictionDrift):
        measured = result.prediction
        if measured is None:
            return GateResult(
                spec.gate_name,
                "error",
                None,
                message="no prediction drift was measured: the reference profile "
                "or the production data holds no predictions",
                **common,
            )
        details = {"prediction": _column_details(measured)}
        if measured.distance >= spec.max_distance:
            message = f"predictions drifted: {measured.method} {measured.distance:.4g} >= {spec.max_distance:.4g}"
            return GateResult(spec.gate_name, failed, measured.distance, message=message, details=details, **common)
        message = f"predictions within bound: {measured.method} {measured.distance:.4g} < {spec.max_distance:.4g}"
        return GateResult(spec.gate_name, "pass", measured.distance, message=message, details=details, **common)

    by_name = {c.column: c for c in result.columns}
    wanted = list(by_name) if spec.columns == ALL_COLUMNS else list(spec.columns)
    missing = [c for c in wanted if c not in by_name]
    chosen = [by_name[c] for c in wanted if c in by_name]
    details = {"columns": {c.column: _column_details(c) for c in chosen}, "missing": missing}
    if missing:
        return GateResult(
            spec.gate_name,
            "error",
            None,
            message=f"no drift measured for column(s) {', '.join(missing)}: the production data or the "
            "reference profile lacks them",
            details=details,
            **common,
        )
    if not chosen:
        return GateResult(spec.gate_name, "error", None, message="no column was measured", details=details, **common)
    worst = max(chosen, key=lambda c: c.distance)
    over = sorted((c for c in chosen if c.distance >= spec.max_distance), key=lambda c: -c.distance)
    if over:
        listed = ", ".join(f"{c.column} {c.distance:.4g}" for c in over)
        message = f"{len(over)} of {len(chosen)} column(s) drifted (distance >= {spec.max_distance:.4g}): {listed}"
        return GateResult(spec.gate_name, failed, worst.distance, message=message, details=details, **common)
    message = f"no column drifted (largest: {worst.column} {worst.distance:.4g} < {spec.max_distance:.4g})"
    return GateResult(spec.gate_name, "pass", worst.distance, message=message, details=details, **common)


def _column_details(c: Any) -> dict[str, Any]:
    return {"method": c.method, "distance": c.distance, "psi": c.psi, "rows": c.rows, "null_rate": c.null_rate}


def failed_columns(gate: GateResult) -> list[str]:
    """Columns a failed (or warning) drift gate result names as over its bound."""
    if gate.kind != Drift.kind or gate.status not in ("fail", "warn") or gate.threshold is None:
        return []
    columns = gate.details.get("columns") or {}
    return [c for c, d in columns.items() if d.get("distance") is not None and d["distance"] >= gate.threshold]
