"""``promote()``: one call from a tracked run to a champion with a deployable handoff.

Stages, in order (each persisted; a failure or kill leaves champion and
previous where they were, and the next call resumes after the last finished
stage):

    gates → register (alias challenger) → bento → image → smoke/parity
    → push (when a registry is configured) → approval (when required)
    → handoff bundle → GitOps commit (when a repository is configured)
    → alias swap (champion ← new, previous ← old), last.

Q: Why do ``push`` and ``approval`` come before the bundle?
A: The bundle pins the Deployment to the image's digest, and a registry
   assigns the manifest digest only when the image is pushed; and the
   bundle records the approval it went out with. The engineer reviews the
   pushed, smoke-tested image (see ``review()``), not a bundle.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._core import audit, lineage
from .._core.errors import DeployError, GateError, GateFailed, ModelNotFound, PromotionError
from .._core.lineage import Lineage
from .._core.refs import ModelRef
from .._core.workspace import Workspace, current_workspace, slug
from ._machine import AwaitingApproval, RunOutcome, Stage, StageContext, StageEvent, StageRecord, run_stages

_TARGETS = ("production",)


@dataclass(frozen=True)
class PromotionInputs:
    """What a promotion was asked to do, resolved once before any stage runs.

    Attributes:
        workspace: the workspace everything is read from and written to.
        model: registered model name.
        version: the registered version to promote, or None for a run not registered yet.
        run_id: the MLflow run that logged the model.
        logged_model: the name the model was logged under on the run.
        candidate: how the candidate is named in messages and the gate report (``iris/3`` or a run id).
        key: the promotion's key (``<model slug>/v3`` or ``<model slug>/run-<id>``), also its state file.
    """

    workspace: Workspace
    model: str
    version: str | None
    run_id: str
    logged_model: str
    candidate: str
    key: str
    target: str = "production"
    reason: str | None = None
    holdout: Any = field(default=None, repr=False)
    canary_weight: int | None = None
    allow_retired: bool = False


# -- what each stage hands to the next (persisted in the state file) --------------------------------


@dataclass(frozen=True)
class GatesPassed:
    verdict: str
    report: dict[str, Any]
    started_by: str = ""  # who started the promotion, with separation_of_duties (they may not approve it)


@dataclass(frozen=True)
class Registered:
    version: str
    run_id: str
    lineage: dict[str, Any]  # Lineage.to_dict(), as the state file holds it

    @property
    def ref(self) -> ModelRef:
        return ModelRef(name=self.lineage["model"], version=self.version)


@dataclass(frozen=True)
class BentoBuilt:
    tag: str
    path: str


@dataclass(frozen=True)
class ImageBuilt:
    tag: str
    image_id: str
    size_bytes: int
    user: str
    labels: dict[str, str]
    python_packages: tuple[tuple[str, str], ...]

    def __post_init__(self) -> None:  # JSON gives lists back
        object.__setattr__(self, "python_packages", tuple(tuple(p) for p in self.python_packages))


@dataclass(frozen=True)
class SmokePassed:
    ready_seconds: float
    rows: int
    latency_p50_ms: float
    latency_p95_ms: float
    rows_source: str = ""  # where the parity rows came from, as the smoke report says


@dataclass(frozen=True)
class Pushed:
    repository: str
    digest: str
    pushed: bool


@dataclass(frozen=True)
class Approval:
    required: bool
    by: str | None = None
    at: str | None = None
    comment: str | None = None
    # every counted approval ({"by", "at", "comment", "identity_source"}) when approvals are counted per person
    approvals: tuple[dict[str, str], ...] = ()

    def __post_init__(self) -> None:  # JSON gives lists back
        object.__setattr__(self, "approvals", tuple(self.approvals))


@dataclass(frozen=True)
class BundleWritten:
    path: str
    image: str


@dataclass(frozen=True)
class Committed:
    commit: str | None


@dataclass(frozen=True)
class Swapped:
    champion: str
    previous: str | None


@dataclass(frozen=True)
class Promotion:
    """The record of a promotion.

    Attributes:
        model: registered model name.
        version: the version promoted.
        status: ``completed`` or ``awaiting_approval``.
        stages: every stage with its status, duration and whether it was reused.
        image: the image reference the deployment uses: ``repo@sha256:…`` when pushed, else the
            local ``repo:tag`` (which ``docker image inspect`` resolves).
        image_digest: the registry's manifest digest, or the local image id when not pushed.
        bundle_path: the handoff bundle directory.
        verdict: the gate verdict the promotion went on with.
    """

    model: str
    version: str
    target: str
    status: str
    stages: tuple[StageRecord, ...]
    image: str | None
    image_digest: str | None
    bundle_path: Path | None
    verdict: str | None
    state_file: Path

    @property
    def durations(self) -> dict[str, float]:
        return {s.name: s.seconds for s in self.stages}

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{s.name}</td><td>{s.status}{' (reused)' if s.reused else ''}</td><td>{s.seconds:.1f}s</td></tr>"
            for s in self.stages
        )
        return (
            f"<b>{self.model} v{self.version}</b> → {self.target}: <b>{self.status}</b><br>"
            f"image <code>{self.image}</code><br>bundle <code>{self.bundle_path}</code>"
            f"<table><tr><th>stage</th><th>status</th><th>time</th></tr>{rows}</table>"
        )


def _gates(ctx: StageContext) -> GatesPassed:
    """Trust the candidate's binding gate report (which a later, laxer check cannot turn into a pass)."""
    from .. import gates

    inputs: PromotionInputs = ctx.inputs
    try:
        report = gates.load_report(inputs.candidate, workspace=inputs.workspace)
    except GateError as exc:
        raise GateFailed(
            f"{inputs.candidate} has no recorded gate verdict, so it cannot be promoted.",
            hint="Declare gates with @shipyard.gate(...) on a step, or run shipyard.check(...) on it first.",
        ) from exc
    if report.verdict == "fail":
        failed = "; ".join(f"{r.name} ({r.status}): {r.message}" for r in report.failed)
        raise GateFailed(
            f"{inputs.candidate} failed its blocking gates: {failed}",
            report=report,
            hint="Train a better model, or override with a written reason: "
            f"shipyard gates override {inputs.candidate} --gate NAME --reason TEXT.",
        )
    from . import _duties

    return GatesPassed(report.verdict, report.to_dict(), _duties.starter(inputs.workspace.settings))


