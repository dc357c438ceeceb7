"""Running gates against a candidate, applying overrides, and recording the verdict.

A check writes, before it returns: the report (JSON + self-contained HTML) and
the data it read (Parquet) as artifacts of the candidate's run under
``shipyard/gates/``; tags ``shipyard.gate.<name>`` and ``shipyard.gate.verdict``
on the run and, for a registered version, on the version; and the verdict
(and any override) in the workspace audit log.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._core import audit, lineage
from .._core.errors import GateError, ModelNotFound, OverrideRefused, RegistryError
from .._core.workspace import Workspace, current_workspace
from ._evaluate import EvalContext, Subject, evaluate
from ._report import GateReport, GateResult
from ._specs import GateSpec, SliceParity, spec_from_dict, spec_to_dict

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

ARTIFACT_DIR = "shipyard/gates"
REPORT_JSON = f"{ARTIFACT_DIR}/report.json"
REPORT_HTML = f"{ARTIFACT_DIR}/report.html"
VERDICT_TAG = f"{lineage.GATE_PREFIX}verdict"
REPORT_TAG = f"{lineage.GATE_PREFIX}report"
OVERRIDE_PREFIX = f"{lineage.GATE_PREFIX}override."
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


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

    @property
    def label(self) -> str:
        return f"{self.model_name}/{self.version}" if self.version else f"run {self.run_id[:12]}"


def _client(ws: Workspace) -> MlflowClient:
    from ..tracking._client import client_for

    return client_for(ws)


def resolve_candidate(candidate: Any, *, model: str = "model", workspace: Workspace | None = None) -> Candidate:
    """Find the run and model of ``candidate``.

    Accepts an MLflow run id, a ``RunResult`` (``shipyard.run``), a ``LoggedModel``
    (``shipyard.log_model``), a registered version (``"iris/2"``, ``"iris@challenger"``,
    ``"models:/iris/2"``, a ``ModelVersionRef``).

    Raises:
        GateError: ``candidate`` is none of those.
        ModelNotFound: the run or version does not exist.
    """
    from ..registry import ModelVersionRef, resolve

    ws = workspace or current_workspace()
    if isinstance(candidate, ModelVersionRef) or (
        isinstance(candidate, str) and not _RUN_ID.match(candidate) and ("/" in candidate or "@" in candidate)
    ):
        mv = resolve(candidate, workspace=ws)
        if not mv.run_id:
            raise GateError(
                f"{mv} was not registered from a run, so there is nowhere to record its gate report.",
                hint="Register versions with shipyard.registry.register(name, run_id).",
            )
        return Candidate(mv.run_id, mv.uri, mv.name, mv.version)
    run_id = getattr(candidate, "mlflow_run_id", None) or getattr(candidate, "run_id", None)
    if run_id is None and isinstance(candidate, str) and _RUN_ID.match(candidate):
        run_id = candidate
    if run_id is None:
        raise GateError(
            f"Cannot tell which model to check from {candidate!r}.",
            hint="Pass an MLflow run id, the result of shipyard.run(...), or a registered version like 'iris/2'.",
        )
    tags = _run(ws, run_id).data.tags
    uri = getattr(candidate, "uri", None) if hasattr(candidate, "flavor") else None
    return Candidate(run_id, uri or tags.get(lineage.model_tag(model, "uri")))


def _run(ws: Workspace, run_id: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return _client(ws).get_run(run_id)
    except MlflowException as exc:
        raise ModelNotFound(
            f"Run {run_id!r} does not exist in the tracking store at {ws.tracking_uri}.",
            hint="Pass the MLflow run id of a tracked run (RunResult.mlflow_run_id).",
        ) from exc


def load_subject(ws: Workspace, uri: str, label: str, info: Mapping[str, Any]) -> Subject:
    """A :class:`Subject` that predicts with the MLflow model at ``uri`` (loaded once, lazily)."""
    loaded: dict[str, Any] = {}

    def model() -> Any:
        if "m" not in loaded:
            import mlflow.pyfunc

            from ..tracking._client import point_fluent_api

            point_fluent_api(ws)
            try:
                loaded["m"] = mlflow.pyfunc.load_model(uri)
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


def _as_holdout(holdout: Any, target: str) -> Any:
    import pandas as pd

    if holdout is None:
        return None
    if isinstance(holdout, tuple) and len(holdout) == 2:
        features, labels = holdout
        frame = pd.DataFrame(features).copy() if not isinstance(features, pd.DataFrame) else features.copy()
        frame[target] = pd.Series(labels).to_numpy() if not isinstance(labels, pd.Series) else labels.to_numpy()
        return frame.reset_index(drop=True)
    if not isinstance(holdout, pd.DataFrame):
        raise GateError(
            f"holdout must be a pandas DataFrame (with the target column) or an (X, y) tuple, "
            f"not {type(holdout).__name__}.",
            hint=f"e.g. holdout=test_df with a {target!r} column, or holdout=(X_test, y_test).",
        )
    if target not in holdout.columns:
        raise GateError(
            f"The holdout set has no target column {target!r} (columns: {', '.join(map(str, holdout.columns))}).",
            hint="Pass target=<name of the label column>, or holdout=(X, y).",
        )
    if len(holdout) == 0:
        raise GateError("The holdout set is empty.", hint="Pass the rows the gates should be evaluated on.")
    return holdout.reset_index(drop=True)


def _as_frame(name: str, value: Any) -> Any:
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        return value
    try:
        return pd.DataFrame(value)
    except (TypeError, ValueError) as exc:
        raise GateError(
            f"Dataset {name!r} is a {type(value).__name__}, which cannot be read as a table.",
            hint="Pass a pandas DataFrame (or a dict of columns) in datasets=.",
        ) from exc


def _normalise_gates(gates: Iterable[GateSpec]) -> list[GateSpec]:
    from ._specs import SPEC_TYPES

    specs = list(gates)
    if not specs:
        raise GateError("No gates given.", hint="Pass gates=[shipyard.gates.threshold('accuracy >= 0.9'), ...].")
    seen: set[str] = set()
    for spec in specs:
        if type(spec) not in SPEC_TYPES.values():
            raise GateError(
                f"{spec!r} is not a gate.",
                hint="Build gates with shipyard.gates.threshold(), champion_challenger(), data_contract(), "
                "slice_parity() or custom().",
            )
        if spec.gate_name in seen:
            raise GateError(f"Two gates are named {spec.gate_name!r}.", hint="Give one of them a different name=.")
        seen.add(spec.gate_name)
    return specs


def _override_names(override: Any, names: Sequence[str]) -> list[str] | None:
    if override is None or override is False:
        return None
    if override is True or override == "all":
        return list(names)
    requested = [override] if isinstance(override, str) else list(override)
    unknown = [n for n in requested if n not in names]
    if unknown:
        raise GateError(
            f"Cannot override {', '.join(map(repr, unknown))}: no such gate in this check (gates: {', '.join(names)}).",
            hint="Name the failing gates to override, e.g. override=['champion_challenger'].",
        )
    return requested


def apply_override(report: GateReport, names: Sequence[str], *, by: str, at: str, reason: str) -> GateReport:
    """Mark the failed blocking gates among ``names`` as ``overridden``; record who, when, why."""
    targets = [r.name for r in report.results if r.status == "fail" and r.name in names]
    if not targets:
        report.notes.append(f"override of {', '.join(names)} requested, but none of them failed; nothing overridden")
        return report
    results = [
        replace(r, status="overridden", message=f"{r.message} — overridden by {by}: {reason}")
        if r.name in targets
        else r
        for r in report.results
    ]
    report = replace(report, results=results)
    report.override = {"gates": targets, "by": by, "at": at, "reason": reason}
    return report


def _context(
    ws: Workspace,
    cand: Candidate,
    specs: Sequence[GateSpec],
    holdout: Any,
    target: str,
    datasets: Mapping[str, Any],
    model_name: str | None,
    champion_lookup: Any,
) -> EvalContext:
    run = _run(ws, cand.run_id)
    subject = load_subject(ws, cand.model_uri, f"candidate {cand.label}", cand.info()) if cand.model_uri else None
    exclude = (target, *(s.column for s in specs if isinstance(s, SliceParity)))

    def profile_lookup(run_id: str, dataset: str) -> Mapping[str, Any]:
        return read_profile(ws, run_id, dataset)

    return EvalContext(
        candidate=subject,
        logged_metrics=dict(run.data.metrics),
        run_id=cand.run_id,
        holdout=holdout,
        target=target,
        datasets=datasets,
        model_name=model_name or cand.model_name,
        champion_lookup=champion_lookup,
        profile_lookup=profile_lookup,
        exclude=exclude,
    )


def read_profile(ws: Workspace, run_id: str, dataset: str) -> Mapping[str, Any]:
    """The profile ``shipyard.log_dataset`` stored for ``dataset`` on run ``run_id``.

    Raises:
        GateError: the run has no such profile.
    """
    path = f"{lineage.DATASET_ARTIFACT_DIR}/{dataset}.profile.json"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            local = _client(ws).download_artifacts(run_id, path, tmp)
            stored = json.loads(Path(local).read_text(encoding="utf-8"))
    except Exception as exc:
        raise GateError(
            f"Run {run_id} has no profile of dataset {dataset!r} ({path}).",
            hint="Log it in that run with shipyard.log_dataset(df, name=...), or fix the run id or name.",
        ) from exc
    return stored.get("profile", stored)


def _live_champion(ws: Workspace) -> Any:
    from ..registry import champion as _champion
    from ..registry import resolve

    def lookup(name: str, alias: str) -> Subject | None:
        try:
            mv = _champion(name, workspace=ws) if alias == "champion" else resolve(f"{name}@{alias}", workspace=ws)
        except ModelNotFound:
            return None
        if mv is None:
            return None
        info = {"model_name": mv.name, "version": mv.version, "run_id": mv.run_id, "model_uri": mv.uri, "alias": alias}
        return load_subject(ws, mv.uri, str(mv), info)

    return lookup


def _pinned_champion(ws: Workspace, recorded: Mapping[str, Any] | None) -> Any:
    def lookup(name: str, alias: str) -> Subject | None:
        if not recorded:
            return None
        label = f"{recorded['model_name']}/{recorded['version']}"
        return load_subject(ws, recorded["model_uri"], label, recorded)

    return lookup


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _run_gates(specs: Sequence[GateSpec], ctx: EvalContext) -> tuple[list[GateResult], list[str]]:
    results: list[GateResult] = []
    notes: list[str] = []
    for spec in specs:
        result = evaluate(spec, ctx)
        if note := result.details.get("note"):
            notes.append(f"{result.name}: {note}")
        results.append(result)
    return results, notes


def check(
    candidate: Any,
    gates: Iterable[GateSpec] = (),
    holdout: Any = None,
    *,
    target: str = "target",
    datasets: Mapping[str, Any] | None = None,
    model: str = "model",
    model_name: str | None = None,
    override: str | Sequence[str] | bool | None = None,
    reason: str | None = None,
    record: bool = True,
    raise_on_fail: bool = False,
    workspace: Workspace | None = None,
) -> GateReport:
    """Evaluate gates against a candidate model and record the verdict.

    Args:
        candidate: run id, ``RunResult``, ``LoggedModel``, or registered version (``"iris/2"``).
        gates: gate specs from :mod:`shipyard.gates` (``threshold``, ``champion_challenger`` ...).
        holdout: DataFrame with the target column, or ``(X, y)``. Champion and candidate are
            evaluated on exactly these rows, in this call.
        target: name of the target column.
        datasets: more data for data contracts, by name (the holdout is ``"holdout"``).
        model: name the candidate's model was logged under (for run candidates).
        model_name: registered model whose champion to compare with (default: the candidate's).
        override: gate name(s) whose blocking failure to override, or True for all.
        reason: the written reason an override needs.
        record: write artifacts, tags and audit records (False: evaluate only).
        raise_on_fail: raise :class:`GateFailed` when the verdict is ``fail``.

    Returns:
        The :class:`GateReport`; ``report.verdict`` is ``pass``, ``overridden`` or ``fail``.

    Raises:
        GateError: a gate is declared wrongly or its input is unusable (names the gate and what is missing).
        OverrideRefused: an override without a written reason.
        GateFailed: with ``raise_on_fail``, when a blocking gate failed.

    Example:
        >>> from shipyard.gates import threshold, champion_challenger
        >>> report = shipyard.check("iris/2", gates=[threshold("accuracy >= 0.9"),
        ...     champion_challenger("accuracy", tolerance=0.01)], holdout=test_df)   # doctest: +SKIP
        >>> report.verdict                                                          # doctest: +SKIP
        'pass'
    """
    ws = workspace or current_workspace()
    specs = _normalise_gates(gates)
    names = [s.gate_name for s in specs]
    override_names = _override_names(override, names)
    cand = resolve_candidate(candidate, model=model, workspace=ws)
    frame = _as_holdout(holdout, target)
    data = {name: _as_frame(name, value) for name, value in (datasets or {}).items()}
    if frame is not None:
        data["holdout"] = frame
    ctx = _context(ws, cand, specs, frame, target, data, model_name, _live_champion(ws))
    results, notes = _run_gates(specs, ctx)
    report = GateReport(
        # the model whose champion was compared with, so a re-check compares with the same one
        candidate={**cand.info(), "compared_with": ctx.model_name},
        results=results,
        champion=ctx.champion_used,
        specs=[spec_to_dict(s) for s in specs],
        target=target if frame is not None else None,
        created_at=_now(),
        author=ws.author,
        notes=notes,
    )
    if override_names is not None:
        if reason is None or not str(reason).strip():
            audit.append(
                "gate.override_refused",
                workspace=ws,
                run_id=cand.run_id,
                model=cand.model_name,
                version=cand.version,
                gates=override_names,
            )
            raise OverrideRefused(
                f"Override of {', '.join(override_names)} for {report.subject()} refused: no written reason.",
                report=report,
                hint='Say why the failing gate may be ignored: override=[...], reason="...".',
            )
        report = apply_override(report, override_names, by=ws.author, at=_now(), reason=str(reason).strip())
    if record:
        report = record_report(ws, cand, report, data)
    if raise_on_fail:
        report.raise_for_verdict()
    return report


def _gate_tags(report: GateReport) -> dict[str, str]:
    tags = {f"{lineage.GATE_PREFIX}{r.name}": r.status for r in report.results}
    tags[VERDICT_TAG] = report.verdict
    if report.artifact_uri:
        tags[REPORT_TAG] = report.artifact_uri
    if report.override:
        o = report.override
        tags.update(
            {
                OVERRIDE_PREFIX + "gates": ",".join(o["gates"]),
                OVERRIDE_PREFIX + "by": str(o["by"]),
                OVERRIDE_PREFIX + "at": str(o["at"]),
                OVERRIDE_PREFIX + "reason": str(o["reason"])[:5000],
            }
        )
    return tags


def _write_tags(ws: Workspace, run_id: str, name: str | None, version: str | None, tags: Mapping[str, str]) -> None:
    from mlflow.entities import RunTag
    from mlflow.exceptions import MlflowException

    client = _client(ws)
    try:
        # tags of gates an earlier check had and this one does not would misstate the verdict
        for key in client.get_run(run_id).data.tags:
            if key.startswith(lineage.GATE_PREFIX) and key not in tags:
                client.delete_tag(run_id, key)
        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        if name and version:
            for key in client.get_model_version(name, version).tags or {}:
                if key.startswith(lineage.GATE_PREFIX) and key not in tags:
                    client.delete_model_version_tag(name, version, key)
            for key, value in tags.items():
                client.set_model_version_tag(name, version, key, value)
    except MlflowException as exc:
        raise RegistryError(
            f"Could not record the gate verdict on run {run_id}"
            + (f" / {name}/{version}" if version else "")
            + f": {exc}",
            hint="Check that the tracking store is reachable, then run the check again.",
        ) from exc


def _write_report_files(ws: Workspace, run_id: str, report: GateReport, data: Mapping[str, Any] | None) -> None:
    """Log the data the gates read, then the report that points at it, as artifacts of ``run_id``."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if data:
            (root / "data").mkdir()
            report.data = {name: _store_frame(root / "data", name, frame, report) for name, frame in data.items()}
        (root / "report.json").write_text(report.to_json(), encoding="utf-8")
        (root / "report.html").write_text(report.to_html(), encoding="utf-8")
        _client(ws).log_artifacts(run_id, str(root), ARTIFACT_DIR)


def _store_frame(folder: Path, name: str, frame: Any, report: GateReport) -> str:
    """Write ``frame`` as Parquet (as a pickle when Parquet cannot hold it); return its artifact path."""
    import pandas as pd

    frame = pd.DataFrame(frame) if not isinstance(frame, pd.DataFrame) else frame
    if not all(isinstance(c, str) for c in frame.columns):
        frame = frame.rename(columns=str)
    try:
        frame.to_parquet(folder / f"{name}.parquet", index=False)
        return f"{ARTIFACT_DIR}/data/{name}.parquet"
    except Exception as exc:  # e.g. a column mixing text and numbers, which a data contract may be flagging
        (folder / f"{name}.parquet").unlink(missing_ok=True)
        frame.to_pickle(folder / f"{name}.pkl")
        report.notes.append(
            f"dataset {name!r} stored as a pickle: Parquet cannot hold it ({type(exc).__name__}: {exc})"
        )
        return f"{ARTIFACT_DIR}/data/{name}.pkl"


def record_report(ws: Workspace, cand: Candidate, report: GateReport, data: Mapping[str, Any] | None) -> GateReport:
    """Store ``report`` (and the data it read) on the candidate's run; tag run and version; audit."""
    report.artifact_uri = f"runs:/{cand.run_id}/{REPORT_JSON}"
    _write_report_files(ws, cand.run_id, report, data)
    _write_tags(ws, cand.run_id, cand.model_name, cand.version, _gate_tags(report))
    common = {"run_id": cand.run_id, "model": cand.model_name, "version": cand.version}
    if report.override:
        audit.append("gate.override", workspace=ws, who=report.override["by"], **common, **report.override)
    audit.append(
        "gate.verdict",
        workspace=ws,
        **common,
        verdict=report.verdict,
        gates={r.name: r.status for r in report.results},
        report=report.artifact_uri,
    )
    return report


def load_report(ref: Any, *, workspace: Workspace | None = None) -> GateReport:
    """The gate report recorded for a run or registered version.

    Raises:
        GateError: nothing was recorded for it.

    Example:
        >>> shipyard.gates.load_report("iris/2").verdict    # doctest: +SKIP
        'pass'
    """
    ws = workspace or current_workspace()
    cand = resolve_candidate(ref, workspace=ws)
    return _load_report(ws, cand)


def _read_report(ws: Workspace, run_id: str) -> GateReport | None:
    """The report stored on run ``run_id`` (one run holds one report), or None.

    Raises:
        GateError: the artifact store could not be read (not the same as "nothing recorded").
    """
    from mlflow.exceptions import MlflowException

    try:
        with tempfile.TemporaryDirectory() as tmp:
            local = _client(ws).download_artifacts(run_id, REPORT_JSON, tmp)
            return GateReport.from_dict(json.loads(Path(local).read_text(encoding="utf-8")))
    except (MlflowException, FileNotFoundError) as exc:
        if isinstance(exc, FileNotFoundError) or exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
            return None
        raise GateError(
            f"Could not read the gate report of run {run_id}: {exc}",
            hint="Check that the tracking server and artifact store are reachable, then try again.",
        ) from exc


def _other_version(cand: Candidate, report: GateReport) -> str | None:
    """The version a report was recorded for, when that is not ``cand`` (two versions of one run)."""
    recorded = report.candidate
    if not (cand.version and recorded.get("version")):
        return None
    theirs = f"{recorded.get('model_name')}/{recorded['version']}"
    return None if theirs == cand.label else theirs


def _load_report(ws: Workspace, cand: Candidate) -> GateReport:
    report = _read_report(ws, cand.run_id)
    if report is None:
        raise GateError(
            f"No gate report is recorded for {cand.label} (run {cand.run_id} has no {REPORT_JSON}).",
            hint="Run shipyard.check(...) or a flow step with @shipyard.gate first.",
        )
    if other := _other_version(cand, report):
        raise GateError(
            f"No gate report is recorded for {cand.label}: the report on run {cand.run_id} is for "
            f"{other}, registered from the same run.",
            hint=f"Run shipyard.check('{cand.label}', ...) to record this version's own report.",
        )
    return report


def recheck(ref: Any, *, workspace: Workspace | None = None) -> GateReport:
    """Re-evaluate the gates recorded for a run or version, from what was recorded.

    The stored specs are rebuilt, the stored data re-read, and the champion is
    the version the recorded check compared with, so the verdict is the one the
    original check reached unless something recorded changed. A recorded
    override is honoured for the gates it named. Results attached from outside
    (``attach_results``) are kept as recorded. Nothing is written.

    Raises:
        GateError: nothing was recorded, or the recorded gates cannot be rebuilt.

    Example:
        >>> shipyard.gates.recheck("iris/2").verdict     # doctest: +SKIP
        'pass'
    """
    import pandas as pd

    ws = workspace or current_workspace()
    cand = resolve_candidate(ref, workspace=ws)
    recorded = _load_report(ws, cand)
    if not recorded.specs:
        results = list(recorded.results)
        return replace(
            recorded, results=results, notes=[*recorded.notes, "no gate specs recorded; results as attached"]
        )
    specs = [spec_from_dict(s) for s in recorded.specs]
    data: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in recorded.data.items():
            try:
                local = _client(ws).download_artifacts(cand.run_id, path, tmp)
            except Exception as exc:
                raise GateError(
                    f"The recorded dataset {name!r} ({path}) of run {cand.run_id} cannot be read: {exc}",
                    hint="The run's artifacts may have been deleted; run the check again from the notebook.",
                ) from exc
            data[name] = pd.read_pickle(local) if path.endswith(".pkl") else pd.read_parquet(local)
    recorded_cand = recorded.candidate
    stored_cand = Candidate(
        cand.run_id,
        recorded_cand.get("model_uri") or cand.model_uri,
        recorded_cand.get("model_name") or cand.model_name,
        recorded_cand.get("version") or cand.version,
    )
    holdout = data.get("holdout")
    target = recorded.target or "target"
    ctx = _context(
        ws,
        stored_cand,
        specs,
        holdout,
        target,
        data,
        recorded_cand.get("compared_with") or recorded_cand.get("model_name"),
        _pinned_champion(ws, recorded.champion),
    )
    results, notes = _run_gates(specs, ctx)
    evaluated = {r.name for r in results}
    carried = [r for r in recorded.results if r.name not in evaluated]
    report = GateReport(
        candidate=stored_cand.info(),
        results=results + carried,
        champion=ctx.champion_used,
        specs=recorded.specs,
        data=recorded.data,
        target=recorded.target,
        created_at=_now(),
        author=ws.author,
        notes=notes + ([f"kept as recorded: {', '.join(r.name for r in carried)}"] if carried else []),
        artifact_uri=recorded.artifact_uri,
    )
    if recorded.override:
        o = recorded.override
        report = apply_override(report, o["gates"], by=o["by"], at=o["at"], reason=o["reason"])
    return report


def attach_results(model_version_ref: Any, results: Iterable[GateResult], *, source: str) -> GateReport:
    """Merge gate results computed elsewhere (e.g. a smoke test) into a version's recorded report.

    The results replace same-named ones, the verdict is recomputed, and the
    report, the ``shipyard.gate.*`` tags of the version and its run, and the
    audit log are updated before this returns.

    Args:
        model_version_ref: ``"models:/iris/2"``, ``"iris/2"``, ``"iris@challenger"`` or a ``ModelVersionRef``.
        results: :class:`GateResult` objects.
        source: who computed them, e.g. ``"smoke"``.

    Raises:
        GateError: a result is not a :class:`GateResult`, or its name is reserved.
        ModelNotFound: the version does not exist.

    Example:
        >>> attach_results("models:/iris/2", [GateResult("latency", "pass", 41.0, 250.0,
        ...     "p95 41 ms", True)], source="smoke")                   # doctest: +SKIP
    """
    from ._specs import _check_name

    ws = current_workspace()
    ref = model_version_ref
    if not isinstance(ref, str) and hasattr(ref, "name") and hasattr(ref, "version"):
        ref = f"{ref.name}/{ref.version}"  # a ModelVersionRef, an MLflow ModelVersion, a packaging ModelSource
    cand = resolve_candidate(ref, workspace=ws)
    if cand.version is None:
        raise GateError(
            f"attach_results needs a registered model version, not {model_version_ref!r}.",
            hint="Pass models:/NAME/VERSION.",
        )
    incoming: list[GateResult] = []
    for r in results:
        if not isinstance(r, GateResult):
            raise GateError(f"attach_results got {r!r}; pass shipyard.gates.GateResult objects.")
        _check_name(r.name)
        incoming.append(replace(r, source=source, details=dict(r.details)))
    report = _read_report(ws, cand.run_id)
    if report is None:
        report = GateReport(candidate=cand.info(), results=[], created_at=_now(), author=ws.author)
    elif other := _other_version(cand, report):
        raise GateError(
            f"Cannot attach results to {cand.label}: its run {cand.run_id} holds the gate report of {other}, "
            "which attaching would replace.",
            hint="Register each model version from its own run.",
        )
    report = report.with_results(incoming)
    report.artifact_uri = f"runs:/{cand.run_id}/{REPORT_JSON}"
    _write_report_files(ws, cand.run_id, report, None)
    _write_tags(ws, cand.run_id, cand.model_name, cand.version, _gate_tags(report))
    audit.append(
        "gate.attach",
        workspace=ws,
        run_id=cand.run_id,
        model=cand.model_name,
        version=cand.version,
        source=source,
        verdict=report.verdict,
        results={r.name: {"status": r.status, "value": r.value, "threshold": r.threshold} for r in incoming},
    )
    return report
