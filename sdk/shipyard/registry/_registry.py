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
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._core import audit, lineage
from .._core.errors import GateFailed, ModelNotFound, RegistryError
from .._core.lineage import Lineage
from .._core.refs import GRAMMAR, ModelRef
from .._core.workspace import Workspace, current_workspace

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

CHALLENGER = "challenger"
CHAMPION = "champion"
PREVIOUS = "previous"
AUDIT_EVENT = "alias.move"

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
    def ref(self) -> ModelRef:
        return ModelRef(name=self.name, version=self.version)

    @property
    def uri(self) -> str:
        """``models:/NAME/VERSION``, loadable by ``mlflow.pyfunc.load_model``."""
        return self.ref.uri

    def __str__(self) -> str:
        return f"{self.name}/{self.version}"


@dataclass(frozen=True)
class SwapResult:
    """What a champion swap did: the new champion, and the version now ``previous`` (if any)."""

    champion: ModelVersionRef
    previous: ModelVersionRef | None
    moves: int


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


def resolve(ref: Any, *, workspace: Workspace | None = None) -> ModelVersionRef:
    """Read a registered model version: the one way from a reference to a version.

    Args:
        ref: ``NAME/VERSION``, ``NAME@ALIAS``, ``models:/NAME/VERSION``, ``models:/NAME@ALIAS``,
            a :class:`~shipyard.ModelRef`, or a registered version (anything with ``name`` and
            ``version``; read again, so aliases and tags are current).

    Raises:
        ModelNotFound: the model, version or alias does not exist, or ``ref`` names a run
            (a run has no registered version until it is registered).
        RegistryError: the registry could not be read.

    Example:
        >>> registry.resolve("iris@champion").version     # doctest: +SKIP
        '3'
    """
    from mlflow.exceptions import MlflowException

    ws = workspace or current_workspace()
    parsed = ModelRef.of(ref)
    if parsed.is_run:
        raise ModelNotFound(
            f"{parsed} is a run, not a registered model version.",
            hint=f"Register it first (shipyard.registry.register(name, run_id)), or pass {GRAMMAR}.",
        )
    client = _client(ws)
    try:
        if parsed.version is not None:
            mv = client.get_model_version(parsed.name, parsed.version)
        else:
            mv = client.get_model_version_by_alias(parsed.name, parsed.alias)
    except MlflowException as exc:
        if _not_found(exc):
            raise ModelNotFound(
                f"Model version {parsed} does not exist in the registry at {ws.registry_uri} ({_first_line(exc)}).",
                hint="Check the name, version or alias (the MLflow UI lists them), or register the model first.",
            ) from exc
        raise RegistryError(f"Could not read {parsed} from the model registry: {_first_line(exc)}") from exc
    return _to_ref(mv)


def lineage_of(version: ModelVersionRef, *, workspace: Workspace | None = None) -> Lineage:
    """The :class:`~shipyard.Lineage` of a registered version, from its tags and its run's.

    Example:
        >>> registry.lineage_of(registry.resolve("iris/3")).pathspec     # doctest: +SKIP
        'TrainFlow/1733050000000000'
    """
    from mlflow.exceptions import MlflowException

    run_tags: dict[str, str] = {}
    if version.run_id:
        try:
            run_tags = dict(_client(workspace or current_workspace()).get_run(version.run_id).data.tags)
        except MlflowException:  # a deleted run: the version's own tags still say most of it
            run_tags = {}
    return Lineage.from_tags(run_tags, version.tags, name=version.name, version=version.version, run_id=version.run_id)


def set_version_tags(
    version: ModelVersionRef,
    tags: Mapping[str, str],
    *,
    replace_prefix: str | None = None,
    workspace: Workspace | None = None,
) -> None:
    """Write tags on a registered version: the one place model-version tags are written.

    Args:
        tags: tag name → value (values are cut at MLflow's 5000 characters).
        replace_prefix: first delete the version's tags under this prefix that ``tags`` does
            not set again (a gate verdict must not keep the gates of an earlier check).

    Raises:
        RegistryError: the registry refused a write.
    """
    from mlflow.exceptions import MlflowException

    client = _client(workspace or current_workspace())
    try:
        if replace_prefix is not None:
            current = client.get_model_version(version.name, version.version).tags or {}
            for key in current:
                if key.startswith(replace_prefix) and key not in tags:
                    client.delete_model_version_tag(version.name, version.version, key)
        for key, value in tags.items():
            client.set_model_version_tag(version.name, version.version, key, str(value)[:5000])
    except MlflowException as exc:
        raise RegistryError(
            f"Could not write tags on {version}: {_first_line(exc)}",
            hint="Check that the registry is reachable and writable, then try again.",
        ) from exc


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
    uri = lineage.logged_models(tags).get(model)
    if not uri:
        logged = sorted(lineage.logged_models(tags))
        raise ModelNotFound(
            f"Run {run_id} has no model logged as {model!r} (models logged: {', '.join(logged) or 'none'}).",
            hint="Log it with shipyard.log_model(model, name=...) or pass model= the name it was logged under.",
        )
    model_id = uri[len("models:/") :] if uri.startswith("models:/m-") else None
    # the version carries its gates and its lineage, so it reads whole without its run
    version_tags = {k: v for k, v in tags.items() if k.startswith(lineage.GATE_PREFIX)}
    version_tags.update(Lineage.from_tags(tags, model=model).to_tags())
    for key in (lineage.model_tag(model, "sha256"), lineage.model_tag(model, "flavor")):
        if key in tags:
            version_tags[key] = tags[key]
    try:
        try:
            client.create_registered_model(name)
        except MlflowException as exc:
            if exc.error_code not in {"RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"}:
                raise
        from ..tracking._mlflow import fluent_store

        with fluent_store(ws):  # MLflow looks a logged model's "models:/m-…" source up through its fluent store
            mv = client.create_model_version(
                name, source=uri, run_id=run_id, tags=version_tags, model_id=model_id,
                description=_description(run_id, tags),
            )
    except MlflowException as exc:
        raise RegistryError(
            f"The registry refused to register {uri} as a version of {name!r}: {_first_line(exc)}",
            hint="Check the model name (letters, digits, -, _ and .) and that the registry is writable.",
        ) from exc
    audit.append("model.register", workspace=ws, model=name, version=str(mv.version), run_id=run_id, source=uri)
    if alias:
        return set_alias(name, alias, str(mv.version), reason=reason or f"registered from run {run_id}", workspace=ws)
    return resolve(ModelRef(name=name, version=str(mv.version)), workspace=ws)


