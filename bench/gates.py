"""Gate benchmark: shipyard's gates next to the same checks written by hand with pandas and scikit-learn.

Usage (from the repository root)::

    .venv/bin/python bench/gates.py            # 1,000,000-row holdout, a few minutes
    .venv/bin/python bench/gates.py --quick    # 100,000 rows, well under a minute

One holdout of 21 columns of mixed types (floats and nullable integers with
missing values, ints, bools, text, categoricals, datetimes, a string column)
and one fitted scikit-learn pipeline. The same four checks are run by both
sides, interleaved (shipyard, by hand, shipyard, ...), and each side's median
is printed with the ratio:

* a metric threshold computed on the holdout (``accuracy >= 0.5``);
* a data contract on all 21 columns (exact dtype, range, categories, null rate);
* slice parity of accuracy across a text column;
* a custom gate (share of predictions equal to the label).

Rows:

* ``evaluation``: shipyard's evaluation of the four gates with the fitted
  model's ``predict`` (the library's cost: what shipyard adds is the
  difference to the hand-written code, which predicts once too);
* ``check, record=False``: ``shipyard.check`` on a registered version, which
  also loads the logged model and predicts through MLflow's pyfunc (input
  schema enforcement included);
* ``check, recorded``: the same, writing the holdout as Parquet, the reports,
  the tags and the audit record;
* ``model predict``: the pipeline's ``predict`` alone and through MLflow's
  pyfunc, for scale.

The script exits non-zero when a measurement fails or the two sides disagree
on a figure.
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
import logging  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

from _shared import WORDS, mixed_frame, print_aligned  # noqa: E402

try:
    import shipyard
except ImportError:  # running from a checkout without an install
    sys.path.insert(0, str(_HERE.parent / "sdk"))
    import shipyard

SLICE = "text0"


@dataclass
class Row:
    label: str
    shipyard: float | None
    by_hand: float | None
    note: str = ""


def median(values: list[float]) -> float:
    return statistics.median(values)


def holdout_frame(rows: int, seed: int = 0) -> Any:
    """The benchmarks' 21 mixed feature columns (missing values where the dtype allows) and a target."""
    import numpy as np

    frame = mixed_frame(rows, seed)
    rng = np.random.default_rng(seed + 1)
    signal = np.nan_to_num(frame["float0"].to_numpy()) + (frame["int0"].to_numpy() > 500) + (frame["text0"] == "red")
    frame["target"] = (signal + rng.normal(scale=0.5, size=rows) > 0.8).astype(int)
    return frame


def fitted_model(frame: Any) -> Any:
    """A pipeline over numeric, boolean and text columns; the other columns pass by unused."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    numeric = [f"float{i}" for i in range(6)] + [f"int{i}" for i in range(4)] + ["bool0", "bool1"]
    prep = ColumnTransformer(
        [
            ("num", SimpleImputer(), numeric),
            (
                "text",
                make_pipeline(SimpleImputer(strategy="constant", fill_value="none"), OneHotEncoder(handle_unknown="ignore")),
                ["text0"],
            ),
        ]
    )
    train = frame.iloc[:50_000]
    return make_pipeline(prep, LogisticRegression(max_iter=300)).fit(train.drop(columns="target"), train["target"])


def contract_rules(frame: Any) -> dict[str, dict[str, Any]]:
    """Per column: exact dtype, range (numeric), categories (text and categorical), a null-rate bound."""
    import pandas as pd

    rules: dict[str, dict[str, Any]] = {}
    for name in frame.columns:
        series = frame[name]
        rule: dict[str, Any] = {"dtype": str(series.dtype), "max_null_rate": 0.2}
        if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
            rule.update(min=float(series.min()) - 1.0, max=float(series.max()))  # one value per column is out of range
            rule["max"] = float(series.quantile(0.999))
        elif name.startswith(("text", "category", "label")):
            rule["categories"] = WORDS[:-1]  # "yellow" is unseen
        rules[name] = rule
    return rules


def shipyard_gates(rules: dict[str, dict[str, Any]]) -> list[Any]:
    from shipyard.gates import custom, data_contract, slice_parity, threshold

    def agreement(ctx: Any) -> float:
        return float((ctx.predict() == ctx.y.to_numpy()).mean())

    return [
        threshold("accuracy >= 0.5", source="holdout"),
        data_contract(rules),
        slice_parity(SLICE, "accuracy", max_gap=0.5, min_rows=10),
        custom(agreement, bound=0.5),
    ]


def by_hand(model: Any, frame: Any, rules: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The four checks as a careful engineer writes them with pandas and scikit-learn."""
    import pandas as pd
    from sklearn.metrics import accuracy_score

    y = frame["target"].to_numpy()
    predicted = model.predict(frame.drop(columns="target"))
    accuracy = accuracy_score(y, predicted)
    violations = 0
    for name, rule in rules.items():
        series = frame[name]
        if series.isna().mean() > rule["max_null_rate"]:
            violations += 1
        if str(series.dtype) != rule["dtype"]:
            violations += 1
        values = series.dropna()
        if "min" in rule and ((values < rule["min"]).any() or (values > rule["max"]).any()):
            violations += 1
        if "categories" in rule and set(map(str, values.unique())) - set(rule["categories"]):
            violations += 1
    column = frame[SLICE].fillna("<missing>")
    correct = predicted == y
    groups = pd.Series(correct).groupby(column.to_numpy()).mean()
    gap = float(groups.max() - groups.min())
    agreement = float(correct.mean())
    return {"accuracy": accuracy, "violations": violations, "gap": gap, "agreement": agreement}


