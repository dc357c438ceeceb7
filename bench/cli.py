"""CLI benchmark: the engineer's commands as whole processes, against a 1.5 s target and against plain MLflow.

Usage (from the repository root)::

    .venv/bin/python bench/cli.py                  # 7 rounds
    .venv/bin/python bench/cli.py --rounds 15

A fresh embedded workspace (sqlite MLflow store) is made with two small
registered iris models, each gated; v1 is champion. Each round then runs,
one after the other (interleaved, so a busy moment hits every row alike),
each as a new process the way a user types it:

* ``shipyard review M/2``, ``shipyard approve M/2 -m ...``, ``shipyard runs``
  and ``shipyard rollback M --reason ...``, answered by the preloaded worker
  (the default): these rows are held to the target;
* the same four with ``SHIPYARD_CLI_WORKER=0``: each command imports MLflow
  in its own process, as every command did before the worker;
* ``shipyard runs`` as the first command after ``shipyard worker stop``: it
  starts a worker and waits for it (what a user pays once, after an upgrade
  or ten idle minutes);
* the baselines on the same store: ``python -c "import mlflow"``, a plain
  ``MlflowClient`` reading one model version, and the ``mlflow`` CLI's
  ``mlflow runs describe``.

Before each rollback (untimed) v2 is made champion again so there is a
``previous`` to go back to. No image was built here, so the rollback reads
the registry and stops at "v1 has no handoff bundle": the row times the
command's reads, not the bundle rewrite. Nothing else is cached between
processes: each command reads the store afresh. The workers live in a private
temporary folder and are stopped at the end.
"""

from __future__ import annotations

import sys
from pathlib import Path

# this script's folder goes last on sys.path: a sibling module must not shadow an installed one
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if not p or Path(p).resolve() != _HERE] + [str(_HERE)]

import argparse  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from _shared import print_aligned  # noqa: E402

TARGET_S = 1.5
MODEL = "iris-bench"


def _setup(project: Path) -> dict[str, str]:
    """Two gated versions of MODEL, v1 champion; returns the run id of v2 (for the mlflow CLI row)."""
    code = f"""
import shipyard
from shipyard import registry
from shipyard.gates import check, threshold
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
shipyard.init(project_dir={str(project)!r})
X, y = load_iris(return_X_y=True, as_frame=True)
for C in (1.0, 0.05):
    model = LogisticRegression(C=C, max_iter=300).fit(X, y)
    with shipyard.start_run("bench-cli") as run:
        shipyard.log_model(model, name="model", input_example=X.iloc[:2])
        shipyard.log_metric("accuracy", float(model.score(X, y)))
    version = registry.register({MODEL!r}, run.run_id, alias=None)
    check(str(version), [threshold("accuracy >= 0.5")], X.assign(target=y))
registry.swap_champion({MODEL!r}, "1", reason="first model")
print(run.run_id)
"""
    out = subprocess.run([sys.executable, "-c", code], env=_env(project), capture_output=True, text=True, check=True)
    return {"run_id": out.stdout.split()[-1]}


