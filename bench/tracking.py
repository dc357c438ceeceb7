"""Tracking benchmark: shipyard next to plain MLflow, measured in one run against one store.

Usage (from the repository root)::

    .venv/bin/python bench/tracking.py            # full run, a few minutes
    .venv/bin/python bench/tracking.py --quick    # smoke run, well under a minute
    .venv/bin/python bench/tracking.py --datasets-only   # only the log_dataset size sweep

Everything is measured in the same process run against the same fresh sqlite
store, so the ratios compare like with like on this machine:

* caller cost per point: ``shipyard.log_metric`` vs ``mlflow.log_metric``
  (synchronous) vs ``mlflow.log_metric(..., synchronous=False)`` (MLflow's
  async logging queue);
* seconds until 1,000 points are durable: log them, then ``shipyard.flush()``
  / return of the last synchronous call / ``mlflow.flush_async_logging()``;
  each run is checked with ``MlflowClient.get_metric_history``;
* seconds for ``shipyard.log_model`` vs ``mlflow.sklearn.log_model`` with its
  defaults (same model, same input example), warm (in this process, after a
  first call) and cold (the first call in a fresh process);
* ``import shipyard`` vs ``import mlflow``, each in a fresh interpreter;
* seconds for ``shipyard.log_dataset`` vs ``mlflow.log_input(mlflow.data.from_pandas(df))``
  on the same 21-column frame (floats, ints, bools, strings with None, categoricals,
  dates, nullable ints, all with missing values) of 10k, 100k and 1M rows, interleaved;
  each size is checked: the dataset entity shipyard logged (schema, profile) is the one
  MLflow logged for the same frame.

Medians of several repeats are printed. The script exits non-zero when a
measurement itself fails (an exception, or points missing from the store); a
missed target is only marked in the table.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Python puts this script's folder first on sys.path; a sibling benchmark module must not
# shadow an installed distribution of the same name (e.g. ``packaging``, which MLflow imports),
# so the folder goes last: only names nothing installed has (``_shared``) are found there.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if not p or Path(p).resolve() != _HERE] + [str(_HERE)]

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

from _shared import mixed_frame, print_aligned  # noqa: E402

try:
    import shipyard
except ImportError:  # running from a checkout without an install
    sys.path.insert(0, str(_HERE.parent / "sdk"))
    import shipyard

TARGET_US_PER_POINT = 20.0
TARGET_DURABLE_S = 0.5
TARGET_LOG_MODEL_S = 1.0
TARGET_IMPORT_S = 0.15
TARGET_DATASET_S = 1.0  # for the largest frame of the sweep
DURABLE_POINTS = 1000

ASYNC_BUFFERED = "MLflow async, 1 s buffer"
LOG_BATCH = "hand-made log_batch"
COLUMNS = ("MLflow", "MLflow async", ASYNC_BUFFERED, LOG_BATCH)


@dataclass
class Row:
    """One line of the result table."""

    label: str
    unit: str
    shipyard: float | None = None
    others: dict[str, float | None] = field(default_factory=dict)
    target: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class Profile:
    repeats: int
    points_shipyard: int
    points_mlflow_sync: int
    points_mlflow_async: int
    model_repeats: int
    cold_repeats: int
    import_repeats: int
    dataset_rows: tuple[int, ...]
    dataset_repeats: int


FULL = Profile(
    repeats=3,
    points_shipyard=20_000,
    points_mlflow_sync=200,
    points_mlflow_async=1_000,
    model_repeats=5,
    cold_repeats=3,
    import_repeats=7,
    dataset_rows=(10_000, 100_000, 1_000_000),
    dataset_repeats=3,
)
QUICK = Profile(
    repeats=2,
    points_shipyard=2_000,
    points_mlflow_sync=50,
    points_mlflow_async=500,
    model_repeats=1,
    cold_repeats=1,
    import_repeats=3,
    dataset_rows=(10_000, 100_000),
    dataset_repeats=1,
)


# -- helpers ------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values)


def quiet_mlflow() -> None:
    import mlflow  # noqa: F401  (it sets up its loggers on import; quiet them after that)

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")


def training_data():
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    X, y = make_classification(n_samples=500, n_features=20, random_state=0)
    model = LogisticRegression(max_iter=500).fit(X, y)
    return model, X[:5]


@contextlib.contextmanager
def async_buffering(seconds: str | None):
    """Set MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS (read by MLflow's logging thread) for a block."""
    name = "MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS"
    before = os.environ.pop(name, None)
    if seconds is not None:
        os.environ[name] = seconds
    try:
        yield
    finally:
        os.environ.pop(name, None)
        if before is not None:
            os.environ[name] = before


def stored_points(client, run_id: str, key: str) -> int:
    return len(client.get_metric_history(run_id, key))


def expect_points(client, run_id: str, key: str, expected: int, who: str) -> None:
    found = stored_points(client, run_id, key)
    if found != expected:
        raise RuntimeError(f"{who}: {found} of {expected} points of {key!r} are in the store")


class Store:
    """The fresh project every measurement of this run writes to."""

    def __init__(self, project: Path) -> None:
        import mlflow
        from mlflow import MlflowClient

        self.project = project
        self.workspace = shipyard.init(project_dir=project)
        self.uri = self.workspace.tracking_uri
        mlflow.set_tracking_uri(self.uri)
        self.client = MlflowClient(self.uri)
        self.experiment_id = self._experiment("bench-mlflow")

    def _experiment(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        location = (self.workspace.artifacts_dir / name).as_uri()
        return self.client.create_experiment(name, artifact_location=location)

    @contextlib.contextmanager
    def mlflow_run(self):
        import mlflow

        with mlflow.start_run(experiment_id=self.experiment_id) as run:
            yield run.info.run_id


# -- measurements -------------------------------------------------------------------


def per_point(store: Store, prof: Profile) -> Row:
    """Microseconds the caller's thread spends per logged point."""
    import mlflow

    row = Row("caller time per point", "µs", target=TARGET_US_PER_POINT)
    ours: list[float] = []
    sync: list[float] = []
    asyn: list[float] = []
    buffered: list[float] = []
    for rep in range(prof.repeats):
        # shipyard: only an append on this thread; the writer sends in the background
        n = prof.points_shipyard
        with shipyard.start_run("bench-shipyard") as run:
            start = time.perf_counter()
            for i in range(n):
                shipyard.log_metric("loss", 1.0 / (i + 1), step=i)
            ours.append((time.perf_counter() - start) / n * 1e6)
        expect_points(store.client, run.run_id, "loss", n, "shipyard.log_metric")

        # MLflow, synchronous: one store transaction per point
        n = prof.points_mlflow_sync
        with store.mlflow_run() as run_id:
            start = time.perf_counter()
            for i in range(n):
                mlflow.log_metric("loss", 1.0 / (i + 1), step=i)
            sync.append((time.perf_counter() - start) / n * 1e6)
        expect_points(store.client, run_id, "loss", n, "mlflow.log_metric")

        # MLflow, asynchronous: enqueue; a thread pool writes each queued call (or, with
        # MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS, what gathered in that many seconds) as a batch
        n = prof.points_mlflow_async
        for buffer_seconds, out in ((None, asyn), ("1", buffered)):
            with async_buffering(buffer_seconds), store.mlflow_run() as run_id:
                start = time.perf_counter()
                for i in range(n):
                    mlflow.log_metric("loss", 1.0 / (i + 1), step=i, synchronous=False)
                out.append((time.perf_counter() - start) / n * 1e6)
                mlflow.flush_async_logging()
            expect_points(store.client, run_id, "loss", n, "mlflow.log_metric(synchronous=False)")
        print(f"  per point, repeat {rep + 1}: shipyard {ours[-1]:.1f} µs, MLflow {sync[-1]:.0f} µs, "
              f"MLflow async {asyn[-1]:.1f} µs, MLflow async buffered {buffered[-1]:.1f} µs", flush=True)
    row.shipyard = median(ours)
    row.others = {"MLflow": median(sync), "MLflow async": median(asyn), ASYNC_BUFFERED: median(buffered)}
    return row


def durable(store: Store, prof: Profile) -> Row:
    """Seconds from the first of 1,000 points until all of them are in the store."""
    import mlflow
    from mlflow.entities import Metric

    n = DURABLE_POINTS
    row = Row(f"{n:,} points durable", "s", target=TARGET_DURABLE_S)
    ours: list[float] = []
    sync: list[float] = []
    asyn: list[float] = []
    buffered: list[float] = []
    batch: list[float] = []
    for rep in range(prof.repeats):
        with shipyard.start_run("bench-shipyard") as run:
            start = time.perf_counter()
            for i in range(n):
                shipyard.log_metric("loss", 1.0 / (i + 1), step=i)
            shipyard.flush()
            ours.append(time.perf_counter() - start)
            expect_points(store.client, run.run_id, "loss", n, "shipyard.flush")

        with store.mlflow_run() as run_id:
            start = time.perf_counter()
            for i in range(n):
                mlflow.log_metric("loss", 1.0 / (i + 1), step=i)
            sync.append(time.perf_counter() - start)
            expect_points(store.client, run_id, "loss", n, "mlflow.log_metric")

        for buffer_seconds, out in ((None, asyn), ("1", buffered)):
            with async_buffering(buffer_seconds), store.mlflow_run() as run_id:
                start = time.perf_counter()
                for i in range(n):
                    mlflow.log_metric("loss", 1.0 / (i + 1), step=i, synchronous=False)
                mlflow.flush_async_logging()
                out.append(time.perf_counter() - start)
                expect_points(store.client, run_id, "loss", n, "mlflow.flush_async_logging")

        # hand-batched: collect the points yourself, then one MlflowClient.log_batch call
        with store.mlflow_run() as run_id:
            start = time.perf_counter()
            points = []
            for i in range(n):
                points.append(Metric("loss", 1.0 / (i + 1), int(time.time() * 1000), i))
            store.client.log_batch(run_id, metrics=points)
            batch.append(time.perf_counter() - start)
            expect_points(store.client, run_id, "loss", n, "MlflowClient.log_batch")
        print(f"  durable, repeat {rep + 1}: shipyard {ours[-1]:.3f} s, MLflow {sync[-1]:.3f} s, "
              f"MLflow async {asyn[-1]:.3f} s, MLflow async buffered {buffered[-1]:.3f} s, "
              f"log_batch {batch[-1]:.3f} s", flush=True)
    row.shipyard = median(ours)
    row.others = {
        "MLflow": median(sync),
        "MLflow async": median(asyn),
        ASYNC_BUFFERED: median(buffered),
        LOG_BATCH: median(batch),
    }
    return row


def log_model_warm(store: Store, prof: Profile) -> Row:
    """Seconds per log_model call once the process has logged a model before."""
    import mlflow
    import mlflow.pyfunc
    import mlflow.sklearn

    row = Row("log_model (warm)", "s", target=TARGET_LOG_MODEL_S)
    model, example = training_data()
    ours: list[float] = []
    theirs: list[float] = []
    with shipyard.start_run("bench-shipyard") as run:
        shipyard.log_model(model, name="warmup", input_example=example)  # first call: imports, caches
        for rep in range(prof.model_repeats):
            start = time.perf_counter()
            logged = shipyard.log_model(model, name=f"model{rep}", input_example=example)
            ours.append(time.perf_counter() - start)
    with store.mlflow_run():
        mlflow.sklearn.log_model(model, name="warmup", input_example=example)
        for rep in range(prof.model_repeats):
            start = time.perf_counter()
            info = mlflow.sklearn.log_model(model, name=f"model{rep}", input_example=example)
            theirs.append(time.perf_counter() - start)
            print(f"  log_model warm, repeat {rep + 1}: shipyard {ours[rep]:.3f} s, MLflow {theirs[-1]:.3f} s",
                  flush=True)
    # both models must load and predict like the original
    expected = model.predict(example).tolist()
    for uri in (logged.uri, info.model_uri):
        got = mlflow.pyfunc.load_model(uri).predict(example).tolist()
        if got != expected:
            raise RuntimeError(f"{uri} predicts {got}, the model predicts {expected}")
    tags = store.client.get_run(run.run_id).data.tags
    if tags.get(f"shipyard.model.model{prof.model_repeats - 1}.sha256") != logged.sha256:
        raise RuntimeError("shipyard.log_model did not record the model's SHA-256 on the run")
    row.shipyard = median(ours)
    row.others = {"MLflow": median(theirs)}
    return row


def log_model_cold(store: Store, prof: Profile) -> Row:
    """Seconds of the first log_model call of a fresh process (imports and caches included)."""
    row = Row("log_model (first call in a process)", "s", target=TARGET_LOG_MODEL_S)
    ours: list[float] = []
    theirs: list[float] = []
    for rep in range(prof.cold_repeats):
        ours.append(child(["--child", "log-model-shipyard", str(store.project)])["seconds"])
        theirs.append(child(["--child", "log-model-mlflow", str(store.project)])["seconds"])
        print(f"  log_model first call, repeat {rep + 1}: shipyard {ours[-1]:.3f} s, MLflow {theirs[-1]:.3f} s",
              flush=True)
    row.shipyard = median(ours)
    row.others = {"MLflow": median(theirs)}
    return row


def import_time(prof: Profile) -> Row:
    """Seconds of the import statement in a fresh interpreter (interpreter start-up excluded)."""
    row = Row("import", "s", target=TARGET_IMPORT_S)
    code = "import time, sys; t = time.perf_counter(); import {m}; sys.stdout.write(repr(time.perf_counter() - t))"
    times: dict[str, list[float]] = {"shipyard": [], "mlflow": []}
    for rep in range(prof.import_repeats):
        order = ("shipyard", "mlflow") if rep % 2 == 0 else ("mlflow", "shipyard")
        for module in order:
            out = subprocess.run(
                [sys.executable, "-c", code.format(m=module)],
                capture_output=True, text=True, env=child_env(), check=True, timeout=120,
            ).stdout
            times[module].append(float(out))
        print(f"  import, repeat {rep + 1}: shipyard {times['shipyard'][-1]:.3f} s, "
              f"MLflow {times['mlflow'][-1]:.3f} s", flush=True)
    row.shipyard = median(times["shipyard"])
    row.others = {"MLflow": median(times["mlflow"])}
    return row


def dataset_sweep(store: Store, prof: Profile) -> list[Row]:
    """Seconds per dataset logged, by frame size: shipyard.log_dataset vs mlflow.log_input(from_pandas)."""
    import mlflow
    import mlflow.data

    ours: dict[int, list[float]] = {rows: [] for rows in prof.dataset_rows}
    ours_cpu: dict[int, list[float]] = {rows: [] for rows in prof.dataset_rows}
    theirs: dict[int, list[float]] = {rows: [] for rows in prof.dataset_rows}
    frames = {rows: mixed_frame(rows) for rows in prof.dataset_rows}
    warmup = mixed_frame(100)  # first calls import and cache: measured elsewhere (log_model, import)
    with shipyard.start_run("bench-shipyard"):
        shipyard.log_dataset(warmup, name="warmup")
    with store.mlflow_run():
        mlflow.log_input(mlflow.data.from_pandas(warmup, name="warmup"), context="training")
    for rep in range(prof.dataset_repeats):
        for rows, frame in frames.items():
            run_ids: dict[str, str] = {}
            order = ("shipyard", "mlflow") if rep % 2 == 0 else ("mlflow", "shipyard")
            for who in order:
                if who == "shipyard":
                    with shipyard.start_run("bench-shipyard") as run:
                        start, cpu = time.perf_counter(), time.process_time()
                        shipyard.log_dataset(frame, name="train")
                        ours[rows].append(time.perf_counter() - start)
                        ours_cpu[rows].append(time.process_time() - cpu)
                    run_ids[who] = run.run_id
                else:
                    with store.mlflow_run() as run_id:
                        start = time.perf_counter()
                        mlflow.log_input(mlflow.data.from_pandas(frame, name="train"), context="training")
                        theirs[rows].append(time.perf_counter() - start)
                    run_ids[who] = run_id
            if rep == 0:
                expect_same_dataset(store, run_ids["shipyard"], run_ids["mlflow"], rows)
            print(f"  dataset {rows:,} rows, repeat {rep + 1}: shipyard {ours[rows][-1]:.3f} s "
                  f"(CPU {ours_cpu[rows][-1]:.3f} s), MLflow {theirs[rows][-1]:.3f} s", flush=True)
    # wall time is what the table compares; CPU time shows how much of it was waiting for a core
    print("  shipyard.log_dataset CPU time (median): "
          + ", ".join(f"{rows:,} rows {median(ours_cpu[rows]):.3f} s" for rows in prof.dataset_rows), flush=True)
    largest = max(prof.dataset_rows)
    return [
        Row(
            f"log_dataset {rows:,} × {frames[rows].shape[1]}",
            "s",
            shipyard=median(ours[rows]),
            others={"MLflow": median(theirs[rows])},
            target=TARGET_DATASET_S if rows == largest else None,
        )
        for rows in prof.dataset_rows
    ]


def expect_same_dataset(store: Store, ours: str, theirs: str, rows: int) -> None:
    """The dataset entity shipyard logged is the one MLflow logged for the same frame (the digest aside)."""
    found = {}
    for who, run_id in (("shipyard", ours), ("MLflow", theirs)):
        inputs = store.client.get_run(run_id).inputs.dataset_inputs
        if len(inputs) != 1:
            raise RuntimeError(f"{who}: {len(inputs)} datasets on run {run_id}, expected 1")
        found[who] = inputs[0].dataset
    for part in ("name", "source_type", "schema", "profile"):
        if getattr(found["shipyard"], part) != getattr(found["MLflow"], part):
            raise RuntimeError(f"{rows:,} rows: shipyard logged a different dataset {part} than MLflow:\n"
                               f"  {getattr(found['shipyard'], part)}\n  {getattr(found['MLflow'], part)}")
    if not found["shipyard"].schema:
        raise RuntimeError(f"{rows:,} rows: no schema was logged")


# -- child processes ----------------------------------------------------------------


def child_env() -> dict[str, str]:
    """Environment for children: they import the same shipyard as this process."""
    env = dict(os.environ)
    package_parent = str(Path(shipyard.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    return env


def child(args: list[str]) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *args],
        capture_output=True, text=True, env=child_env(), timeout=600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child {' '.join(args[:2])} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_child(kind: str, project: str) -> None:
    quiet_mlflow()
    model, example = training_data()
    if kind == "log-model-shipyard":
        shipyard.init(project_dir=project)
        with shipyard.start_run("bench-shipyard-cold"):
            start = time.perf_counter()
            shipyard.log_model(model, name="model", input_example=example)
            seconds = time.perf_counter() - start
    elif kind == "log-model-mlflow":
        import mlflow

        mlflow.set_tracking_uri(shipyard.init(project_dir=project).tracking_uri)
        experiment = mlflow.get_experiment_by_name("bench-mlflow")
        with mlflow.start_run(experiment_id=experiment.experiment_id if experiment else None):
            start = time.perf_counter()
            mlflow.sklearn.log_model(model, name="model", input_example=example)
            seconds = time.perf_counter() - start
    else:
        raise SystemExit(f"unknown child {kind!r}")
    print(json.dumps({"seconds": seconds}))


# -- report -------------------------------------------------------------------------


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "µs":
        return f"{value:,.1f} µs" if value < 100 else f"{value:,.0f} µs"
    return f"{value:.3f} s"


def print_table(rows: list[Row]) -> None:
    """Each other tool's cell holds its figure and, in brackets, how many times shipyard's it is."""
    header = ["measurement", "shipyard", *COLUMNS, "target (shipyard)", ""]
    lines = [header]
    for row in rows:
        if row.error:
            lines.append([row.label, "FAILED", *("" for _ in COLUMNS), "", row.error.splitlines()[0][:60]])
            continue
        cells = []
        for column in COLUMNS:
            other = row.others.get(column)
            cell = fmt(other, row.unit)
            if other is not None and row.shipyard:
                ratio = other / row.shipyard
                cell += f" ({ratio:,.0f}×)" if ratio >= 10 else f" ({ratio:.1f}×)"
            cells.append(cell)
        ok = row.shipyard is not None and row.target is not None and row.shipyard <= row.target
        lines.append([
            row.label,
            fmt(row.shipyard, row.unit),
            *cells,
            f"≤ {fmt(row.target, row.unit)}" if row.target is not None else "",
            ("ok" if ok else "MISSED") if row.target is not None else "",
        ])
    print_aligned(lines)
    print("(×: the other tool's figure divided by shipyard's; medians of the repeats)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer points and repeats: a smoke run")
    parser.add_argument("--datasets-only", action="store_true", help="only the log_dataset size sweep")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "PROJECT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(*args.child)
        return 0

    prof = QUICK if args.quick else FULL
    quiet_mlflow()
    import mlflow
    import sklearn

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"python {sys.version.split()[0]}, shipyard {shipyard.__version__}, mlflow {mlflow.__version__}, "
          f"scikit-learn {sklearn.__version__}, {os.cpu_count()} CPUs, load average {load}"
          + (", quick run" if args.quick else ""), flush=True)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-") as tmp:
        store = Store(Path(tmp))
        print(f"store: {store.uri}", flush=True)
        steps: list[tuple[str, str, Callable[[], Row]]] = [
            ("caller time per point", "µs", lambda: per_point(store, prof)),
            (f"{DURABLE_POINTS:,} points durable", "s", lambda: durable(store, prof)),
            ("log_model (warm)", "s", lambda: log_model_warm(store, prof)),
            ("log_model (first call in a process)", "s", lambda: log_model_cold(store, prof)),
            ("import", "s", lambda: import_time(prof)),
        ]
        for label, unit, measure in [] if args.datasets_only else steps:
            print(f"measuring {label} ...", flush=True)
            try:
                rows.append(measure())
            except Exception as exc:
                traceback.print_exc()
                rows.append(Row(label, unit, error=f"{type(exc).__name__}: {exc}"))
        print("measuring log_dataset by frame size ...", flush=True)
        try:
            rows.extend(dataset_sweep(store, prof))
        except Exception as exc:
            traceback.print_exc()
            rows.append(Row("log_dataset by frame size", "s", error=f"{type(exc).__name__}: {exc}"))
    print()
    print_table(rows)
    failed = [row.label for row in rows if row.error]
    if failed:
        print(f"\nmeasurement failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
