"""The promote → review → approve → roll back notebook in a real kernel, with the real Docker daemon."""

from __future__ import annotations

import pytest

from shipyard._core import audit
from shipyard._core.workspace import Workspace
from shipyard._core.config import load_settings
from tests.docker_support import docker_engine  # noqa: F401  (fixture)
from tests.e2e.notebooks import execute, stdout_of

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_notebook_promotes_reviews_approves_and_rolls_back(tmp_path, docker_engine) -> None:  # noqa: F811
    from mlflow.tracking import MlflowClient

    nb = execute("03_promote_review_rollback.ipynb", tmp_path)
    out = stdout_of(nb)
    assert "status: awaiting_approval" in out and "status: completed" in out
    assert "champion v1, previous v2" in out

    client = MlflowClient(tracking_uri=(uri := f"sqlite:///{tmp_path / '.shipyard' / 'mlflow.db'}"), registry_uri=uri)
    aliases = {a: str(v) for a, v in client.get_registered_model("breast-cancer").aliases.items()}
    assert aliases == {"champion": "1", "previous": "2"}
    ws = Workspace(tmp_path, load_settings(tmp_path))
    events = [r["event"] for r in audit.read(workspace=ws)]
    assert "review.approved" in events and "model.rollback" in events
    assert (ws.bundles_dir / "breast-cancer" / "current").resolve().name == "1"
