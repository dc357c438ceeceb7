"""The predict path packaging chooses for real MLflow models, checked against ``mlflow.pyfunc`` (no Docker)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shipyard.monitoring import serving
from shipyard.packaging import predict_path
from shipyard.packaging.model_files import input_schema_from_signature, read_mlmodel, signature_inputs
from shipyard.packaging.service_source import schema_to_dict


def _choose(model_dir: Path) -> predict_path.PredictPath:
    mlmodel = read_mlmodel(model_dir)
    return predict_path.choose(model_dir, mlmodel, input_schema_from_signature(signature_inputs(mlmodel)))


def _numeric_frame(rows: int = 200) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(3)
    X = pd.DataFrame(rng.normal(size=(rows, 4)), columns=["mean radius", "b", "c", "d"])
    X["n"] = rng.integers(0, 5, rows)
    y = (X["mean radius"] + X["n"] > 1).astype(int).to_numpy()
    return X, y


def _served(model_dir: Path, path: predict_path.PredictPath, rows: pd.DataFrame) -> list:
    mlmodel = read_mlmodel(model_dir)
    schema = schema_to_dict(input_schema_from_signature(signature_inputs(mlmodel)))
    predictor = serving.Predictor(model_dir, path.loader, schema, path.input_format)
    serving.gc.unfreeze()  # the service freezes what it loaded for its life; this test process goes on
    columns = {name: rows[name].tolist() for name in rows.columns}
    return predictor.predict(columns)


def test_a_numeric_scikit_learn_pipeline_is_served_from_a_matrix_without_mlflow_or_pandas(tmp_path: Path) -> None:
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import SGDClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = _numeric_frame()
    model = Pipeline([("scale", StandardScaler()), ("clf", SGDClassifier(loss="log_loss", random_state=7))]).fit(X, y)
    mlflow.sklearn.save_model(
        model, tmp_path / "m", serialization_format="skops", skops_trusted_types=[],
        signature=infer_signature(X, model.predict(X)), input_example=X.head(5),
    )
    path = _choose(tmp_path / "m")
    assert path.loader["flavor"] == "sklearn" and path.loader["format"] == "skops"
    assert path.input_format == "numpy" and path.checked_rows == 5
    assert not path.needs_mlflow and not path.needs_pandas, path.notes
    expected = mlflow.pyfunc.load_model(str(tmp_path / "m")).predict(X).tolist()
    assert _served(tmp_path / "m", path, X) == expected  # every row, not only the example's


def test_string_categories_and_nan_are_served_from_a_typed_frame_that_keeps_pandas(tmp_path: Path) -> None:
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    X, _ = _numeric_frame()
    X["plan"] = np.where(X["b"] > 0, "pro", "basic")
    X.loc[::7, "c"] = np.nan
    y = X["mean radius"] * 2 + (X["plan"] == "pro")
    model = Pipeline([
        ("prep", ColumnTransformer([("cat", OneHotEncoder(handle_unknown="ignore"), ["plan"])], remainder="passthrough")),
        ("reg", HistGradientBoostingRegressor(max_iter=20)),
    ]).fit(X, y)
    example = X.head(5).fillna(0.0)
    mlflow.sklearn.save_model(
        model, tmp_path / "m", serialization_format="cloudpickle",
        signature=infer_signature(X, model.predict(X)), input_example=example,
    )
    path = _choose(tmp_path / "m")
    assert path.loader["format"] == "cloudpickle"
    assert path.input_format == "pandas" and path.needs_pandas and not path.needs_mlflow
    expected = mlflow.pyfunc.load_model(str(tmp_path / "m")).predict(X)
    rows = X.astype(object).where(X.notna(), None)  # as JSON sends a missing value
    np.testing.assert_array_equal(np.asarray(_served(tmp_path / "m", path, rows)), expected)


def test_an_xgboost_booster_that_checks_feature_names_falls_back_to_a_frame(tmp_path: Path) -> None:
    xgb = pytest.importorskip("xgboost")
    import mlflow.xgboost
    from mlflow.models import infer_signature

    X, y = _numeric_frame()
    booster = xgb.train({"max_depth": 2}, xgb.DMatrix(X, label=y), num_boost_round=5)
    mlflow.xgboost.save_model(
        booster, tmp_path / "m", signature=infer_signature(X, booster.predict(xgb.DMatrix(X))), input_example=X.head(5)
    )
    path = _choose(tmp_path / "m")
    assert path.loader["flavor"] == "xgboost" and path.input_format == "pandas"
    assert any("numpy input refused" in note for note in path.notes), path.notes
    expected = mlflow.pyfunc.load_model(str(tmp_path / "m")).predict(X).tolist()
    assert _served(tmp_path / "m", path, X) == expected


def test_without_an_input_example_numeric_models_are_compared_on_synthetic_rows(tmp_path: Path) -> None:
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import Ridge

    X, y = _numeric_frame()
    model = Ridge().fit(X, y)
    mlflow.sklearn.save_model(model, tmp_path / "m", signature=infer_signature(X, model.predict(X)))
    path = _choose(tmp_path / "m")
    assert path.input_format == "numpy" and path.checked_rows == 3
    assert any("rows of -1, 0 and 1" in note for note in path.notes)


def test_a_custom_python_model_is_served_by_mlflow_pyfunc(tmp_path: Path) -> None:
    import mlflow.pyfunc

    class Doubler(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input["x"] * 2

    frame = pd.DataFrame({"x": [1.0, 2.0]})
    mlflow.pyfunc.save_model(tmp_path / "m", python_model=Doubler(), input_example=frame)
    mlmodel = read_mlmodel(tmp_path / "m")
    schema = input_schema_from_signature(signature_inputs(mlmodel))
    path = predict_path.choose(tmp_path / "m", mlmodel, schema)
    assert path.loader == {"flavor": "python_function"} and path.needs_mlflow
