"""Shared fixtures: every test gets its own project directory and workspace."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# The Metaflow card (metaflow-shipyard) costs each step of a flow a drawing process, about a second: the suite's
# many flow runs leave it off, for module fixtures (here) and each test (_isolated_settings) alike; the extension's
# own tests, which clear it, run their flows with it.
CARD_OFF = ("SHIPYARD_METAFLOW_CARD", "false")
os.environ[CARD_OFF[0]] = CARD_OFF[1]

# The `shipyard` commands the tests start use preloaded workers (as a user's do), kept in a folder of this test
# process's own (short: it holds sockets) and stopped when the session ends, so none outlives the suite.
CLI_WORKERS = ("SHIPYARD_CLI_WORKER_DIR", f"/tmp/shipyard-tests-{os.getpid()}")
os.environ[CLI_WORKERS[0]] = CLI_WORKERS[1]


def outside_env(**extra: str) -> dict[str, str]:
    """This process's environment without shipyard settings (as a fresh shell has it), plus ``extra``.

    It keeps the suite's own switches: ``SHIPYARD_REQUIRE_*`` and where the suite's command workers live.
    """
    kept = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_") or k.startswith("SHIPYARD_REQUIRE_")}
    return {**kept, CLI_WORKERS[0]: CLI_WORKERS[1], **extra}


_SESSION_STARTED = time.time()


def pytest_sessionfinish(session: pytest.Session) -> None:
    import shutil

    from shipyard.cli import _worker

    folder = Path(CLI_WORKERS[1])
    if folder.is_dir():
        _worker.stop(folder)
        shutil.rmtree(folder, ignore_errors=True)
    if not hasattr(session.config, "workerinput"):  # the last process to end: every test worker is done
        _remove_model_images(since=_SESSION_STARTED)


def _remove_model_images(since: float) -> None:
    """Remove the model images this session built (about a hundred, with their untagged dependency stages), which
    would otherwise pile up run after run and slow every later build's cache lookup; the base images stay (they
    are built once per machine)."""
    from datetime import datetime, timezone

    from shipyard._core import lineage

    try:
        import docker

        client = docker.from_env(timeout=30)
        images = [*client.images.list(filters={"label": lineage.LABEL_BENTO_TAG}),
                  *client.images.list(filters={"dangling": True})]  # the builds' dependency stages
    except Exception:  # no Docker here: nothing was built
        return
    for image in images:
        # Docker writes nanoseconds, which datetime does not read: the seconds are enough here
        created = datetime.strptime(image.attrs["Created"][:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
        if created.timestamp() >= since - 1:
            try:
                client.images.remove(image.id, force=True)
            except Exception:  # in use or gone meanwhile: left for docker image prune
                pass


# Session fixtures that cost a minute or more each; the modules using one share an xdist group (below).
SHARED_SESSION_FIXTURES = {"monitored_image": "monitored-image", "quickstart": "quickstart-notebook"}


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups into the test ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Groups for ``pytest -n 2 --dist loadgroup`` (what ``make test`` runs): each module is a group, run whole
    by one worker, and the modules that use one of the costly session fixtures (the monitored image, the
    executed quickstart notebook) are one group per fixture.

    Q: Why whole modules?
    A: A module's fixtures (a server, a set of built images) are built once, on
       the worker that runs it. The modules on the monitored image share one
       group because that image (a whole promotion) is a session fixture: in
       two workers it would be built twice; the same holds for the quickstart
       notebook's run (about 70 s).

    Q: Docker modules run beside each other: do they not see each other's containers?
    A: Every check for containers left behind looks only at the containers of
       its own image or promotion (``--filter ancestor=`` or the promotion's
       label), so another module's smoke test running meanwhile is not taken
       for a leftover. Keeping them apart left one worker idle for the last
       third of the run.
    """
    group_of: dict[str, str] = {}
    for item in items:
        for fixture, group in SHARED_SESSION_FIXTURES.items():
            if fixture in getattr(item, "fixturenames", ()):
                group_of[item.module.__name__] = group
    for item in items:
        module = item.module.__name__
        item.add_marker(pytest.mark.xdist_group(group_of.get(module, module)))


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """Refuse to run when pytest-xdist did not take the groups: a module's fixtures would be built in both workers."""
    if session.config.option.__dict__.get("loadgroup") and any("@" not in item.nodeid for item in session.items):
        raise pytest.UsageError(
            "pytest-xdist did not apply the test groups (ids without '@group'); modules would be split over both "
            "workers and their fixtures built twice. Install the versions pyproject.toml pins, or run without -n."
        )


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No SHIPYARD_* setting from the developer's shell leaks into a test."""
    from shipyard._core.workspace import reset_workspace

    for name in list(os.environ):
        if name.startswith("SHIPYARD_") and not name.startswith("SHIPYARD_REQUIRE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv(CARD_OFF[0], CARD_OFF[1])
    monkeypatch.setenv(CLI_WORKERS[0], CLI_WORKERS[1])
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
