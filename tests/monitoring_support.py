"""One promoted, monitored model image per test session, for the tests of what production measures.

The model is the retraining flow's (``tests/integration/flows/retrain_flow.py``):
a scikit-learn pipeline over two numeric columns and a string category,
trained by the real Metaflow runtime in its own project, promoted (gates,
bento, image, smoke, parity, handoff bundle) once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.docker_support import base_image, docker_engine  # noqa: F401  (fixtures)

FLOW = Path(__file__).resolve().parent / "integration" / "flows" / "retrain_flow.py"
SHIFTED_NUMERIC = "tenure"  # +1 standard deviation in shifted traffic
SHIFTED_CATEGORY = "plan"  # "basic" replaced by a plan the model never saw


def flow_module() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("retrain_flow_rows", FLOW)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def shift(frame: Any) -> Any:
    """``frame`` with one numeric column moved by one reference standard deviation and one category replaced."""
    out = frame.copy()
    out[SHIFTED_NUMERIC] = out[SHIFTED_NUMERIC] + float(frame[SHIFTED_NUMERIC].std())
    out[SHIFTED_CATEGORY] = out[SHIFTED_CATEGORY].replace({"basic": "enterprise"})
    return out


def predict_body(frame: Any) -> bytes:
    return json.dumps({"inputs": frame.to_dict(orient="records")}).encode()


class project_env:
    """Make ``project`` the current shipyard project (env and cwd), and restore both on exit."""

    def __init__(self, project: Path) -> None:
        self.project = project

    def __enter__(self) -> project_env:
        from shipyard._core.workspace import reset_workspace

        self.before = (os.environ.get("SHIPYARD_PROJECT_DIR"), os.getcwd())
        os.environ["SHIPYARD_PROJECT_DIR"] = str(self.project)
        os.chdir(self.project)
        reset_workspace()
        return self

    def __exit__(self, *exc: object) -> None:
        from shipyard._core.workspace import reset_workspace

        env, cwd = self.before
        if env is None:
            os.environ.pop("SHIPYARD_PROJECT_DIR", None)
        else:
            os.environ["SHIPYARD_PROJECT_DIR"] = env
        os.chdir(cwd)
        reset_workspace()


@pytest.fixture(scope="session")
def monitored_image(base_image: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:  # noqa: F811
    """The promoted image of the retraining flow's model, and what the tests need to drive it."""
    import shipyard

    project = tmp_path_factory.mktemp("monitored") / "project"
    project.mkdir()
    with project_env(project):
        shipyard.init(project_dir=project)
        result = shipyard.run(str(FLOW))
        promotion = shipyard.promote(result, model_name=flow_module().MODEL_NAME, reason="monitoring tests")
    assert promotion.status == "completed", promotion
    rows = flow_module().make_rows(n=3000, seed=101).drop(columns=["target"])
    yield {
        "project": project,
        "image": promotion.image,
        "model": promotion.model,
        "version": promotion.version,
        "bundle": promotion.bundle_path,
        "holdout": rows,
        "shift": shift,
        "columns": [SHIFTED_NUMERIC, SHIFTED_CATEGORY],
        "run_id": result.mlflow_run_id,
    }