def _verdict_holds(ctx: StageContext, out: GatesPassed) -> bool:
    """A resumed promotion re-reads the verdict: a report that failed since the stage ran stops it."""
    from .. import gates

    inputs: PromotionInputs = ctx.inputs
    try:
        return gates.load_report(inputs.candidate, workspace=inputs.workspace).verdict != "fail"
    except GateError:
        return False


def _register(ctx: StageContext) -> Registered:
    from .. import registry

    inputs: PromotionInputs = ctx.inputs
    ws = inputs.workspace
    if inputs.version is not None:
        version = registry.resolve(ModelRef(name=inputs.model, version=inputs.version), workspace=ws)
    else:
        version = registry.register(
            inputs.model, inputs.run_id, inputs.logged_model, reason=f"candidate for {inputs.target}", workspace=ws
        )
    _refuse_retired(version, inputs)
    return Registered(version.version, version.run_id, registry.lineage_of(version, workspace=ws).to_dict())


def _version_exists(ctx: StageContext, out: Registered) -> bool:
    from .. import registry

    try:
        registry.resolve(out.ref, workspace=ctx.inputs.workspace)
    except ModelNotFound:
        return False
    return True


def _refuse_retired(version: Any, inputs: PromotionInputs) -> None:
    if version.tags.get(lineage.RETIRED) == "true" and not inputs.allow_retired:
        why = version.tags.get(lineage.retired_tag("reason"), "no reason recorded")
        raise PromotionError(
            f"{version} is retired ({why}) and cannot be promoted.",
            hint="Promote a newer version, or pass allow_retired=True with a reason to bring it back on purpose.",
        )


def _registered(ctx: StageContext) -> Registered:
    return ctx.output("register")


def _bento(ctx: StageContext) -> BentoBuilt:
    from ..packaging import build_bento

    bento = build_bento(_registered(ctx).ref)
    return BentoBuilt(bento.tag, str(bento.path))


def _image(ctx: StageContext) -> ImageBuilt:
    from ..packaging import containerize, load_bento

    report = containerize(load_bento(Path(ctx.output("bento").path)))
    return ImageBuilt(report.tag, report.image_id, report.size_bytes, report.user, report.labels, report.python_packages)


def _image_exists(ctx: StageContext, out: ImageBuilt) -> bool:
    from ..packaging.docker_engine import docker_client

    try:
        return docker_client().images.get(out.image_id).id == out.image_id
    except Exception:
        return False


