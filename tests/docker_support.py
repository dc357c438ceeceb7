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


def register_mixed_pipeline_model(workspace: Any, name: str, *, rows: int = 300) -> RegisteredModel:
    """A scikit-learn Pipeline + ColumnTransformer on a pandas frame with double, int64, string and bool columns.

    Registered with MLflow's own API. Its OneHotEncoder refuses categories it never saw, as many
    real pipelines do, so a served image meets a model that raises on well-typed input.
    """
    import mlflow
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(11)
    X = pd.DataFrame(
        {
            "area m2": rng.uniform(20, 250, rows),
            "rooms": rng.integers(1, 8, rows).astype("int64"),
            "city": rng.choice(["berlin", "lyon", "porto", "turin"], rows),
            "has_lift": rng.random(rows) < 0.4,
        }
    )
    y = 3.1 * X["area m2"] + 20 * X["rooms"] + X["has_lift"] * 15 + X["city"].map({"berlin": 90, "lyon": 40}).fillna(0)
    model = Pipeline(
        [
            (
                "columns",
                ColumnTransformer(
                    [
                        ("numbers", StandardScaler(), ["area m2", "rooms"]),
                        ("city", OneHotEncoder(handle_unknown="error"), ["city"]),
                    ],
                    remainder="passthrough",
                ),
            ),
            ("ridge", Ridge(alpha=0.5)),
        ]
    ).fit(X, y)
    mlflow.set_tracking_uri(workspace.tracking_uri)
    mlflow.set_registry_uri(workspace.registry_uri)
    mlflow.set_experiment("packaging-tests")
    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(X, model.predict(X)),
            input_example=X.head(5),
            registered_model_name=name,
        )
    return RegisteredModel(name, str(info.registered_model_version), run.info.run_id, X, y)


class ServedImage:
    """A container of an image, published on 127.0.0.1 only, removed on exit; ready once /readyz answers."""

    def __init__(
        self,
        image: str,
        *,
        ready_seconds: float = 90,
        env: dict[str, str] | None = None,
        volumes: dict[str, str] | None = None,
    ) -> None:
        import uuid

        self.image = image
        self.env = env or {}
        self.volumes = volumes or {}  # host path -> container path
        self.name = f"shipyard-test-{uuid.uuid4().hex[:10]}"
        self.ready_seconds = ready_seconds
        self.port = 0

    def __enter__(self) -> ServedImage:
        import time

        subprocess.run(
            [
                docker_cli(), "run", "-d", "--name", self.name, "-p", "127.0.0.1::3000",
                *(f"--env={k}={v}" for k, v in self.env.items()),
                *(f"--volume={host}:{inside}" for host, inside in self.volumes.items()),
                self.image,
            ],
            check=True,
            capture_output=True,
        )
        try:
            port = subprocess.run(
                [docker_cli(), "port", self.name, "3000/tcp"], check=True, capture_output=True, text=True
            ).stdout.split()[0]
            host, _, p = port.rpartition(":")
            assert host == "127.0.0.1", f"published on {host}, not loopback only"
            self.port = int(p)
            deadline = time.monotonic() + self.ready_seconds
            while time.monotonic() < deadline:
                try:
                    if self.request("GET", "/readyz")[0] == 200:
                        return self
                except OSError:
                    pass
                time.sleep(0.2)
            raise AssertionError(f"container not ready after {self.ready_seconds:g} s:\n{self.logs()}")
        except BaseException:
            self.__exit__()
            raise

    def __exit__(self, *exc: object) -> None:
        subprocess.run([docker_cli(), "rm", "-f", self.name], capture_output=True)

    def stop(self, seconds: int = 30) -> None:
        """Stop the container as an orchestrator does (SIGTERM, then SIGKILL after ``seconds``)."""
        subprocess.run([docker_cli(), "stop", "-t", str(seconds), self.name], capture_output=True, check=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def running(self) -> bool:
        return docker_inspect(self.name, "{{.State.Running}}") == "true"

    def logs(self) -> str:
        out = subprocess.run([docker_cli(), "logs", self.name], capture_output=True, text=True)
        return out.stdout + out.stderr

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {"Content-Type": "application/json"})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()