def _description(run_id: str, run_tags: Mapping[str, str]) -> str:
    """The one line MLflow's versions table shows beside a version: where it came from, how it was judged."""
    verdict = run_tags.get(lineage.GATE_VERDICT) or "not checked"
    origin = f"Metaflow run {run_tags[lineage.PATHSPEC]}, " if run_tags.get(lineage.PATHSPEC) else ""
    return f"Gates when registered: {verdict}. From {origin}MLflow run {run_id}."


def _lock(ws: Workspace, name: str) -> Any:
    from filelock import FileLock

    ws.locks_dir.mkdir(parents=True, exist_ok=True)
    return FileLock(str(ws.lock_path("registry", name)))


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
            client.set_model_version_tag(name, target, lineage.alias_tag(alias, prefix + what), value[:5000])
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
    resolve(ModelRef(name=name, version=str(version)), workspace=ws)
    with _lock(ws, name):
        _move(ws, client, name, alias, str(version), reason)
    return resolve(ModelRef(name=name, version=str(version)), workspace=ws)


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
    candidate = resolve(ModelRef(name=name, version=str(version)), workspace=ws)
    if candidate.tags.get(lineage.GATE_VERDICT) == "fail":
        raise GateFailed(
            f"{name}/{version} failed its blocking gates (tag {lineage.GATE_VERDICT}=fail); it cannot become champion.",
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
    previous = resolve(ModelRef(name=name, version=str(old.version)), workspace=ws) if old is not None else None
    return SwapResult(resolve(ModelRef(name=name, version=str(version)), workspace=ws), previous, moves)


def rollback(name: str, reason: str, *, workspace: Workspace | None = None) -> SwapResult:
    """Make the ``previous`` version champion again; the current champion becomes ``previous``.

    Raises:
        ModelNotFound: ``name`` has no ``previous`` version to roll back to.
        RegistryError: ``name`` was just rolled back (see :func:`rollback_target`).

    Example:
        >>> registry.rollback("iris", reason="latency regression in production")   # doctest: +SKIP
    """
    ws = workspace or current_workspace()
    reason = _check_reason(reason, f"Rolling back {name}")
    prev = rollback_target(name, workspace=ws)
    return swap_champion(name, prev.version, f"{_ROLLBACK}{reason}", workspace=ws)


_ROLLBACK = "rollback: "  # how a rollback's champion move reason starts


def rollback_target(name: str, *, workspace: Workspace | None = None) -> ModelVersionRef:
    """The version a rollback of ``name`` makes champion: the one ``previous`` points at.

    Q: What does a second rollback in a row do?
    A: It is refused. A rollback swaps ``champion`` and ``previous``, so right
       after one, ``previous`` is the version just rolled back *from*; rolling
       back again would serve it again, which is an undo, not a rollback, and
       the registry keeps no deeper history to go further back by. Serving
       either on purpose is a promotion of that version.

    Raises:
        ModelNotFound: ``name`` has no ``previous`` version (it never had a second champion).
        RegistryError: the champion got there by rolling back from ``previous``.
    """
    client = _client(workspace or current_workspace())
    prev = _alias_or_none(client, name, PREVIOUS)
    current = _alias_or_none(client, name, CHAMPION)
    if prev is None:
        first = f"v{current.version} is its first champion" if current else "it has no champion either"
        raise ModelNotFound(
            f"{name} has no 'previous' version to roll back to: {first}.",
            hint="A rollback returns to the champion before the current one. To serve another version, promote "
            f"it: shipyard promote {name}/VERSION --reason '...'.",
        )
    if (
        current is not None
        and current.tags.get(lineage.alias_tag(CHAMPION, "reason"), "").startswith(_ROLLBACK)
        and current.tags.get(lineage.alias_tag(CHAMPION, "from_version")) == prev.version
    ):
        raise RegistryError(
            f"{name} was already rolled back from v{prev.version} to v{current.version}; rolling back again would "
            f"serve v{prev.version} again.",
            hint=f"To serve v{prev.version} again on purpose, promote it: shipyard promote {name}/{prev.version} "
            "--reason '...'; to go further back, promote that older version the same way.",
        )
    return prev
