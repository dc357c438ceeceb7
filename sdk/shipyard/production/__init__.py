"""Production back into the loop: drift reports and gates from served traffic, and the same flow on new data.

:func:`monitor` holds production rows (a capture directory, a Prometheus
server, or a DataFrame) against the reference profile frozen into the model's
bento, records the result on the model version, and can start
:func:`retrain`, which runs the flow recorded in the champion's lineage on new
data and promotes what passes its gates.
"""

from __future__ import annotations

from ._monitor import DriftReport, monitor
from ._retrain import RetrainResult, retrain

__all__ = ["DriftReport", "RetrainResult", "monitor", "retrain"]
