"""The model registry: versions, aliases, alias audit trail, champion swaps and rollbacks.

Built on MLflow's Model Registry with **aliases** only (``challenger``,
``champion``, ``previous``; stages are deprecated and never used). Every alias
move is tagged on the model version it lands on (who, when, why, from which
version) and appended to the workspace audit log before the call returns.

Example:
    >>> from shipyard import registry
    >>> v = registry.register("iris", run_id)                     # doctest: +SKIP
    >>> registry.swap_champion("iris", v.version, reason="gates passed")  # doctest: +SKIP
    >>> registry.champion("iris").version                          # doctest: +SKIP
    '2'
"""

from __future__ import annotations

from ._registry import (
    CHALLENGER,
    CHAMPION,
    PREVIOUS,
    ModelVersionRef,
    SwapResult,
    champion,
    lineage_of,
    register,
    remove_alias,
    resolve,
    rollback,
    set_alias,
    set_version_tags,
    swap_champion,
)
from ._listing import VersionInfo, model_names, model_versions

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "PREVIOUS",
    "ModelVersionRef",
    "SwapResult",
    "VersionInfo",
    "champion",
    "lineage_of",
    "model_names",
    "model_versions",
    "register",
    "remove_alias",
    "resolve",
    "rollback",
    "set_alias",
    "set_version_tags",
    "swap_champion",
]