def _smoke(ctx: StageContext) -> SmokePassed:
    from ..deploy import smoke
    from ..deploy.container import remove_leftovers
    from ..packaging.docker_engine import docker_client

    inputs: PromotionInputs = ctx.inputs
    remove_leftovers(docker_client(), ctx.key)  # a container of an earlier, killed run of this promotion
    ref = _registered(ctx).ref
    result = smoke(
        ctx.output("image").image_id, model_version=ref, holdout=inputs.holdout,
        container_labels={lineage.CONTAINER_PROMOTION: ctx.key},
    )
    if not result.passed:
        raise DeployError(
            f"The image of {ref} failed its smoke test: "
            + "; ".join(f"{g.name}: {g.message}" for g in result.gates if g.status == "fail"),
            hint="Look at the differing row in the message; promote again after fixing the model or the image.",
        )
    return SmokePassed(
        result.ready_seconds, result.rows, result.latency_p50_ms, result.latency_p95_ms, result.holdout_source
    )


def _push(ctx: StageContext) -> Pushed:
    inputs: PromotionInputs = ctx.inputs
    image: ImageBuilt = ctx.output("image")
    registry_address = inputs.workspace.settings.oci_registry
    if not registry_address:
        # No registry: the bundle pins the local tag (see deploy.handoff) and keeps the image id.
        return Pushed(image.tag.rpartition(":")[0], image.image_id, False)
    from ..deploy.push import push_image

    pushed = push_image(
        image.image_id, registry_address, repository=f"shipyard/{slug(inputs.model)}", tag=f"v{_registered(ctx).version}"
    )
    return Pushed(pushed.repository, pushed.digest, True)


def _approval(ctx: StageContext) -> Approval:
    from .. import registry
    from . import _duties

    inputs: PromotionInputs = ctx.inputs
    settings = inputs.workspace.settings
    if not _duties.approvals_needed(settings):
        return Approval(required=False)
    version = registry.resolve(_registered(ctx).ref, workspace=inputs.workspace)  # read now: reviews change it
    review = lineage.review(version.tags)
    if _duties.counts_approvals(settings) and review.get("state") != "rejected":
        return _counted_approval(ctx, version)
    if review.get("state") == "approved":
        return Approval(True, review.get("by"), review.get("at"), review.get("comment"))
    if review.get("state") == "rejected":
        raise PromotionError(
            f"{version} was rejected by {review.get('by')}: {review.get('comment')}",
            hint="Address the review comment with a new version; a rejected version is never made champion.",
        )
    raise AwaitingApproval(
        f"{version} is packaged and waiting for an engineer's approval (`shipyard review {version}`, then "
        f"`shipyard approve {version} -m '...'`).",
    )


def _counted_approval(ctx: StageContext, version: Any) -> Approval:
    """Go on once ``required_approvals`` distinct eligible people approved (see :mod:`._duties`)."""
    from . import _duties

    inputs: PromotionInputs = ctx.inputs
    settings = inputs.workspace.settings
    promoter = ""
    if settings.separation_of_duties:
        # a promotion started before the rule was turned on recorded nobody: whoever runs it now started it
        promoter = ctx.output("gates").started_by or _duties.current_identity(settings)
        _duties.request(inputs.workspace, version, promoter)
    needed = _duties.approvals_needed(settings)
    counted = _duties.tally(inputs.workspace, version, needed=needed, promoter=promoter or None)
    if counted.enough:
        last = counted.counted[-1]
        return Approval(True, last["by"], last["at"], last["comment"], counted.counted)
    names = ", ".join(a["by"] for a in counted.counted) or "nobody yet"
    barred = "".join(f"; {who}'s approval does not count ({rule})" for who, rule in counted.ignored.items())
    who = f"by someone who is neither its run's author nor {promoter}" if promoter else "by another engineer"
    raise AwaitingApproval(
        f"{version} is packaged and has {len(counted.counted)} of {needed} approvals ({names}{barred}): "
        f"`shipyard review {version}`, then `shipyard approve {version} -m '...'` {who}.",
    )


def _bundle(ctx: StageContext) -> BundleWritten:
    from .. import registry
    from ..deploy import provenance
    from ..deploy.handoff import write_bundle
    from . import _card

    inputs: PromotionInputs = ctx.inputs
    spec = handoff_spec(ctx)
    directory = inputs.workspace.bundle_dir(inputs.model, spec.version)
    version = registry.resolve(_registered(ctx).ref, workspace=inputs.workspace)
    card = _card.build(inputs.workspace, version, spec, bundle_dir=directory)
    spec = dataclasses.replace(spec, model_card=card.files())
    envelope = provenance.attest(
        inputs.workspace, spec, target=inputs.target, invocation_id=ctx.key,
        approval_required=ctx.output("approval").required,
    )
    bundle = write_bundle(dataclasses.replace(spec, provenance=envelope.to_json()), directory)
    if version.run_id:
        _card.log_card(inputs.workspace, version.run_id, card)
        provenance.log_envelope(inputs.workspace, version.run_id, envelope)
    return BundleWritten(str(bundle.path), bundle.image)


