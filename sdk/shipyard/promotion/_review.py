"""What ML engineers do with a packaged version: review, approve or reject, roll back, retire.

Every decision is written to the model version's tags and the audit log
before the call returns.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .._core import audit, lineage
from .._core.errors import PromotionError, RegistryError
from .._core.workspace import Workspace, current_workspace, slug
from ._promote import point_current


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _need_text(text: str | None, what: str) -> str:
    if not text or not text.strip():
        raise RegistryError(f"{what} needs a written comment.", hint="Say why, e.g. -m 'holdout AUC regressed on segment B'.")
    return text.strip()


def _decide(ref: Any, state: str, comment: str | None, reviewer: str | None, ws: Workspace | None,
            force: bool = False) -> dict[str, str]:
    from .. import registry

    ws = ws or current_workspace()
    version = registry.resolve(ref, workspace=ws)
    comment = _need_text(comment, f"{'Approving' if state == 'approved' else 'Rejecting'} {version}")
    serving = state == "rejected" and registry.CHAMPION in version.aliases
    if serving and not force:
        # a rejection moves no alias: accepted silently, it would leave a "rejected" version serving
        raise RegistryError(
            f"{version} is the serving champion of {version.name}; rejecting it would not stop it serving.",
            hint=f"Roll back first (shipyard rollback {version.name} --reason '...'), or pass --force "
            "(force=True) to record the rejection while it keeps serving; the comment is its reason.",
        )
    record = {"state": state, "by": reviewer or ws.author, "at": _now(), "comment": comment}
    registry.set_version_tags(version, {lineage.review_tag(k): v for k, v in record.items()}, workspace=ws)
    extra = {"forced": True, "serving_champion": True} if serving else {}
    audit.append(f"review.{state}", workspace=ws, who=record["by"], model=version.name, version=version.version,
                 comment=comment, **extra)
    return record


def approve(ref: Any, comment: str, *, reviewer: str | None = None, workspace: Workspace | None = None) -> dict[str, str]:
    """Approve a packaged version for production; a waiting ``promote`` then completes.

    With ``separation_of_duties`` or ``required_approvals`` > 1, each person's approval is recorded
    apart and counted once (see :mod:`shipyard.promotion._duties`); with separation of duties the
    approver is the current identity, and the run's author and the promotion's starter are refused.

    Raises:
        ApprovalRefused: the separation of duties forbids this approval (it is recorded as refused).
        RegistryError: no comment.

    Example:
        >>> shipyard.approve("iris/3", "parity and latency look right")   # doctest: +SKIP
    """
    from . import _duties

    ws = workspace or current_workspace()
    if _duties.counts_approvals(ws.settings):
        from .. import registry

        version = registry.resolve(ref, workspace=ws)
        return _duties.approve(ws, version, _need_text(comment, f"Approving {version}"), reviewer)
    return _decide(ref, "approved", comment, reviewer, ws)


def reject(ref: Any, comment: str, *, reviewer: str | None = None, force: bool = False,
           workspace: Workspace | None = None) -> dict[str, str]:
    """Reject a version; ``promote`` refuses it and shows the comment.

    The serving champion is rejected only with ``force=True`` (recorded in the
    audit log as forced): a rejection moves no alias, so it keeps serving until
    a rollback or a promotion replaces it.

    Raises:
        RegistryError: no comment, or ``ref`` is the champion and ``force`` is not set.

    Example:
        >>> shipyard.reject("iris/4", "needs a fairness check on segment B")   # doctest: +SKIP
    """
    return _decide(ref, "rejected", comment, reviewer, workspace, force)


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

    A rollback goes back one champion; a second one in a row is refused (it
    would serve the version just rolled back from again; see
    :func:`shipyard.registry._registry.rollback_target`).

    Raises:
        ModelNotFound: the model has no ``previous`` version.
        RegistryError: the champion is already the result of a rollback.
        PromotionError: ``previous`` was never deployed (it has no handoff bundle).
    """
    from .. import registry
    from ..deploy.handoff import read_bundle, write_bundle
    from ..registry._registry import rollback_target

    ws = workspace or current_workspace()
    reason = _need_text(reason, f"Rolling back {model}")
    target = rollback_target(model, workspace=ws)
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
    """What an engineer needs to decide on a version.

    ``diff`` compares it with the current champion, every value under an
    explicit key (empty when there is no other champion):

    - ``champion``, ``candidate``: the two version numbers;
    - ``metrics``: metric → ``{"champion", "candidate", "delta"}`` (delta = candidate − champion);
    - ``requirements``: ``{"added", "removed"}`` (pip requirements of the candidate vs the champion);
    - ``input_schema``: ``{"changed", "added", "removed", "retyped"}`` (columns of the input signature;
      ``retyped``: column → ``{"champion", "candidate"}``);
    - ``image_size_bytes``: ``{"champion", "candidate", "delta"}``;
    - ``attributions``: ``{"recorded": {"champion", "candidate"}, "features": [{"feature", "champion",
      "candidate", "change"}]}``, shares of total importance, largest change first.
    """

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
    """Lineage, gate verdicts, overrides, image facts and a labelled diff against the current champion.

    Example:
        >>> r = shipyard.review("iris/3")                      # doctest: +SKIP
        >>> r.diff["metrics"]["accuracy"]                      # doctest: +SKIP
        {'champion': 0.95, 'candidate': 0.97, 'delta': 0.02}
    """
    from .. import registry

    ws = workspace or current_workspace()
    version = registry.resolve(ref, workspace=ws)
    champion = registry.champion(version.name, workspace=ws)
    mine = _facts(ws, version)
    diff: dict[str, Any] = {}
    if champion is not None and champion.version != version.version:
        diff = compare(_facts(ws, champion), mine, champion=champion.version, candidate=version.version)
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


