"""Support for tests that need the real Docker engine and registered MLflow models.

Docker tests skip only when no daemon answers AND ``SHIPYARD_REQUIRE_DOCKER``
is unset; with it set (CI) they fail instead, so a broken engine can never
turn a CI run green. Import the fixtures into a test module to use them.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REQUIRE_ENV = "SHIPYARD_REQUIRE_DOCKER"


def require_docker() -> None:
    """Skip (or fail, when Docker is required) unless a Docker daemon answers."""
    from shipyard.packaging.docker_engine import docker_available

    if docker_available():
        return
    reason = "no Docker daemon answers (start one with `sudo scripts/docker-up.sh` or `make docker`)"
    if os.environ.get(REQUIRE_ENV):
        pytest.fail(f"{REQUIRE_ENV} is set but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[Any]:
    """A Docker SDK client; skips or fails as :func:`require_docker` says."""
    require_docker()
    from shipyard.packaging.docker_engine import docker_client

    client = docker_client()
    yield client
    client.close()


@pytest.fixture(scope="session")
def base_image(docker_engine: Any) -> Any:
    """The local base image, built once per machine (reused when it exists)."""
    from shipyard.packaging.base_image import build_base_image

    return build_base_image(quiet=True)


@dataclass(frozen=True)
class RegisteredModel:
    """A model registered with plain MLflow APIs in a test workspace."""

    name: str
    version: str
    run_id: str
    features: Any  # DataFrame of all rows
    target: Any

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def register_sklearn_model(
    workspace: Any,
    name: str,
    *,
    dataset: str = "iris",
    signature: bool = True,
    input_example: bool = True,
    run_tags: dict[str, str] | None = None,
    max_iter: int = 500,
) -> RegisteredModel:
    """Train a small classifier and register it with MLflow's own API (no shipyard code involved)."""
    import mlflow
    import sklearn.datasets
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    loader = {"iris": sklearn.datasets.load_iris, "breast_cancer": sklearn.datasets.load_breast_cancer}[dataset]
    X, y = loader(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=max_iter).fit(X, y)
    mlflow.set_tracking_uri(workspace.tracking_uri)
    mlflow.set_registry_uri(workspace.registry_uri)
    mlflow.set_experiment("packaging-tests")
    with mlflow.start_run() as run:
        mlflow.set_tags(run_tags or {})
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(X, model.predict(X)) if signature else None,
            input_example=X.head(5) if input_example else None,
            registered_model_name=name,
        )
    return RegisteredModel(name, str(info.registered_model_version), run.info.run_id, X, y)


def docker_cli() -> str:
    """The Docker CLI to run as a separate process (Debian's, which matches the daemon, first)."""
    return "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"


def docker_inspect(ref: str, fmt: str) -> str:
    """``docker inspect --format FMT REF`` as a separate process."""
    out = subprocess.run([docker_cli(), "inspect", "--format", fmt, ref], capture_output=True, text=True, check=True)
    return out.stdout.strip()
