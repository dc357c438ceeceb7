"""Committing bundles into a real git repository."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import shipyard
from shipyard.deploy.gitops import commit_bundle


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "deploy-repo"
    root.mkdir()
    _git(root, "init", "-q")
    _git(root, "config", "user.name", "ci")
    _git(root, "config", "user.email", "ci@example.invalid")
    (root / "README.md").write_text("deployments\n")
    _git(root, "add", "README.md")
    _git(root, "commit", "-qm", "start")
    return root


def _bundle(tmp_path: Path, digest: str) -> Path:
    bundle = tmp_path / f"bundle-{digest}"
    (bundle / "base").mkdir(parents=True)
    (bundle / "base" / "deployment.yaml").write_text(f"image: repo@sha256:{digest}\n")
    (bundle / "handoff.json").write_text("{}\n")
    return bundle


def test_bundle_is_committed_and_replaces_the_previous_one(repo: Path, tmp_path: Path) -> None:
    first = commit_bundle(_bundle(tmp_path, "aa"), repo, "models", "iris", "iris v1")
    assert (repo / "models" / "iris" / "base" / "deployment.yaml").read_text() == "image: repo@sha256:aa\n"
    second = commit_bundle(_bundle(tmp_path, "bb"), repo, "models", "iris", "iris v2")
    assert first != second
    assert _git(repo, "log", "-1", "--format=%s") == "iris v2"
    assert "sha256:bb" in _git(repo, "show", "HEAD:models/iris/base/deployment.yaml")
    assert _git(repo, "status", "--porcelain") == ""


def test_an_unchanged_bundle_makes_no_commit(repo: Path, tmp_path: Path) -> None:
    bundle = _bundle(tmp_path, "aa")
    first = commit_bundle(bundle, repo, "models", "iris", "iris v1")
    assert commit_bundle(bundle, repo, "models", "iris", "iris v1 again") == first


def test_a_folder_that_is_not_a_repository_is_a_deploy_error(tmp_path: Path) -> None:
    with pytest.raises(shipyard.DeployError, match="not a git work tree"):
        commit_bundle(_bundle(tmp_path, "aa"), tmp_path, "models", "iris", "x")


def _tree(repo: Path) -> dict[str, str]:
    return {p.relative_to(repo).as_posix(): p.read_text() for p in repo.rglob("*")
            if p.is_file() and ".git" not in p.relative_to(repo).parts}


def test_a_refused_commit_leaves_the_repository_as_it_was(repo: Path, tmp_path: Path) -> None:
    commit_bundle(_bundle(tmp_path, "aa"), repo, "models", "iris", "iris v1")
    before, head = _tree(repo), _git(repo, "rev-parse", "HEAD")
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\necho 'policy: no commits today' >&2\nexit 1\n")
    hook.chmod(0o755)
    bigger = _bundle(tmp_path, "bb")
    (bigger / "base" / "extra.yaml").write_text("kind: Extra\n")
    with pytest.raises(shipyard.DeployError, match="no commits today"):
        commit_bundle(bigger, repo, "models", "iris", "iris v2")
    assert _tree(repo) == before
    assert _git(repo, "rev-parse", "HEAD") == head
    assert _git(repo, "status", "--porcelain") == ""


def test_a_refused_first_commit_leaves_no_folder(repo: Path, tmp_path: Path) -> None:
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\nexit 1\n")
    hook.chmod(0o755)
    with pytest.raises(shipyard.DeployError):
        commit_bundle(_bundle(tmp_path, "aa"), repo, "models", "iris", "iris v1")
    assert not (repo / "models").exists()
    assert _git(repo, "status", "--porcelain") == ""


def test_uncommitted_changes_under_the_model_folder_are_never_mixed_in(repo: Path, tmp_path: Path) -> None:
    commit_bundle(_bundle(tmp_path, "aa"), repo, "models", "iris", "iris v1")
    (repo / "models" / "iris" / "base" / "deployment.yaml").write_text("edited by hand\n")
    with pytest.raises(shipyard.DeployError, match="uncommitted changes"):
        commit_bundle(_bundle(tmp_path, "bb"), repo, "models", "iris", "iris v2")
    assert (repo / "models" / "iris" / "base" / "deployment.yaml").read_text() == "edited by hand\n"


def test_a_folder_inside_a_repository_is_not_the_repository(repo: Path, tmp_path: Path) -> None:
    (repo / "sub").mkdir()
    with pytest.raises(shipyard.DeployError, match="not a git work tree"):
        commit_bundle(_bundle(tmp_path, "aa"), repo / "sub", "models", "iris", "x")
