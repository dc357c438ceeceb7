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
    (bundle / "k8s").mkdir(parents=True)
    (bundle / "k8s" / "deployment.yaml").write_text(f"image: repo@sha256:{digest}\n")
    (bundle / "handoff.json").write_text("{}\n")
    return bundle


def test_bundle_is_committed_and_replaces_the_previous_one(repo: Path, tmp_path: Path) -> None:
    first = commit_bundle(_bundle(tmp_path, "aa"), repo, "models", "iris", "iris v1")
    assert (repo / "models" / "iris" / "k8s" / "deployment.yaml").read_text() == "image: repo@sha256:aa\n"
    second = commit_bundle(_bundle(tmp_path, "bb"), repo, "models", "iris", "iris v2")
    assert first != second
    assert _git(repo, "log", "-1", "--format=%s") == "iris v2"
    assert "sha256:bb" in _git(repo, "show", "HEAD:models/iris/k8s/deployment.yaml")
    assert _git(repo, "status", "--porcelain") == ""


def test_an_unchanged_bundle_makes_no_commit(repo: Path, tmp_path: Path) -> None:
    bundle = _bundle(tmp_path, "aa")
    first = commit_bundle(bundle, repo, "models", "iris", "iris v1")
    assert commit_bundle(bundle, repo, "models", "iris", "iris v1 again") == first


def test_a_folder_that_is_not_a_repository_is_a_deploy_error(tmp_path: Path) -> None:
    with pytest.raises(shipyard.DeployError, match="not a git work tree"):
        commit_bundle(_bundle(tmp_path, "aa"), tmp_path, "models", "iris", "x")
