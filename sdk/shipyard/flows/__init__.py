"""Flows: shipyard decorators on Metaflow flows and running them from notebooks and scripts."""

from __future__ import annotations

from ._decorators import ShipyardFlow, ShipyardStep, track
from ._runner import FlowRun, RunResult, run, run_async

__all__ = ["FlowRun", "RunResult", "ShipyardFlow", "ShipyardStep", "run", "run_async", "track"]
