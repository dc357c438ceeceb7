"""Shared fixtures: every test gets its own project directory and workspace."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

_DOCKER_FIXTURES = frozenset({"docker_engine", "base_image"})


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups into the test ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Groups for ``pytest -n 2 --dist loadgroup`` (what ``make test`` runs): one worker runs every module
    that uses Docker, in order; the other worker takes the remaining modules, each whole.

    Q: Why keep the Docker modules together?
    A: They share one engine and check it for containers left behind, which a
       promotion running at the same time in another worker would start. A
       module stays on one worker so its module-scoped fixtures (a server, a
       set of built images) are built once.
    """
    docker_modules = {
        item.module.__name__
        for item in items
        if item.get_closest_marker("docker") or _DOCKER_FIXTURES & set(getattr(item, "fixturenames", ()))
    }
    for item in items:
        module = item.module.__name__
        item.add_marker(pytest.mark.xdist_group("docker" if module in docker_modules else module))


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """Refuse to run Docker modules side by side when pytest-xdist did not take the groups."""
    if session.config.option.__dict__.get("loadgroup") and any("@" not in item.nodeid for item in session.items):
        raise pytest.UsageError(
            "pytest-xdist did not apply the test groups (ids without '@group'); Docker tests would run in both "
            "workers at once. Install the versions pyproject.toml pins, or run without -n."
        )


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No SHIPYARD_* setting from the developer's shell leaks into a test."""
    from shipyard._core.workspace import reset_workspace

    for name in list(os.environ):
        if name.startswith("SHIPYARD_") and not name.startswith("SHIPYARD_REQUIRE_"):
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


from tests.docker_support import base_image, docker_engine  # noqa: E402, F401  (what monitored_image needs)
from tests.monitoring_support import monitored_image  # noqa: E402, F401  (the session's one monitored image)
