"""Shared fixtures: every test gets its own project directory and workspace."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No SHIPYARD_* setting from the developer's shell leaks into a test."""
    from shipyard._core.workspace import reset_workspace

    for name in list(os.environ):
        if name.startswith("SHIPYARD_") and name != "SHIPYARD_REQUIRE_DOCKER":
            monkeypatch.delenv(name)
    reset_workspace()
    yield
    reset_workspace()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project directory that workspace discovery resolves to."""
    root = tmp_path / "project"
    root.mkdir()
    monkeypatch.setenv("SHIPYARD_PROJECT_DIR", str(root))
    monkeypatch.chdir(root)
    return root


@pytest.fixture
def workspace(project: Path):
    """A fresh embedded workspace (sqlite MLflow store, local Metaflow datastore) in ``project``."""
    import shipyard

    return shipyard.init(project_dir=project)


@pytest.fixture
def mlflow_client(workspace):
    """A plain MLflow client on the workspace's store, independent of shipyard's own code."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=workspace.tracking_uri, registry_uri=workspace.registry_uri)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
