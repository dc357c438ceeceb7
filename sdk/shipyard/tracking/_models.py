"""Logging models: flavor detection, pinned requirements, signatures, content hashes.

Q: Why pin requirements ourselves?
A: MLflow infers requirements by loading the model in a subprocess and
   watching imports, which costs seconds per call. The packages that matter
   are known from the flavor, and their exact versions are the ones running
   right now.

Q: Why create MLflow's LoggedModel here instead of letting ``log_model`` do it?
A: Without an MLflow active run, MLflow's fluent API works out the experiment
   and the source tags on its own: it asks its Databricks and notebook
   detectors (importing IPython in a plain script), imports GitPython, and
   files the model under the default experiment, with the model files outside
   the workspace. The shipyard run already knows its experiment and its
   lineage tags, so one ``create_logged_model`` call puts the model next to
   its run, and the flavor's ``log_model`` fills it (``model_id=``).

Q: Why download the model right after logging it, only to hash it?
A: The digest is the one of what a download of the model URI gives, so anyone
   can check it the same way. That download adds a ``registered_model_meta``
   file to the stored files, so hashing the saved folder would not match. For
   the embedded store the download is a local copy of a few files (~10 ms).
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._core import lineage
from .._core.errors import TrackingError
from .._core.hashing import sha256_tree
from ._context import ActiveRun, check_name, current
from ._environment import pinned

# flavor -> distributions its models need at load time, besides mlflow itself
_FLAVOR_PACKAGES = {
    "sklearn": ("scikit-learn", "numpy", "scipy", "pandas", "cloudpickle", "skops"),
    "xgboost": ("xgboost", "numpy", "scipy", "pandas"),
    "lightgbm": ("lightgbm", "numpy", "scipy", "pandas", "scikit-learn"),
    "pytorch": ("torch", "numpy", "pandas", "cloudpickle"),
    "pyfunc": ("numpy", "pandas", "cloudpickle"),
}

# run tags the LoggedModel carries too, as MLflow's fluent API would set them
_INHERITED_TAGS = ("mlflow.user", "mlflow.source.")


@dataclass(frozen=True)
class LoggedModel:
    """A model stored on a run."""

    name: str
    uri: str
    flavor: str
    sha256: str
    requirements: tuple[str, ...]
    run_id: str


def detect_flavor(model: Any) -> str:
    """MLflow flavor for ``model``, from the package its class comes from."""
    root = type(model).__module__.split(".")[0]
    if root == "sklearn":
        return "sklearn"
    if root == "xgboost":
        return "xgboost"
    if root == "lightgbm":
        # the scikit-learn API wrappers (LGBMClassifier) are sklearn estimators
        return "lightgbm" if type(model).__name__ == "Booster" else "sklearn"
    if "torch" in sys.modules and isinstance(model, sys.modules["torch"].nn.Module):
        return "pytorch"
    return "pyfunc"


def requirements_for(flavor: str) -> list[str]:
    return pinned("mlflow", *_FLAVOR_PACKAGES[flavor])


def log_model(
    model: Any,
    name: str = "model",
    *,
    input_example: Any = None,
    signature: Any = None,
    registered_model_name: str | None = None,
) -> LoggedModel:
    """Store a trained model on the active run.

    The flavor is detected (scikit-learn, XGBoost, LightGBM, PyTorch, else
    pyfunc), requirements are pinned to the versions running now, and the
    signature is inferred from ``input_example``.

    Returns:
        :class:`LoggedModel` with the model URI and the SHA-256 of its files.

    Example:
        >>> shipyard.log_model(clf, name="model", input_example=X_test[:5])   # doctest: +SKIP
    """
    import mlflow
    from mlflow.models import infer_signature

    run = current()
    check_name(name, "model")
    flavor = detect_flavor(model)
    requirements = requirements_for(flavor)
    if signature is None and input_example is not None:
        try:
            predict = model.forward if flavor == "pytorch" else model.predict
            signature = infer_signature(input_example, predict(input_example))
        except Exception as exc:
            raise TrackingError(
                f"Could not infer the signature of model {name!r} from its input example: {exc}",
                hint="Pass an input_example the model can predict on, or an explicit signature=.",
            ) from exc
    python_model = None
    if flavor == "pyfunc":
        python_model = model if isinstance(model, mlflow.pyfunc.PythonModel) else _as_python_model(model)
    stored = _create_logged_model(run, name)
    kwargs: dict[str, Any] = dict(
        name=name,
        signature=signature,
        input_example=input_example,
        pip_requirements=requirements,
        registered_model_name=registered_model_name,
        run_id=run.run_id,
        model_id=stored.model_id,
    )
    if flavor == "sklearn":
        kwargs["skops_trusted_types"] = _own_skops_types(model)
    try:
        if python_model is not None:
            # what mlflow.pyfunc.log_model does, plus run_id, which that function does not take
            from mlflow.models import Model

            info = Model.log(artifact_path=None, flavor=mlflow.pyfunc, python_model=python_model, **kwargs)
        else:
            info = getattr(mlflow, flavor).log_model(model, **kwargs)
    except BaseException:
        _mark_failed(run, stored.model_id)
        raise
    digest = _downloaded_sha256(info.model_uri)
    run.buffer.put_tags(
        {
            lineage.model_tag(name, "uri"): info.model_uri,
            lineage.model_tag(name, "flavor"): flavor,
            lineage.model_tag(name, "sha256"): digest,
        }
    )
    return LoggedModel(name, info.model_uri, flavor, digest, tuple(requirements), run.run_id)


def _create_logged_model(run: ActiveRun, name: str) -> Any:
    """A PENDING MLflow LoggedModel in the run's experiment, with the run's params and source tags."""
    from mlflow.exceptions import MlflowException

    from ._client import client_for, tracking_error

    client = client_for(run.workspace)
    try:
        source = client.get_run(run.run_id)
        return client.create_logged_model(
            experiment_id=source.info.experiment_id,
            name=name,
            source_run_id=run.run_id,
            tags=_model_tags(source.data.tags),
            params=dict(source.data.params),
        )
    except MlflowException as exc:
        raise tracking_error(run.workspace, exc) from exc


def _model_tags(run_tags: dict[str, str]) -> dict[str, str]:
    """User and source tags, as MLflow's fluent API sets them, with the run's own values first."""
    from mlflow.tracking.context.default_context import DefaultRunContext

    tags = DefaultRunContext().tags()  # user, source name and type: cheap, unlike git or notebook lookups
    tags.update((k, v) for k, v in run_tags.items() if k.startswith(_INHERITED_TAGS))
    return tags


def _mark_failed(run: ActiveRun, model_id: str) -> None:
    from mlflow.entities import LoggedModelStatus

    from ._client import client_for

    with contextlib.suppress(Exception):  # the original error is the one worth raising
        client_for(run.workspace).finalize_logged_model(model_id, LoggedModelStatus.FAILED)


def _downloaded_sha256(model_uri: str) -> str:
    """SHA-256 of the files a download of ``model_uri`` gives, which is how users check it.

    Note: a ``models:/`` download adds a ``registered_model_meta`` file to what the
    store holds, so hashing the saved or stored folder would give another digest.
    """
    import mlflow.artifacts

    with tempfile.TemporaryDirectory() as tmp:
        return sha256_tree(Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp)))


def _own_skops_types(model: Any) -> list[str]:
    """Types skops does not trust by default that this model, serialized here, contains.

    Q: Is trusting them safe?
    A: The file is the one this process writes; every later load goes through
       the SHA-256 recorded now (packaging verifies it before loading), so a
       file changed by anyone else is refused before skops ever reads it.
    """
    import skops.io

    return sorted(skops.io.get_untrusted_types(data=skops.io.dumps(model)))


def _as_python_model(model: Any) -> Any:
    import mlflow.pyfunc

    if not hasattr(model, "predict"):
        raise TrackingError(
            f"Cannot log a {type(model).__name__}: it is not a scikit-learn, XGBoost, LightGBM or PyTorch "
            "model and has no predict() method.",
            hint="Wrap it in an mlflow.pyfunc.PythonModel, or give it a predict(model_input) method.",
        )

    class PredictModel(mlflow.pyfunc.PythonModel):
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
            return self.inner.predict(model_input)

    return PredictModel(model)
