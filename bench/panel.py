"""Panel benchmark: how much live updates slow a training loop, measured inside the same run.

Usage (from the repository root)::

    .venv/bin/python bench/panel.py              # 4 runs of 24 alternating segments, about 6 minutes
    .venv/bin/python bench/panel.py --quick      # smoke run, under a minute
    .venv/bin/python bench/panel.py --in-kernel  # poll and draw on a kernel thread instead of the worker

The training loop is SGD on a synthetic classification set (scikit-learn),
epoch by epoch, logging the training log-loss and the validation accuracy with
``shipyard.log_metric`` at every step inside ``shipyard.start_run``. It runs in
this process, as a loop in a notebook cell would, and its BLAS calls use every
core: the worst case for a panel, whose render worker can only take CPU from
the loop. (A flow started with ``shipyard.run``/``run_async`` trains in
Metaflow's step processes instead.)

A panel is opened before the run (``shipyard.panel()``, its render worker
ready, as in a notebook) and follows it (``panel.watch(run_id)``: a poll per
second, a redraw when a point was added). The run is cut into segments of
equal epochs that alternate: in a "with" segment the panel updates live; in a
"without" segment its render worker is paused (SIGSTOP; with ``--in-kernel``
the poller is stopped), and it catches up when the next "with" segment
starts, which that segment pays for. Comparing neighbouring segments of the same run cancels
the slow drift of a shared machine's speed, which comparing separate runs
cannot: their times scatter by ±10 % here. The figure is the median, over
pairs of neighbouring segments, of with/without, with a bootstrap interval.
The script exits non-zero when the chart was not redrawn about once per
second (median time between frames over 1.1 s) while following.
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if not p or Path(p).resolve() != _HERE]

import argparse  # noqa: E402
import contextlib  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from typing import Any  # noqa: E402

TARGET_SLOWDOWN = 0.02


def _data(seed: int = 0) -> tuple[Any, Any, Any, Any]:
    from sklearn.datasets import make_classification
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    X, y = make_classification(n_samples=20_000, n_features=40, n_informative=12, random_state=seed)
    X_train, X_val, y_train, y_val = train_test_split(X, y, test_size=0.25, random_state=seed)
    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_val), y_train, y_val


def train(data: tuple[Any, Any, Any, Any], pairs: int, epochs: int, *, in_kernel: bool = False) -> dict[str, list[float]]:
    """One tracked run of ``2 * pairs`` segments of ``epochs`` epochs, alternating with and without live updates."""
    import numpy as np
    from sklearn.linear_model import SGDClassifier
    from sklearn.metrics import accuracy_score, log_loss

    import shipyard

    X_train, X_val, y_train, y_val = data
    classes = np.unique(y_train)
    clf = SGDClassifier(loss="log_loss", alpha=1e-4, random_state=7)
    panel = shipyard.panel()
    panel.metrics.isolated = not in_kernel
    panel.metrics.prepare(wait=True)  # as in a notebook: the panel is open before the run starts
    result: dict[str, list[float]] = {"with": [], "without": [], "redraws_per_s": [], "worker_cpu_per_s": [],
                                      "gaps": []}
    frames: list[float] = []
    panel.metrics.observe(lambda _: frames.append(time.perf_counter()), "renders")
    step = 0

    def segment() -> float:
        nonlocal step
        started = time.perf_counter()
        for _ in range(epochs):
            clf.partial_fit(X_train, y_train, classes=classes)
            shipyard.log_metric("train/log_loss", log_loss(y_train, clf.predict_proba(X_train)), step=step)
            shipyard.log_metric("val/accuracy", accuracy_score(y_val, clf.predict(X_val)), step=step)
            step += 1
        return time.perf_counter() - started

    try:
        with shipyard.start_run("panel-bench") as run:
            segment()  # warm-up: caches, the writer thread, the live log
            panel.watch(run.run_id, max_seconds=3600)
            for i in range(pairs):
                for kind in ("without", "with") if i % 2 == 0 else ("with", "without"):
                    if kind == "without":
                        with _paused(panel.metrics, run.run_id):
                            result["without"].append(segment())
                        continue
                    renders, cpu, first = panel.metrics.renders, _cpu_seconds(panel.metrics), len(frames)
                    seconds = segment()
                    shown = frames[first:]
                    result["gaps"].extend(b - a for a, b in zip(shown, shown[1:], strict=False))
                    result["with"].append(seconds)
                    result["redraws_per_s"].append((panel.metrics.renders - renders) / seconds)
                    result["worker_cpu_per_s"].append((_cpu_seconds(panel.metrics) - cpu) / seconds)
    finally:
        panel.close()
    return result


@contextlib.contextmanager
def _paused(view: Any, run_id: str) -> Iterator[None]:
    """No live updates for the block: the render worker is stopped (SIGSTOP), or the in-kernel poller stopped.

    The worker keeps what it has read and drawn; when it continues it catches
    up at once (one read of what was added, one frame), counted in the next
    "with" segment, as after any pause in following.
    """
    if view.isolated:
        os.kill(view._worker.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(view._worker.pid, signal.SIGCONT)
    else:
        view.stop()
        try:
            yield
        finally:
            view.watch(run_id, max_seconds=3600)


def _cpu_seconds(view: Any) -> float:
    """CPU time the render worker has used so far (0 when the view draws in-process)."""
    worker = getattr(view, "_worker", None)
    if worker is None or not view.isolated:
        return 0.0
    fields = Path(f"/proc/{worker.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _bootstrap_interval(ratios: list[float], rounds: int = 4000) -> tuple[float, float]:
    """A 95 % bootstrap interval of the median ratio: how far this machine's noise lets the figure move."""
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(rounds))
    return medians[int(rounds * 0.025)], medians[int(rounds * 0.975) - 1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4, help="training runs (a fresh panel for each)")
    parser.add_argument("--pairs", type=int, default=12, help="with/without segment pairs per run")
    parser.add_argument("--epochs", type=int, default=300, help="epochs per segment (about 2.5 s here)")
    parser.add_argument("--quick", action="store_true", help="1 run of 3 pairs of 150-epoch segments")
    parser.add_argument("--in-kernel", action="store_true",
                        help="poll and draw on a thread of this process instead of the render worker")
    args = parser.parse_args()
    runs, pairs, epochs = (1, 3, 150) if args.quick else (args.runs, args.pairs, args.epochs)

    warnings.filterwarnings("ignore")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    import shipyard

    project = Path(tempfile.mkdtemp(prefix="shipyard-panel-bench-"))
    os.environ["SHIPYARD_PROJECT_DIR"] = str(project)
    shipyard.init(project_dir=project)
    data = _data()
    train(data, 1, 20, in_kernel=args.in_kernel)  # warm-up: imports, fonts, the sqlite store

    ratios: list[float] = []
    merged: dict[str, list[float]] = {"with": [], "without": [], "redraws_per_s": [], "worker_cpu_per_s": [],
                                      "gaps": []}
    for r in range(runs):
        result = train(data, pairs, epochs, in_kernel=args.in_kernel)
        for key, values in result.items():
            merged[key].extend(values)
        pair_ratios = [w / wo for w, wo in zip(result["with"], result["without"], strict=True)]
        ratios.extend(pair_ratios)
        print(f"  run {r + 1}: with/without per segment pair: {', '.join(f'{x:.3f}' for x in pair_ratios)}",
              flush=True)

    ratio = statistics.median(ratios)
    low, high = _bootstrap_interval(ratios)
    slowdown = ratio - 1
    gaps = sorted(merged["gaps"])
    redraw_rate = sum(r * s for r, s in zip(merged["redraws_per_s"], merged["with"], strict=True)) / sum(merged["with"])
    print()
    print(f"live view: {'in-kernel thread' if args.in_kernel else 'render worker process'}")
    print(f"training loop: SGD on 15,000 x 40 rows, 2 metrics logged per epoch; {runs} run(s) x {pairs} pairs of "
          f"{epochs}-epoch segments")
    print(f"  median segment without live updates: {statistics.median(merged['without']):.3f} s")
    print(f"  median segment with live updates:    {statistics.median(merged['with']):.3f} s")
    print(f"  median ratio with/without:  {ratio:.4f}  → slowdown {slowdown * 100:+.2f} %"
          f"  (95 % interval {(low - 1) * 100:+.1f} % … {(high - 1) * 100:+.1f} %)"
          f"  (target ≤ {TARGET_SLOWDOWN * 100:.0f} %: {'met' if slowdown <= TARGET_SLOWDOWN else 'MISSED'})")
    print(f"  redraws while following: {redraw_rate:.2f} per second; time between frames: "
          + (f"median {statistics.median(gaps):.2f} s, 95th percentile {gaps[int(len(gaps) * 0.95)]:.2f} s, "
             f"longest {gaps[-1]:.2f} s" if gaps else "never two frames in one segment"))
    if not args.in_kernel:
        cpu = statistics.median(merged["worker_cpu_per_s"])
        print(f"  render worker CPU while following: {cpu * 1000:.0f} ms per second "
              f"({cpu / (os.cpu_count() or 1) * 100:.1f} % of this machine's {os.cpu_count()} cores)")
    if not gaps or statistics.median(gaps) > 1.1:
        print("error: the chart was redrawn less often than once per second while following", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
