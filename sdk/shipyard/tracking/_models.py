"""Models on runs: logging them (flavor detection, pinned requirements, signatures, content
hashes), and downloading and loading them back from the workspace's store.

Q: Why pin requirements ourselves?
A: MLflow infers requirements by loading the model in a subprocess and
   watching imports, which costs seconds per call. The packages that matter
   are those of the classes the model is made of (``_requirements`` walks its
   object graph) plus what the flavor needs to load it, and their exact
   versions are the ones running right now. The project's own modules the
   model uses ship with it as MLflow ``code_paths``.

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
   can check it the same way (:func:`model_sha256` leaves out the
   ``registered_model_meta`` file MLflow's own ``models:/`` downloads add). For
   the embedded store the download is a local copy of a few files (~10 ms).

Q: Why does :func:`download_model` resolve ``models:/`` URIs itself?
A: ``mlflow.artifacts.download_artifacts`` takes a tracking and a registry
   URI, but it looks registered versions and logged models up through
   MLflow's process-wide URIs all the same (its ``models:/`` repository builds
   a bare ``MlflowClient()``). The workspace's client finds where the files
   are stored; the download of that location then uses the URIs it is given,
   so no process-wide state is needed, and no lock held for a long download.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._core import lineage
from .._core.errors import ShipyardError, TrackingError
from .._core.hashing import DOWNLOAD_ONLY_FILES, model_sha256
from .._core.refs import GRAMMAR, ModelRef
from .._core.workspace import Workspace, current_workspace
from ._context import ActiveRun, check_name, current
from ._requirements import ModelRequirements, model_requirements
from ._mlflow import fluent_store

if TYPE_CHECKING:
    from mlflow.pyfunc import PyFuncModel
    from mlflow.tracking import MlflowClient

# flavor -> distributions its models need at load time, besides mlflow itself
_FLAVOR_PACKAGES = {
    "sklearn": ("scikit-learn", "numpy", "scipy", "pandas", "cloudpickle", "skops"),
    "xgboost": ("xgboost", "numpy", "scipy", "pandas"),
    "lightgbm": ("lightgbm", "numpy", "scipy", "pandas", "scikit-learn"),
    "catboost": ("catboost", "numpy", "pandas"),
    "pytorch": ("torch", "numpy", "pandas", "cloudpickle"),
    "pyfunc": ("numpy", "pandas", "cloudpickle"),
}

# run tags the LoggedModel carries too, as MLflow's fluent API would set them
_INHERITED_TAGS = (lineage.MLFLOW_USER, "mlflow.source.")

# a model URI that names a model version, a logged model or a run, as download_model takes them
_MODEL_URI_FORMS = "models:/NAME/VERSION, models:/NAME@ALIAS, models:/m-<id> or runs:/<run_id>/<name>"


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
    if root == "catboost":
        return "catboost"
    if root == "lightgbm":
        # the scikit-learn API wrappers (LGBMClassifier) are sklearn estimators
        return "lightgbm" if type(model).__name__ == "Booster" else "sklearn"
    if "torch" in sys.modules and isinstance(model, sys.modules["torch"].nn.Module):
        return "pytorch"
    return "pyfunc"


def requirements_for(
    model: Any,
    flavor: str,
    *,
    extra_requirements: list[str] | None = None,
    requirements: list[str] | None = None,
) -> ModelRequirements:
    """Pinned requirements and project code of ``model`` as ``flavor`` stores it (see ``_requirements``)."""
    return model_requirements(
        model, base=("mlflow", *_FLAVOR_PACKAGES[flavor]), extra=extra_requirements, replace=requirements
    )


def log_model(
    model: Any,
    name: str = "model",
    *,
    input_example: Any = None,
    signature: Any = None,
    registered_model_name: str | None = None,
    extra_requirements: list[str] | None = None,
    requirements: list[str] | None = None,
) -> LoggedModel:
    """Store a trained model on the active run.

    The flavor is detected (scikit-learn, XGBoost, LightGBM, CatBoost, PyTorch,
    else pyfunc); the requirements are those of the libraries the model's
    objects come from plus what the flavor needs to load it, pinned to the
    versions running now; project modules the model uses ship with it; the
    signature is inferred from ``input_example``.

    Args:
        model: the trained model (or an ``mlflow.pyfunc.PythonModel``, or any object with ``predict``).
        name: name of the model on the run.
        input_example: a few rows of input; the signature is inferred from them.
        signature: an explicit MLflow signature instead.
        registered_model_name: also register a version of this name.
        extra_requirements: pip requirements to add (``"holidays>=0.50"``); one naming a detected
            package replaces its pin; a bare name is pinned to the version installed here.
        requirements: pip requirements to use instead of the detected ones.

    Raises:
        InvalidRequirement: a requirement string is not a valid pip requirement.
        TrackingError: the signature cannot be inferred, or the model cannot be stored.

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
    needs = requirements_for(model, flavor, extra_requirements=extra_requirements, requirements=requirements)
    is_python_model = isinstance(model, mlflow.pyfunc.PythonModel)
    if signature is None and input_example is not None:
        try:
            signature = infer_signature(input_example, _predict_example(model, flavor, input_example))
        except Exception as exc:
            raise TrackingError(
                f"Could not infer the signature of model {name!r} from its input example: {exc}",
                hint="Pass an input_example the model can predict on, or an explicit signature=.",
            ) from exc
    python_model = None
    if flavor == "pyfunc":
        python_model = model if is_python_model else _as_python_model(model)
    stored = _create_logged_model(run, name)
    kwargs: dict[str, Any] = dict(
        name=name,
        signature=signature,
        input_example=input_example,
        pip_requirements=list(needs.requirements),
        code_paths=[str(p) for p in needs.code_paths] or None,
        registered_model_name=registered_model_name,
        run_id=run.run_id,
        model_id=stored.model_id,
    )
    if flavor == "sklearn":
        kwargs["skops_trusted_types"] = _own_skops_types(model)
    if flavor == "pytorch" and not _is_array_like(input_example):
        # MLflow's default "pt2" export traces forward() on an array example; a frame example (named
        # columns, which MLflow's wrapper feeds as float32) or none needs the eager, pickled module.
        kwargs["serialization_format"] = "pickle"
    try:
        # the flavors' log_model resolves its store (and registers) through MLflow's fluent URIs only
        with fluent_store(run.workspace):
            if python_model is not None:
                # what mlflow.pyfunc.log_model does, plus run_id, which that function does not take
                from mlflow.models import Model

                info = Model.log(artifact_path=None, flavor=mlflow.pyfunc, python_model=python_model, **kwargs)
            else:
                info = getattr(mlflow, flavor).log_model(model, **kwargs)
    except BaseException as exc:
        _mark_failed(run, stored.model_id)
        from ._client import artifact_store_error

        translated = artifact_store_error(exc, str(stored.artifact_location))
        if translated is not None:  # the S3 store refused the upload: say which setting to fix
            raise translated from exc
        raise
    digest = _downloaded_sha256(run.workspace, info.model_uri)
    run.buffer.put_tags(
        {
            lineage.model_tag(name, "uri"): info.model_uri,
            lineage.model_tag(name, "flavor"): flavor,
            lineage.model_tag(name, "sha256"): digest,
        }
    )
    return LoggedModel(name, info.model_uri, flavor, digest, needs.requirements, run.run_id)


