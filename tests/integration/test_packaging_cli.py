"""`shipyard package --no-image` in a fresh process builds the bento in the workspace's BentoML home."""

from __future__ import annotations

import os
import subprocess
import sys

import shipyard


def test_package_cli_builds_the_bento_of_a_registered_version(workspace) -> None:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from shipyard import registry

    X, y = load_iris(return_X_y=True, as_frame=True)
    with shipyard.start_run("cli-package") as run:
        shipyard.log_model(LogisticRegression(max_iter=500).fit(X, y), name="model", input_example=X.head(5))
    version = registry.register("iris-cli", run.run_id)
    env = {**os.environ, "SHIPYARD_PROJECT_DIR": str(workspace.project_dir), "COLUMNS": "200"}
    env.pop("MLFLOW_TRACKING_URI", None)
    out = subprocess.run(
        [sys.executable, "-m", "shipyard.cli", "package", f"iris-cli/{version.version}", "--no-image", "--quiet"],
        capture_output=True, text=True, env=env, timeout=600, cwd=workspace.project_dir,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "iris-cli" in out.stdout
    assert any(workspace.bentoml_home.rglob("bento.yaml"))
