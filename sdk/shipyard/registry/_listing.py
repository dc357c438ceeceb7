"""Reading what a registered model holds: its versions with aliases, metrics, gates and review state.

These are the reads the panel and ``shipyard review`` need to show a model at
a glance. Everything comes from the MLflow registry and the runs behind the
versions, so it is the same after a kernel restart or on another machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .._core import lineage
from .._core.errors import ModelNotFound, RegistryError
from .._core.workspace import Workspace, current_workspace
from ._registry import _first_line



@dataclass(frozen=True)
class VersionInfo:
    """One registered model version, with what a reviewer looks at first.

    Attributes:
        name: registered model name.
        version: version number, as a string.
        run_id: MLflow run that produced it ("" when unknown).
        aliases: aliases pointing at it (``champion``, ``challenger``, ``previous`` ...).
        created_at: when it was registered (UTC).
        author: who produced it (the run's user, else the registry's user id; "" when unknown).
        metrics: last value of every metric of its run.
        gates: gate name → ``pass``, ``fail``, ``warn`` or ``overridden``, as recorded on the version.
        verdict: overall gate verdict (``pass``, ``fail``, ``overridden``), None when never checked.
        override: who overrode which gates and why (``gates``, ``by``, ``at``, ``reason``), when one was recorded.
        retired: whether the version was retired (``shipyard.retire``).
        review_state: ``approved``, ``rejected`` or None (no decision yet).
        review: the review record (``by``, ``at``, ``comment``) when there is one.
        tags: every tag on the version.
    """

    name: str
    version: str
    run_id: str
    aliases: tuple[str, ...]
    created_at: datetime | None
    author: str
    metrics: dict[str, float] = field(default_factory=dict)
    gates: dict[str, str] = field(default_factory=dict)
    verdict: str | None = None
    override: dict[str, str] | None = None
    retired: bool = False
    review_state: str | None = None
    review: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def ref(self) -> str:
        """``NAME/VERSION``, accepted by ``resolve``, ``promote``, ``review`` and ``gates.load_report``."""
        return f"{self.name}/{self.version}"

    def key_metrics(self, limit: int = 3) -> dict[str, float]:
        """Up to ``limit`` summary metrics: names without a ``/`` first (``accuracy`` before ``val/loss``)."""
        names = sorted(self.metrics, key=lambda n: ("/" in n, n))
        return {n: self.metrics[n] for n in names[:limit]}


def model_names(*, workspace: Workspace | None = None) -> list[str]:
    """Names of every registered model, sorted.

    Raises:
        RegistryError: the registry could not be read.

    Example:
        >>> shipyard.registry.model_names()          # doctest: +SKIP
        ['breast-cancer', 'iris']
    """
    from mlflow.exceptions import MlflowException

    from ..tracking._client import client_for

    ws = workspace or current_workspace()
    try:
        return sorted(m.name for m in client_for(ws).search_registered_models(max_results=1000))
    except MlflowException as exc:
        raise RegistryError(
            f"Could not list the registered models at {ws.registry_uri}: {_first_line(exc)}",
            hint="Check that the registry (MLflow tracking server or workspace store) is reachable.",
        ) from exc


def model_versions(name: str, *, workspace: Workspace | None = None) -> list[VersionInfo]:
    """Every version of registered model ``name``, newest first, with aliases, metrics, gates and review state.

    Args:
        name: registered model name.

    Raises:
        ModelNotFound: no model of that name is registered.
        RegistryError: the registry could not be read.

    Example:
        >>> [(v.version, v.aliases, v.verdict) for v in shipyard.model_versions("iris")]   # doctest: +SKIP
        [('2', ('challenger',), 'pass'), ('1', ('champion',), 'pass')]
    """
    from mlflow.exceptions import MlflowException

    from ..tracking._client import client_for

    ws = workspace or current_workspace()
    client = client_for(ws)
    try:
        model = client.get_registered_model(name)
        found = client.search_model_versions(f"name = '{_quote(name)}'", max_results=10_000)
    except MlflowException as exc:
        if getattr(exc, "error_code", "") in {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"}:
            raise ModelNotFound(
                f"No registered model named {name!r} in {ws.registry_uri}.",
                hint="Register one with shipyard.registry.register(name, run_id), or list them with "
                "shipyard.registry.model_names().",
            ) from exc
        raise RegistryError(f"Could not list the versions of {name!r}: {_first_line(exc)}") from exc
    aliases: dict[str, list[str]] = {}
    for alias, version in _alias_map(model).items():
        aliases.setdefault(str(version), []).append(alias)
    runs: dict[str, Any] = {}
    out = []
    for mv in sorted(found, key=lambda v: int(v.version), reverse=True):
        run = _run_or_none(client, mv.run_id, runs)
        out.append(_info(mv, run, tuple(sorted(aliases.get(str(mv.version), ())))))
    return out


def _info(mv: Any, run: Any, aliases: tuple[str, ...]) -> VersionInfo:
    tags = dict(mv.tags or {})
    review = lineage.review(tags)
    run_tags = dict(run.data.tags) if run is not None else {}
    created = getattr(mv, "creation_timestamp", None)
    return VersionInfo(
        name=mv.name,
        version=str(mv.version),
        run_id=mv.run_id or "",
        aliases=aliases,
        created_at=datetime.fromtimestamp(created / 1000, tz=timezone.utc) if created else None,
        author=run_tags.get(lineage.MLFLOW_USER) or (getattr(mv, "user_id", None) or ""),
        metrics=dict(run.data.metrics) if run is not None else {},
        gates=lineage.gate_statuses(tags),
        verdict=tags.get(lineage.GATE_VERDICT),
        override=lineage.gate_override(tags),
        retired=tags.get(lineage.RETIRED) == "true",
        review_state=review.get("state"),
        review={k: review[k] for k in lineage.REVIEW_FIELDS if k in review},
        tags=tags,
    )


def _alias_map(model: Any) -> dict[str, str]:
    aliases = getattr(model, "aliases", None) or {}
    if isinstance(aliases, dict):
        return {str(k): str(v) for k, v in aliases.items()}
    return {a.alias: str(a.version) for a in aliases}  # older MLflow: a list of alias entities


def _run_or_none(client: Any, run_id: str | None, cache: dict[str, Any]) -> Any:
    from mlflow.exceptions import MlflowException

    if not run_id:
        return None
    if run_id not in cache:
        try:
            cache[run_id] = client.get_run(run_id)
        except MlflowException:  # a deleted run: the version is still worth listing
            cache[run_id] = None
    return cache[run_id]


def _quote(name: str) -> str:
    return name.replace("'", "\\'")
