"""What ML engineers do with a packaged version: review, approve or reject, roll back, retire.

Every decision is written to the model version's tags and the audit log
before the call returns.
"""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .._core import audit, lineage
from .._core.errors import PromotionError, RegistryError
from .._core.refs import ModelRef
from .._core.workspace import Workspace, current_workspace, slug
from ._promote import point_current


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _need_text(text: str | None, what: str) -> str:
    if not text or not text.strip():
        raise RegistryError(f"{what} needs a written comment.", hint="Say why, e.g. -m 'holdout AUC regressed on segment B'.")
    return text.strip()


def _decide(ref: Any, state: str, comment: str | None, reviewer: str | None, ws: Workspace | None) -> dict[str, str]:
    from .. import registry

    ws = ws or current_workspace()
    version = registry.resolve(ref, workspace=ws)
    comment = _need_text(comment, f"{'Approving' if state == 'approved' else 'Rejecting'} {version}")
    record = {"state": state, "by": reviewer or ws.author, "at": _now(), "comment": comment}
    registry.set_version_tags(version, {lineage.review_tag(k): v for k, v in record.items()}, workspace=ws)
    audit.append(f"review.{state}", workspace=ws, who=record["by"], model=version.name, version=version.version, comment=comment)
    return record


def approve(ref: Any, comment: str, *, reviewer: str | None = None, workspace: Workspace | None = None) -> dict[str, str]:
    """Approve a packaged version for production; a waiting ``promote`` then completes.

    Example:
        >>> shipyard.approve("iris/3", "parity and latency look right")   # doctest: +SKIP
    """
    return _decide(ref, "approved", comment, reviewer, workspace)


def reject(ref: Any, comment: str, *, reviewer: str | None = None, workspace: Workspace | None = None) -> dict[str, str]:
    """Reject a version; ``promote`` refuses it and shows the comment."""
    return _decide(ref, "rejected", comment, reviewer, workspace)


def retire(ref: Any, reason: str, *, workspace: Workspace | None = None) -> Any:
    """Remove every alias of a version and mark it retired; promoting it again needs ``allow_retired``."""
    from .. import registry

    ws = workspace or current_workspace()
    reason = _need_text(reason, f"Retiring {ref}")
    version = registry.resolve(ref, workspace=ws)
    for alias in version.aliases:
        registry.remove_alias(version.name, alias, reason=f"retired: {reason}", workspace=ws)
    registry.set_version_tags(
        version,
        {
            lineage.RETIRED: "true",
            lineage.retired_tag("by"): ws.author,
            lineage.retired_tag("at"): _now(),
            lineage.retired_tag("reason"): reason,
        },
        workspace=ws,
    )
    audit.append("model.retire", workspace=ws, model=version.name, version=version.version, reason=reason,
                 aliases_removed=list(version.aliases))
    return registry.resolve(version, workspace=ws)


def rollback(model: str, reason: str, *, workspace: Workspace | None = None) -> Any:
    """Make ``previous`` the champion again and point the handoff at its bundle.

    Like a promotion, the aliases move last: the previous champion's bundle is
    rewritten from its recorded handoff (so it pins that version's image
    digest) and committed to the GitOps repository first, in one commit; a
    failure there leaves ``champion`` and ``previous`` where they were. When
    ``shipyard deploy local`` serves the model, the rolled-back bundle is
    played there too.
    """
    from .. import registry
    from ..deploy.handoff import read_bundle, write_bundle

    ws = workspace or current_workspace()
    reason = _need_text(reason, f"Rolling back {model}")
    target = registry.resolve(ModelRef(name=model, alias=registry.PREVIOUS), workspace=ws)
    bundle_dir = ws.bundle_dir(model, target.version)
    if not (bundle_dir / "handoff.json").is_file():
        raise PromotionError(
            f"{target} has no handoff bundle to roll back to ({bundle_dir}).",
            hint="Promote it with shipyard.promote() first; rollback only moves to versions that were deployed.",
        )
    spec = replace(read_bundle(bundle_dir), canary_weight=None, previous_image=None)
    bundle = write_bundle(spec, bundle_dir)
    if ws.settings.gitops_repo is not None:
        from ..deploy.gitops import commit_bundle

        commit_bundle(bundle.path, ws.settings.gitops_repo, ws.settings.gitops_path, slug(model),
                      f"{model}: roll back to v{target.version}: {reason}")
    swap = registry.rollback(model, reason, workspace=ws)
    point_current(ws, model, bundle.path)
    audit.append("model.rollback", workspace=ws, model=model, champion=swap.champion.version,
                 previous=swap.previous.version if swap.previous else None, reason=reason, image=bundle.image)
    from ..deploy import local

    # A model served here by `shipyard deploy local` follows its champion, as a cluster's controller would.
    local.replay(ws, model, bundle.path)
    return swap


