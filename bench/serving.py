"""Serving benchmark: the shipyard image next to plain BentoML, `mlflow models serve` and FastAPI, in one run.

Four servers of the same model files (the quickstart's scikit-learn pipeline on the
breast-cancer data, 30 float columns, registered with plain MLflow in a fresh workspace):

* shipyard: the image ``shipyard.packaging.package`` builds, run with ``docker run``
  (``--image TAG`` reuses a built one; ``--variant NAME=TAG`` adds more shipyard images);
* bentoml: a plain ``@bentoml.service`` as BentoML's docs write one for scikit-learn
  (``mlflow.sklearn.load_model`` in ``__init__``, ``predict(input_data: np.ndarray)``),
  served with ``bentoml serve`` on the host;
* mlflow: ``mlflow models serve -w 1 --env-manager local`` on the host;
* fastapi: a minimal FastAPI app (pydantic rows → numpy → ``model.predict``) under
  ``uvicorn --workers 1`` on the host.

Every server is first checked to answer the same predictions as the model in-process.
Then, with the same rows in each server's own body format:

* load: a bounded closed-loop aiohttp generator in its own process (``bench/_load.py``)
  at each concurrency × body size, warm-up then ``--seconds`` of measurement; req/s,
  p50/p99, errors, and the server's CPU per request (its container's cgroup
  ``cpuacct.usage``, or the psutil process tree of a host server, read at the edges of
  the measurement window);
* the servers are started once and the passes interleave them A B C D / D C B A / …
  (``--repeats`` pairs); medians are printed with the per-pass ratios, so drift shows;
* equal CPU share: on cgroup v1 every container shares the one ``/docker`` group, so each
  server (the container through ``--cgroup-parent``) and the load generator get a cpu
  cgroup of their own with the ``/docker`` group's ``cpu.shares``, side by side;
* cold start: a fresh instance per try, from ``docker run`` / process spawn to the first
  correct prediction (polled every 20 ms), interleaved, medians;
* memory: PSS of the server's process tree (pages a multi-process server shares count
  once), idle and peak during load, and for a container its cgroup's usage less
  inactive file cache; image size of the shipyard image(s).

Run:  .venv/bin/python bench/serving.py                                      (root Docker, base image; ~15 min)
      .venv/bin/python bench/serving.py --seconds 2 --repeats 1 --cold-starts 1   (smoke run)
"""

from __future__ import annotations

import sys
from pathlib import Path

# As in bench/tracking.py: this folder goes last on sys.path, so `bench/packaging.py`
# cannot shadow the `packaging` distribution MLflow imports, while `_shared` is still found.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if not p or Path(p).resolve() != _HERE] + [str(_HERE)]

import argparse  # noqa: E402
import contextlib  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from importlib.metadata import version as dist_version  # noqa: E402
from typing import Any  # noqa: E402

from _shared import print_aligned  # noqa: E402

try:
    import shipyard
except ImportError:  # running from a checkout without an install
    sys.path.insert(0, str(_HERE.parent / "sdk"))
    import shipyard

DOCKER = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"
BIN = Path(sys.executable).parent
CGROUP_ROOT = Path("/sys/fs/cgroup")
MODEL_NAME = "breast-cancer-serving-bench"
SERVICE_PORT = 3000  # the port the shipyard image serves on
BATCH_ROWS = 64  # serving_batch_rows of the "batch" variant
READY_TIMEOUT_S = 120.0
POLL_S = 0.02
MEMORY_SAMPLE_S = 0.5
WARMUP_S = 1.0
MiB = 1024 * 1024
# Host servers must neither phone home nor reach anything but 127.0.0.1.
QUIET_ENV = {"BENTOML_DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}

BENTOML_SERVICE = '''\
import bentoml
import mlflow.sklearn
import numpy as np

MODEL_DIR = __MODEL_DIR__


@bentoml.service
class PlainSklearn:
    def __init__(self) -> None:
        self.model = mlflow.sklearn.load_model(MODEL_DIR)

    @bentoml.api
    def predict(self, input_data: np.ndarray) -> np.ndarray:
        return self.model.predict(input_data)
'''

FASTAPI_APP = '''\
import mlflow.sklearn
import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel

model = mlflow.sklearn.load_model(__MODEL_DIR__)
app = FastAPI()


class Rows(BaseModel):
    rows: list[list[float]]


@app.post("/predict")
def predict(body: Rows) -> dict:
    return {"predictions": model.predict(np.asarray(body.rows)).tolist()}
'''


# ---------------------------------------------------------------- the model and its bodies


@dataclass(frozen=True)
class Model:
    uri: str
    local_dir: Path
    frame: Any  # the breast-cancer features, all rows
    expected: list[Any]  # in-process predictions for every row of ``frame``
    project_dir: Path  # the workspace it is registered in


def register_quickstart_model(ws: Any, tmp: Path) -> Model:
    """The quickstart notebook's pipeline, fitted on all rows and registered with MLflow's own API."""
    import mlflow
    import mlflow.artifacts
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import SGDClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_breast_cancer(as_frame=True)
    X, y = data.data, data.target
    model = Pipeline(
        [("scale", StandardScaler()), ("clf", SGDClassifier(loss="log_loss", alpha=0.001, random_state=7))]
    ).fit(X, y)
    mlflow.set_tracking_uri(ws.tracking_uri)
    mlflow.set_registry_uri(ws.registry_uri)
    mlflow.set_experiment("serving-bench")
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            serialization_format="skops",  # as shipyard.log_model saves the quickstart's model
            skops_trusted_types=[],
            signature=infer_signature(X, model.predict(X)),
            input_example=X.head(5),
            registered_model_name=MODEL_NAME,
        )
    uri = f"models:/{MODEL_NAME}/{info.registered_model_version}"
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(tmp / "model")))
    # Expected answers come from the downloaded files, the ones every host server loads.
    expected = mlflow.sklearn.load_model(str(local)).predict(X).tolist()
    return Model(uri, local, X, expected, Path(ws.project_dir))


