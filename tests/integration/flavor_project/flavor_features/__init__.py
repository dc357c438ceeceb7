"""A project module as a user's repository holds one: the data, a custom transformer and a model of each flavor.

It is copied into the test project and imported by the flow; it is not installed, so a model that uses
its classes must carry it (MLflow ``code_paths``) to be loaded anywhere else.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

NUMERIC = ["size", "age", "rooms"]
CATEGORY = "district"
DISTRICTS = ["north", "south", "east", "west", "centre"]


def make_frame(rows: int = 700, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """A regression frame: three numeric columns, a string category, a target that depends on all four."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "size": rng.uniform(20, 200, rows),
            "age": rng.uniform(0, 80, rows),
            "rooms": rng.integers(1, 7, rows).astype("float64"),
            CATEGORY: rng.choice(DISTRICTS, rows),
        }
    )
    bonus = frame[CATEGORY].map(dict(zip(DISTRICTS, [30.0, -10.0, 5.0, 0.0, 60.0], strict=True)))
    target = 3 * frame["size"] - 0.8 * frame["age"] + 12 * frame["rooms"] + bonus + rng.normal(0, 5, rows)
    return frame, pd.Series(target, name="target")


def split(rows: int = 700) -> tuple[pd.DataFrame, pd.Series, pd.DataFrame, pd.Series]:
    """(train X, train y, holdout X, holdout y): the last 150 rows are the holdout."""
    X, y = make_frame(rows)
    return X.iloc[:-150], y.iloc[:-150], X.iloc[-150:].reset_index(drop=True), y.iloc[-150:].reset_index(drop=True)


class ClippedLog(BaseEstimator, TransformerMixin):
    """log1p of values clipped at the training minimum: a transformer no installed library provides."""

    def fit(self, X: Any, y: Any = None) -> ClippedLog:
        self.floor_ = np.asarray(X, dtype="float64").min(axis=0)
        return self

    def transform(self, X: Any) -> Any:
        return np.log1p(np.clip(np.asarray(X, dtype="float64") - self.floor_, 0, None))


class MeanByDistrict:
    """A plain-Python model wrapped as an mlflow.pyfunc.PythonModel below."""

    def __init__(self, means: dict[str, float], overall: float) -> None:
        self.means = means
        self.overall = overall


def python_model(X: pd.DataFrame, y: pd.Series) -> Any:
    import mlflow.pyfunc

    class DistrictMean(mlflow.pyfunc.PythonModel):
        def __init__(self, table: MeanByDistrict) -> None:
            self.table = table

        def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
            return np.array([self.table.means.get(d, self.table.overall) for d in model_input[CATEGORY]])

    means = y.groupby(X[CATEGORY]).mean()
    return DistrictMean(MeanByDistrict({str(k): float(v) for k, v in means.items()}, float(y.mean())))


def train(flavor: str, X: pd.DataFrame, y: pd.Series) -> tuple[Any, Any]:
    """(model, input example) of ``flavor`` trained on (X, y)."""
    num = X[NUMERIC]
    if flavor == "sklearn":
        from sklearn.compose import ColumnTransformer
        from sklearn.linear_model import Ridge
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        columns = ColumnTransformer(
            [("num", StandardScaler(), NUMERIC), ("cat", OneHotEncoder(handle_unknown="ignore"), [CATEGORY])]
        )
        return Pipeline([("columns", columns), ("ridge", Ridge(alpha=0.1))]).fit(X, y), X.head(5)
    if flavor == "xgboost_sklearn":
        import xgboost

        return xgboost.XGBRegressor(n_estimators=40, max_depth=3).fit(num, y), num.head(5)
    if flavor == "xgboost_booster":
        import xgboost

        return xgboost.train({"max_depth": 3}, xgboost.DMatrix(num, label=y), num_boost_round=40), num.head(5)
    if flavor == "lightgbm_booster":
        import lightgbm

        data = lightgbm.Dataset(num, label=y)
        return lightgbm.train({"num_leaves": 15, "verbose": -1}, data, num_boost_round=40), num.head(5)
    if flavor == "lightgbm_sklearn":
        import lightgbm

        return lightgbm.LGBMRegressor(n_estimators=40, num_leaves=15, verbose=-1).fit(num, y), num.head(5)
    if flavor == "pipeline_xgboost":
        import xgboost
        from sklearn.compose import ColumnTransformer
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import OneHotEncoder

        columns = ColumnTransformer(
            [("log", ClippedLog(), NUMERIC), ("cat", OneHotEncoder(handle_unknown="ignore"), [CATEGORY])]
        )
        model = Pipeline([("columns", columns), ("xgb", xgboost.XGBRegressor(n_estimators=40, max_depth=3))])
        return model.fit(X, y), X.head(5)
    if flavor == "catboost":
        import catboost

        model = catboost.CatBoostRegressor(
            iterations=40, depth=4, verbose=0, cat_features=[CATEGORY], allow_writing_files=False
        )
        return model.fit(X, y), X.head(5)
    if flavor == "pytorch":
        import torch

        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(len(NUMERIC), 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
        inputs = torch.as_tensor(num.to_numpy(dtype="float32"))
        scale = float(y.abs().max())
        target = torch.as_tensor(y.to_numpy(dtype="float32") / scale).reshape(-1, 1)
        optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
        for _ in range(200):
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(net(inputs / 100), target)
            loss.backward()
            optimizer.step()
        return net.eval(), num.head(5)
    if flavor == "pyfunc":
        return python_model(X, y), X.head(5)
    raise ValueError(f"unknown flavor {flavor!r}")