def shipyard_figures(report: Any) -> dict[str, Any]:
    return {
        "accuracy": report["threshold.accuracy"].value,
        "violations": int(report["contract.holdout"].value),
        "gap": report[f"slice.{SLICE}"].value,
        "agreement": report["custom.agreement"].value,
    }


def evaluate_only(model: Any, frame: Any, gates: list[Any]) -> Any:
    """shipyard's gate evaluation on an in-memory model: what ``check`` does once the model is loaded."""
    from shipyard.gates._check import _run_gates
    from shipyard.gates._evaluate import EvalContext, Subject
    from shipyard.gates._report import GateReport

    subject = Subject("bench", model.predict, [c for c in frame.columns if c != "target"])
    ctx = EvalContext(subject, {}, None, frame, "target", {"holdout": frame}, exclude=("target", SLICE))
    results, _ = _run_gates(gates, ctx)
    return GateReport(candidate={"run_id": "bench"}, results=results)


def agree(ours: dict[str, Any], theirs: dict[str, Any], report: Any) -> None:
    for key, value in theirs.items():
        if ours[key] is None or abs(float(ours[key]) - float(value)) > 1e-9:
            print(report.summary(), file=sys.stderr)
            raise RuntimeError(f"shipyard and the hand-written code disagree on {key}: {ours[key]} vs {value}")


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def measure(rows: int, repeats: int) -> list[Row]:
    from shipyard import registry, tracking

    out: list[Row] = []
    frame = holdout_frame(rows)
    model = fitted_model(frame)
    rules = contract_rules(frame)
    gates = shipyard_gates(rules)
    features = frame.drop(columns="target")

    with tempfile.TemporaryDirectory() as tmp:
        ws = shipyard.init(project_dir=Path(tmp))
        with shipyard.start_run("bench-gates") as run:
            # the example holds the columns the pipeline reads (MLflow's schema enforcement cannot take a
            # categorical column), and enough rows that each shows its missing values
            used = [c for _, _, cols in model[0].transformers for c in cols]
            shipyard.log_model(model, name="model", input_example=features[used].head(1000))
        version = registry.register("bench-gates", run.run_id)
        pyfunc = tracking.load_model(version.uri, workspace=ws)

        ev, hand, chk, rec, raw, py = [], [], [], [], [], []
        for rep in range(repeats):
            seconds, report = timed(lambda: evaluate_only(model, frame, gates))
            ev.append(seconds)
            seconds, figures = timed(lambda: by_hand(model, frame, rules))
            hand.append(seconds)
            agree(shipyard_figures(report), figures, report)
            seconds, checked = timed(lambda: shipyard.check(str(version), gates, frame, record=False))
            chk.append(seconds)
            agree(shipyard_figures(checked), figures, checked)
            if rep == 0:
                seconds, _ = timed(lambda: shipyard.check(str(version), gates, frame))
                rec.append(seconds)
            raw.append(timed(lambda: model.predict(features))[0])
            py.append(timed(lambda: pyfunc.predict(features))[0])
        hand_s = median(hand)
        out.append(Row(f"evaluation, {rows:,} rows", median(ev), hand_s, "fitted model's predict"))
        out.append(Row("check, record=False", median(chk), hand_s, "model loaded, predicts through MLflow pyfunc"))
        out.append(Row("check, recorded", median(rec), hand_s, "+ Parquet, reports, tags, audit (1 run)"))
        out.append(Row("model predict (sklearn)", median(raw), None))
        out.append(Row("model predict (MLflow pyfunc)", median(py), None))
    return out


def print_table(rows: list[Row]) -> None:
    header = ["measurement", "shipyard", "by hand (pandas + sklearn)", "note"]
    lines = [header]
    for row in rows:
        hand = "" if row.by_hand is None else f"{row.by_hand:.2f} s"
        if row.by_hand and row.shipyard:
            ratio = row.shipyard / row.by_hand
            hand += f" ({ratio:.2f}× shipyard/by hand)"
        lines.append([row.label, "" if row.shipyard is None else f"{row.shipyard:.2f} s", hand, row.note])
    print_aligned(lines)
    print("(×: shipyard's time divided by the hand-written code's; medians of interleaved repeats)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 rows, 2 repeats: a smoke run")
    parser.add_argument("--rows", type=int, default=None, help="holdout rows (default 1,000,000; 100,000 with --quick)")
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()
    rows = args.rows or (100_000 if args.quick else 1_000_000)
    repeats = args.repeats or (2 if args.quick else 3)
    import mlflow  # noqa: F401  (it sets up its loggers on import; quiet them after that)

    del mlflow
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    try:
        rows_out = measure(rows, repeats)
    except Exception:
        traceback.print_exc()
        return 1
    print_table(rows_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
