"""Monitoring benchmark: what drift measurement costs, beside computing the same figures the usual way.

Two parts, one run:

* drift: CPU seconds of one drift computation over a window of ``--rows`` rows ×
  ``--columns`` columns (half numeric, half string categories), shipyard's
  ``compute_drift`` against the frozen reference profile beside scipy on the raw
  reference rows (``wasserstein_distance`` ÷ reference std and ``jensenshannon``
  of the category shares, which is how Evidently computes its defaults), the two
  interleaved ``--repeats`` times; medians and their ratio. Both give the same
  verdicts (checked).
* serving (``--serving``): ``bench/serving.py --only shipyard --shipyard-variants
  nomon``: the same image with its drift monitor on and off (``SHIPYARD_MONITORING=0``),
  interleaved passes, req/s and p50/p99 side by side, ratios per pass.

Run:  .venv/bin/python bench/monitoring.py                 (drift only, ~1 min)
      .venv/bin/python bench/monitoring.py --serving       (and the served image, on and off; root Docker)
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from scipy.spatial.distance import jensenshannon
from scipy.stats import wasserstein_distance

from shipyard.monitoring import drift

HERE = Path(__file__).resolve().parent


def make_columns(rows: int, columns: int, seed: int, shift: float = 0.0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for i in range(columns):
        if i % 2 == 0:
            out[f"num{i}"] = rng.lognormal(0.0, 0.5, rows) + shift * 0.5
        else:
            out[f"cat{i}"] = rng.choice([f"v{k}" for k in range(12)], rows, p=_shares(12, i)).astype(object)
    return out


def _shares(n: int, seed: int) -> np.ndarray:
    weights = np.random.default_rng(seed).uniform(0.5, 2.0, n)
    return weights / weights.sum()


def scipy_drift(reference: dict[str, np.ndarray], current: dict[str, np.ndarray]) -> dict[str, float]:
    """Evidently's default methods computed directly with scipy on the raw rows of both samples."""
    out = {}
    for name, ref in reference.items():
        cur = current[name]
        if ref.dtype.kind == "f":
            out[name] = wasserstein_distance(ref, cur) / max(float(np.std(ref)), 0.001)
        else:
            keys = sorted(set(ref.tolist()) | set(cur.tolist()))
            index = {k: i for i, k in enumerate(keys)}
            p = np.bincount([index[v] for v in ref.tolist()], minlength=len(keys)) / len(ref)
            q = np.bincount([index[v] for v in cur.tolist()], minlength=len(keys)) / len(cur)
            out[name] = float(jensenshannon(p, q))
    return out


def cpu(fn, *args):  # noqa: ANN001, ANN201 - a timer
    started = time.process_time()
    result = fn(*args)
    return time.process_time() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows in the window (and in the reference)")
    parser.add_argument("--columns", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--serving", action="store_true", help="also run bench/serving.py with monitoring on and off")
    parser.add_argument("--seconds", type=float, default=5.0, help="with --serving: seconds per load cell")
    args = parser.parse_args()

    reference_rows = make_columns(args.rows, args.columns, seed=1)
    kinds = {n: "numeric" if v.dtype.kind == "f" else "categorical" for n, v in reference_rows.items()}
    started = time.process_time()
    profile = drift.reference_profile(reference_rows, source="training", kinds=kinds)
    profile_s = time.process_time() - started
    windows = {"same": make_columns(args.rows, args.columns, seed=2),
               "shifted": make_columns(args.rows, args.columns, seed=3, shift=1.0)}
    times: dict[str, list[float]] = {"shipyard": [], "scipy": []}
    for n in range(args.repeats):
        for which in (("shipyard", "scipy") if n % 2 == 0 else ("scipy", "shipyard")):
            for window in windows.values():
                if which == "shipyard":
                    seconds, _ = cpu(drift.compute_drift, profile, window)
                else:
                    seconds, _ = cpu(scipy_drift, reference_rows, window)
                times[which].append(seconds)
    for name, window in windows.items():
        ours = {c.column: c.drifted for c in drift.compute_drift(profile, window).columns}
        theirs = {c: d >= drift.DEFAULT_THRESHOLD for c, d in scipy_drift(reference_rows, window).items()}
        agree = sum(ours[c] == theirs[c] for c in ours)
        print(f"{name} window: {sum(ours.values())} of {len(ours)} columns drift; verdicts agree on {agree}/{len(ours)}")
    a, b = statistics.median(times["shipyard"]), statistics.median(times["scipy"])
    print(f"\ndrift over a {args.rows}-row × {args.columns}-column window, CPU seconds per computation "
          f"(medians of {len(times['shipyard'])}, interleaved):")
    print(f"  shipyard compute_drift (against the frozen profile)   {a:.3f} s")
    print(f"  scipy on the raw reference rows (Evidently's methods) {b:.3f} s")
    print(f"  ratio scipy ÷ shipyard                                {b / a:.2f}")
    print(f"  (freezing the reference profile of {args.rows} rows once, at packaging: {profile_s:.3f} s)")
    if args.serving:
        cmd = [sys.executable, str(HERE / "serving.py"), "--only", "shipyard", "--shipyard-variants", "nomon",
               "--concurrency", "1,8", "--rows", "1,100", "--cold-starts", "1", "--seconds", str(args.seconds)]
        print("\n$ " + " ".join(cmd[1:]), flush=True)
        subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()