@dataclass(frozen=True)
class Review:
    """What an engineer needs to decide on a version."""

    model: str
    version: str
    aliases: tuple[str, ...]
    lineage: dict[str, Any]
    gates: dict[str, Any]
    review: dict[str, str]
    retired: bool
    image: dict[str, Any]
    champion: str | None
    diff: dict[str, Any] = field(default_factory=dict)


def review(ref: Any, *, workspace: Workspace | None = None) -> Review:
    """Lineage, gate verdicts, overrides, image facts and a diff against the current champion."""
    from .. import registry

    ws = workspace or current_workspace()
    version = registry.resolve(ref, workspace=ws)
    champion = registry.champion(version.name, workspace=ws)
    mine = _facts(ws, version)
    diff: dict[str, Any] = {}
    if champion is not None and champion.version != version.version:
        theirs = _facts(ws, champion)
        diff = {
            "metrics": {k: (theirs["metrics"].get(k), v) for k, v in mine["metrics"].items()
                        if theirs["metrics"].get(k) != v},
            "input_schema": None if mine["schema"] == theirs["schema"] else (theirs["schema"], mine["schema"]),
            "requirements": {
                "added": sorted(set(mine["requirements"]) - set(theirs["requirements"])),
                "removed": sorted(set(theirs["requirements"]) - set(mine["requirements"])),
            },
            "image_size_bytes": (theirs["image"].get("size_bytes"), mine["image"].get("size_bytes")),
        }
    return Review(
        model=version.name,
        version=version.version,
        aliases=version.aliases,
        lineage=mine["lineage"],
        gates=mine["gates"],
        review=lineage.review(version.tags),
        retired=version.tags.get(lineage.RETIRED) == "true",
        image=mine["image"],
        champion=champion.version if champion else None,
        diff=diff,
    )


def _packaged_image(ws: Workspace, version: Any) -> dict[str, Any]:
    """Image facts from a promotion that has not written its bundle yet (e.g. awaiting approval)."""
    from ._machine import recorded_outputs
    from ._promote import STAGES

    folder = ws.model_promotions(version.name)
    for state_file in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        outputs = recorded_outputs(state_file, STAGES)
        if "register" not in outputs or outputs["register"].version != version.version or "image" not in outputs:
            continue
        image = {k: v for k, v in dataclasses.asdict(outputs["image"]).items() if k != "python_packages"}
        if "push" in outputs:
            pushed = outputs["push"]
            # the reference the bundle will pin (deploy.handoff.HandoffSpec.image)
            reference = f"{pushed.repository}@{pushed.digest}" if pushed.pushed else image["tag"]
            image.update(repository=pushed.repository, digest=pushed.digest, reference=reference)
        return image
    return {}


def _image_facts(ws: Workspace, version: Any) -> dict[str, Any]:
    from ..deploy.handoff import read_bundle

    directory = ws.bundle_dir(version.name, version.version)
    if not (directory / "handoff.json").is_file():
        return _packaged_image(ws, version)
    spec = read_bundle(directory)
    return {"repository": spec.image_repository, "digest": spec.image_digest, "reference": spec.image,
            **spec.image_facts}


def _facts(ws: Workspace, version: Any) -> dict[str, Any]:
    from .. import gates, registry, tracking
    from ..tracking._client import client_for

    run = client_for(ws).get_run(version.run_id) if version.run_id else None
    schema: Any = None
    requirements: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = tracking.download_model(version.uri, Path(tmp) / "model", workspace=ws)
            import yaml

            schema = yaml.safe_load((local / "MLmodel").read_text()).get("signature", {}).get("inputs")
            if (local / "requirements.txt").is_file():
                requirements = (local / "requirements.txt").read_text().split()
        except Exception as exc:  # a review still shows the rest; say what is missing
            schema = f"unavailable: {exc}"
    try:
        report = gates.load_report(version, workspace=ws).to_dict()
    except Exception:
        report = {}
    return {
        "metrics": dict(run.data.metrics) if run else {},
        "schema": schema,
        "requirements": requirements,
        "image": _image_facts(ws, version),
        "gates": {"verdict": report.get("verdict"), "results": report.get("results", []),
                  "override": report.get("override")},
        "lineage": registry.lineage_of(version, workspace=ws).to_dict(),
    }


__all__ = ["Review", "approve", "reject", "retire", "review", "rollback"]
