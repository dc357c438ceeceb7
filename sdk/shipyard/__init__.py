"""shipyard: from a notebook flow to a reviewed, containerized model in one call.

This module is a thin, lazy facade: ``import shipyard`` loads none of
MLflow, Metaflow, BentoML, Docker, ipywidgets or matplotlib. Each public name
is imported from its layer on first use (PEP 562 ``__getattr__``); only the
error tree and ``__version__``, which import nothing, are loaded at once.

The public names are listed once each: the errors in
``shipyard._core.errors.__all__``, every other name in ``_LAZY`` below (with
its ``TYPE_CHECKING`` mirror for type checkers). ``__all__`` is built from
both, and ``tests/unit/test_exported_members.py`` pins the result.

Example:
    >>> import shipyard
    >>> @shipyard.track
    ... class TrainFlow(FlowSpec): ...          # doctest: +SKIP
    >>> result = shipyard.run(TrainFlow)        # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._core import errors as _errors
from ._core.errors import *  # noqa: F403 - the error tree is cheap, and errors.__all__ is its one list of names
from ._core.lazy import lazy_attributes
from ._core.version import __version__

# public name -> module that defines it (relative to this package)
_LAZY: dict[str, str] = {
    # workspace and configuration
    "init": "._core.workspace",
    "Workspace": "._core.workspace",
    "current_workspace": "._core.workspace",
    "Settings": "._core.config",
    # how a model version is named, and where it came from
    "ModelRef": "._core.refs",
    "Lineage": "._core.lineage",
    # tracking
    "start_run": ".tracking",
    "log_metric": ".tracking",
    "log_metrics": ".tracking",
    "log_params": ".tracking",
    "log_dataset": ".tracking",
    "log_model": ".tracking",
    "flush": ".tracking",
    "sync": ".tracking",
    "active_run_id": ".tracking",
    "metric_history": ".tracking",
    "runs": ".tracking",
    "get_run": ".tracking",
    "TrackedRun": ".tracking",
    "model_versions": ".registry",
    # the JupyterLab panel
    "panel": ".widgets",
    # flows
    "track": ".flows",
    "run": "._interactive",
    "run_async": ".flows",
    "FlowRun": ".flows",
    "RunResult": ".flows",
    # gates
    "gate": ".gates",
    "check": ".gates",
    "GateReport": ".gates",
    # packaging
    "package": ".packaging",
    "build_base_image": ".packaging",
    "smoke": ".deploy",
    # promotion and review
    "promote": ".promotion",
    "Promotion": ".promotion",
    "review": ".promotion",
    "approve": ".promotion",
    "reject": ".promotion",
    "rollback": ".promotion",
    "retire": ".promotion",
    "model_card": ".promotion._card",
    # signed provenance of what a promotion shipped
    "verify": ".deploy.provenance",
    "Verification": ".deploy.provenance",
    "generate_signing_key": ".deploy.provenance",
    # production: drift back into MLflow, and the same flow on new data
    "monitor": ".production",
    "retrain": ".production",
    # the same flow on a cron schedule, on the cluster
    "schedule": ".flows._schedule",
    "ScheduledFlow": ".flows._schedule",
}

_SUBMODULES = frozenset({"audit", "tracking", "flows", "cli", "gates", "registry", "packaging", "deploy", "promotion", "production", "widgets"})

__all__ = sorted([*_LAZY, *_errors.__all__, "__version__"])


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, _SUBMODULES)


if TYPE_CHECKING:  # what type checkers and IDEs see; the map above is what runs
    from ._core.config import Settings
    from ._core.lineage import Lineage
    from ._core.refs import ModelRef
    from ._core.workspace import Workspace, current_workspace, init
    from ._interactive import run
    from .deploy import smoke
    from .deploy.provenance import Verification, generate_signing_key, verify
    from .flows import FlowRun, RunResult, run_async, track
    from .flows._schedule import ScheduledFlow, schedule
    from .gates import GateReport, check, gate
    from .packaging import build_base_image, package
    from .production import monitor, retrain
    from .promotion import Promotion, approve, promote, reject, retire, review, rollback
    from .promotion._card import model_card
    from .registry import model_versions
    from .tracking import (
        TrackedRun,
        active_run_id,
        flush,
        get_run,
        log_dataset,
        log_metric,
        log_metrics,
        log_model,
        log_params,
        metric_history,
        runs,
        start_run,
        sync,
    )
    from .widgets import panel