def _predict_example(model: Any, flavor: str, example: Any) -> Any:
    """The model's output for its input example, called the way its flavor serves it."""
    import mlflow.pyfunc

    if isinstance(model, mlflow.pyfunc.PythonModel):
        return model.predict(None, example)
    if flavor == "pytorch":
        import torch

        with torch.no_grad():
            output = model(torch.as_tensor(_as_array(example)))
        return output.detach().cpu().numpy()
    if flavor == "xgboost" and type(model).__name__ == "Booster":
        import xgboost

        return model.predict(xgboost.DMatrix(example))
    return model.predict(example)


def _is_array_like(example: Any) -> bool:
    import numpy as np

    return isinstance(example, np.ndarray) or type(example).__module__.partition(".")[0] == "torch"


def _as_array(example: Any) -> Any:
    import numpy as np

    values = example.to_numpy() if hasattr(example, "to_numpy") else np.asarray(example)
    return values.astype(np.float32) if values.dtype.kind == "f" else values


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


def _downloaded_sha256(ws: Workspace, model_uri: str) -> str:
    """The model digest (:mod:`shipyard.monitoring.integrity`) of what a download of ``model_uri`` gives."""
    with tempfile.TemporaryDirectory() as tmp:
        return model_sha256(download_model(model_uri, Path(tmp) / "model", workspace=ws))


