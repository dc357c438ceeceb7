"""Recording a gate verdict, and reading it back.

A check writes, before it returns, as artifacts of the candidate's run: its
own report and the data it read (Parquet) under
``shipyard/gates/checks/<check id>/``, and the candidate's binding report
(JSON + self-contained HTML, see :func:`~._check.bind`) as
``shipyard/gates/report.json``; tags ``shipyard.gate.<name>`` and
``shipyard.gate.verdict`` (of the binding report) on the run and, through
:mod:`shipyard.registry`, on the version; and the verdict (and any new
override) in the workspace audit log.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .._core import audit, lineage
from .._core.errors import GateError, RegistryError
from .._core.refs import ModelRef
from .._core.workspace import Workspace, current_workspace
from ._candidate import Candidate, client, resolve_candidate
from ._report import GateReport, GateResult

ARTIFACT_DIR = lineage.GATES_ARTIFACT_DIR
CHECKS_DIR = lineage.GATES_CHECKS_ARTIFACT_DIR
REPORT_JSON = f"{ARTIFACT_DIR}/report.json"
REPORT_HTML = f"{ARTIFACT_DIR}/report.html"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def gate_tags(report: GateReport) -> dict[str, str]:
    tags = {lineage.gate_tag(r.name): r.status for r in report.results}
    tags[lineage.GATE_VERDICT] = report.verdict
    if report.artifact_uri:
        tags[lineage.GATE_REPORT] = report.artifact_uri
    if report.override:
        o = report.override
        tags.update(
            {
                # every gate overridden so far; by/at/reason are the latest override's
                lineage.GATE_OVERRIDE_PREFIX + "gates": ",".join(
                    dict.fromkeys(g for e in [*o.get("previous", []), o] for g in e["gates"])
                ),
                lineage.GATE_OVERRIDE_PREFIX + "by": str(o["by"]),
                lineage.GATE_OVERRIDE_PREFIX + "at": str(o["at"]),
                lineage.GATE_OVERRIDE_PREFIX + "reason": str(o["reason"])[:5000],
            }
        )
    return tags


NOTE_HEADING = "#### shipyard gates"
NOTE_LIMIT = 5000  # characters of the whole description, within every MLflow store's tag limit


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\r", " ").replace("\n", " ").strip()


def gate_note(report: GateReport, existing: str = "") -> str:
    """The run description with shipyard's gate section (a Markdown table) put last, replacing an earlier one.

    Q: Why a description as well as the tags?
    A: MLflow's run page shows tags as truncated chips and keeps the reasons in an
       artifact; the description it renders in full, as Markdown. Text someone
       wrote above the section is kept.
    """
    head = existing.split(NOTE_HEADING)[0].rstrip()[:NOTE_LIMIT // 2]
    rows = [f"| {_cell(r.name)} | {_cell(r.status)} | {_cell(str(r.message)[:300])} |" for r in report.results]
    tail = [f"Full report: artifact `{REPORT_HTML}` (checked {_cell(report.created_at)} by {_cell(report.author)})."]
    if report.override:
        o = report.override
        who = f"Overridden by {_cell(o.get('by', ''))} at {_cell(o.get('at', ''))}"
        tail[:0] = [f"{who}: {_cell(str(o.get('reason', ''))[:500])}", ""]
    budget = NOTE_LIMIT - len(head) - sum(len(line) + 1 for line in tail) - 200
    while rows and sum(len(row) + 1 for row in rows) > budget:  # a tag value holds 8,000 characters at most
        rows.pop()
    left_out = len(report.results) - len(rows)
    lines = [NOTE_HEADING, "", f"**Verdict: {report.verdict.upper()}**", "", "| gate | status | why |", "|---|---|---|"]
    lines += [*rows, *([f"| … {left_out} more in the report | | |"] if left_out else []), "", *tail]
    section = "\n".join(lines)
    return f"{head}\n\n{section}" if head else section


def _write_tags(ws: Workspace, cand: Candidate, report: GateReport) -> None:
    """Gate tags on the run and, through the registry, on the version (earlier gates' tags removed);
    the report's summary as the run's description."""
    from mlflow.entities import RunTag
    from mlflow.exceptions import MlflowException

    from .. import registry

    tags = gate_tags(report)
    mlflow = client(ws)
    try:
        # tags of gates an earlier check had and this one does not would misstate the verdict
        existing = mlflow.get_run(cand.run_id).data.tags
        for key in existing:
            if key.startswith(lineage.GATE_PREFIX) and key not in tags:
                mlflow.delete_tag(cand.run_id, key)
        note = gate_note(report, existing.get(lineage.MLFLOW_NOTE, ""))
        mlflow.log_batch(cand.run_id, tags=[RunTag(k, v) for k, v in {**tags, lineage.MLFLOW_NOTE: note}.items()])
    except MlflowException as exc:
        raise RegistryError(
            f"Could not record the gate verdict on run {cand.run_id}: {exc}",
            hint="Check that the tracking store is reachable, then run the check again.",
        ) from exc
    if cand.model_name and cand.version:
        version = registry.resolve(ModelRef(name=cand.model_name, version=cand.version), workspace=ws)
        registry.set_version_tags(version, tags, replace_prefix=lineage.GATE_PREFIX, workspace=ws)


def _write_report_files(
    ws: Workspace,
    run_id: str,
    report: GateReport,
    data: Mapping[str, Any] | None,
    own: GateReport | None = None,
) -> None:
    """Log the data the gates read and the check's own report under ``checks/<id>/``, then the
    binding report that points at that data, as artifacts of ``run_id``."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if own is not None:
            folder = root / CHECKS_DIR.removeprefix(ARTIFACT_DIR + "/") / own.check_id
            (folder / "data").mkdir(parents=True)
            if data:
                prefix = f"{CHECKS_DIR}/{own.check_id}/data"
                own.data = {
                    name: _store_frame(folder / "data", prefix, name, frame, own) for name, frame in data.items()
                }
                report.data = dict(own.data)
                report.notes.extend(n for n in own.notes if n not in report.notes)
            own.artifact_uri = f"runs:/{run_id}/{CHECKS_DIR}/{own.check_id}/report.json"
            (folder / "report.json").write_text(own.to_json(), encoding="utf-8")
        (root / "report.json").write_text(report.to_json(), encoding="utf-8")
        (root / "report.html").write_text(report.to_html(), encoding="utf-8")
        client(ws).log_artifacts(run_id, str(root), ARTIFACT_DIR)


def _store_frame(folder: Path, prefix: str, name: str, frame: Any, report: GateReport) -> str:
    """Write ``frame`` as Parquet (as a pickle when Parquet cannot hold it); return its artifact path."""
    import pandas as pd

    frame = pd.DataFrame(frame) if not isinstance(frame, pd.DataFrame) else frame
    if not all(isinstance(c, str) for c in frame.columns):
        frame = frame.rename(columns=str)
    try:
        frame.to_parquet(folder / f"{name}.parquet", index=False)
        return f"{prefix}/{name}.parquet"
    except Exception as exc:  # e.g. a column mixing text and numbers, which a data contract may be flagging
        (folder / f"{name}.parquet").unlink(missing_ok=True)
        frame.to_pickle(folder / f"{name}.pkl")
        report.notes.append(
            f"dataset {name!r} stored as a pickle: Parquet cannot hold it ({type(exc).__name__}: {exc})"
        )
        return f"{prefix}/{name}.pkl"


def record_report(
    ws: Workspace,
    cand: Candidate,
    report: GateReport,
    data: Mapping[str, Any] | None,
    *,
    own: GateReport | None = None,
    new_override: bool = False,
) -> GateReport:
    """Store the binding ``report``, the check's ``own`` report and the data it read on the
    candidate's run; tag run and version; audit (the override too, when this call applied one)."""
    report.artifact_uri = f"runs:/{cand.run_id}/{REPORT_JSON}"
    _write_report_files(ws, cand.run_id, report, data, own)
    _write_tags(ws, cand, report)
    common = cand.audit_fields()
    if new_override and report.override:
        _audit_override(ws, cand, report)
    audit.append(
        "gate.verdict",
        workspace=ws,
        **common,
        verdict=report.verdict,
        gates={r.name: r.status for r in report.results},
        report=report.artifact_uri,
        check=own.artifact_uri if own is not None else None,
        check_verdict=own.verdict if own is not None else None,
    )
    return report


def _audit_override(ws: Workspace, cand: Candidate, report: GateReport) -> None:
    assert report.override is not None
    latest = {k: v for k, v in report.override.items() if k != "previous"}
    audit.append("gate.override", workspace=ws, **cand.audit_fields(), **latest, verdict=report.verdict)


def record_override(ws: Workspace, cand: Candidate, report: GateReport) -> GateReport:
    """Store a binding report that an override just changed; tag run and version; audit the override."""
    report.artifact_uri = f"runs:/{cand.run_id}/{REPORT_JSON}"
    _write_report_files(ws, cand.run_id, report, None)
    _write_tags(ws, cand, report)
    _audit_override(ws, cand, report)
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
    return recorded_report(ws, cand)


def read_report(ws: Workspace, run_id: str) -> GateReport | None:
    """The report stored on run ``run_id`` (one run holds one report), or None.

    Raises:
        GateError: the artifact store could not be read (not the same as "nothing recorded").
    """
    from mlflow.exceptions import MlflowException

    try:
        with tempfile.TemporaryDirectory() as tmp:
            local = client(ws).download_artifacts(run_id, REPORT_JSON, tmp)
            return GateReport.from_dict(json.loads(Path(local).read_text(encoding="utf-8")))
    except (MlflowException, FileNotFoundError) as exc:
        if isinstance(exc, FileNotFoundError) or exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
            return None
        raise GateError(
            f"Could not read the gate report of run {run_id}: {exc}",
            hint="Check that the tracking server and artifact store are reachable, then try again.",
        ) from exc


def other_version(cand: Candidate, report: GateReport) -> str | None:
    """The version a report was recorded for, when that is not ``cand`` (two versions of one run)."""
    recorded = report.candidate
    if not (cand.version and recorded.get("version")):
        return None
    theirs = f"{recorded.get('model_name')}/{recorded['version']}"
    return None if theirs == cand.label else theirs


def recorded_report(ws: Workspace, cand: Candidate) -> GateReport:
    report = read_report(ws, cand.run_id)
    if report is None:
        raise GateError(
            f"No gate report is recorded for {cand.label} (run {cand.run_id} has no {REPORT_JSON}).",
            hint="Run shipyard.check(...) or a flow step with @shipyard.gate first.",
        )
    if other := other_version(cand, report):
        raise GateError(
            f"No gate report is recorded for {cand.label}: the report on run {cand.run_id} is for "
            f"{other}, registered from the same run.",
            hint=f"Run shipyard.check('{cand.label}', ...) to record this version's own report.",
        )
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
    cand = resolve_candidate(model_version_ref, workspace=ws)
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
    report = read_report(ws, cand.run_id)
    if report is None:
        report = GateReport(candidate=cand.info(), results=[], created_at=now(), author=ws.author)
    elif other := other_version(cand, report):
        raise GateError(
            f"Cannot attach results to {cand.label}: its run {cand.run_id} holds the gate report of {other}, "
            "which attaching would replace.",
            hint="Register each model version from its own run.",
        )
    report = report.with_results(incoming)
    report.artifact_uri = f"runs:/{cand.run_id}/{REPORT_JSON}"
    _write_report_files(ws, cand.run_id, report, None)
    _write_tags(ws, cand, report)
    audit.append(
        "gate.attach",
        workspace=ws,
        **cand.audit_fields(),
        source=source,
        verdict=report.verdict,
        results={r.name: {"status": r.status, "value": r.value, "threshold": r.threshold} for r in incoming},
    )
    return report
