"""Benchmark: from a registered model version to a smoke-tested image, three ways, in one run.

For an sklearn classifier on the iris data, registered with plain MLflow:

* shipyard: ``shipyard.package`` (generated service, own Dockerfile on the
  local base image) + ``shipyard.smoke`` (parity on 150 rows);
* BentoML: the same generated service built with a bentofile whose
  ``docker.base_image`` is the same local base, then ``bentoml containerize``
  (docker backend, classic builder) + the same ``shipyard.smoke``;
* MLflow: ``mlflow models generate-dockerfile`` with its ``FROM`` replaced by
  the same local base, ``docker build``, then a readiness wait on ``/ping``
  and a parity check through ``/invocations``.

"cold" builds every image step without Docker's layer cache (base images
are kept: they are built once per machine); "warm" packages a retrained
version of the same model (a model-only change) with the cache. Each figure
is the time to an image that passed its smoke test.

Run:  python bench/packaging.py            (needs root Docker, about 6–10 minutes)
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# This file's own folder must not shadow the `packaging` distribution that MLflow imports.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(REPO))  # for tests.docker_support (model registration helper)


def docker_cli_env() -> dict[str, str]:
    """Debian's docker client first (no buildx needed) and the classic builder."""
    return {**os.environ, "PATH": "/usr/bin:" + os.environ.get("PATH", ""), "DOCKER_BUILDKIT": "0"}


def image_size(client: Any, ref: str) -> float:
    return round(int(client.images.get(ref).attrs["Size"]) / 1e6, 1)


def shipyard_variant(model_uri: str, holdout: Any, *, cold: bool) -> dict[str, Any]:
    from shipyard.deploy import smoke
    from shipyard.packaging import package

    t0 = time.monotonic()
    result = package(model_uri, no_cache=cold, quiet=True)
    built = time.monotonic() - t0
    checked = smoke(result.image.tag, holdout=holdout, record=False)
    assert checked.passed and checked.mismatches == 0, checked.summary()
    return {
        "seconds": time.monotonic() - t0,
        "package_seconds": built,
        "bento_seconds": result.timings.get("bento"),
        "image": result.image.tag,
        "size_mb": result.image.size_mb,
        "ready_seconds": checked.ready_seconds,
        "p50_ms": checked.latency_p50_ms,
        "p95_ms": checked.latency_p95_ms,
        "layers": len(result.image.layers),
    }


def bentoml_variant(ws: Any, model_uri: str, holdout: Any, builder: str, *, cold: bool) -> dict[str, Any]:
    """BentoML's own path: bentofile with docker.base_image, then `bentoml containerize`."""
    from shipyard.deploy import smoke
    from shipyard.packaging import build_bento
    from shipyard.packaging.docker_engine import docker_client

    t0 = time.monotonic()
    ours = build_bento(model_uri)  # the generated service, so both serve the same API
    with tempfile.TemporaryDirectory(prefix="bench-bentofile-") as tmp:
        ctx = Path(tmp)
        for item in ("service.py", "shipyard_monitoring", "model"):
            src = ours.path / "src" / item
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, ctx / item)
        (ctx / "requirements.txt").write_text("\n".join(ours.requirements) + "\n")
        (ctx / "bentofile.yaml").write_text(
            "service: 'service:ModelService'\n"
            "include: ['service.py', 'shipyard_monitoring/*.py', 'model/**']\n"
            "python:\n  requirements_txt: requirements.txt\n  lock_packages: false\n"
            f"docker:\n  base_image: {builder}\n"
        )
        env = {**docker_cli_env(), "BENTOML_HOME": str(ws.bentoml_home), "BENTOML_DO_NOT_TRACK": "true"}
        bentoml = str(Path(sys.executable).with_name("bentoml"))
        name = f"bench-bentofile-{uuid.uuid4().hex[:8]}"
        out = subprocess.run(
            [bentoml, "build", str(ctx), "--version", name.split("-")[-1], "-o", "tag"],
            cwd=ctx,
            env=env,
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            raise RuntimeError(f"bentoml build failed:\n{out.stderr[-2000:]}")
        tag = out.stdout.strip().splitlines()[-1].replace("__tag__:", "").strip()
        image = f"shipyard-bench/bentoml-{tag.replace(':', '-')}:latest"
        cmd = [bentoml, "containerize", tag, "--backend", "docker", "-t", image]
        if cold:
            cmd += ["--opt", "no-cache"]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"bentoml containerize failed:\n{(out.stdout + out.stderr)[-3000:]}")
    built = time.monotonic() - t0
    checked = smoke(image, model_version=model_uri, holdout=holdout, record=False)
    assert checked.passed and checked.mismatches == 0, checked.summary()
    client = docker_client()
    return {
        "seconds": time.monotonic() - t0,
        "package_seconds": built,
        "image": image,
        "size_mb": image_size(client, image),
        "ready_seconds": checked.ready_seconds,
        "p50_ms": checked.latency_p50_ms,
        "p95_ms": checked.latency_p95_ms,
    }


