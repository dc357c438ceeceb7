"""Which model a check is about, and how to predict with it.

A candidate is named like any model (:class:`~shipyard.ModelRef`: a run id,
a ``RunResult``, a ``LoggedModel``, ``iris/2``, ``iris@challenger``); this
module turns it into the run the report is recorded on and a
:class:`~._evaluate.Subject` that predicts with the model, loaded once, from a
downloaded copy. The champion a candidate is compared with is found here too.
Recording the verdict is :mod:`._record`'s job.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._core import lineage
from .._core.errors import GateError, ModelNotFound
from .._core.refs import GRAMMAR, ModelRef
from .._core.workspace import Workspace, current_workspace
from ._evaluate import Subject


@dataclass(frozen=True)
class Candidate:
    """The model under check: its run, where its model is, and its registry identity if registered."""

    run_id: str
    model_uri: str | None
    model_name: str | None = None
    version: str | None = None

    def info(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "model_uri": self.model_uri,
            "model_name": self.model_name,
            "version": self.version,
        }

    def audit_fields(self) -> dict[str, Any]:
        """How the candidate is named in audit records."""
        return {"run_id": self.run_id, "model": self.model_name, "version": self.version}

    @property
    def label(self) -> str:
        return f"{self.model_name}/{self.version}" if self.version else f"run {self.run_id[:12]}"


def client(ws: Workspace) -> Any:
    from ..tracking._client import client_for

    return client_for(ws)


def resolve_candidate(candidate: Any, *, model: str = "model", workspace: Workspace | None = None) -> Candidate:
    """Find the run and model of ``candidate``.

    Accepts anything :meth:`ModelRef.of <shipyard.ModelRef.of>` does: an MLflow run id, a
    ``RunResult`` (``shipyard.run``), a ``LoggedModel`` (``shipyard.log_model``), a registered
    version (``"iris/2"``, ``"iris@challenger"``, ``"models:/iris/2"``, a ``ModelVersionRef``).

    Raises:
        GateError: ``candidate`` is none of those, or a version registered from no run.
        ModelNotFound: the run or version does not exist.
    """
    from .. import registry

    ws = workspace or current_workspace()
    try:
        ref = ModelRef.of(candidate)
    except ModelNotFound as exc:
        raise GateError(
            f"Cannot tell which model to check from {candidate!r}.",
            hint=f"Pass {GRAMMAR}, the result of shipyard.run(...), or a registered version like 'iris/2'.",
        ) from exc
    if not ref.is_run:
        mv = registry.resolve(ref, workspace=ws)
        if not mv.run_id:
            raise GateError(
                f"{mv} was not registered from a run, so there is nowhere to record its gate report.",
                hint="Register versions with shipyard.registry.register(name, run_id).",
            )
        return Candidate(mv.run_id, mv.uri, mv.name, mv.version)
    assert ref.run_id is not None
    tags = get_run(ws, ref.run_id).data.tags
    if hasattr(candidate, "flavor"):  # a LoggedModel names the model it is
        return Candidate(ref.run_id, candidate.uri)
    return Candidate(ref.run_id, lineage.logged_models(tags).get(model))


def get_run(ws: Workspace, run_id: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client(ws).get_run(run_id)
    except MlflowException as exc:
        raise ModelNotFound(
            f"Run {run_id!r} does not exist in the tracking store at {ws.tracking_uri}.",
            hint="Pass the MLflow run id of a tracked run (RunResult.mlflow_run_id).",
        ) from exc


def load_subject(ws: Workspace, uri: str, label: str, info: Mapping[str, Any]) -> Subject:
    """A :class:`Subject` that predicts with the MLflow model at ``uri`` (downloaded and loaded once, lazily)."""
    loaded: dict[str, Any] = {}

    def model() -> Any:
        if "m" not in loaded:
            from .. import tracking

            try:
                loaded["m"] = tracking.load_model(uri, workspace=ws)
            except Exception as exc:
                raise ModelNotFound(
                    f"Could not load the model of {label} from {uri}: {exc}",
                    hint="Check that the model was logged with shipyard.log_model and the artifact store is reachable.",
                ) from exc
        return loaded["m"]

    subject = Subject(label, lambda frame: model().predict(frame), None, dict(info))
    original = subject.predict

    def predict(frame: Any, *, gate: str, exclude: Sequence[str] = ()) -> Any:
        if subject.feature_names is None:
            schema = model().metadata.get_input_schema()
            names = schema.input_names() if schema is not None and schema.has_input_names() else []
            subject.feature_names = [str(n) for n in names]
        return original(frame, gate=gate, exclude=exclude)

    subject.predict = predict  # type: ignore[method-assign]
    return subject


def read_profile(ws: Workspace, run_id: str, dataset: str) -> Mapping[str, Any]:
    """The profile ``shipyard.log_dataset`` stored for ``dataset`` on run ``run_id``.

    Raises:
        GateError: the run has no such profile.
    """
    path = lineage.dataset_artifact(dataset, "profile")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            local = client(ws).download_artifacts(run_id, path, tmp)
            stored = json.loads(Path(local).read_text(encoding="utf-8"))
    except Exception as exc:
        raise GateError(
            f"Run {run_id} has no profile of dataset {dataset!r} ({path}).",
            hint="Log it in that run with shipyard.log_dataset(df, name=...), or fix the run id or name.",
        ) from exc
    return stored.get("profile", stored)


def live_champion(ws: Workspace) -> Any:
    """Looks up the version an alias points at now (a fresh check compares with today's champion)."""
    from .. import registry

    def lookup(name: str, alias: str) -> Subject | None:
        try:
            mv = registry.resolve(ModelRef(name=name, alias=alias), workspace=ws)
        except ModelNotFound:
            return None
        info = {"model_name": mv.name, "version": mv.version, "run_id": mv.run_id, "model_uri": mv.uri, "alias": alias}
        return load_subject(ws, mv.uri, str(mv), info)

    return lookup


def pinned_champion(ws: Workspace, recorded: Mapping[str, Any] | None) -> Any:
    """Looks up the champion a recorded check compared with (a re-check compares with the same one)."""

    def lookup(name: str, alias: str) -> Subject | None:
        if not recorded:
            return None
        label = f"{recorded['model_name']}/{recorded['version']}"
        return load_subject(ws, recorded["model_uri"], label, recorded)

    return lookup