def rows_of(frame: Any) -> list[list[float]]:
    return [[float(v) for v in row] for row in frame.itertuples(index=False)]


def shipyard_body(frame: Any) -> str:
    columns = list(frame.columns)
    return json.dumps({"inputs": [dict(zip(columns, row)) for row in rows_of(frame)]})


def bentoml_body(frame: Any) -> str:
    return json.dumps({"input_data": rows_of(frame)})


def mlflow_body(frame: Any) -> str:
    return json.dumps({"dataframe_split": {"columns": list(frame.columns), "data": rows_of(frame)}})


def fastapi_body(frame: Any) -> str:
    return json.dumps({"rows": rows_of(frame)})


def predictions_of(answer: Any) -> list[Any]:
    """The predictions list out of any of the four answers (BentoML returns the bare array)."""
    return answer if isinstance(answer, list) else answer["predictions"]


def same_predictions(got: list[Any], expected: list[Any]) -> bool:
    return len(got) == len(expected) and all(float(g) == float(e) for g, e in zip(got, expected))


# ---------------------------------------------------------------- CPU groups


class CpuGroups:
    """One cpu cgroup per server and for the load generator, each with the ``/docker`` group's shares.

    They sit side by side under ``/sys/fs/cgroup/cpu/shipyard-bench-<pid>/``; the container
    joins its own through ``docker run --cgroup-parent``, so no server shares a group with
    another (or with unrelated containers in ``/docker``), and each gets the same weight.
    """

    def __init__(self) -> None:
        self.name = f"shipyard-bench-{os.getpid()}"
        self.root = CGROUP_ROOT / "cpu" / self.name
        self.shares = 1024
        self.available = False
        self.note = ""

    def setup(self, names: list[str]) -> None:
        try:
            docker_shares = CGROUP_ROOT / "cpu" / "docker" / "cpu.shares"
            if docker_shares.exists():
                self.shares = int(docker_shares.read_text())
            self.root.mkdir()
            for name in names:
                (self.root / name).mkdir()
                (self.root / name / "cpu.shares").write_text(str(self.shares))
            self.available = True
            self.note = f"each server and the load generator in its own cpu cgroup, cpu.shares={self.shares}"
        except OSError as exc:
            self.note = f"cgroups not writable ({exc}); servers share CPU as the system schedules them"
            self.cleanup()

    def wrap(self, name: str, cmd: list[str]) -> list[str]:
        """``cmd`` started from a shell that first moves itself into the group, so every child is in it."""
        if not self.available:
            return cmd
        return ["sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.root / name / "cgroup.procs"), *cmd]

    def docker_args(self, name: str) -> list[str]:
        return ["--cgroup-parent", f"/{self.name}/{name}"] if self.available else []

    def cleanup(self) -> None:
        """Remove the groups in every hierarchy (Docker made some for the container) once they are empty."""
        for tree in sorted(CGROUP_ROOT.glob(f"*/{self.name}")):
            for _ in range(50):
                try:
                    for dirpath, _, _ in sorted(os.walk(tree, topdown=False), key=lambda d: -len(d[0])):
                        procs = Path(dirpath) / "cgroup.procs"
                        for pid in procs.read_text().split() if procs.exists() else []:
                            with contextlib.suppress(ProcessLookupError):
                                os.kill(int(pid), signal.SIGKILL)  # only our own processes are in our groups
                        os.rmdir(dirpath)
                    break
                except FileNotFoundError:
                    break
                except OSError:  # a group empties a moment after its last process is reaped
                    time.sleep(0.1)


# ---------------------------------------------------------------- processes, containers, memory


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_tree(pid: int) -> list[Any]:
    import psutil

    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def pss_bytes(pid: int) -> int:
    import psutil

    total = 0
    for proc in process_tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += proc.memory_full_info().pss
    return total


def cgroup_dir(pid: int, controller: str) -> Path | None:
    """The v1 cgroup directory of ``pid`` for ``controller`` (mounted alone or as ``cpu,cpuacct``)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            for mount in (controller, controllers):
                candidate = CGROUP_ROOT / mount / path.lstrip("/")
                if candidate.is_dir():
                    return candidate
    return None


def cgroup_memory_bytes(memory_dir: Path) -> int:
    """Usage less inactive file cache: what the kernel would not reclaim first, as ``docker stats`` counts."""
    usage = int((memory_dir / "memory.usage_in_bytes").read_text())
    stat = dict(line.split() for line in (memory_dir / "memory.stat").read_text().splitlines())
    return usage - int(stat.get("total_inactive_file", 0))


def count_workers(pid: int) -> int:
    """Worker processes in the tree: BentoML's and uvicorn's multi-process workers; else one."""
    workers = 0
    for proc in process_tree(pid):
        with contextlib.suppress(Exception):
            cmd = " ".join(proc.cmdline())
            if "_bentoml_impl.worker" in cmd or "multiprocessing.spawn" in cmd or "--worker-id" in cmd:
                workers += 1
    return workers or 1


@dataclass
class Instance:
    """One running server: where to send requests and how to read its CPU and memory."""

    name: str
    url: str
    pid: int  # the server's main process, in the host's PID namespace
    stop: Callable[[], None]
    cpu_file: Path | None = None  # a container's cpuacct.usage
    memory_dir: Path | None = None  # a container's memory cgroup
    proxy_pids: list[int] = field(default_factory=list)  # docker-proxy carrying a container's loopback port
    exited: Callable[[], bool] = lambda: False
    logs: Callable[[], str] = lambda: ""

    def meter(self) -> dict[str, Any]:
        if self.cpu_file is not None:
            return {"kind": "cgroup", "path": str(self.cpu_file), "proxy_pids": self.proxy_pids}
        return {"kind": "tree", "pid": self.pid}

    def memory(self) -> dict[str, float | None]:
        cg = None
        if self.memory_dir is not None:
            with contextlib.suppress(OSError):
                cg = cgroup_memory_bytes(self.memory_dir) / MiB
        return {"pss_mib": pss_bytes(self.pid) / MiB, "cgroup_mib": cg}


class Launcher:
    """Starts and stops servers; remembers everything it started so that ``close`` stops it all."""

    def __init__(self, groups: CpuGroups, tmp: Path) -> None:
        self.groups = groups
        self.tmp = tmp
        self.containers: set[str] = set()
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self.count = 0

    def container(self, name: str, image: str, env: dict[str, str] | None = None) -> Instance:
        self.count += 1
        port = free_port()
        cname = f"{self.groups.name}-{name}-{self.count}"
        self.containers.add(cname)
        cmd = [DOCKER, "run", "-d", "--name", cname, "-p", f"127.0.0.1:{port}:{SERVICE_PORT}"]
        for key, value in (env or {}).items():
            cmd += ["-e", f"{key}={value}"]
        subprocess.run([*cmd, *self.groups.docker_args(name), image], check=True, capture_output=True)
        pid = int(docker_inspect(cname, "{{.State.Pid}}"))
        cpu_dir, memory_dir = cgroup_dir(pid, "cpuacct"), cgroup_dir(pid, "memory")

        def stop() -> None:
            subprocess.run([DOCKER, "rm", "-f", cname], capture_output=True)
            self.containers.discard(cname)

        def logs() -> str:
            out = subprocess.run([DOCKER, "logs", "--tail", "30", cname], capture_output=True, text=True)
            return out.stdout + out.stderr

        def exited() -> bool:
            return docker_inspect(cname, "{{.State.Running}}") != "true"

        cpu_file = cpu_dir / "cpuacct.usage" if cpu_dir else None
        url = f"http://127.0.0.1:{port}/predict"
        return Instance(name, url, pid, stop, cpu_file, memory_dir, docker_proxies(port), exited, logs)

    def process(self, name: str, cmd: list[str], *, cwd: Path, path: str = "/predict") -> Instance:
        self.count += 1
        port = free_port()
        argv = [part.replace("{port}", str(port)) for part in cmd]
        log_path = self.tmp / f"{name}-{self.count}.log"
        log = open(log_path, "wb")  # noqa: SIM115 - closed by stop()
        # As in an activated venv: `mlflow models serve` execs the `uvicorn` it finds on PATH.
        env = {**os.environ, **QUIET_ENV, "BENTOML_HOME": str(self.tmp / "bentoml-home")}
        env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
        proc = subprocess.Popen(
            self.groups.wrap(name, argv), cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.processes[proc.pid] = proc

        def stop() -> None:
            stop_process_group(proc)
            self.processes.pop(proc.pid, None)
            log.close()

        def logs() -> str:
            return "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])

        url = f"http://127.0.0.1:{port}{path}"
        return Instance(name, url, proc.pid, stop, exited=lambda: proc.poll() is not None, logs=logs)

    def close(self) -> None:
        for proc in list(self.processes.values()):
            stop_process_group(proc)
        self.processes.clear()
        for cname in list(self.containers):
            subprocess.run([DOCKER, "rm", "-f", cname], capture_output=True)
        self.containers.clear()


def stop_process_group(proc: subprocess.Popen[Any], grace: float = 10.0) -> None:
    """SIGTERM the process's group (and any descendant that left it), SIGKILL what is left after ``grace``."""
    import psutil

    tree = process_tree(proc.pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    for p in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _, alive = psutil.wait_procs(tree, timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def docker_proxies(port: int) -> list[int]:
    """The ``docker-proxy`` processes that forward ``port``: loopback traffic goes through them, not NAT."""
    import psutil

    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmd = proc.info["cmdline"] or []
        if proc.info["name"] == "docker-proxy" and "-host-port" in cmd:
            if cmd[cmd.index("-host-port") + 1 :][:1] == [str(port)]:
                found.append(proc.pid)
    return found


def docker_inspect(ref: str, fmt: str) -> str:
    out = subprocess.run([DOCKER, "inspect", "--format", fmt, ref], check=True, capture_output=True, text=True)
    return out.stdout.strip()


def image_mb(tag: str) -> float:
    return int(docker_inspect(tag, "{{.Size}}")) / 1e6


# ---------------------------------------------------------------- servers


@dataclass
class Server:
    name: str
    encode: Callable[[Any], str]
    start: Callable[[Launcher], Instance]
    image: str | None = None


def build_servers(args: argparse.Namespace, model: Model, tmp: Path) -> list[Server]:
    """The servers to compare, in their interleaving order; what is not in ``--only`` is not built."""
    wanted = set(args.only) if args.only else None
    servers: list[Server] = []

    def want(name: str) -> bool:
        return wanted is None or name in wanted

    if want("shipyard"):
        tag = args.image
        if tag is None:
            from shipyard.packaging import package

            t0 = time.monotonic()
            tag = package(model.uri, quiet=True).image.tag
            print(f"packaged {model.uri} as {tag} in {time.monotonic() - t0:.0f} s", flush=True)
        servers.append(Server("shipyard", shipyard_body, lambda L, t=tag: L.container("shipyard", t), tag))
        if "1w" in args.shipyard_variants:  # the same image, one worker (as the other servers run)
            one = {"SHIPYARD_SERVING_WORKERS": "1"}
            start = lambda L, t=tag, e=one: L.container("shipyard-1w", t, e)  # noqa: E731
            servers.append(Server("shipyard-1w", shipyard_body, start, tag))
        if "nomon" in args.shipyard_variants:  # the same image with its drift monitor off (SHIPYARD_MONITORING=0)
            off = {"SHIPYARD_MONITORING": "0"}
            start = lambda L, t=tag, e=off: L.container("shipyard-nomon", t, e)  # noqa: E731
            servers.append(Server("shipyard-nomon", shipyard_body, start, tag))
        if "batch" in args.shipyard_variants:  # packaged with adaptive batching on
            from shipyard.packaging import package

            ws = shipyard.init(project_dir=model.project_dir, serving_batch_rows=BATCH_ROWS)
            batched = package(model.uri, quiet=True).image.tag
            shipyard.init(project_dir=model.project_dir)
            print(f"packaged {model.uri} with serving_batch_rows={BATCH_ROWS} as {batched}", flush=True)
            del ws
            start = lambda L, t=batched: L.container("shipyard-batch", t)  # noqa: E731
            servers.append(Server("shipyard-batch", shipyard_body, start, batched))
    for name, tag in args.variant:
        if want(name) or wanted is not None and "shipyard" in wanted:
            servers.append(Server(name, shipyard_body, lambda L, n=name, t=tag: L.container(n, t), tag))
    if want("bentoml"):
        svc = tmp / "bentoml-service"
        svc.mkdir()
        (svc / "service.py").write_text(BENTOML_SERVICE.replace("__MODEL_DIR__", repr(str(model.local_dir))))
        cmd = [str(BIN / "bentoml"), "serve", "service:PlainSklearn", "--host", "127.0.0.1", "--port", "{port}"]
        servers.append(Server("bentoml", bentoml_body, lambda L, cmd=cmd: L.process("bentoml", cmd, cwd=svc)))
    if want("mlflow"):
        cmd = [str(BIN / "mlflow"), "models", "serve", "-m", str(model.local_dir), "-h", "127.0.0.1", "-p", "{port}"]
        cmd += ["-w", "1", "--env-manager", "local"]
        start = lambda L, cmd=cmd: L.process("mlflow", cmd, cwd=tmp, path="/invocations")  # noqa: E731
        servers.append(Server("mlflow", mlflow_body, start))
    if want("fastapi"):
        app = tmp / "fastapi-app"
        app.mkdir()
        (app / "app.py").write_text(FASTAPI_APP.replace("__MODEL_DIR__", repr(str(model.local_dir))))
        cmd = [str(BIN / "uvicorn"), "app:app", "--host", "127.0.0.1", "--port", "{port}", "--workers", "1"]
        servers.append(Server("fastapi", fastapi_body, lambda L, cmd=cmd: L.process("fastapi", cmd, cwd=app)))
    return servers


def post(url: str, body: str, timeout: float) -> tuple[int, bytes]:
    host_port, _, path = url.removeprefix("http://").partition("/")
    host, _, port = host_port.partition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("POST", "/" + path, body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def wait_for_prediction(inst: Instance, body: str, expected: list[Any], started: float) -> float:
    """Seconds from ``started`` to the first answer with the expected predictions, polling every 20 ms."""
    last = "no answer"
    polls = 0
    while time.perf_counter() - started < READY_TIMEOUT_S:
        polls += 1
        if polls % 50 == 0 and inst.exited():  # about once a second: fail fast, with its log
            raise RuntimeError(f"{inst.name} exited before answering; its last output:\n{inst.logs()}")
        try:
            status, raw = post(inst.url, body, timeout=10)
            if status == 200 and same_predictions(predictions_of(json.loads(raw)), expected):
                return time.perf_counter() - started
            last = f"HTTP {status}: {raw[:200]!r}"
        except (OSError, http.client.HTTPException, ValueError, KeyError, TypeError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(POLL_S)
    raise RuntimeError(
        f"{inst.name} gave no correct prediction within {READY_TIMEOUT_S:.0f} s (last: {last}); "
        f"its last output:\n{inst.logs()}"
    )


# ---------------------------------------------------------------- load


class LoadGenerator:
    """``bench/_load.py`` in its own process (and CPU group), one JSON line per cell each way."""

    def __init__(self, groups: CpuGroups) -> None:
        cmd = groups.wrap("loadgen", [sys.executable, str(_HERE / "_load.py")])
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True, env={**os.environ}
        )

    def run(self, spec: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(spec) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the load generator exited")
        return json.loads(line)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self.proc.stdin:
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            stop_process_group(self.proc)


@contextlib.contextmanager
def peak_memory(inst: Instance, peak: dict[str, float]) -> Iterator[None]:
    """Sample the instance's memory every 0.5 s while the block runs; keep the maxima in ``peak``."""
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            with contextlib.suppress(Exception):
                for key, value in inst.memory().items():
                    if value is not None:
                        peak[key] = max(peak.get(key, 0.0), value)
            done.wait(MEMORY_SAMPLE_S)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


@dataclass
class Figures:
    """Everything measured for one server."""

    image: str | None
    image_mb: float | None = None
    workers: int | None = None
    cold_starts: list[float] = field(default_factory=list)
    idle: dict[str, float | None] = field(default_factory=dict)
    peak: dict[str, float] = field(default_factory=dict)
    cells: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def cell_label(concurrency: int, rows: int) -> str:
    return f"c{concurrency} {rows}-row"


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


PER_REQUEST = {"cpu_ms": "server_cpu_s", "proxy_ms": "proxy_cpu_s", "loadgen_ms": "loadgen_cpu_s"}


def cell_median(results: list[dict[str, Any]], key: str) -> float | None:
    """Median over passes of a cell's figure; the ``*_ms`` keys are CPU milliseconds per request."""
    if key in PER_REQUEST:
        seconds = [(r.get(PER_REQUEST[key]), r.get("requests")) for r in results]
        return median([s / n * 1000 if s is not None and n else None for s, n in seconds])
    return median([r.get(key) for r in results])


def fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


# ---------------------------------------------------------------- the run


def check_predictions(servers: list[Server], instances: dict[str, Instance], model: Model, rows: int) -> None:
    frame, expected = model.frame.head(rows), model.expected[:rows]
    for server in servers:
        status, raw = post(instances[server.name].url, server.encode(frame), timeout=30)
        if status != 200:
            raise SystemExit(f"{server.name} answered HTTP {status} to {rows} valid rows: {raw[:300]!r}")
        got = predictions_of(json.loads(raw))
        if not same_predictions(got, expected):
            bad = next((i for i, (g, e) in enumerate(zip(got, expected)) if float(g) != float(e)), len(expected))
            raise SystemExit(
                f"{server.name} answers other predictions than the model in-process for the same {rows} rows "
                f"(first difference at row {bad}; {len(got)} answers for {len(expected)} rows): "
                "not comparable, stopping"
            )


def measure_cold_starts(
    servers: list[Server], launcher: Launcher, model: Model, tries: int, figures: dict[str, Figures]
) -> None:
    body_row = model.frame.head(1)
    for attempt in range(tries):
        for server in servers if attempt % 2 == 0 else servers[::-1]:
            started = time.perf_counter()
            inst = server.start(launcher)
            try:
                seconds = wait_for_prediction(inst, server.encode(body_row), model.expected[:1], started)
            finally:
                inst.stop()
            figures[server.name].cold_starts.append(seconds)
            print(f"  cold start {attempt + 1}/{tries} {server.name}: {seconds:.2f} s", flush=True)


def measure_load(
    servers: list[Server],
    instances: dict[str, Instance],
    model: Model,
    args: argparse.Namespace,
    loadgen: LoadGenerator,
    figures: dict[str, Figures],
    passes: list[list[str]],
) -> None:
    bodies = {(s.name, r): s.encode(model.frame.head(r)) for s in servers for r in args.rows}
    for n in range(2 * args.repeats):
        order = servers if n % 2 == 0 else servers[::-1]
        passes.append([s.name for s in order])
        for server in order:
            inst = instances[server.name]
            for c in args.concurrency:
                for r in args.rows:
                    spec = {"url": inst.url, "body": bodies[server.name, r], "concurrency": c,
                            "warmup": WARMUP_S, "seconds": args.seconds, "meter": inst.meter()}
                    with peak_memory(inst, figures[server.name].peak):
                        result = loadgen.run(spec)
                    result["pass"] = n + 1
                    if "failed" in result:
                        result.update(requests=0, errors=1, error_samples=[result["failed"]])
                    figures[server.name].cells.setdefault(cell_label(c, r), []).append(result)
                    errors = result["errors"]
                    note = f"  {errors} errors, e.g. {result['error_samples'][:1]}" if errors else ""
                    print(f"  pass {n + 1} {server.name:<10} {cell_label(c, r):<11} "
                          f"{result.get('rps', 0):7.1f} req/s  p50 {fmt(result.get('p50_ms'), 1)}  "
                          f"p99 {fmt(result.get('p99_ms'), 1)} ms{note}", flush=True)


def memory_cell(memory: dict[str, Any]) -> str:
    cgroup = memory.get("cgroup_mib")
    return fmt(memory.get("pss_mib")) + (f" ({fmt(cgroup)} cg)" if cgroup is not None else "")


def print_results(
    servers: list[Server], figures: dict[str, Figures], args: argparse.Namespace, passes: list[list[str]]
) -> None:
    cells = [cell_label(c, r) for c in args.concurrency for r in args.rows]
    header = ["server", "workers"] + [f"{c} req/s" for c in cells] + [f"{c} p50/p99 ms" for c in cells]
    cpu_header = "CPU ms/req " + " / ".join(c.replace("-row", "") for c in cells)
    header += ["errors", cpu_header, "cold s", "idle MiB", "peak MiB", "image MB"]
    lines = [header]
    for s in servers:
        f = figures[s.name]
        res = [f.cells.get(c, []) for c in cells]
        lines.append(
            [s.name, fmt(f.workers)]
            + [fmt(cell_median(r, "rps")) for r in res]
            + [f"{fmt(cell_median(r, 'p50_ms'), 1)}/{fmt(cell_median(r, 'p99_ms'), 1)}" for r in res]
            + [str(sum(x.get("errors", 0) for r in res for x in r))]
            + [" / ".join(fmt(cell_median(r, "cpu_ms"), 2) for r in res)]
            + [fmt(median(f.cold_starts), 2), memory_cell(f.idle), memory_cell(f.peak), fmt(f.image_mb)]
        )
    print(
        f"\nMedians over {len(passes)} passes of {args.seconds:g} s per cell (after {WARMUP_S:g} s warm-up); "
        "cN = N concurrent connections; cold = start to first correct prediction; memory = PSS of the "
        "process tree, (cg) = the container's cgroup usage less inactive file"
    )
    print_aligned(lines)
    for s in servers:
        proxy = [cell_median(figures[s.name].cells.get(c, []), "proxy_ms") for c in cells]
        if any(v is not None for v in proxy):
            print(f"{s.name}: docker-proxy CPU ms/req {' / '.join(fmt(v, 2) for v in proxy)} "
                  "(carries the container's loopback port, outside its cgroup: not in the CPU column)")
    loadgen = [median([cell_median(figures[s.name].cells.get(c, []), "loadgen_ms") for s in servers]) for c in cells]
    print(f"load generator CPU ms/req {' / '.join(fmt(v, 2) for v in loadgen)} (median over servers)")

    ref = next((s for s in servers if s.name == "shipyard"), None) or next((s for s in servers if s.image), None)
    others = [s for s in servers if ref is not None and s is not ref]
    if not ref or not others:
        return
    rf = figures[ref.name]
    print(f"\n{ref.name} ÷ each server (medians; req/s > 1 and p99 < 1 favour {ref.name})")
    lines = [["÷ server"] + [f"{c} req/s" for c in cells] + [f"{c} p99" for c in cells]]
    for o in others:
        of = figures[o.name]
        row = [o.name]
        for key in ("rps", "p99_ms"):
            for c in cells:
                a, b = cell_median(rf.cells.get(c, []), key), cell_median(of.cells.get(c, []), key)
                row.append(f"{a / b:.2f}" if a and b else "-")
        lines.append(row)
    print_aligned(lines)

    label = cell_label(max(args.concurrency), min(args.rows))
    print(f"\nPer pass, {label}: {ref.name} ÷ each (req/s ratio, p99 ratio)")
    lines = [["pass", "order"] + [f"÷ {o.name} req/s" for o in others] + [f"÷ {o.name} p99" for o in others]]
    for n, order in enumerate(passes):
        def of_pass(name: str, key: str, n: int = n) -> float | None:
            return next((r.get(key) for r in figures[name].cells.get(label, []) if r["pass"] == n + 1), None)

        row = [str(n + 1), " ".join(order)]
        for key in ("rps", "p99_ms"):
            for o in others:
                a, b = of_pass(ref.name, key), of_pass(o.name, key)
                row.append(f"{a / b:.2f}" if a and b else "-")
        lines.append(row)
    print_aligned(lines)


def versions() -> dict[str, str]:
    out = {}
    for dist in ("shipyard", "bentoml", "mlflow", "fastapi", "uvicorn", "scikit-learn", "aiohttp"):
        try:
            out[dist] = dist_version(dist)
        except Exception:  # a checkout without the distribution installed
            out[dist] = "?"
    return out


def interrupted(signum: int, frame: Any) -> None:
    """SIGTERM ends the run through the same ``finally`` blocks as Ctrl-C, so nothing is left running."""
    raise KeyboardInterrupt


def loadavg(values: tuple[float, float, float]) -> str:
    return " ".join(f"{x:.2f}" for x in values)


def csv_ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measurement time per cell (after 1 s warm-up)")
    parser.add_argument("--repeats", type=int, default=3, help="pairs of passes (A B C D, D C B A)")
    parser.add_argument("--concurrency", type=csv_ints, default=[1, 8])
    parser.add_argument("--rows", type=csv_ints, default=[1, 100])
    parser.add_argument("--cold-starts", type=int, default=3)
    parser.add_argument("--only", type=lambda t: [x.strip() for x in t.split(",") if x.strip()],
                        help="comma-separated servers: shipyard,bentoml,mlflow,fastapi (and variant names)")
    parser.add_argument("--image", help="benchmark this already built shipyard image instead of packaging one")
    parser.add_argument("--variant", action="append", default=[], type=lambda t: tuple(t.split("=", 1)),
                        metavar="NAME=IMAGE_TAG", help="another shipyard image to compare (repeatable)")
    parser.add_argument(
        "--shipyard-variants",
        type=lambda t: [x.strip() for x in t.split(",") if x.strip()],
        default=[],
        help="also measure the shipyard image with one worker (1w), with its drift monitor off (nomon) "
        "and/or packaged with adaptive batching (batch)",
    )
    parser.add_argument("--json", type=Path, help="also write every raw figure to this file")
    args = parser.parse_args()
    if any(len(v) != 2 or not v[0] or not v[1] for v in args.variant):
        parser.error("--variant takes NAME=IMAGE_TAG")
    if max(args.rows) > 569:
        parser.error("--rows: the breast-cancer data has 569 rows")

    signal.signal(signal.SIGTERM, interrupted)
    load_start = os.getloadavg()
    vers = versions()
    print(f"cpus {os.cpu_count()}, load average {loadavg(load_start)}; "
          + ", ".join(f"{k} {v}" for k, v in vers.items()), flush=True)

    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # no store-migration chatter between the figures
    tmp = Path(tempfile.mkdtemp(prefix="shipyard-serving-bench-"))
    groups = CpuGroups()
    launcher = Launcher(groups, tmp)
    loadgen: LoadGenerator | None = None
    instances: dict[str, Instance] = {}
    figures: dict[str, Figures] = {}
    passes: list[list[str]] = []
    try:
        os.environ["SHIPYARD_PROJECT_DIR"] = str(tmp / "project")
        ws = shipyard.init(project_dir=tmp / "project")
        model = register_quickstart_model(ws, tmp)
        servers = build_servers(args, model, tmp)
        if not servers:
            raise SystemExit("--only selected no server")
        groups.setup([s.name for s in servers] + ["loadgen"])
        print(groups.note, flush=True)
        for s in servers:
            figures[s.name] = Figures(image=s.image, image_mb=image_mb(s.image) if s.image else None)

        print(f"cold starts ({args.cold_starts} per server, interleaved) ...", flush=True)
        measure_cold_starts(servers, launcher, model, args.cold_starts, figures)

        print("starting every server for the load passes ...", flush=True)
        started = time.perf_counter()
        for s in servers:
            instances[s.name] = s.start(launcher)
        for s in servers:
            wait_for_prediction(instances[s.name], s.encode(model.frame.head(1)), model.expected[:1], started)
        checked_rows = max(100, *args.rows)
        check_predictions(servers, instances, model, checked_rows)
        time.sleep(2)  # let start-up work (compiles, caches) settle before "idle"
        for s in servers:
            figures[s.name].idle = instances[s.name].memory()
            figures[s.name].workers = count_workers(instances[s.name].pid)
        print(f"every server answers the in-process predictions for the same {checked_rows} rows", flush=True)

        loadgen = LoadGenerator(groups)
        measure_load(servers, instances, model, args, loadgen, figures, passes)
    finally:
        if loadgen is not None:
            loadgen.close()
        for inst in instances.values():
            with contextlib.suppress(Exception):
                inst.stop()
        launcher.close()
        groups.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)

    load_end = os.getloadavg()
    print_results(servers, figures, args, passes)
    cells = [r for f in figures.values() for rs in f.cells.values() for r in rs if "window_s" in r]
    busy = [r["loadgen_cpu_s"] / r["window_s"] * 100 for r in cells]
    if busy:
        print(f"\nload generator: median {statistics.median(busy):.0f} % of one core per cell (max {max(busy):.0f} %)")
    print(f"load average at start {loadavg(load_start)}, at end {loadavg(load_end)}; {groups.note}")
    if args.json:
        args.json.write_text(json.dumps({
            "machine": {
                "cpus": os.cpu_count(),
                "loadavg_start": load_start,
                "loadavg_end": load_end,
                "cgroups": groups.note,
            },
            "versions": vers,
            "settings": {"seconds": args.seconds, "warmup": WARMUP_S, "repeats": args.repeats,
                         "concurrency": args.concurrency, "rows": args.rows, "cold_starts": args.cold_starts},
            "passes": passes,
            "servers": {name: f.__dict__ for name, f in figures.items()},
        }, indent=2, default=str))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("\ninterrupted: every server, container and cgroup this run started is stopped", file=sys.stderr)
        raise SystemExit(130) from None
