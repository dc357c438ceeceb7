"""Every common model flavor, from a tracked flow run to a served image that predicts what the model does.

Each flavor is trained and logged by the real Metaflow runtime (``shipyard.run`` of
``flows/flavor_flow.py``), promoted with ``shipyard.promote`` (gates, register, bento,
image on the local base image, smoke), then its image is run again on 127.0.0.1 and
answers the 150 holdout rows exactly as the model loaded in-process does. The models
use a project module (``flavor_project/flavor_features``) that is not installed, as a
user's repository is: a model that needs it must carry it.

PyTorch's PyPI wheel needs the CUDA libraries (gigabytes) to import and no CPU wheel
is reachable here, so the PyTorch model is served from its bento on the host
(``bentoml serve``) instead of an image.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import shipyard
from tests.conftest import free_port
from tests.docker_support import base_image, docker_engine  # noqa: F401  (fixtures)


HERE = Path(__file__).parent
FLOW = HERE / "flows" / "flavor_flow.py"
PROJECT_MODULE = HERE / "flavor_project" / "flavor_features"

IMAGE_FLAVORS = [
    "sklearn",
    "xgboost_sklearn",
    "xgboost_booster",
    "lightgbm_booster",
    "lightgbm_sklearn",
    "pipeline_xgboost",
    "catboost",
    "pyfunc",
]
# how each image predicts: the flavor's own object where the service loads it, else mlflow.pyfunc
SERVED_BY = {
    "sklearn": "sklearn",
    "xgboost_sklearn": "xgboost",
    "xgboost_booster": "xgboost",
    "lightgbm_booster": "lightgbm",
    "lightgbm_sklearn": "sklearn",  # an LGBMRegressor is logged with the scikit-learn flavor
    "pipeline_xgboost": "sklearn",
    "catboost": "python_function",
    "pyfunc": "python_function",
}
# distributions each model's own objects come from, which its requirements must name
USES = {
    "sklearn": {"scikit-learn", "numpy"},
    "xgboost_sklearn": {"xgboost", "scikit-learn"},  # XGBRegressor derives from scikit-learn's classes
    "xgboost_booster": {"xgboost"},
    "lightgbm_booster": {"lightgbm"},
    "lightgbm_sklearn": {"lightgbm", "scikit-learn"},
    "pipeline_xgboost": {"xgboost", "scikit-learn", "numpy"},
    "catboost": {"catboost"},
    "pytorch": {"torch"},
    "pyfunc": {"mlflow", "numpy", "scikit-learn"},  # flavor_features imports sklearn at its top
}
# flavors whose model objects come from the project module, which must ship as code
SHIPS_PROJECT_CODE = {"pipeline_xgboost", "pyfunc"}
# CUDA runtime libraries and GPU compilers; nvidia-ml-py (BentoML's pure-Python NVML binding, 50 kB) is not one
GPU_PACKAGES = ("nvidia-cu", "nvidia-nccl", "nvidia-nv", "nvidia-cusparse", "nvidia-cufft", "nvidia-curand",
                "nvidia-cusolver", "nvidia-cublas", "nvidia-cudnn", "triton", "cupy")
FLOWS_AT_ONCE = 3

_runs: dict[str, Any] = {}


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory, docker_engine, base_image):  # noqa: F811
    """A project holding the model code, importable by the flow's steps, not installed anywhere."""
    from shipyard._core.workspace import reset_workspace

    pytest.importorskip("torch")  # the PyTorch flavor's library (a dev dependency)
    project = tmp_path_factory.mktemp("flavors")
    shutil.copytree(PROJECT_MODULE, project / "flavor_features")
    mp = pytest.MonkeyPatch()
    mp.setenv("SHIPYARD_PROJECT_DIR", str(project))
    mp.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(project), os.environ.get("PYTHONPATH")])))
    mp.syspath_prepend(str(project))
    mp.chdir(project)
    reset_workspace()
    workspace = shipyard.init(project_dir=project)
    yield workspace
    mp.undo()
    reset_workspace()