def mlflow_variant(ws: Any, model_uri: str, holdout: Any, builder: str, *, cold: bool) -> dict[str, Any]:
    """MLflow's own path: generate-dockerfile, FROM the same base, docker build, /ping + /invocations."""
    import mlflow.pyfunc
    from shipyard.packaging.base_image import stream_build
    from shipyard.packaging.docker_engine import docker_client

    client = docker_client()
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-mlflow-") as tmp:
        out_dir = Path(tmp) / "ctx"
        env = {**os.environ, "MLFLOW_TRACKING_URI": ws.tracking_uri, "MLFLOW_REGISTRY_URI": ws.registry_uri}
        mlflow_cli = str(Path(sys.executable).with_name("mlflow"))
        gen = subprocess.run(
            [
                mlflow_cli,
                "models",
                "generate-dockerfile",
                "-m",
                model_uri,
                "-d",
                str(out_dir),
                "--env-manager",
                "local",
            ],
            env=env,
            capture_output=True,
            text=True,
        )
        if gen.returncode != 0:
            raise RuntimeError(f"mlflow generate-dockerfile failed:\n{gen.stderr[-2000:]}")
        dockerfile = out_dir / "Dockerfile"
        lines = dockerfile.read_text().splitlines()
        # Same base as the others; its pip lives in /opt/uv (Debian's Python refuses system installs).
        lines = [f"FROM {builder}\nENV PATH=/opt/uv/bin:$PATH" if ln.startswith("FROM ") else ln for ln in lines]
        dockerfile.write_text("\n".join(lines) + "\n")
        image = f"shipyard-bench/mlflow-{uuid.uuid4().hex[:8]}:latest"
        stream_build(client, out_dir, image, lambda message: None, no_cache=cold)
    built = time.monotonic() - t0
    expected = mlflow.pyfunc.load_model(model_uri).predict(holdout).tolist()
    container = client.containers.run(image, detach=True, ports={"8080/tcp": ("127.0.0.1", None)})
    try:
        started = time.monotonic()
        container.reload()
        port = int(container.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"])
        ready = None
        while time.monotonic() - started < 120:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/ping")
                if conn.getresponse().status == 200:
                    ready = time.monotonic() - started
                    break
            except OSError:
                pass
            time.sleep(0.05)
        if ready is None:
            raise RuntimeError("MLflow image never answered /ping:\n" + container.logs(tail=30).decode())
        payload = json.dumps(
            {"dataframe_split": json.loads(holdout.to_json(orient="split", index=False, double_precision=15))}
        )
        latencies = []
        served = None
        for _ in range(40):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            t = time.perf_counter()
            conn.request("POST", "/invocations", body=payload, headers={"Content-Type": "application/json"})
            body = conn.getresponse().read()
            latencies.append((time.perf_counter() - t) * 1000)
            served = json.loads(body)["predictions"]
        assert served == expected, "MLflow image predictions differ from in-process ones"
    finally:
        container.remove(force=True)
    latencies.sort()
    return {
        "seconds": time.monotonic() - t0,
        "package_seconds": built,
        "image": image,
        "size_mb": image_size(client, image),
        "ready_seconds": ready,
        "p50_ms_batch150": round(latencies[len(latencies) // 2], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["shipyard", "bentoml", "mlflow"], action="append")
    parser.add_argument("--json", type=Path, help="Also write the figures to this file.")
    args = parser.parse_args()
    variants = args.only or ["shipyard", "bentoml", "mlflow"]

    import shipyard
    from shipyard.packaging import build_base_image

    from tests.docker_support import register_sklearn_model

    project = Path(tempfile.mkdtemp(prefix="shipyard-bench-"))
    os.environ["SHIPYARD_PROJECT_DIR"] = str(project)
    ws = shipyard.init(project_dir=project)
    t0 = time.monotonic()
    base = build_base_image(quiet=True)
    print(
        f"base image {base.name}: {'built' if base.built else 'reused'} in {time.monotonic() - t0:.1f}s, "
        f"{base.size_bytes / 1e6:.0f} MB",
        flush=True,
    )

    v1 = register_sklearn_model(ws, "iris-bench")
    v2 = register_sklearn_model(ws, "iris-bench", max_iter=200)  # the model-only change
    holdout = v1.features  # 150 rows

    results: dict[str, dict[str, Any]] = {}
    for variant in variants:
        for phase, uri in (("cold", v1.uri), ("warm", v2.uri)):
            print(f"{variant} {phase} ...", flush=True)
            if variant == "shipyard":
                r = shipyard_variant(uri, holdout, cold=phase == "cold")
            elif variant == "bentoml":
                r = bentoml_variant(ws, uri, holdout, base.builder_ref, cold=phase == "cold")
            else:
                r = mlflow_variant(ws, uri, holdout, base.builder_ref, cold=phase == "cold")
            results[f"{variant}.{phase}"] = r
            print(f"  {json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in r.items()})}", flush=True)

    print("\nTime to a smoke-tested image (s), image size (MB), container ready (s); ratio = other / shipyard")
    print(
        f"{'variant':<10}{'cold s':>9}{'warm s':>9}{'size MB':>9}{'ready s':>9}{'cold x':>8}{'warm x':>8}{'size x':>8}"
    )
    ref = results.get("shipyard.cold"), results.get("shipyard.warm")
    for variant in variants:
        cold, warm = results[f"{variant}.cold"], results[f"{variant}.warm"]
        ratios = ("", "", "")
        if ref[0] and ref[1]:
            ratios = (
                f"{cold['seconds'] / ref[0]['seconds']:.2f}",
                f"{warm['seconds'] / ref[1]['seconds']:.2f}",
                f"{cold['size_mb'] / ref[0]['size_mb']:.2f}",
            )
        print(
            f"{variant:<10}{cold['seconds']:>9.1f}{warm['seconds']:>9.1f}{cold['size_mb']:>9.1f}"
            f"{warm['ready_seconds']:>9.2f}{ratios[0]:>8}{ratios[1]:>8}{ratios[2]:>8}"
        )
    if "shipyard.warm" in results:
        w = results["shipyard.warm"]
        print(
            f"\nshipyard warm re-package (bento + image, no smoke): {w['package_seconds']:.1f}s "
            f"(bento {w['bento_seconds']:.1f}s); ready {w['ready_seconds']:.2f}s; "
            f"latency p50 {w['p50_ms']:.1f} ms, p95 {w['p95_ms']:.1f} ms"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    from shipyard.packaging.docker_engine import docker_client

    client = docker_client()
    for r in results.values():  # the comparison images are large; keep only the layer cache they share
        try:
            client.images.remove(r["image"], force=True)
        except Exception as exc:  # an image another run already removed is fine
            print(f"could not remove {r['image']}: {exc}")
    shutil.rmtree(project, ignore_errors=True)


if __name__ == "__main__":
    main()
