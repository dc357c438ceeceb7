"""Committing handoff bundles into a GitOps repository, where a deployment controller picks them up.

The bundle of the model's champion is copied to ``<repo>/<path>/<model>/`` and
committed, in one commit, with a message naming the version, the image digest
and why. Argo CD or Flux then apply ``<path>/<model>/overlays/<env>`` (the
bundle's ``argocd/`` and ``flux/`` objects point there). The repository must
already exist (a clone of the GitOps repository); pushing it is left to the
repository's own workflow.
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


def check_repository(repo: Path) -> Path:
    """``repo`` resolved, once git confirms it is the top of a work tree.

    Raises:
        DeployError: it is missing, not a git work tree, or a folder inside one.
    """
    repo = repo.expanduser().resolve()
    hint = "Clone your GitOps repository there (git clone URL PATH), or fix the gitops_repo setting."
    if not repo.is_dir():
        raise DeployError(f"The GitOps repository {repo} does not exist.", hint=hint)
    out = subprocess.run(["git", "-C", str(repo), "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                         timeout=60)
    if out.returncode != 0 or Path(out.stdout.strip()).resolve() != repo:
        raise DeployError(f"The GitOps repository {repo} is not a git work tree (the top of one).", hint=hint)
    return repo


def commit_bundle(bundle: Path, repo: Path, path: str, model: str, message: str) -> str:
    """Copy ``bundle`` to ``repo/path/model`` and commit it, in one commit; return the commit id.

    Nothing is committed when the copy equals what the repository already holds;
    the current commit id is returned then. When anything fails (a hook refuses
    the commit, git has no identity), the folder is put back as the last commit
    has it: the repository is never left half-written.

    Raises:
        DeployError: not a git work tree, uncommitted changes under the model's folder, or git failed.

    Example:
        >>> commit_bundle(p.bundle_path, Path("~/deploy-repo"), "models", "iris", "iris v3")   # doctest: +SKIP
    """
    repo = check_repository(repo)
    target = repo / path / model
    relative = target.relative_to(repo).as_posix()
    if _git(repo, "status", "--porcelain", "--untracked-files=all", "--", relative):
        raise DeployError(
            f"{relative} in the GitOps repository {repo} has uncommitted changes; committing the bundle would "
            "mix them in.",
            hint=f"Commit or discard them (git -C {repo} status -- {relative}), then promote again.",
        )
    tracked = bool(_git(repo, "ls-files", "--", relative))
    # the outermost folder this commit creates, removed again if it fails
    created = next((f for f in (*reversed(target.relative_to(repo).parents[:-1]), Path(relative))
                    if not (repo / f).exists()), None)
    try:
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(bundle, target, symlinks=False)
        _git(repo, "add", "--all", "--", relative)
        if not _git(repo, "status", "--porcelain", "--", relative):
            return _git(repo, "rev-parse", "HEAD")
        _git(repo, "commit", "--quiet", "-m", message, "--", relative)
        return _git(repo, "rev-parse", "HEAD")
    except BaseException:
        _restore(repo, target, relative, tracked)
        if created is not None:
            shutil.rmtree(repo / created, ignore_errors=True)
        raise


def _restore(repo: Path, target: Path, relative: str, tracked: bool) -> None:
    """Put ``relative`` back as HEAD has it (it had no uncommitted changes before)."""
    subprocess.run(["git", "-C", str(repo), "rm", "-r", "-q", "--cached", "--ignore-unmatch", "--", relative],
                   capture_output=True, timeout=60)
    shutil.rmtree(target, ignore_errors=True)
    if tracked:
        subprocess.run(["git", "-C", str(repo), "checkout", "HEAD", "--", relative], capture_output=True, timeout=60)
