"""Committing handoff bundles into a GitOps repository, where a deployment controller picks them up.

The bundle of the model's champion is copied to ``<repo>/<path>/<model>/`` and
committed with a message naming the version, the image digest and why. The
repository must already exist (a clone of the GitOps repository); pushing it
is left to the repository's own workflow.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .._core.errors import DeployError


def _git(repo: Path, *args: str) -> str:
    try:
        out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=60)
    except FileNotFoundError as exc:
        raise DeployError("git is not installed, so the bundle cannot be committed.",
                          hint="Install git, or unset the gitops_repo setting.") from exc
    if out.returncode != 0:
        raise DeployError(
            f"git {' '.join(args[:2])} failed in {repo}: {(out.stderr or out.stdout).strip()}",
            hint="Check that gitops_repo is a git work tree you can commit to (user.name and user.email set).",
        )
    return out.stdout.strip()


def commit_bundle(bundle: Path, repo: Path, path: str, model: str, message: str) -> str:
    """Copy ``bundle`` to ``repo/path/model`` and commit it; return the commit id.

    Nothing is committed when the copy equals what the repository already holds;
    the current commit id is returned then.

    Example:
        >>> commit_bundle(p.bundle_path, Path("~/deploy-repo"), "models", "iris", "iris v3")   # doctest: +SKIP
    """
    repo = repo.expanduser().resolve()
    if not (repo / ".git").exists():
        raise DeployError(
            f"The GitOps repository {repo} is not a git work tree.",
            hint="Clone your GitOps repository there, or fix the gitops_repo setting.",
        )
    target = repo / path / model
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(bundle, target, symlinks=False)
    relative = target.relative_to(repo).as_posix()
    _git(repo, "add", "--all", "--", relative)
    if not _git(repo, "status", "--porcelain", "--", relative):
        return _git(repo, "rev-parse", "HEAD")
    _git(repo, "commit", "--quiet", "-m", message, "--", relative)
    return _git(repo, "rev-parse", "HEAD")