def handoff_spec(ctx: StageContext) -> Any:
    """The :class:`~shipyard.deploy.handoff.HandoffSpec` of this promotion, from the earlier stages' outputs."""
    from ..deploy.handoff import HandoffSpec, deployment_settings

    inputs: PromotionInputs = ctx.inputs
    registered, image, pushed = _registered(ctx), ctx.output("image"), ctx.output("push")
    gates: GatesPassed = ctx.output("gates")
    approval: Approval = ctx.output("approval")
    report = gates.report
    return HandoffSpec(
        model_name=inputs.model,
        version=registered.version,
        image_repository=pushed.repository,
        image_digest=pushed.digest,
        local_tag=None if pushed.pushed else image.tag.rpartition(":")[2],
        run_as_user=_uid(image.user),
        lineage=Lineage.from_dict(registered.lineage),
        gate_report=report,
        overrides=tuple([report["override"]] if report.get("override") else []),
        approvals=(
            approval.approvals
            or (({"by": approval.by, "at": approval.at, "comment": approval.comment},)
                if approval.required and approval.by else ())
        ),
        image_facts={
            "tag": image.tag,
            "image_id": image.image_id,
            "size_bytes": image.size_bytes,
            "user": image.user,
            "labels": image.labels,
            "bento": ctx.output("bento").tag,
            "pushed": pushed.pushed,
            "smoke": dataclasses.asdict(ctx.output("smoke")),
        },
        python_packages=image.python_packages,
        canary_weight=inputs.canary_weight,
        previous_image=_champion_image(inputs) if inputs.canary_weight is not None else None,
        reference_profile=_reference_profile(ctx.output("bento")),
        **deployment_settings(inputs.workspace.settings, inputs.model),
    )


def _reference_profile(bento: BentoBuilt) -> dict[str, Any] | None:
    """The reference profile frozen into the bento (and so the image), for the bundle."""
    from ..packaging.bento import REFERENCE_FILE

    path = Path(bento.path) / "src" / REFERENCE_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _champion_image(inputs: PromotionInputs) -> str | None:
    """The image the current champion's bundle pins (the stable side of a canary)."""
    from .. import registry
    from ..deploy.handoff import read_bundle

    champion = registry.champion(inputs.model, workspace=inputs.workspace)
    if champion is None:
        return None
    directory = inputs.workspace.bundle_dir(inputs.model, champion.version)
    return read_bundle(directory).image if (directory / "handoff.json").is_file() else None


def _bundle_exists(ctx: StageContext, out: BundleWritten) -> bool:
    """The bundle is there, with a statement signed by the configured key (configuring one re-signs on the next call)."""
    from ..deploy.provenance import signed_as_configured

    return (Path(out.path) / "handoff.json").is_file() and signed_as_configured(ctx.inputs.workspace, Path(out.path))


def _gitops(ctx: StageContext) -> Committed:
    inputs: PromotionInputs = ctx.inputs
    settings = inputs.workspace.settings
    if settings.gitops_repo is None:
        return Committed(None)
    from ..deploy.gitops import commit_bundle

    version, digest = _registered(ctx).version, ctx.output("push").digest
    commit = commit_bundle(
        Path(ctx.output("bundle").path), settings.gitops_repo, settings.gitops_path, slug(inputs.model),
        f"{inputs.model} v{version} to {inputs.target}: {digest}",
    )
    return Committed(commit)


def _aliases(ctx: StageContext) -> Swapped:
    from .. import registry

    inputs: PromotionInputs = ctx.inputs
    swap = registry.swap_champion(
        inputs.model, _registered(ctx).version, reason=inputs.reason or f"promoted to {inputs.target}",
        workspace=inputs.workspace,
    )
    point_current(inputs.workspace, inputs.model, Path(ctx.output("bundle").path))
    return Swapped(swap.champion.version, swap.previous.version if swap.previous else None)


def _is_champion(ctx: StageContext, out: Swapped) -> bool:
    from .. import registry

    champion = registry.champion(ctx.inputs.model, workspace=ctx.inputs.workspace)
    return champion is not None and champion.version == out.champion