def flow_run(flavor: str, session: pytest.Session) -> Any:
    """The flow run that logged ``flavor``'s model; one per flavor per session.

    The first call starts the run of every flavor the session's tests use, a few at a
    time: a run spends most of its time starting step processes, not training, so runs
    side by side finish sooner.
    """
    if flavor not in _runs:
        pending = [f for f in [*IMAGE_FLAVORS, "pytorch"] if f in _selected(session) | {flavor} and f not in _runs]
        while pending:
            wave, pending = pending[:FLOWS_AT_ONCE], pending[FLOWS_AT_ONCE:]
            started = {name: shipyard.run_async(FLOW, flavor=name) for name in wave}
            _runs.update({name: handle.result(timeout=900) for name, handle in started.items()})
    return _runs[flavor]


def _selected(session: pytest.Session) -> set[str]:
    flavors = set()
    for item in session.items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        flavors.update(v for k, v in params.items() if k in ("flavor", "promoted"))
        if item.name.startswith("test_pytorch"):
            flavors.add("pytorch")
    return flavors


def holdout() -> Any:
    from flavor_features import split

    return split()[2]


def as_records(frame: Any) -> list[dict[str, Any]]:
    """Rows as JSON takes them, every float with all its digits (``json`` writes the shortest exact repr)."""
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()} for row in frame.to_dict("records")]


def in_process(uri: str, rows: Any) -> np.ndarray:
    model = shipyard.tracking.load_model(uri)
    return np.asarray(model.predict(rows), dtype="float64").reshape(len(rows), -1)


def columns_of(uri: str) -> list[str]:
    model = shipyard.tracking.load_model(uri)
    return model.metadata.get_input_schema().input_names()


@pytest.fixture(scope="module", params=IMAGE_FLAVORS)
def promoted(request, ws) -> tuple[str, Any, Any]:
    """(flavor, flow run, promotion): each flavor's image is built once per session."""
    flavor = request.param
    result = flow_run(flavor, request.session)
    started = time.monotonic()
    promotion = shipyard.promote(result, model_name=f"flavor-{flavor.replace('_', '-')}", holdout=holdout())
    print(f"\npromote {flavor}: {time.monotonic() - started:.1f} s")
    return flavor, result, promotion


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.parametrize("flavor", [*IMAGE_FLAVORS, "pytorch"])
def test_requirements_name_the_libraries_the_model_uses(ws, flavor: str, tmp_path: Path, request) -> None:
    from shipyard.tracking._requirements import requirement_name

    uri = flow_run(flavor, request.session).model_uri
    local = shipyard.tracking.download_model(uri, tmp_path / "model")
    lines = [line for line in (local / "requirements.txt").read_text().splitlines() if line and line[0].isalpha()]
    names = {requirement_name(line) for line in lines}
    assert USES[flavor] <= names, lines
    assert all("==" in line for line in lines), lines  # pinned to what trained the model
    assert "shipyard" not in names
    shipped = (local / "code" / "flavor_features" / "__init__.py").is_file()
    assert shipped == (flavor in SHIPS_PROJECT_CODE)


