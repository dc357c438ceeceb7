"""Panel benchmark: how much a live panel slows a training loop in the same process.

Usage (from the repository root)::

    .venv/bin/python bench/panel.py              # 5 alternating repeats of each, about 2 minutes
    .venv/bin/python bench/panel.py --quick      # smoke run, under a minute

The training loop is SGD on a synthetic classification set (scikit-learn),
epoch by epoch, logging the training log-loss and the validation accuracy with
``shipyard.log_metric`` at every step inside ``shipyard.start_run``. It runs in
this process, as a loop in a notebook cell would; that is the worst case for
the panel, whose polling thread shares the interpreter (and its GIL) with the
loop. A flow started with ``shipyard.run``/``run_async`` trains in Metaflow's
step processes instead, where the panel competes only for CPU cores.

"with panel" means ``shipyard.panel()`` opened before the loop (its render worker ready) and
``panel.watch(run_id)`` following the run at the panel's normal rate (one poll
per second, a redraw when a point was added). Repeats alternate without/with
on the same data and the same seeds; medians are compared. The script exits
non-zero when a measurement fails (e.g. the panel did not redraw during a run).
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if not p or Path(p).resolve() != _HERE]

import argparse  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
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


def train(data: tuple[Any, Any, Any, Any], epochs: int, *, with_panel: bool, in_kernel: bool = False) -> dict[str, float]:
    """One tracked training run; returns the loop's wall time and, with the panel, its redraw count."""
    import numpy as np
    from sklearn.linear_model import SGDClassifier
    from sklearn.metrics import accuracy_score, log_loss

    import shipyard

    X_train, X_val, y_train, y_val = data
    classes = np.unique(y_train)
    clf = SGDClassifier(loss="log_loss", alpha=1e-4, random_state=7)
    panel = shipyard.panel() if with_panel else None
    if panel is not None:
        panel.metrics.isolated = not in_kernel
        panel.metrics.prepare(wait=True)  # as in a notebook: the panel is open before the run starts
    with shipyard.start_run("panel-bench") as run:
        if panel is not None:
            panel.watch(run.run_id, max_seconds=600)
            renders_before = panel.metrics.renders
        started = time.perf_counter()
        for epoch in range(epochs):
            clf.partial_fit(X_train, y_train, classes=classes)
            shipyard.log_metric("train/log_loss", log_loss(y_train, clf.predict_proba(X_train)), step=epoch)
            shipyard.log_metric("val/accuracy", accuracy_score(y_val, clf.predict(X_val)), step=epoch)
        seconds = time.perf_counter() - started
        if panel is not None:
            redraws = panel.metrics.renders - renders_before
    if panel is not None:
        panel.metrics.stop()
        panel.close()
        return {"seconds": seconds, "redraws": float(redraws)}
    return {"seconds": seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs of each kind (alternating)")
    parser.add_argument("--epochs", type=int, default=400, help="epochs per training run")
    parser.add_argument("--quick", action="store_true", help="2 repeats of 120 epochs")
    parser.add_argument("--in-kernel", action="store_true",
                        help="poll and draw on a thread of this process instead of the render worker")
    args = parser.parse_args()
    repeats, epochs = (2, 120) if args.quick else (args.repeats, args.epochs)

    warnings.filterwarnings("ignore")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    import shipyard

    project = Path(tempfile.mkdtemp(prefix="shipyard-panel-bench-"))
    os.environ["SHIPYARD_PROJECT_DIR"] = str(project)
    shipyard.init(project_dir=project)
    data = _data()
    train(data, 20, with_panel=True)  # warm-up: imports, fonts, the sqlite store
    train(data, 20, with_panel=False)

    without: list[float] = []
    with_panel: list[float] = []
    redraws: list[float] = []
    for i in range(repeats):
        for kind in (("without", "with") if i % 2 == 0 else ("with", "without")):
            result = train(data, epochs, with_panel=kind == "with", in_kernel=args.in_kernel)
            (with_panel if kind == "with" else without).append(result["seconds"])
            if kind == "with":
                redraws.append(result["redraws"])
            print(f"  repeat {i + 1} {kind:>7} panel: {result['seconds']:.3f} s"
                  + (f" ({result['redraws']:.0f} redraws)" if kind == "with" else ""), flush=True)

    base, attached = statistics.median(without), statistics.median(with_panel)
    slowdown = attached / base - 1
    print()
    print(f"live view: {'in-kernel thread' if args.in_kernel else 'render worker process'}")
    print(f"training loop: {epochs} epochs of SGD on 15,000 x 40 rows, 2 metrics logged per epoch")
    print(f"  median without panel: {base:.3f} s   (runs: {', '.join(f'{s:.3f}' for s in without)})")
    print(f"  median with panel:    {attached:.3f} s   (runs: {', '.join(f'{s:.3f}' for s in with_panel)})")
    print(f"  ratio with/without:   {attached / base:.4f}  → slowdown {slowdown * 100:+.2f} %"
          f"  (target ≤ {TARGET_SLOWDOWN * 100:.0f} %: {'met' if slowdown <= TARGET_SLOWDOWN else 'MISSED'})")
    print(f"  panel redraws per run: {', '.join(f'{r:.0f}' for r in redraws)} "
          f"(about one per second of training: {statistics.median(redraws) / attached:.2f}/s)")
    if min(redraws) < 2:
        print("error: the panel did not redraw during a run; the measurement is void", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
