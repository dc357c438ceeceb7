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

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._core import audit, lineage
from .._core.errors import DeployError, GateError, GateFailed, PromotionError
from .._core.workspace import Workspace, current_workspace
from ._machine import AwaitingApproval, RunOutcome, Stage, StageContext, StageEvent, StageRecord, run_stages

RETIRED_TAG = "shipyard.retired"
REVIEW_PREFIX = "shipyard.review."
_TARGETS = ("production",)


@dataclass(frozen=True)
class Promotion:
    """The record of a promotion.

    Attributes:
        model: registered model name.
        version: the version promoted.
        status: ``completed`` or ``awaiting_approval``.
        stages: every stage with its status, duration and whether it was reused.
        image: the image reference the deployment uses (``repo@sha256:…``).
        image_digest: the pinned digest.
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


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-") or "model"


def _gates(ctx: StageContext) -> dict[str, Any]:
    from .. import gates

    try:
        report = gates.load_report(ctx.inputs["candidate"], workspace=ctx.inputs["workspace"])
    except GateError as exc:
        raise GateFailed(
            f"{ctx.inputs['candidate']} has no recorded gate verdict, so it cannot be promoted.",
            hint="Declare gates with @shipyard.gate(...) on a step, or run shipyard.check(...) on it first.",
        ) from exc
    if report.verdict == "fail":
        failed = "; ".join(f"{r.name}: {r.message}" for r in report.results if r.status == "fail")
        raise GateFailed(
            f"{ctx.inputs['candidate']} failed its blocking gates: {failed}",
            report=report,
            hint="Train a better model, or override with a written reason: shipyard.check(..., override=..., reason=...).",
        )
    return {"verdict": report.verdict, "report": report.to_dict()}


def _register(ctx: StageContext) -> dict[str, Any]:
    from .. import registry

    ws: Workspace = ctx.inputs["workspace"]
    if ctx.inputs.get("version"):
        ref = registry.resolve(f"{ctx.inputs['model']}/{ctx.inputs['version']}", workspace=ws)
    else:
        ref = registry.register(
            ctx.inputs["model"], ctx.inputs["run_id"], ctx.inputs["logged_model"],
            reason=f"candidate for {ctx.inputs['target']}", workspace=ws,
        )
    _refuse_retired(ref, ctx.inputs)
    return {"version": ref.version, "run_id": ref.run_id}


def _version_exists(ctx: StageContext, out: dict[str, Any]) -> bool:
    from .. import registry

    try:
        registry.resolve(f"{ctx.inputs['model']}/{out['version']}", workspace=ctx.inputs["workspace"])
    except Exception:
        return False
    return True


def _refuse_retired(ref: Any, inputs: dict[str, Any]) -> None:
    if ref.tags.get(RETIRED_TAG) == "true" and not inputs.get("allow_retired"):
        raise PromotionError(
            f"{ref} is retired ({ref.tags.get(RETIRED_TAG + '.reason', 'no reason recorded')}) and cannot be promoted.",
            hint="Promote a newer version, or pass allow_retired=True with a reason to bring it back on purpose.",
        )


def _ref(ctx: StageContext) -> str:
    return f"{ctx.inputs['model']}/{ctx.output('register', 'version')}"


def _bento(ctx: StageContext) -> dict[str, Any]:
    from ..packaging import build_bento

    bento = build_bento(_ref(ctx), say=ctx.inputs["say"])
    return {"tag": bento.tag, "path": str(bento.path)}


def _image(ctx: StageContext) -> dict[str, Any]:
    from ..packaging import build_bento, containerize

    bento = build_bento(_ref(ctx), say=ctx.inputs["say"])  # reused: built by the previous stage
    report = containerize(bento, say=ctx.inputs["say"])
    return {
        "tag": report.tag,
        "image_id": report.image_id,
        "size_bytes": report.size_bytes,
        "user": report.user,
        "labels": report.labels,
    }


def _image_exists(ctx: StageContext, out: dict[str, Any]) -> bool:
    from ..packaging.docker_engine import docker_client

    try:
        return docker_client().images.get(out["image_id"]).id == out["image_id"]
    except Exception:
        return False


def _smoke(ctx: StageContext) -> dict[str, Any]:
    from ..deploy import smoke

    result = smoke(ctx.output("image", "image_id"), model_version=_ref(ctx), holdout=ctx.inputs.get("holdout"))
    if not result.passed:
        raise DeployError(
            f"The image of {_ref(ctx)} failed its smoke test: "
            + "; ".join(f"{g.name}: {g.message}" for g in result.gates if g.status == "fail"),
            hint="Look at the differing row in the message; promote again after fixing the model or the image.",
        )
    return {
        "ready_seconds": result.ready_seconds,
        "rows": result.rows,
        "latency_p50_ms": result.latency_p50_ms,
        "latency_p95_ms": result.latency_p95_ms,
    }


def _push(ctx: StageContext) -> dict[str, Any]:
    registry_address = ctx.inputs["workspace"].settings.oci_registry
    image_id = ctx.output("image", "image_id")
    if not registry_address:
        # No registry: pin the local image id; the bundle says how to load it on a node.
        return {"repository": ctx.output("image", "tag").rsplit(":", 1)[0], "digest": image_id, "pushed": False}
    from ..deploy.push import push_image

    pushed = push_image(
        image_id, registry_address, repository=f"shipyard/{_slug(ctx.inputs['model'])}",
        tag=f"v{ctx.output('register', 'version')}",
    )
    return {"repository": pushed.repository, "digest": pushed.digest, "pushed": True}


def _image_python_packages(image_id: str) -> tuple[tuple[str, str], ...]:
    from ..packaging.docker_engine import docker_client

    script = (
        "import importlib.metadata as m\n"
        "for d in m.distributions():\n"
        "    n = d.metadata.get('Name')\n"
        "    n and print(n + '==' + d.version)\n"
    )
    output = docker_client().containers.run(
        image_id, ["-c", script], entrypoint="python", remove=True, network_disabled=True
    )
    from ..deploy.handoff import packages_from_lock

    return packages_from_lock(output.decode().splitlines())


def _bundle(ctx: StageContext) -> dict[str, Any]:
    from .. import registry
    from ..deploy.handoff import HandoffSpec, write_bundle

    ws: Workspace = ctx.inputs["workspace"]
    ref = registry.resolve(_ref(ctx), workspace=ws)
    image_tags = ctx.output("image", "labels")
    run_tags = _run_tags(ws, ref.run_id)
    gates_out = ctx.outputs.get("gates", {})
    report = gates_out.get("report") or {}
    spec = HandoffSpec(
        model_name=ctx.inputs["model"],
        version=ref.version,
        image_repository=ctx.output("push", "repository"),
        image_digest=ctx.output("push", "digest"),
        run_as_user=_uid(ctx.output("image", "user")),
        lineage={
            "mlflow_run_id": ref.run_id,
            "metaflow_pathspec": run_tags.get(lineage.PATHSPEC),
            "source_sha256": run_tags.get(lineage.SOURCE_SHA256),
            "data_sha256": {
                k[len(lineage.DATA_PREFIX) : -len(".sha256")]: v
                for k, v in run_tags.items()
                if k.startswith(lineage.DATA_PREFIX) and k.endswith(".sha256")
            },
            "git_commit": run_tags.get(lineage.GIT_COMMIT),
            "bento": ctx.output("bento", "tag"),
        },
        gate_report=report,
        overrides=tuple([report["override"]] if report.get("override") else []),
        approvals=tuple(_approvals(ref)),
        image_facts={
            "tag": ctx.output("image", "tag"),
            "image_id": ctx.output("image", "image_id"),
            "size_bytes": ctx.output("image", "size_bytes"),
            "user": ctx.output("image", "user"),
            "labels": image_tags,
            "pushed": ctx.output("push", "pushed"),
            "smoke": ctx.outputs.get("smoke", {}),
        },
        python_packages=_image_python_packages(ctx.output("image", "image_id")),
        canary_weight=ctx.inputs.get("canary_weight"),
        previous_image=ctx.inputs.get("previous_image"),
    )
    bundle = write_bundle(spec, ws.bundles_dir / _slug(spec.model_name) / spec.version)
    return {"path": str(bundle.path), "image": bundle.image}


def _bundle_exists(ctx: StageContext, out: dict[str, Any]) -> bool:
    return (Path(out["path"]) / "handoff.json").is_file()


def _gitops(ctx: StageContext) -> dict[str, Any]:
    ws: Workspace = ctx.inputs["workspace"]
    if ws.settings.gitops_repo is None:
        return {"commit": None}
    from ..deploy.gitops import commit_bundle

    version = ctx.output("register", "version")
    commit = commit_bundle(
        Path(ctx.output("bundle", "path")), ws.settings.gitops_repo, ws.settings.gitops_path, _slug(ctx.inputs["model"]),
        f"{ctx.inputs['model']} v{version} to {ctx.inputs['target']}: {ctx.output('push', 'digest')}",
    )
    return {"commit": commit}


def _approval(ctx: StageContext) -> dict[str, Any]:
    from .. import registry

    ws: Workspace = ctx.inputs["workspace"]
    if not ws.settings.require_approval:
        return {"required": False}
    ref = registry.resolve(_ref(ctx), workspace=ws)
    state = ref.tags.get(REVIEW_PREFIX + "state")
    if state == "approved":
        return {"required": True, "by": ref.tags.get(REVIEW_PREFIX + "by"), "comment": ref.tags.get(REVIEW_PREFIX + "comment")}
    if state == "rejected":
        raise PromotionError(
            f"{ref} was rejected by {ref.tags.get(REVIEW_PREFIX + 'by')}: {ref.tags.get(REVIEW_PREFIX + 'comment')}",
            hint="Address the review comment with a new version; a rejected version is never made champion.",
        )
    raise AwaitingApproval(
        f"{ref} is packaged and waiting for an engineer's approval (`shipyard review {ref}`, then "
        f"`shipyard approve {ref} -m '...'`).",
    )


def _aliases(ctx: StageContext) -> dict[str, Any]:
    from .. import registry

    ws: Workspace = ctx.inputs["workspace"]
    swap = registry.swap_champion(
        ctx.inputs["model"], ctx.output("register", "version"),
        reason=ctx.inputs.get("reason") or f"promoted to {ctx.inputs['target']}", workspace=ws,
    )
    _point_current(ws, ctx.inputs["model"], Path(ctx.output("bundle", "path")))
    return {"champion": swap.champion.version, "previous": swap.previous.version if swap.previous else None}


def _is_champion(ctx: StageContext, out: dict[str, Any]) -> bool:
    from .. import registry

    champion = registry.champion(ctx.inputs["model"], workspace=ctx.inputs["workspace"])
    return champion is not None and champion.version == out["champion"]


def _point_current(ws: Workspace, model: str, bundle: Path) -> None:
    """``bundles/<model>/current`` → the champion's bundle (replaced atomically)."""
    link = ws.bundles_dir / _slug(model) / "current"
    tmp = link.with_name(".current.tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(bundle.name)
    tmp.replace(link)


def _run_tags(ws: Workspace, run_id: str) -> dict[str, str]:
    from ..tracking._client import client_for

    return dict(client_for(ws).get_run(run_id).data.tags) if run_id else {}


def _approvals(ref: Any) -> list[dict[str, Any]]:
    if ref.tags.get(REVIEW_PREFIX + "state") != "approved":
        return []
    return [{k: ref.tags.get(REVIEW_PREFIX + k) for k in ("by", "at", "comment")}]


def _uid(user: str) -> int:
    uid = user.split(":", 1)[0]
    if not uid.isdigit():
        raise PromotionError(
            f"The image runs as user {user!r}, not a numeric uid; Kubernetes cannot verify it is not root.",
            hint="Rebuild the image with shipyard, which sets a numeric non-root user.",
        )
    return int(uid)


STAGES: tuple[Stage, ...] = (
    Stage("gates", "Check gates", _gates),
    Stage("register", "Register version (challenger)", _register, _version_exists),
    Stage("bento", "Build bento", _bento, lambda ctx, out: Path(out["path"]).is_dir()),
    Stage("image", "Build image", _image, _image_exists),
    Stage("smoke", "Smoke and parity test", _smoke),
    Stage("push", "Push image", _push),
    Stage("approval", "Engineer approval", _approval),
    Stage("bundle", "Write handoff bundle", _bundle, _bundle_exists),
    Stage("gitops", "Commit bundle to GitOps repository", _gitops),
    Stage("aliases", "Swap champion", _aliases, _is_champion),
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
        candidate: an MLflow run id, a ``RunResult``, or a registered version ``"NAME/VERSION"``.
        to: deployment target (``"production"``).
        model_name: registered model name for a run; default: the run's flow name.
        model: name the model was logged under on the run.
        reason: recorded with the champion move.
        holdout: rows for the parity test (default: derived from the input example).
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
    inputs = _inputs(candidate, ws, model_name=model_name, model=model)
    inputs.update(
        target=to, reason=reason, holdout=holdout, canary_weight=canary_weight,
        allow_retired=allow_retired, workspace=ws, say=lambda text: None,
    )
    if allow_retired:
        audit.append("promotion.allow_retired", workspace=ws, model=inputs["model"], candidate=inputs["candidate"], reason=reason)
    key = f"{_slug(inputs['model'])}/{inputs['key']}"
    display = progress or _terminal_progress()
    outcome: RunOutcome = run_stages(
        key,
        STAGES,
        StageContext(key, inputs),
        state_file=ws.promotions_dir / f"{key}.json",
        lock_file=ws.locks_dir / f"promote-{_slug(inputs['model'])}.lock",
        lock_timeout=lock_timeout,
        progress=display,
    )
    out = outcome.outputs
    promotion = Promotion(
        model=inputs["model"],
        version=str(out.get("register", {}).get("version", inputs.get("version") or "")),
        target=to,
        status=outcome.status,
        stages=outcome.stages,
        image=out.get("bundle", {}).get("image"),
        image_digest=out.get("push", {}).get("digest"),
        bundle_path=Path(out["bundle"]["path"]) if "bundle" in out else None,
        verdict=out.get("gates", {}).get("verdict"),
        state_file=outcome.state_file,
    )
    audit.append(
        "promotion." + outcome.status, workspace=ws, model=promotion.model, version=promotion.version,
        target=to, image=promotion.image, bundle=str(promotion.bundle_path),
    )
    return promotion


def _inputs(candidate: Any, ws: Workspace, *, model_name: str | None, model: str) -> dict[str, Any]:
    from .. import registry

    run_id = getattr(candidate, "mlflow_run_id", None) or (candidate if isinstance(candidate, str) else None)
    if run_id is None:
        raise PromotionError(
            f"Cannot promote a {type(candidate).__name__}.",
            hint="Pass a RunResult, an MLflow run id, or a registered version like 'iris/3'.",
        )
    if "/" in run_id or "@" in run_id:
        ref = registry.resolve(run_id, workspace=ws)
        return {"model": ref.name, "version": ref.version, "run_id": ref.run_id, "logged_model": model,
                "candidate": str(ref), "key": f"v{ref.version}"}
    tags = _run_tags_or_fail(ws, run_id)
    if not tags.get(lineage.model_tag(model, "uri")):
        raise PromotionError(
            f"Run {run_id} has no model logged as {model!r}, so there is nothing to promote.",
            hint="Log one with shipyard.log_model(model, name=...) in the flow, or pass model= its name.",
        )
    name = model_name or tags.get(lineage.FLOW) or "model"
    return {"model": name, "version": None, "run_id": run_id, "logged_model": model, "candidate": run_id,
            "key": f"run-{run_id}"}


def _run_tags_or_fail(ws: Workspace, run_id: str) -> dict[str, str]:
    from mlflow.exceptions import MlflowException

    try:
        return _run_tags(ws, run_id)
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
