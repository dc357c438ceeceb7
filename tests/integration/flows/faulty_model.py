"""A model whose faults are switched on by its container's environment, for tests of canary analysis.

It predicts ``2 * load + spend`` (plus a bonus per ``plan``) and, at predict
time, reads two variables:

* ``FAULT_RATE``: the share of calls that raise :class:`RuntimeError`, which
  the service answers with a 500. Counted, not drawn: with ``0.25`` exactly
  every fourth call fails, so a test knows how many 5xx it caused.
* ``SLOW_SECONDS``: how long each call sleeps before it answers.

A row whose ``plan`` is ``"unheard-of"`` raises :class:`ValueError`: the
model refusing input it cannot score, which the service answers with a 422
(the client's fault, like a body that fails validation).

The module is shipped with the model as project code (copied into a
project folder and imported from there), as a user's own module would be.

Example:
    >>> model = FaultyModel()
    >>> model.predict(None, make_rows(n=2)).shape
    (2,)
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

import mlflow.pyfunc

MODEL_NAME = "delivery-faults"
PLANS = ("basic", "plus", "pro")
REFUSED_PLAN = "unheard-of"


def make_rows(n: int = 2000, seed: int = 3) -> Any:
    """Rows of the model's input: two numeric columns and a string category, the same distribution for any seed."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "load": rng.normal(10.0, 2.0, n),
            "spend": rng.normal(50.0, 15.0, n),
            "plan": rng.choice(list(PLANS), n, p=[0.5, 0.3, 0.2]),
        }
    )


class FaultyModel(mlflow.pyfunc.PythonModel):
    """``2 * load + spend + bonus(plan)``, slowed and failing as the process environment says (module doc)."""

    # No type hints here: MLflow reads them as the model's input schema (and warns that Any is none).
    def predict(self, context, model_input, params=None):
        slow = float(os.environ.get("SLOW_SECONDS") or 0)
        if slow > 0:
            time.sleep(slow)
        rate = float(os.environ.get("FAULT_RATE") or 0)
        # A counter, not a random draw: call n fails when it takes floor(n * rate) one step further.
        self._calls = getattr(self, "_calls", 0) + 1
        if rate > 0 and math.floor(self._calls * rate) > math.floor((self._calls - 1) * rate):
            raise RuntimeError(f"injected fault (FAULT_RATE={rate:g}, call {self._calls})")
        plans = model_input["plan"].astype(str)
        if (plans == REFUSED_PLAN).any():
            raise ValueError(f"plan {REFUSED_PLAN!r} was never seen in training")
        bonus = plans.map({"plus": 5.0, "pro": 12.0}).fillna(0.0).to_numpy(dtype="float64")
        numbers = model_input[["load", "spend"]].to_numpy(dtype="float64")
        return 2.0 * numbers[:, 0] + numbers[:, 1] + bonus
