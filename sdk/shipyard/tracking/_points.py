"""The one shape of a logged metric point: :class:`MetricPoint` for readers, :data:`Point` for the hot path.

Both keep one field order, ``step, value, timestamp``; the buffered record puts
the metric's name in front: ``(key, step, value, timestamp)``. The buffer, the
disk spool, the live log and the history readers all use these two and
nothing else, so a point reads the same wherever it is. (The spool's JSON keys
and the live log's line format are the files' own, and unchanged.)

Q: Why is the buffered record a plain tuple and not a :class:`MetricPoint`?
A: ``log_metric`` runs on the training thread, once per point, and must cost
   about a microsecond. Building a tuple literal is several times cheaper than
   a dataclass or a ``NamedTuple``; the record becomes a :class:`MetricPoint`
   only where a reader asks for one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Point = tuple[str, int, float, int]
"""A buffered point: ``(key, step, value, timestamp)``, timestamp in milliseconds since the epoch."""


@dataclass(frozen=True)
class MetricPoint:
    """One logged value: ``step``, ``value`` and ``timestamp`` (milliseconds since the epoch).

    Example:
        >>> MetricPoint(step=3, value=0.25, timestamp=1_700_000_000_000).value
        0.25
    """

    step: int
    value: float
    timestamp: int


def from_mlflow(metric: Any) -> MetricPoint:
    """The :class:`MetricPoint` of an MLflow ``Metric`` entity."""
    return MetricPoint(int(metric.step), float(metric.value), int(metric.timestamp))