@pytest.mark.docker
@pytest.mark.slow
def test_each_flavor_is_promoted_and_its_image_answers_as_the_model_does(promoted, docker_engine) -> None:  # noqa: F811
    from shipyard.deploy.container import JsonClient, running_model
    from shipyard.packaging.image import image_packages

    flavor, result, promotion = promoted
    assert promotion.status == "completed"
    rows = holdout()
    rows = rows[columns_of(result.model_uri)]
    assert len(rows) >= 100
    expected = in_process(result.model_uri, rows)
    with running_model(docker_engine, promotion.image) as served, JsonClient(served.port) as http:
        answer = http.post_json("/predict", {"inputs": as_records(rows)})["predictions"]
        serving = http.post_json("/metadata", {})["serving"]
    assert serving["loader"] == SERVED_BY[flavor], serving
    served_values = np.asarray(answer, dtype="float64").reshape(len(rows), -1)
    np.testing.assert_allclose(served_values, expected, rtol=1e-9, atol=1e-12)

    packages = dict(image_packages(docker_engine, promotion.image))
    assert not [p for p in packages if p.startswith(GPU_PACKAGES)], sorted(packages)
    if "xgboost" in flavor:
        assert "xgboost-cpu" in packages and "xgboost" not in packages
    # MLflow is installed only where the service loads the model with it
    assert ("mlflow-skinny" in packages) == (SERVED_BY[flavor] == "python_function"), sorted(packages)
    size_mb = docker_engine.images.get(promotion.image).attrs["Size"] / 1e6
    print(f"\nimage size {flavor}: {size_mb:.0f} MB")


@pytest.mark.docker
@pytest.mark.slow
def test_pytorch_model_is_served_from_its_bento_on_the_host(ws, tmp_path: Path, request) -> None:
    from shipyard.packaging.bento import package

    result = flow_run("pytorch", request.session)
    version = shipyard.registry.register("flavor-pytorch", result.mlflow_run_id)
    bento = package(f"flavor-pytorch/{version.version}", image=False, quiet=True).bento
    assert any(r.startswith("torch==") for r in bento.requirements)
    rows = holdout()[columns_of(result.model_uri)]
    expected = in_process(result.model_uri, rows)

    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    env = {**os.environ, "BENTOML_HOME": str(ws.bentoml_home), "BENTOML_DO_NOT_TRACK": "true"}
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "bentoml"), "serve", str(bento.path), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(0.5)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/predict",
            data=json.dumps({"inputs": as_records(rows)}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.load(response)["predictions"]
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
        log.close()
    served = np.asarray([list(r.values()) if isinstance(r, dict) else r for r in answer], dtype="float64")
    np.testing.assert_allclose(served.reshape(len(rows), -1), expected, rtol=1e-9, atol=1e-12)


def test_requirements_can_be_added_replaced_and_are_validated(workspace, tmp_path: Path) -> None:
    from sklearn.linear_model import Ridge

    X = np.random.default_rng(0).normal(size=(30, 2))
    model = Ridge().fit(X, X[:, 0])
    with shipyard.start_run("requirements"):
        added = shipyard.log_model(model, name="added", input_example=X[:3], extra_requirements=["holidays>=0.50", "scipy"])
        replaced = shipyard.log_model(model, name="replaced", input_example=X[:3], requirements=["scikit-learn"])
        with pytest.raises(shipyard.InvalidRequirement, match="not a valid pip requirement"):
            shipyard.log_model(model, name="bad", input_example=X[:3], extra_requirements=["scikit-learn=>1"])
    written = (shipyard.tracking.download_model(added.uri, tmp_path / "a") / "requirements.txt").read_text()
    assert "holidays>=0.50" in written.splitlines() and "scikit-learn==" in written
    import scipy
    import sklearn

    assert f"scipy=={scipy.__version__}" in written.splitlines()
    assert replaced.requirements == (f"scikit-learn=={sklearn.__version__}",)


def test_python_model_logged_with_only_an_input_example_loads_and_predicts(workspace) -> None:
    import mlflow.pyfunc
    import pandas as pd

    class Doubler(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input["x"] * 2

    example = pd.DataFrame({"x": [1.0, 2.5], "tag": ["a", "b"]})
    with shipyard.start_run("pyfunc"):
        logged = shipyard.log_model(Doubler(), name="model", input_example=example)
    loaded = shipyard.tracking.load_model(logged.uri)
    assert loaded.metadata.get_input_schema().input_names() == ["x", "tag"]
    assert list(loaded.predict(example)) == [2.0, 5.0]
