"""Trains a sklearn Pipeline on the CSV its ``data`` parameter names (or on rows it makes), gated on a holdout.

The rows have two numeric columns and a string category; the target follows
one fixed rule, so a column shifted in new data changes what the model sees,
not what it should predict. The gates judge the model on a holdout cut from
the same rows: a floor on accuracy, and no worse than the current champion of
``retrain-demo`` on those same rows.
"""

from metaflow import FlowSpec, Parameter, step

import shipyard
from shipyard.gates import champion_challenger, threshold

MODEL_NAME = "retrain-demo"
NUMERIC = ["tenure", "spend"]
CATEGORY = "plan"


def make_rows(n: int = 2000, seed: int = 7, shift: float = 0.0):
    """Rows of the flow's schema; ``shift`` moves ``tenure`` (the target rule stays the same)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    tenure = rng.normal(24.0, 8.0, n) + shift
    spend = rng.normal(50.0, 15.0, n)
    plan = rng.choice(["basic", "plus", "pro"], n, p=[0.5, 0.3, 0.2])
    bonus = np.select([plan == "pro", plan == "plus"], [12.0, 5.0], 0.0)
    score = tenure + 0.3 * spend + bonus + rng.normal(0.0, 3.0, n)
    return pd.DataFrame({"tenure": tenure, "spend": spend, CATEGORY: plan, "target": (score > 45.0).astype(int)})


@shipyard.track
class RetrainFlow(FlowSpec):
    data = Parameter("data", default="", help="CSV of training rows; empty: the flow makes its own")
    seed = Parameter("seed", default=7, type=int, help="Seed of the split (and of the rows it makes)")

    @shipyard.gate(
        threshold("accuracy >= 0.7", source="holdout"),
        champion_challenger("accuracy", tolerance=0.05),
        model_name=MODEL_NAME,
    )
    @step
    def start(self):
        import pandas as pd
        from sklearn.compose import ColumnTransformer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        frame = pd.read_csv(self.data) if self.data else make_rows(seed=self.seed)
        shipyard.log_dataset(frame, name="data")
        holdout = frame.sample(frac=0.3, random_state=self.seed)
        train = frame.drop(holdout.index)
        shipyard.log_dataset(train, name="train")
        shipyard.log_dataset(holdout, name="holdout", context="evaluation")
        features = [*NUMERIC, CATEGORY]
        model = Pipeline(
            [
                (
                    "prepare",
                    ColumnTransformer(
                        [
                            ("numeric", StandardScaler(), NUMERIC),
                            ("category", OneHotEncoder(handle_unknown="ignore"), [CATEGORY]),
                        ]
                    ),
                ),
                ("classify", LogisticRegression(max_iter=500)),
            ]
        ).fit(train[features], train["target"])
        shipyard.log_model(model, name="model", input_example=train[features].head(3))
        shipyard.log_metric("train_accuracy", float(model.score(train[features], train["target"])))
        self.holdout = holdout.reset_index(drop=True)
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    RetrainFlow()