def _delta(champion: Any, candidate: Any) -> Any:
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (champion, candidate))
    return candidate - champion if numbers else None


def _columns(schema: Any) -> dict[str, str] | None:
    """Input column → type from an MLmodel signature (None when the schema could not be read)."""
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except ValueError:
            return None
    if not isinstance(schema, list):
        return None if schema is not None else {}
    return {str(c.get("name", i)): str(c.get("type", "?")) for i, c in enumerate(schema) if isinstance(c, dict)}


def compare(theirs: dict[str, Any], mine: dict[str, Any], *, champion: str, candidate: str) -> dict[str, Any]:
    """The labelled diff of two versions' facts (see :class:`Review`)."""
    metrics = {
        k: {"champion": theirs["metrics"].get(k), "candidate": mine["metrics"].get(k),
            "delta": _delta(theirs["metrics"].get(k), mine["metrics"].get(k))}
        for k in sorted(set(theirs["metrics"]) | set(mine["metrics"]))
    }
    before, after = _columns(theirs["schema"]), _columns(mine["schema"])
    if before is None or after is None:
        schema: dict[str, Any] = {"changed": None, "added": [], "removed": [], "retyped": {},
                                  "unreadable": [side for side, cols in (("champion", before), ("candidate", after))
                                                 if cols is None]}
    else:
        retyped = {c: {"champion": before[c], "candidate": after[c]}
                   for c in sorted(set(before) & set(after)) if before[c] != after[c]}
        added, removed = sorted(set(after) - set(before)), sorted(set(before) - set(after))
        schema = {"changed": bool(added or removed or retyped), "added": added, "removed": removed,
                  "retyped": retyped}
    size = (theirs["image"].get("size_bytes"), mine["image"].get("size_bytes"))
    return {
        "champion": champion,
        "candidate": candidate,
        "metrics": metrics,
        "requirements": {
            "added": sorted(set(mine["requirements"]) - set(theirs["requirements"])),
            "removed": sorted(set(theirs["requirements"]) - set(mine["requirements"])),
        },
        "input_schema": schema,
        "image_size_bytes": {"champion": size[0], "candidate": size[1], "delta": _delta(*size)},
        "attributions": _attribution_diff(theirs["attributions"], mine["attributions"]),
    }


def _attribution_diff(theirs: Any, mine: Any) -> dict[str, Any]:
    recorded = {"champion": theirs is not None, "candidate": mine is not None}
    if theirs is None or mine is None:
        return {"recorded": recorded, "features": []}
    before, after = theirs.share(), mine.share()
    rows = [{"feature": f, "champion": before.get(f), "candidate": after.get(f),
             "change": (after.get(f) or 0.0) - (before.get(f) or 0.0)} for f in set(before) | set(after)]
    rows.sort(key=lambda row: (-abs(row["change"]), row["feature"]))
    return {"recorded": recorded, "features": rows}


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


def _model_files(ws: Workspace, version: Any) -> tuple[Any, list[str]]:
    """The input schema and the requirements of a version, from its MLmodel and requirements.txt only."""
    import mlflow.artifacts
    import yaml
    from mlflow.exceptions import MlflowException

    from ..tracking._client import client_for
    from ..tracking._models import _stored_location

    # two small files, not the whole model: a review must not pull a model's weights over the network
    location = _stored_location(client_for(ws), version.source or version.uri).rstrip("/")
    with tempfile.TemporaryDirectory() as tmp:
        def fetch(name: str) -> Path:
            return Path(mlflow.artifacts.download_artifacts(
                artifact_uri=f"{location}/{name}", dst_path=tmp, tracking_uri=ws.tracking_uri,
                registry_uri=ws.registry_uri))

        schema = (yaml.safe_load(fetch("MLmodel").read_text()) or {}).get("signature", {}).get("inputs")
        try:
            requirements = fetch("requirements.txt").read_text().split()
        except (OSError, MlflowException):  # an MLmodel without requirements.txt: none to compare
            requirements = []
    return schema, requirements


def _attributions(ws: Workspace, version: Any) -> Any:
    """The version's recorded attributions, or None (none recorded, or this install cannot read them)."""
    try:
        from ..gates._attributions import load
    except ImportError:
        return None
    try:
        found = load(version, workspace=ws)
    except Exception:  # noqa: BLE001 - a review still shows the rest; the diff says none were recorded
        return None
    return found if found is not None and found.features else None  # one that could not be computed: none


def _facts(ws: Workspace, version: Any) -> dict[str, Any]:
    from .. import gates, registry
    from ..tracking._client import client_for

    run = client_for(ws).get_run(version.run_id) if version.run_id else None
    try:
        schema, requirements = _model_files(ws, version)
    except Exception as exc:  # noqa: BLE001 - a review still shows the rest; say what is missing
        schema, requirements = f"unavailable: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", []
    try:
        report = gates.load_report(version, workspace=ws).to_dict()
    except Exception:  # noqa: BLE001 - not checked, or unreadable: shown as no verdict
        report = {}
    return {
        "metrics": dict(run.data.metrics) if run else {},
        "schema": schema,
        "requirements": requirements,
        "image": _image_facts(ws, version),
        "attributions": _attributions(ws, version),
        "gates": {"verdict": report.get("verdict"), "results": report.get("results", []),
                  "override": report.get("override")},
        "lineage": registry.lineage_of(version, workspace=ws).to_dict(),
    }


__all__ = ["Review", "approve", "reject", "retire", "review", "rollback"]
