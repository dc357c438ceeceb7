"""Benchmark: one-call promotion vs the same steps by hand, cold and warm, by stage, in one run.

For the quickstart model (a scaled logistic regression on scikit-learn's
breast-cancer data, gated by ``accuracy >= 0.9``):

* shipyard: ``shipyard.promote(run)`` — gates, register, bento, image, smoke and
  parity, push to a local OCI registry, handoff bundle, alias swap;
* by hand: the MLflow client registers the version, BentoML's CLI builds a
  bento from a bentofile and containerizes it on the same local base image,
  the same parity check runs against the container, ``docker push`` pushes it
  to the same registry, and the MLflow client moves the ``champion`` alias. No
  handoff bundle, SBOM or manifest validation is done by hand, so that column
  does less work.

"cold" is the first promotion of the model in a fresh workspace; "warm" is a
retrained model (a model-only change) promoted after it. Docker's layer cache
and the base images are shared by both paths, as they are on a developer's
machine.

Run:  python bench/promotion.py     (needs root Docker and Debian's docker-registry; about 5–8 minutes)
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# This folder holds a file named packaging.py; it must not shadow the `packaging` distribution.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(REPO))


def _load_packaging_bench() -> Any:
    """bench/packaging.py, for its BentoML-CLI path (loaded by file: its name is taken)."""
    spec = importlib.util.spec_from_file_location("bench_packaging", HERE / "packaging.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def start_registry(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Debian's docker-registry on 127.0.0.1, storing under ``root``."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = root / "registry.yml"
    config.write_text(
        f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    proc = subprocess.Popen(["/usr/bin/docker-registry", "serve", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1).close()
            return proc, f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("docker-registry did not start")


def train(ws: Any, c: float) -> str:
    """A tracked, gated quickstart-style run; returns its MLflow run id."""
    import shipyard
    from shipyard.gates import threshold
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=7, stratify=y)
    with shipyard.start_run("bench-promotion", workspace=ws) as run:
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=1000)).fit(X_train, y_train)
        shipyard.log_metric("accuracy", model.score(X_test, y_test))
        shipyard.log_model(model, name="model", input_example=X_test.head(5))
    shipyard.check(run.run_id, gates=[threshold("accuracy >= 0.9")], workspace=ws)
    return run.run_id


def by_hand(ws: Any, run_id: str, name: str, registry: str, builder: str, holdout: Any, pb: Any) -> dict[str, float]:
    """The same steps with MLflow's client, BentoML's CLI and Docker's CLI."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=ws.tracking_uri, registry_uri=ws.registry_uri)
    times: dict[str, float] = {}
    t = time.monotonic()
    source = client.get_run(run_id).data.tags["shipyard.model.model.uri"]
    try:
        client.create_registered_model(name)
    except Exception:  # exists after the first (cold) pass
        pass
    version = client.create_model_version(name, source=source, run_id=run_id).version
    times["register"] = time.monotonic() - t
    t = time.monotonic()
    built = pb.bentoml_variant(ws, f"models:/{name}/{version}", holdout, builder, cold=False)
    times["bento+image+smoke"] = time.monotonic() - t
    t = time.monotonic()
    target = f"{registry}/byhand/{name}:v{version}"
    env = pb.docker_cli_env()
    subprocess.run(["docker", "tag", built["image"], target], env=env, check=True, capture_output=True)
    subprocess.run(["docker", "push", target], env=env, check=True, capture_output=True)
    times["push"] = time.monotonic() - t
    t = time.monotonic()
    client.set_registered_model_alias(name, "champion", version)
    times["alias"] = time.monotonic() - t
    times["total"] = sum(times.values())
    subprocess.run(["docker", "rmi", "-f", built["image"], target], env=env, capture_output=True)
    return times


def main() -> None:
    import shipyard
    from shipyard.packaging import build_base_image
    from sklearn.datasets import load_breast_cancer

    pb = _load_packaging_bench()
    project = Path(tempfile.mkdtemp(prefix="shipyard-bench-promotion-"))
    os.environ["SHIPYARD_PROJECT_DIR"] = str(project)
    registry_proc, registry = start_registry(project)
    try:
        ws = shipyard.init(project_dir=project, oci_registry=registry)
        base = build_base_image(quiet=True)
        holdout = load_breast_cancer(as_frame=True).data.head(120)
        runs = {"cold": train(ws, 1.0), "warm": train(ws, 0.5)}
        by_hand_runs = {"cold": train(ws, 1.0), "warm": train(ws, 0.5)}

        ours: dict[str, Any] = {}
        for phase, run_id in runs.items():
            print(f"shipyard {phase} ...", flush=True)
            t = time.monotonic()
            promotion = shipyard.promote(run_id, model_name="bench-cancer", progress=lambda e: None)
            ours[phase] = (time.monotonic() - t, promotion.durations)
        theirs: dict[str, dict[str, float]] = {}
        for phase, run_id in by_hand_runs.items():
            print(f"by hand {phase} ...", flush=True)
            theirs[phase] = by_hand(ws, run_id, "bench-cancer-byhand", registry, base.builder_ref, holdout, pb)

        print("\nOne-call promotion, seconds by stage")
        stages = list(ours["cold"][1])
        print(f"{'stage':<12}{'cold':>9}{'warm':>9}")
        for stage in stages:
            print(f"{stage:<12}{ours['cold'][1][stage]:>9.2f}{ours['warm'][1][stage]:>9.2f}")
        print(f"{'wall':<12}{ours['cold'][0]:>9.2f}{ours['warm'][0]:>9.2f}")
        print("\nBy hand (MLflow client, BentoML CLI, docker CLI), seconds by step")
        for step in theirs["cold"]:
            print(f"{step:<20}{theirs['cold'][step]:>9.2f}{theirs['warm'][step]:>9.2f}")
        print("\nratio by hand / shipyard (wall):  "
              f"cold {theirs['cold']['total'] / ours['cold'][0]:.2f}x   warm {theirs['warm']['total'] / ours['warm'][0]:.2f}x")
        print(f"target: warm promotion <= 15 s -> {'met' if ours['warm'][0] <= 15 else 'MISSED'} ({ours['warm'][0]:.1f} s)")
    finally:
        registry_proc.terminate()
        registry_proc.wait(timeout=10)
        shutil.rmtree(project, ignore_errors=True)


if __name__ == "__main__":
    main()
