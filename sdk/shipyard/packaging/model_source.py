"""The registered model version being packaged: where it is, what it takes, where it came from.

Resolves ``models:/NAME/VERSION``, ``NAME/VERSION``, ``NAME@alias`` (with or
without ``models:/``) or an MLflow ``ModelVersion`` against the workspace's
registry, reads the lineage tags of its source run, maps its signature to an
input schema, and downloads its files.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._core import lineage
from .._core.errors import ModelNotFound, PackagingError, RegistryError
from ..monitoring.validation import KNOWN_TYPES, FieldSpec, InputSchema

GATE_VERDICT_TAG = "shipyard.gate.verdict"
_SPEC = re.compile(r"^(?:models:/)?(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w.-]+))$")


@dataclass(frozen=True)
class ModelSource:
    """A resolved model version and what packaging needs to know about it.

    Attributes:
        name: registered model name.
        version: registered version number, as a string.
        run_id: MLflow run that produced it ("" when unknown).
        source: artifact URI of the model files.
        version_tags: tags on the model version.
        run_tags: tags on the source run.
    """

    name: str
    version: str
    run_id: str
    source: str
    version_tags: dict[str, str] = field(default_factory=dict)
    run_tags: dict[str, str] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    def lineage(self) -> dict[str, str]:
        """Lineage of this version as flat ``shipyard.*`` keys (empty values left out)."""
        tags = self.run_tags
        data = {k: v for k, v in sorted(tags.items()) if k.startswith(lineage.DATA_PREFIX) and k.endswith(".sha256")}
        fingerprint = ""
        if data:
            joined = "\n".join(f"{k}={v}" for k, v in data.items())
            fingerprint = data[next(iter(data))] if len(data) == 1 else hashlib.sha256(joined.encode()).hexdigest()
        values = {
            "shipyard.model.name": self.name,
            "shipyard.model.version": self.version,
            "shipyard.mlflow.run_id": self.run_id,
            lineage.PATHSPEC: tags.get(lineage.PATHSPEC, ""),
            lineage.SOURCE_SHA256: tags.get(lineage.SOURCE_SHA256, ""),
            "shipyard.data.fingerprint": fingerprint,
            lineage.GIT_COMMIT: tags.get(lineage.GIT_COMMIT) or tags.get("mlflow.source.git.commit", ""),
            GATE_VERDICT_TAG: self.version_tags.get(GATE_VERDICT_TAG, ""),
            **data,
        }
        return {k: v for k, v in values.items() if v}


def parse_model_spec(spec: str) -> tuple[str, str | None, str | None]:
    """Split a model reference into ``(name, version, alias)``.

    Example:
        >>> parse_model_spec("models:/iris/3")
        ('iris', '3', None)
        >>> parse_model_spec("iris@champion")
        ('iris', None, 'champion')
    """
    match = _SPEC.match(spec.strip())
    if match is None:
        raise ModelNotFound(
            f"{spec!r} is not a model version reference.",
            hint="Use models:/NAME/VERSION, NAME/VERSION or NAME@ALIAS.",
        )
    return match["name"], match["version"], match["alias"]


def registry_client() -> Any:
    """An ``MlflowClient`` bound to the current workspace's tracking and registry URIs.

    MLflow's fluent API is pointed at the same store, since downloads of
    ``models:/`` URIs resolve through it.
    """
    from .._core.workspace import current_workspace
    from ..tracking._client import client_for

    return client_for(current_workspace())


def resolve_model_version(model_version: Any, client: Any = None) -> ModelSource:
    """Resolve a model reference (or an MLflow ``ModelVersion``) to a :class:`ModelSource`.

    Raises:
        ModelNotFound: the model, version or alias does not exist.
        RegistryError: the registry could not be read.

    Example:
        >>> resolve_model_version("models:/iris/1").run_id     # doctest: +SKIP
        '3892614a7845445fb6f9fce38fdc31c2'
    """
    from mlflow.exceptions import MlflowException

    client = client or registry_client()
    try:
        if isinstance(model_version, str):
            name, version, alias = parse_model_spec(model_version)
            mv = (
                client.get_model_version(name, version)
                if version is not None
                else client.get_model_version_by_alias(name, alias)
            )
        else:
            name, version = model_version.name, str(model_version.version)
            mv = client.get_model_version(name, version)
    except MlflowException as exc:
        if exc.error_code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"}:
            raise ModelNotFound(
                f"Model version {model_version!r} does not exist in the registry ({_first_line(exc)}).",
                hint="Check the name, version or alias in the MLflow UI (or with "
                "MlflowClient().search_model_versions(\"name='NAME'\")), or register the model first.",
            ) from exc
        raise RegistryError(f"Could not read {model_version!r} from the model registry: {_first_line(exc)}") from exc
    run_tags: dict[str, str] = {}
    if mv.run_id:
        try:
            run_tags = dict(client.get_run(mv.run_id).data.tags)
        except MlflowException:
            run_tags = {}
    return ModelSource(
        name=mv.name,
        version=str(mv.version),
        run_id=mv.run_id or "",
        source=mv.source,
        version_tags=dict(mv.tags or {}),
        run_tags=run_tags,
    )


def download_model(source: ModelSource, dst: Path) -> Path:
    """Download the model files of ``source`` into ``dst`` (which must not exist) and return it."""
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    from .._core.workspace import current_workspace

    ws = current_workspace()
    dst.mkdir(parents=True)
    try:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=source.uri, dst_path=str(dst), tracking_uri=ws.tracking_uri
        )
    except MlflowException as exc:
        raise PackagingError(
            f"Could not download the files of {source.uri}: {_first_line(exc)}",
            hint="Check that the artifact store of the workspace is reachable.",
        ) from exc
    path = Path(local)
    if not (path / "MLmodel").is_file():
        raise PackagingError(f"{source.uri} has no MLmodel file; it is not an MLflow model.")
    return path


def read_mlmodel(model_dir: Path) -> dict[str, Any]:
    import yaml

    return yaml.safe_load((model_dir / "MLmodel").read_text(encoding="utf-8")) or {}


def training_python(mlmodel: dict[str, Any]) -> str | None:
    """Python major.minor recorded by MLflow when the model was logged."""
    full = (mlmodel.get("flavors", {}).get("python_function") or {}).get("python_version")
    if not full:
        return None
    parts = str(full).split(".")
    return ".".join(parts[:2])


def signature_inputs(mlmodel: dict[str, Any]) -> list[dict[str, Any]] | None:
    raw = (mlmodel.get("signature") or {}).get("inputs")
    if not raw:
        return None
    return json.loads(raw) if isinstance(raw, str) else list(raw)


def input_schema_from_signature(inputs: list[dict[str, Any]]) -> InputSchema:
    """Map MLflow signature inputs (its JSON form) to the :class:`InputSchema` a service enforces.

    Example:
        >>> input_schema_from_signature([{"type": "double", "name": "x", "required": True}]).fields
        (FieldSpec(name='x', type='double', required=True, allow_non_finite=False),)
    """
    if not inputs:
        raise PackagingError(
            "The model signature has no inputs.", hint="Log the model with a signature or input example."
        )
    if inputs[0].get("type") == "tensor":
        if len(inputs) != 1:
            raise PackagingError(
                "Models with several named tensor inputs are not supported yet.",
                hint="Log the model with one 2-D tensor input or a column-based signature.",
            )
        spec = inputs[0].get("tensor-spec", {})
        shape = list(spec.get("shape") or [])
        if len(shape) != 2 or shape[1] in (-1, None):
            raise PackagingError(
                f"The model's tensor input has shape {shape}; only 2-D inputs with a fixed width are supported.",
                hint="Log the model with a signature of shape (-1, n_features) or with named columns.",
            )
        dtype = str(spec.get("dtype", "float64"))
        kind = "long" if dtype.startswith(("int", "uint")) else "boolean" if dtype == "bool" else "double"
        return InputSchema(tensor_width=int(shape[1]), tensor_type=kind)
    fields: list[FieldSpec] = []
    unsupported = [c for c in inputs if c.get("type") not in KNOWN_TYPES]
    if unsupported:
        described = ", ".join(f"{c.get('name', '?')} ({c.get('type')})" for c in unsupported)
        raise PackagingError(
            f"The model signature has column types shipyard cannot serve yet: {described}.",
            hint="Flatten them into scalar columns (double, long, boolean, string) before logging the model.",
        )
    if any(not c.get("name") for c in inputs):
        kinds = {c["type"] for c in inputs}
        kind = "double" if kinds & {"double", "float"} or len(kinds) > 1 else next(iter(kinds))
        return InputSchema(tensor_width=len(inputs), tensor_type=kind)
    for col in inputs:
        fields.append(FieldSpec(name=str(col["name"]), type=str(col["type"]), required=bool(col.get("required", True))))
    return InputSchema(fields=tuple(fields))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


__all__ = [
    "ModelSource",
    "download_model",
    "input_schema_from_signature",
    "parse_model_spec",
    "read_mlmodel",
    "resolve_model_version",
    "signature_inputs",
    "training_python",
]