def point_current(ws: Workspace, model: str, bundle: Path) -> None:
    """``bundles/<model>/current`` → the champion's bundle (replaced atomically)."""
    link = ws.model_bundles(model) / "current"
    tmp = link.with_name(".current.tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(bundle.name)
    tmp.replace(link)


def _uid(user: str) -> int:
    uid = user.split(":", 1)[0]
    if not uid.isdigit():
        raise PromotionError(
            f"The image runs as user {user!r}, not a numeric uid; Kubernetes cannot verify it is not root.",
            hint="Rebuild the image with shipyard, which sets a numeric non-root user.",
        )
    return int(uid)


STAGES: tuple[Stage, ...] = (
    Stage("gates", "Check gates", _gates, GatesPassed, _verdict_holds),
    Stage("register", "Register version (challenger)", _register, Registered, _version_exists),
    Stage("bento", "Build bento", _bento, BentoBuilt, lambda ctx, out: Path(out.path).is_dir()),
    Stage("image", "Build image", _image, ImageBuilt, _image_exists),
    Stage("smoke", "Smoke and parity test", _smoke, SmokePassed),
    Stage("push", "Push image", _push, Pushed),
    Stage("approval", "Engineer approval", _approval, Approval),
    Stage("bundle", "Write handoff bundle", _bundle, BundleWritten, _bundle_exists),
    Stage("gitops", "Commit bundle to GitOps repository", _gitops, Committed),
    Stage("aliases", "Swap champion", _aliases, Swapped, _is_champion),
)


def promote(
    candidate: Any,
    to: str = "production",
    *,
    model_name: str | None = None,
    model: str = "model",
    reason: str | None = None,
    holdout: Any = None,
    canary_weight: int | None = None,
    allow_retired: bool = False,
    progress: Callable[[StageEvent], None] | None = None,
    lock_timeout: float = 600.0,
    workspace: Workspace | None = None,
) -> Promotion:
    """Promote a tracked run (or a registered version) to production, all or nothing.

    Args:
        candidate: an MLflow run id, a ``RunResult``, or a registered version (``"NAME/VERSION"``,
            ``"NAME@ALIAS"``, a :class:`~shipyard.ModelRef`).
        to: deployment target (``"production"``).
        model_name: registered model name for a run; default: the run's flow name.
        model: name the model was logged under on the run.
        reason: recorded with the champion move.
        holdout: rows for the parity test (default: the holdout the gate check recorded, else a sample of a
            dataset logged on the run, else the input example).
        canary_weight: percent of traffic for the new version in the handoff manifests.
        allow_retired: promote a retired version again (recorded in the audit log).
        progress: called with a :class:`StageEvent` as each stage starts and ends (the panel uses it).
        lock_timeout: seconds to wait for another promotion of the same candidate.

    Returns:
        :class:`Promotion` — ``status`` is ``awaiting_approval`` when approvals are required.

    Raises:
        GateFailed: the gates failed and were not overridden.
        PromotionError, PackagingError, DeployError: a stage failed; champion is unchanged.

    Example:
        >>> p = shipyard.promote(result)                 # doctest: +SKIP
        >>> p.status, p.image_digest, p.bundle_path      # doctest: +SKIP
    """
    if to not in _TARGETS:
        raise PromotionError(f"Unknown promotion target {to!r}.", hint=f"Use one of: {', '.join(_TARGETS)}.")
    ws = workspace or current_workspace()
    _check_handoff_settings(ws, canary_weight)
    inputs = resolve_inputs(
        candidate, ws, model_name=model_name, model=model, target=to, reason=reason, holdout=holdout,
        canary_weight=canary_weight, allow_retired=allow_retired,
    )
    if allow_retired:
        audit.append("promotion.allow_retired", workspace=ws, model=inputs.model, candidate=inputs.candidate, reason=reason)
    outcome: RunOutcome = run_stages(
        inputs.key,
        STAGES,
        StageContext(inputs.key, inputs),
        state_file=ws.promotions_dir / f"{inputs.key}.json",
        lock_file=ws.lock_path("promote", inputs.model),
        lock_timeout=lock_timeout,
        progress=progress or _terminal_progress(),
    )
    out = outcome.outputs
    bundle: BundleWritten | None = out.get("bundle")
    promotion = Promotion(
        model=inputs.model,
        version=out["register"].version if "register" in out else inputs.version or "",
        target=to,
        status=outcome.status,
        stages=outcome.stages,
        image=bundle.image if bundle else None,
        image_digest=out["push"].digest if "push" in out else None,
        bundle_path=Path(bundle.path) if bundle else None,
        verdict=out["gates"].verdict if "gates" in out else None,
        state_file=outcome.state_file,
    )
    audit.append(
        "promotion." + outcome.status, workspace=ws, model=promotion.model, version=promotion.version,
        target=to, image=promotion.image, bundle=str(promotion.bundle_path),
    )
    return promotion


def _check_handoff_settings(ws: Workspace, canary_weight: int | None) -> None:
    """Refuse settings that would fail the bundle or GitOps stage before anything is built.

    Raises:
        DeployError: a delivery or deployment setting is invalid, a canary weight is combined with a
            progressive delivery, or ``gitops_repo`` is not a git work tree.
        ConfigError: ``provenance_key`` is unusable, or missing while ``provenance_require_signature`` is set.
    """
    from ..deploy.gitops import check_repository
    from ..deploy.handoff import deployment_settings
    from ..deploy.provenance import signing_key

    settings = ws.settings
    chosen = deployment_settings(settings, "model")  # the model name only names the GitOps folder
    if canary_weight is not None and chosen["delivery"].mode != "rolling":
        raise DeployError(
            f"--canary {canary_weight} and delivery {chosen['delivery'].mode!r} both split traffic.",
            hint="Drop --canary: the delivery's own steps (canary_steps setting) move the traffic.",
        )
    if settings.gitops_repo is not None:
        check_repository(settings.gitops_repo)
    signing_key(ws)  # an unusable key, or a required one missing, stops the promotion before anything is built


def resolve_inputs(candidate: Any, ws: Workspace, *, model_name: str | None, model: str, **options: Any) -> PromotionInputs:
    """Resolve what to promote, once: a registered version, or a run and the model name it registers as.

    Raises:
        PromotionError: ``candidate`` names no model, or its run logged no model named ``model``.
        ModelNotFound: the version does not exist.
    """
    from .. import registry

    try:
        ref = ModelRef.of(candidate)
    except ModelNotFound as exc:
        raise PromotionError(
            f"Cannot promote {candidate!r}.",
            hint="Pass a RunResult, an MLflow run id, or a registered version like 'iris/3'.",
        ) from exc
    if not ref.is_run:
        version = registry.resolve(ref, workspace=ws)
        return PromotionInputs(
            ws, version.name, version.version, version.run_id, model, str(version),
            f"{slug(version.name)}/v{version.version}", **options,
        )
    assert ref.run_id is not None
    tags = _run_tags(ws, ref.run_id)
    if model not in lineage.logged_models(tags):
        raise PromotionError(
            f"Run {ref.run_id} has no model logged as {model!r}, so there is nothing to promote.",
            hint="Log one with shipyard.log_model(model, name=...) in the flow, or pass model= its name.",
        )
    name = model_name or tags.get(lineage.FLOW) or "model"
    return PromotionInputs(ws, name, None, ref.run_id, model, ref.run_id, f"{slug(name)}/run-{ref.run_id}", **options)


def _run_tags(ws: Workspace, run_id: str) -> dict[str, str]:
    from mlflow.exceptions import MlflowException

    from ..tracking._client import client_for

    try:
        return dict(client_for(ws).get_run(run_id).data.tags)
    except MlflowException as exc:
        raise PromotionError(
            f"No tracked run {run_id!r} in {ws.tracking_uri}.",
            hint="Pass RunResult.mlflow_run_id of a tracked run (see `shipyard runs`).",
        ) from exc


def _terminal_progress() -> Callable[[StageEvent], None]:
    """One line per stage on stderr, with a rich spinner while a stage runs when it is a terminal."""
    state: dict[str, Any] = {}

    def show(event: StageEvent) -> None:
        if event.state == "started":
            if sys.stderr.isatty():
                from rich.console import Console

                status = Console(stderr=True).status(f"[{event.index + 1}/{event.total}] {event.title} …")
                status.start()
                state["status"] = status
            return
        if status := state.pop("status", None):
            status.stop()
        mark = {"done": "✓", "reused": "↺", "failed": "✗", "waiting": "…"}[event.state]
        timing = f" {event.seconds:.1f}s" if event.state == "done" else ""
        note = " (reused)" if event.state == "reused" else f" — {event.message}" if event.message else ""
        print(f"{mark} [{event.index + 1}/{event.total}] {event.title}{timing}{note}", file=sys.stderr, flush=True)

    return show