def download_model(uri: str, dst: Path, *, workspace: Workspace | None = None) -> Path:
    """Download the MLflow model at ``uri`` from the workspace's store into the new folder ``dst``.

    Works the same against the embedded store and a tracking server, and
    leaves MLflow's process-wide tracking and registry URIs alone.

    Args:
        uri: ``models:/NAME/VERSION``, ``models:/NAME@ALIAS``, ``models:/m-<id>``
            (a logged model, as :attr:`LoggedModel.uri`) or ``runs:/<run_id>/<name>``.
        dst: a folder that does not exist yet; it is created.
        workspace: default: the current workspace.

    Returns:
        The folder under ``dst`` that holds the model's ``MLmodel`` file.

    Raises:
        TrackingError: ``dst`` exists, ``uri`` names no model, or the files could not be
            downloaded (:class:`~shipyard.TrackingUnavailable` when the tracker cannot be reached).

    Example:
        >>> local = shipyard.tracking.download_model("models:/iris/3", tmp_path / "iris")   # doctest: +SKIP
        >>> (local / "MLmodel").is_file()                                                  # doctest: +SKIP
        True
    """
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    from ._client import artifact_store_error, client_for, tracking_error

    ws = workspace or current_workspace()
    dst = Path(dst)
    if dst.exists():
        raise TrackingError(
            f"Cannot download {uri} into {dst}: it already exists.",
            hint="Pass a folder that does not exist yet; download_model creates it.",
        )
    dst.mkdir(parents=True)
    location = uri
    try:
        location = _stored_location(client_for(ws), uri)
        local = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=location, dst_path=str(dst), tracking_uri=ws.tracking_uri, registry_uri=ws.registry_uri
            )
        )
    except ShipyardError:
        shutil.rmtree(dst, ignore_errors=True)
        raise
    except MlflowException as exc:
        shutil.rmtree(dst, ignore_errors=True)
        if exc.error_code in {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"}:
            raise TrackingError(
                f"There is no model at {uri} in {ws.tracking_uri}: {str(exc).splitlines()[0]}",
                hint="Check the name and version (or alias, or run id); shipyard.log_model returns the URI "
                "of a logged model as LoggedModel.uri.",
            ) from exc
        raise tracking_error(ws, exc) from exc
    except Exception as exc:
        shutil.rmtree(dst, ignore_errors=True)
        translated = artifact_store_error(exc, location)  # an s3:// store, read by this client itself
        if translated is not None:
            raise translated from exc
        if not isinstance(exc, OSError):
            raise
        # the artifact store (a file system, or HTTP through requests) failed
        raise TrackingError(
            f"Could not download the files of {uri}: {exc}",
            hint="Check that the artifact store of the workspace is reachable and that there is room in "
            f"{dst.parent}.",
        ) from exc
    if not (local / "MLmodel").is_file():
        shutil.rmtree(dst, ignore_errors=True)
        raise TrackingError(
            f"{uri} has no MLmodel file; it is not an MLflow model.",
            hint=f"Pass the URI of a model ({_MODEL_URI_FORMS}), not of another artifact.",
        )
    for name in DOWNLOAD_ONLY_FILES:  # MLflow adds these on some download paths: never part of the model
        (local / name).unlink(missing_ok=True)
    return local


def load_model(uri: str, *, workspace: Workspace | None = None) -> PyFuncModel:
    """Download the MLflow model at ``uri`` (see :func:`download_model`) and load it as a pyfunc model.

    The model is loaded from a local folder, so MLflow's process-wide URIs are
    neither needed nor changed. The folder is removed when the model is garbage
    collected.

    Raises:
        TrackingError: the model could not be downloaded or loaded.

    Example:
        >>> model = shipyard.tracking.load_model(result.model_uri)   # doctest: +SKIP
        >>> model.predict(X_test[:3])                                # doctest: +SKIP
        array([0, 2, 1])
    """
    import mlflow.pyfunc

    folder = Path(tempfile.mkdtemp(prefix="shipyard-model-"))
    try:
        local = download_model(uri, folder / "model", workspace=workspace)
        model = mlflow.pyfunc.load_model(str(local))
    except ShipyardError:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    except Exception as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise TrackingError(
            f"Could not load the model at {uri}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
            hint="Check that the packages in the model's requirements.txt (its flavor, e.g. scikit-learn) are "
            "installed here.",
        ) from exc
    # Q: Why keep the folder until the model is gone?
    # A: Some flavors read their files lazily, and a model's code folder is put on sys.path.
    weakref.finalize(model, shutil.rmtree, folder, ignore_errors=True)
    return model


def _stored_location(client: MlflowClient, uri: str) -> str:
    """Where the files of the model at ``uri`` are stored, found with the workspace's client.

    ``models:/`` URIs become the storage location of the version or logged
    model; a ``runs:/<run_id>/<name>`` URI becomes the location of the model
    logged as ``name`` on the run, else stays as it is (the run's own artifacts,
    which MLflow downloads with the URIs it is given).
    """
    for _ in range(4):  # a version registered from another models:/ URI points at one again
        if uri.startswith("models:/m-"):
            model_id, _, rest = uri[len("models:/") :].partition("/")
            uri = _joined(client.get_logged_model(model_id).artifact_location, rest)
        elif uri.startswith("models:/"):
            try:
                ref = ModelRef.parse(uri)
            except ShipyardError as exc:
                raise TrackingError(
                    f"{uri!r} is not a model URI shipyard can download.",
                    hint=f"Use {_MODEL_URI_FORMS} ({GRAMMAR} name registered versions).",
                ) from exc
            assert ref.name is not None
            version = ref.version or client.get_model_version_by_alias(ref.name, str(ref.alias)).version
            uri = client.get_model_version_download_uri(ref.name, str(version))
        elif uri.startswith("runs:/"):
            run_id, _, path = uri[len("runs:/") :].partition("/")
            name, _, rest = path.partition("/")
            logged = _logged_model_of_run(client, run_id, name) if name else None
            return _joined(logged, rest) if logged else uri
        else:
            return uri
    return uri


def _logged_model_of_run(client: MlflowClient, run_id: str, name: str) -> str | None:
    """Storage location of the model logged as ``name`` on run ``run_id`` (MLflow 3 keeps it off the run's artifacts)."""
    experiment = client.get_run(run_id).info.experiment_id
    token: str | None = None
    while True:
        page = client.search_logged_models(
            experiment_ids=[experiment], filter_string=f"name = '{name}'", page_token=token
        )
        for found in page:
            if found.source_run_id == run_id:
                return str(found.artifact_location)
        token = page.token
        if not token:
            return None


def _joined(location: str, rest: str) -> str:
    return f"{location.rstrip('/')}/{rest}" if rest else location


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