def _env(project: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    return {**env, "SHIPYARD_PROJECT_DIR": str(project), "COLUMNS": "160", "PYTHONWARNINGS": "ignore"}


def _reset_aliases(project: Path) -> None:
    """v2 champion, v1 previous, so that the next rollback has somewhere to go (untimed)."""
    code = f"""
import shipyard
from shipyard import registry
shipyard.init(project_dir={str(project)!r})
registry.swap_champion({MODEL!r}, "2", reason="bench: champion again before the next rollback")
"""
    subprocess.run([sys.executable, "-c", code], env=_env(project), capture_output=True, check=True)


def _wait_gone(folder: Path, timeout: float = 10.0) -> None:
    """Until the stopped workers' sockets are gone, so the next command starts a new worker."""
    deadline = time.monotonic() + timeout
    while any(folder.glob("*.sock")) and time.monotonic() < deadline:
        time.sleep(0.02)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    shipyard_cli = [str(bin_dir / "shipyard")] if (bin_dir / "shipyard").exists() else [sys.executable, "-m",
                                                                                       "shipyard.cli"]
    mlflow_cli = str(bin_dir / "mlflow") if (bin_dir / "mlflow").exists() else shutil.which("mlflow")
    root = Path(tempfile.mkdtemp(prefix="shipyard-bench-cli-"))
    try:
        project = root / "project"
        project.mkdir()
        run_id = _setup(project)["run_id"]
        db = f"sqlite:///{project / '.shipyard' / 'mlflow.db'}"
        commands = [  # label, arguments, expected exit code, reset aliases before
            ("review M/2", ["review", f"{MODEL}/2"], 0, False),
            ("approve M/2", ["approve", f"{MODEL}/2", "-m", "bench"], 0, False),
            ("rollback M (reads; no bundle)", ["rollback", MODEL, "--reason", "bench"], 2, True),
            ("runs", ["runs"], 0, False),
        ]
        workers = root / "workers"
        env = {**_env(project), "MLFLOW_TRACKING_URI": db, "SHIPYARD_CLI_WORKER_DIR": str(workers)}
        alone = {**env, "SHIPYARD_CLI_WORKER": "0"}
        rows: list[tuple[str, list[str], int, str, dict[str, str]]] = []  # label, argv, exit, before, env
        for label, arguments, expected, reset in commands:
            rows.append((f"shipyard {label}", [*shipyard_cli, *arguments], expected, "reset" if reset else "", env))
        rows.append(("first command: shipyard runs (starts the worker)", [*shipyard_cli, "runs"], 0, "stop", env))
        for label, arguments, expected, reset in commands:
            rows.append((f"own process: shipyard {label}", [*shipyard_cli, *arguments], expected,
                         "reset" if reset else "", alone))
        rows += [
            ("baseline: python -c 'import mlflow'", [sys.executable, "-c", "import mlflow"], 0, "", env),
            ("baseline: MlflowClient, one version read",
             [sys.executable, "-c", (f"from mlflow import MlflowClient; MlflowClient({db!r}, {db!r})"
                                       f".get_model_version({MODEL!r}, '2')")], 0, "", env),
        ]
        if mlflow_cli:
            rows.append(("baseline: mlflow runs describe", [mlflow_cli, "runs", "describe", "--run-id", run_id], 0,
                         "", env))
        times: dict[str, list[float]] = {label: [] for label, *_ in rows}
        subprocess.run([*shipyard_cli, "runs"], env=env, capture_output=True, cwd=project, check=True)  # warm up
        try:
            for _ in range(args.rounds):
                for label, argv, expected, before, row_env in rows:
                    if before == "reset":
                        _reset_aliases(project)
                    elif before == "stop":
                        subprocess.run([*shipyard_cli, "worker", "stop"], env=env, capture_output=True, check=True)
                        _wait_gone(workers)
                    started = time.perf_counter()
                    done = subprocess.run(argv, env=row_env, capture_output=True, text=True, cwd=project,
                                          check=False)
                    times[label].append(time.perf_counter() - started)
                    if done.returncode != expected:
                        print(f"{label}: exit {done.returncode}, expected {expected}\n{done.stderr}", file=sys.stderr)
                        return 1
        finally:
            subprocess.run([*shipyard_cli, "worker", "stop"], env=env, capture_output=True, check=False)
        lines = [["command", "median s", "min s", "max s", f"vs target {TARGET_S} s"]]
        for label, samples in times.items():
            median = statistics.median(samples)
            held = label.startswith("shipyard ")  # the worker's rows; the others are there to compare
            verdict = ("meets" if median <= TARGET_S else "over") if held else ""
            lines.append([label, f"{median:.2f}", f"{min(samples):.2f}", f"{max(samples):.2f}", verdict])
        print(f"{args.rounds} rounds, each command a new process, interleaved; embedded sqlite store; "
              f"{os.cpu_count()} CPUs")
        print_aligned(lines)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
