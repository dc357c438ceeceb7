"""Quality gates: declared next to the training code, evaluated the same way in notebooks and CI.

Gate kinds (each blocking or warning-only):

- :func:`threshold` — ``accuracy >= 0.9`` on a logged metric or one computed on the holdout;
- :func:`champion_challenger` — candidate vs current champion on the same holdout, same call;
- :func:`data_contract` — column names, dtypes, ranges, categories, null rates, declared
  or derived from a dataset profile logged on an earlier run;
- :func:`slice_parity` — largest metric gap across groups of a column;
- :func:`custom` — a function of yours decides;
- :func:`attribution` — no feature dominates the candidate's permutation importance, and
  protected columns stay out of its top k (attributions: :func:`load_attributions`);
- :func:`drift`, :func:`prediction_drift` — production data against the reference profile
  frozen at packaging, judged by ``shipyard monitor`` (:func:`shipyard.production.monitor`).

Use them with :func:`check` (notebook, script), ``@shipyard.gate`` on a flow
step, and ``shipyard gates check RUN_OR_VERSION`` in CI (:func:`recheck`).
A blocking failure is lifted only by the same gate passing or by
:func:`override` (``shipyard gates override``) with a written reason.

Example:
    >>> from shipyard.gates import threshold, champion_challenger, check
    >>> report = check("iris/2", gates=[threshold("accuracy >= 0.9"),
    ...                 champion_challenger("accuracy", tolerance=0.01)], holdout=test_df)  # doctest: +SKIP
    >>> report.verdict                                                                 # doctest: +SKIP
    'pass'
"""

from __future__ import annotations

from ._attributions import AttributionGate, Attributions, attribution
from ._attributions import compute as compute_attributions
from ._attributions import load as load_attributions
from ._check import check, override, recheck
from ._decorator import StepGates, gate
from ._drift import Drift, PredictionDrift, drift, prediction_drift
from ._evaluate import GateContext
from ._record import attach_results, load_report
from ._report import GateReport, GateResult
from ._specs import (
    ChampionChallenger,
    Column,
    CustomGate,
    DataContract,
    GateSpec,
    SliceParity,
    Threshold,
    champion_challenger,
    custom,
    data_contract,
    slice_parity,
    spec_from_dict,
    spec_to_dict,
    threshold,
)

__all__ = [
    "AttributionGate",
    "Attributions",
    "ChampionChallenger",
    "Column",
    "CustomGate",
    "DataContract",
    "Drift",
    "GateContext",
    "GateReport",
    "GateResult",
    "GateSpec",
    "PredictionDrift",
    "SliceParity",
    "StepGates",
    "Threshold",
    "attach_results",
    "attribution",
    "champion_challenger",
    "check",
    "compute_attributions",
    "custom",
    "data_contract",
    "drift",
    "gate",
    "load_attributions",
    "load_report",
    "override",
    "prediction_drift",
    "recheck",
    "slice_parity",
    "spec_from_dict",
    "spec_to_dict",
    "threshold",
]
