"""What ML engineers do with a packaged version: review, approve or reject, roll back, retire.

Every decision is written to the model version's tags and the audit log
before the call returns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .._core import audit, lineage
from .._core.errors import PromotionError, RegistryError
from .._core.workspace import Workspace, current_workspace
from ._promote import RETIRED_TAG, REVIEW_PREFIX, _point_current, _run_tags, _slug


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _need_text(text: str | None, what: str) -> str:
    if not text or not text.strip():
        raise RegistryError(f"{what} needs a written comment.", hint="Say why, e.g. -m 'holdout AUC regressed on segment B'.")
    return text.strip()


def _set_tags(ws: Workspace, name: str, version: str, tags: dict[str, str]) -> None:
    from ..tracking._client import client_for

    client = client_for(ws)
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)


def _decide(ref: str, state: str, comment: str | None, reviewer: str | None, ws: Workspace | None) -> dict[str, str]:
    from .. import registry

    ws = ws or current_workspace()
    version = registry.resolve(ref, workspace=ws)
    comment = _need_text(comment, f"{'Approving' if state == 'approved' else 'Rejecting'} {version}")
    record = {"state": state, "by": reviewer or ws.author, "at": _now(), "comment": comment}
    _set_tags(ws, version.name, version.version, {REVIEW_PREFIX + k: v for k, v in record.items()})
    audit.append(f"review.{state}", workspace=ws, who=record["by"], model=version.name, version=version.version, comment=comment)
    return record


def approve(ref: str, comment: str, *, reviewer: str | None = None, workspace: Workspace | None = None) -> dict[str, str]:
    """Approve a packaged version for production; a waiting ``promote`` then completes.

    Example:
        >>> shipyard.approve("iris/3", "parity and latency look right")   # doctest: +SKIP
    """
    return _decide(ref, "approved", comment, reviewer, workspace)


def reject(ref: str, comment: str, *, reviewer: str | None = None, workspace: Workspace | None = None) -> dict[str, str]:
    """Reject a version; ``promote`` refuses it and shows the comment."""
    return _decide(ref, "rejected", comment, reviewer, workspace)


def retire(ref: str, reason: str, *, workspace: Workspace | None = None) -> Any:
    """Remove every alias of a version and mark it retired; promoting it again needs ``allow_retired``."""
    from .. import registry

    ws = workspace or current_workspace()
    reason = _need_text(reason, f"Retiring {ref}")
    version = registry.resolve(ref, workspace=ws)
    for alias in version.aliases:
        registry.remove_alias(version.name, alias, reason=f"retired: {reason}", workspace=ws)
    _set_tags(ws, version.name, version.version,
              {RETIRED_TAG: "true", RETIRED_TAG + ".by": ws.author, RETIRED_TAG + ".at": _now(), RETIRED_TAG + ".reason": reason})
    audit.append("model.retire", workspace=ws, model=version.name, version=version.version, reason=reason,
                 aliases_removed=list(version.aliases))
    return registry.resolve(str(version), workspace=ws)


def rollback(model: str, reason: str, *, workspace: Workspace | None = None) -> Any:
    """Make ``previous`` the champion again and point the handoff at its bundle.

    The previous champion's bundle is regenerated from its recorded handoff, so
    it pins that version's image digest.
    """
    from .. import registry
    from ..deploy.handoff import HandoffSpec, write_bundle

    ws = workspace or current_workspace()
    reason = _need_text(reason, f"Rolling back {model}")
    target = registry.resolve(f"{model}@previous", workspace=ws)
    bundle_dir = ws.bundles_dir / _slug(model) / target.version
    recorded = bundle_dir / "handoff.json"
    if not recorded.is_file():
        raise PromotionError(
            f"{target} has no handoff bundle to roll back to ({bundle_dir}).",
            hint="Promote it with shipyard.promote() first; rollback only moves to versions that were deployed.",
        )
    handoff = json.loads(recorded.read_text())
    report = json.loads((bundle_dir / "gate-report.json").read_text())
    spec = HandoffSpec(
        model_name=model,
        version=target.version,
        image_repository=handoff["image"]["repository"],
        image_digest=handoff["image"]["digest"],
        run_as_user=_bundle_uid(bundle_dir),
        lineage=handoff["lineage"],
        gate_report=report,
        overrides=tuple(handoff.get("overrides", [])),
        approvals=tuple(handoff.get("approvals", [])),
        image_facts={k: v for k, v in handoff["image"].items() if k not in {"repository", "digest", "reference"}},
        python_packages=_sbom_packages(bundle_dir),
    )
    swap = registry.rollback(model, reason, workspace=ws)
    bundle = write_bundle(spec, bundle_dir)
    _point_current(ws, model, bundle.path)
    if ws.settings.gitops_repo is not None:
        from ..deploy.gitops import commit_bundle

        commit_bundle(bundle.path, ws.settings.gitops_repo, ws.settings.gitops_path, _slug(model),
                      f"{model}: roll back to v{target.version}: {reason}")
    audit.append("model.rollback", workspace=ws, model=model, champion=swap.champion.version,
                 previous=swap.previous.version if swap.previous else None, reason=reason, image=bundle.image)
    return swap


def _bundle_uid(bundle_dir: Path) -> int:
    import yaml

    deployment = yaml.safe_load((bundle_dir / "k8s" / "deployment.yaml").read_text())
    return int(deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"])


def _sbom_packages(bundle_dir: Path) -> tuple[tuple[str, str], ...]:
    sbom = json.loads((bundle_dir / "sbom.cdx.json").read_text())
    return tuple((c["name"], c["version"]) for c in sbom.get("components", []))


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


def review(ref: str, *, workspace: Workspace | None = None) -> Review:
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
        review={k[len(REVIEW_PREFIX):]: v for k, v in version.tags.items() if k.startswith(REVIEW_PREFIX)},
        retired=version.tags.get(RETIRED_TAG) == "true",
        image=mine["image"],
        champion=champion.version if champion else None,
        diff=diff,
    )


def _packaged_image(ws: Workspace, version: Any) -> dict[str, Any]:
    """Image facts from a promotion that has not written its bundle yet (e.g. awaiting approval)."""
    folder = ws.promotions_dir / _slug(version.name)
    for state_file in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        stages = json.loads(state_file.read_text()).get("stages", {})
        if str(stages.get("register", {}).get("outputs", {}).get("version")) != version.version:
            continue
        image = dict(stages.get("image", {}).get("outputs", {}))
        pushed = stages.get("push", {}).get("outputs", {})
        if pushed:
            image.update(repository=pushed["repository"], digest=pushed["digest"])
        return image
    return {}


def _facts(ws: Workspace, version: Any) -> dict[str, Any]:
    import mlflow.artifacts
    import tempfile

    from ..tracking._client import client_for

    tags = _run_tags(ws, version.run_id)
    run = client_for(ws).get_run(version.run_id) if version.run_id else None
    bundle = ws.bundles_dir / _slug(version.name) / version.version / "handoff.json"
    image = json.loads(bundle.read_text())["image"] if bundle.is_file() else _packaged_image(ws, version)
    schema: Any = None
    requirements: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=version.source, dst_path=tmp,
                                                             tracking_uri=ws.tracking_uri))
            mlmodel = (local / "MLmodel").read_text()
            import yaml

            schema = yaml.safe_load(mlmodel).get("signature", {}).get("inputs")
            if (local / "requirements.txt").is_file():
                requirements = (local / "requirements.txt").read_text().split()
        except Exception as exc:  # a review still shows the rest; say what is missing
            schema = f"unavailable: {exc}"
    try:
        from .. import gates

        report = gates.load_report(str(version), workspace=ws).to_dict()
    except Exception:
        report = {}
    return {
        "metrics": dict(run.data.metrics) if run else {},
        "schema": schema,
        "requirements": requirements,
        "image": image,
        "gates": {"verdict": report.get("verdict"), "results": report.get("results", []),
                  "override": report.get("override")},
        "lineage": {
            "mlflow_run_id": version.run_id,
            "metaflow_pathspec": tags.get(lineage.PATHSPEC),
            "source_sha256": tags.get(lineage.SOURCE_SHA256),
            "data_sha256": {k[len(lineage.DATA_PREFIX):-len(".sha256")]: v for k, v in tags.items()
                            if k.startswith(lineage.DATA_PREFIX) and k.endswith(".sha256")},
            "git_commit": tags.get(lineage.GIT_COMMIT),
            "model_sha256": version.tags.get(lineage.model_tag("model", "sha256")),
        },
    }


__all__ = ["Review", "approve", "reject", "retire", "review", "rollback"]
