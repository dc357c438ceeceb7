"""Model versions and alias moves over the MLflow Model Registry, each one audited.

Q: Why a file lock around alias moves?
A: MLflow has no transaction over two alias calls. Serialising every move of
   one model through a workspace lock means two concurrent swaps cannot
   interleave, and a swap that fails half-way is reverted by the same caller
   that started it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from .._core import audit, lineage
from .._core.errors import GateFailed, ModelNotFound, RegistryError
from .._core.workspace import Workspace, current_workspace

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

CHALLENGER = "challenger"
CHAMPION = "champion"
PREVIOUS = "previous"
ALIAS_PREFIX = "shipyard.alias."
VERDICT_TAG = f"{lineage.GATE_PREFIX}verdict"
AUDIT_EVENT = "alias.move"

_REF = re.compile(r"^(?:models:/)?(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w.-]+))$")
_ALIAS = re.compile(r"^[A-Za-z_][\w-]{0,254}$")


@dataclass(frozen=True)
class ModelVersionRef:
    """One registered model version, as read from the registry.

    Attributes:
        name: registered model name.
        version: version number, as a string.
        run_id: MLflow run that produced it ("" when unknown).
        source: where the model files are (``models:/m-...`` or an artifact URI).
        aliases: aliases that point at this version.
        tags: tags on the version.
    """

    name: str
    version: str
    run_id: str
    source: str
    aliases: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def uri(self) -> str:
        """``models:/NAME/VERSION``, loadable by ``mlflow.pyfunc.load_model``."""
        return f"models:/{self.name}/{self.version}"

    def __str__(self) -> str:
        return f"{self.name}/{self.version}"


@dataclass(frozen=True)
class SwapResult:
    """What a champion swap did: the new champion, and the version now ``previous`` (if any)."""

    champion: ModelVersionRef
    previous: ModelVersionRef | None
    moves: int


def alias_tag(alias: str, what: str) -> str:
    """Tag name recording an alias move on the version it landed on, e.g. ``shipyard.alias.champion.by``."""
    return f"{ALIAS_PREFIX}{alias}.{what}"


def parse_ref(ref: str) -> tuple[str, str | None, str | None]:
    """Split ``NAME/3``, ``NAME@champion`` or ``models:/NAME/3`` into ``(name, version, alias)``.

    Raises:
        ModelNotFound: ``ref`` is not a model version reference.

    Example:
        >>> parse_ref("models:/iris/3")
        ('iris', '3', None)
        >>> parse_ref("iris@champion")
        ('iris', None, 'champion')
    """
    match = _REF.match(str(ref).strip())
    if match is None:
        raise ModelNotFound(
            f"{ref!r} is not a model version reference.",
            hint="Use NAME/VERSION, NAME@ALIAS or models:/NAME/VERSION, e.g. 'iris/3' or 'iris@champion'.",
        )
    return match["name"], match["version"], match["alias"]


def _client(ws: Workspace) -> MlflowClient:
    from ..tracking._client import client_for

    return client_for(ws)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _not_found(exc: Exception) -> bool:
    code = getattr(exc, "error_code", "")
    return code in {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"} or (
        code == "INVALID_PARAMETER_VALUE" and "not found" in str(exc).lower()
    )


def _to_ref(mv: Any) -> ModelVersionRef:
    return ModelVersionRef(
        name=mv.name,
        version=str(mv.version),
        run_id=mv.run_id or "",
        source=mv.source or "",
        aliases=tuple(sorted(getattr(mv, "aliases", None) or ())),
        tags=dict(mv.tags or {}),
    )


def resolve(ref: str | ModelVersionRef, *, workspace: Workspace | None = None) -> ModelVersionRef:
    """Read a model version from the registry.

    Args:
        ref: ``NAME/VERSION``, ``NAME@ALIAS``, ``models:/NAME/VERSION``, ``models:/NAME@ALIAS``
            or a :class:`ModelVersionRef` (read again, so aliases and tags are current).

    Raises:
        ModelNotFound: the model, version or alias does not exist.
        RegistryError: the registry could not be read.

    Example:
        >>> registry.resolve("iris@champion").version     # doctest: +SKIP
        '3'
    """
    from mlflow.exceptions import MlflowException

    ws = workspace or current_workspace()
    if isinstance(ref, ModelVersionRef):
        name, version, alias = ref.name, ref.version, None
    else:
        name, version, alias = parse_ref(ref)
    client = _client(ws)
    try:
        if version is not None:
            mv = client.get_model_version(name, version)
        else:
            mv = client.get_model_version_by_alias(name, alias)  # type: ignore[arg-type]
    except MlflowException as exc:
        if _not_found(exc):
            raise ModelNotFound(
                f"Model version {ref!s} does not exist in the registry at {ws.registry_uri} ({_first_line(exc)}).",
                hint="Check the name, version or alias (the MLflow UI lists them), or register the model first.",
            ) from exc
        raise RegistryError(f"Could not read {ref!s} from the model registry: {_first_line(exc)}") from exc
    return _to_ref(mv)


def champion(name: str, *, workspace: Workspace | None = None) -> ModelVersionRef | None:
    """The version of ``name`` that carries the ``champion`` alias, or None if there is none yet.

    Example:
        >>> registry.champion("iris")                  # doctest: +SKIP
        ModelVersionRef(name='iris', version='1', ...)
    """
    return _alias_or_none(_client(workspace or current_workspace()), name, CHAMPION)


def _alias_or_none(client: MlflowClient, name: str, alias: str) -> ModelVersionRef | None:
    from mlflow.exceptions import MlflowException

    try:
        return _to_ref(client.get_model_version_by_alias(name, alias))
    except MlflowException as exc:
        if _not_found(exc):
            return None
        raise RegistryError(f"Could not read alias {name}@{alias}: {_first_line(exc)}") from exc


def register(
    name: str,
    run_id: str,
    model: str = "model",
    *,
    alias: str | None = CHALLENGER,
    reason: str | None = None,
    workspace: Workspace | None = None,
) -> ModelVersionRef:
    """Register the model logged as ``model`` on run ``run_id`` as a new version of ``name``.

    The new version gets ``alias`` (default ``challenger``; None for no alias),
    and the run's gate verdicts (``shipyard.gate.*`` tags) are copied onto it.

    Args:
        name: registered model name (created when it does not exist yet).
        run_id: MLflow run that logged the model (``RunResult.mlflow_run_id``).
        model: name the model was logged under (``shipyard.log_model(..., name=...)``).
        alias: alias the new version gets.
        reason: why, for the alias audit trail; default: "registered from run <id>".

    Raises:
        ModelNotFound: the run has no model logged under ``model``.
        RegistryError: the registry refused the registration.

    Example:
        >>> v = registry.register("iris", result.mlflow_run_id)   # doctest: +SKIP
        >>> v.version, v.aliases                                 # doctest: +SKIP
        ('1', ('challenger',))
    """
    from mlflow.exceptions import MlflowException

    ws = workspace or current_workspace()
    client = _client(ws)
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        raise ModelNotFound(
            f"Cannot register {name!r}: run {run_id!r} does not exist ({_first_line(exc)}).",
            hint="Pass the MLflow run id of a tracked run, e.g. shipyard.run(Flow).mlflow_run_id.",
        ) from exc
    tags = run.data.tags
    uri = tags.get(lineage.model_tag(model, "uri"))
    if not uri:
        logged = sorted(
            k[len(lineage.MODEL_PREFIX) : -len(".uri")]
            for k in tags
            if k.startswith(lineage.MODEL_PREFIX) and k.endswith(".uri")
        )
        raise ModelNotFound(
            f"Run {run_id} has no model logged as {model!r} (models logged: {', '.join(logged) or 'none'}).",
            hint="Log it with shipyard.log_model(model, name=...) or pass model= the name it was logged under.",
        )
    model_id = uri[len("models:/") :] if uri.startswith("models:/m-") else None
    version_tags = {k: v for k, v in tags.items() if k.startswith(lineage.GATE_PREFIX)}
    for key in (lineage.model_tag(model, "sha256"), lineage.model_tag(model, "flavor")):
        if key in tags:
            version_tags[key] = tags[key]
    try:
        try:
            client.create_registered_model(name)
        except MlflowException as exc:
            if exc.error_code not in {"RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"}:
                raise
        mv = client.create_model_version(name, source=uri, run_id=run_id, tags=version_tags, model_id=model_id)
    except MlflowException as exc:
        raise RegistryError(
            f"The registry refused to register {uri} as a version of {name!r}: {_first_line(exc)}",
            hint="Check the model name (letters, digits, -, _ and .) and that the registry is writable.",
        ) from exc
    audit.append("model.register", workspace=ws, model=name, version=str(mv.version), run_id=run_id, source=uri)
    if alias:
        return set_alias(name, alias, str(mv.version), reason=reason or f"registered from run {run_id}", workspace=ws)
    return resolve(f"{name}/{mv.version}", workspace=ws)


def _lock(ws: Workspace, name: str) -> Any:
    from filelock import FileLock

    ws.locks_dir.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^\w.-]", "_", name)
    return FileLock(str(ws.locks_dir / f"registry-{safe}.lock"))


def _check_reason(reason: str | None, what: str) -> str:
    if reason is None or not str(reason).strip():
        raise RegistryError(
            f"{what} needs a reason: every alias move is recorded with who, when and why.",
            hint='Pass reason="..." saying why, e.g. reason="better accuracy on the March holdout".',
        )
    return str(reason).strip()


def _move(
    ws: Workspace, client: MlflowClient, name: str, alias: str, version: str | None, reason: str
) -> dict[str, Any]:
    """Point ``alias`` at ``version`` (None: remove it), tag the version, append to the audit log."""
    from mlflow.exceptions import MlflowException

    before = _alias_or_none(client, name, alias)
    from_version = before.version if before else None
    try:
        if version is None:
            client.delete_registered_model_alias(name, alias)
        else:
            client.set_registered_model_alias(name, alias, version)
    except MlflowException as exc:
        if _not_found(exc):
            raise ModelNotFound(
                f"Cannot move {name}@{alias} to version {version}: {_first_line(exc)}",
                hint="Check the model name and version.",
            ) from exc
        raise RegistryError(f"The registry refused to move {name}@{alias}: {_first_line(exc)}") from exc
    when = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    who = ws.author
    target = version if version is not None else from_version
    if target is not None:
        prefix = "" if version is not None else "removed."
        for what, value in (("by", who), ("at", when), ("reason", reason), ("from_version", from_version or "")):
            client.set_model_version_tag(name, target, alias_tag(alias, prefix + what), value[:5000])
    return audit.append(
        AUDIT_EVENT,
        workspace=ws,
        who=who,
        model=name,
        alias=alias,
        version=version,
        from_version=from_version,
        reason=reason,
    )


def set_alias(
    name: str, alias: str, version: str | int, *, reason: str, workspace: Workspace | None = None
) -> ModelVersionRef:
    """Point ``alias`` of model ``name`` at ``version``, recorded with who, when and why.

    Raises:
        RegistryError: no reason given, or a malformed alias.
        ModelNotFound: the model or version does not exist.

    Example:
        >>> registry.set_alias("iris", "challenger", 4, reason="retrained on May data")   # doctest: +SKIP
    """
    ws = workspace or current_workspace()
    reason = _check_reason(reason, f"Moving {name}@{alias}")
    if not _ALIAS.match(alias) or alias.isdigit():
        raise RegistryError(f"{alias!r} is not a valid alias.", hint="Use letters, digits, _ and -, e.g. 'champion'.")
    client = _client(ws)
    resolve(f"{name}/{version}", workspace=ws)
    with _lock(ws, name):
        _move(ws, client, name, alias, str(version), reason)
    return resolve(f"{name}/{version}", workspace=ws)


def remove_alias(name: str, alias: str, *, reason: str, workspace: Workspace | None = None) -> None:
    """Remove ``alias`` from model ``name`` (recorded like any alias move); no-op if it is not set.

    Example:
        >>> registry.remove_alias("iris", "challenger", reason="abandoned")   # doctest: +SKIP
    """
    ws = workspace or current_workspace()
    reason = _check_reason(reason, f"Removing {name}@{alias}")
    client = _client(ws)
    with _lock(ws, name):
        if _alias_or_none(client, name, alias) is not None:
            _move(ws, client, name, alias, None, reason)


def swap_champion(name: str, version: str | int, reason: str, *, workspace: Workspace | None = None) -> SwapResult:
    """Make ``version`` the champion of ``name``; the old champion becomes ``previous``.

    Moves are serialised per model through a workspace lock. ``previous`` moves
    first, so readers of ``@champion`` always see either the old or the new
    champion; if the champion move fails, ``previous`` is put back. A
    ``challenger`` alias on the new champion is removed. A version whose
    recorded gate verdict is ``fail`` is refused: only a recorded override
    (``shipyard.check(..., override=..., reason=...)``) lets it through.

    Raises:
        GateFailed: the version's gate verdict is ``fail``.
        RegistryError: no reason, or the registry refused a move (the aliases are restored).
        ModelNotFound: the model or version does not exist.

    Example:
        >>> registry.swap_champion("iris", 2, reason="beats v1 on the holdout")   # doctest: +SKIP
        >>> registry.champion("iris").version, registry.resolve("iris@previous").version   # doctest: +SKIP
        ('2', '1')
    """
    ws = workspace or current_workspace()
    reason = _check_reason(reason, f"Swapping the champion of {name}")
    version = str(version)
    candidate = resolve(f"{name}/{version}", workspace=ws)
    if candidate.tags.get(VERDICT_TAG) == "fail":
        raise GateFailed(
            f"{name}/{version} failed its blocking gates (tag {VERDICT_TAG}=fail); it cannot become champion.",
            hint="Train a better model, or record an override with a written reason: "
            "shipyard.check(..., override=[...], reason='...').",
        )
    client = _client(ws)
    moves = 0
    with _lock(ws, name):
        old = _alias_or_none(client, name, CHAMPION)
        if old is not None and old.version == version:
            return SwapResult(candidate, _alias_or_none(client, name, PREVIOUS), 0)
        old_previous = _alias_or_none(client, name, PREVIOUS)
        if old is not None:
            _move(ws, client, name, PREVIOUS, old.version, f"replaced as champion by version {version}: {reason}")
            moves += 1
        try:
            _move(ws, client, name, CHAMPION, version, reason)
            moves += 1
        except Exception as exc:
            if old is not None:
                restore = old_previous.version if old_previous else None
                _move(ws, client, name, PREVIOUS, restore, f"reverted: champion swap to {version} failed")
            raise RegistryError(
                f"Swapping the champion of {name} to version {version} failed: {exc}",
                hint="The aliases were restored; fix the cause and swap again.",
            ) from exc
        challenger = _alias_or_none(client, name, CHALLENGER)
        if challenger is not None and challenger.version == version:
            _move(ws, client, name, CHALLENGER, None, f"became champion: {reason}")
            moves += 1
    previous = resolve(f"{name}/{old.version}", workspace=ws) if old is not None else None
    return SwapResult(resolve(f"{name}/{version}", workspace=ws), previous, moves)


def rollback(name: str, reason: str, *, workspace: Workspace | None = None) -> SwapResult:
    """Make the ``previous`` version champion again; the current champion becomes ``previous``.

    Raises:
        ModelNotFound: ``name`` has no ``previous`` version to roll back to.

    Example:
        >>> registry.rollback("iris", reason="latency regression in production")   # doctest: +SKIP
    """
    ws = workspace or current_workspace()
    reason = _check_reason(reason, f"Rolling back {name}")
    prev = _alias_or_none(_client(ws), name, PREVIOUS)
    if prev is None:
        raise ModelNotFound(
            f"{name} has no 'previous' version to roll back to.",
            hint="A rollback needs an earlier champion; "
            "set one with registry.set_alias(name, 'previous', v, reason=...).",
        )
    return swap_champion(name, prev.version, f"rollback: {reason}", workspace=ws)
