"""Running gates against a candidate and applying overrides: :func:`check` and :func:`recheck`.

Which model is checked, and how it predicts, is :mod:`._candidate`'s job;
writing the verdict down and reading it back is :mod:`._record`'s.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from .._core import audit
from .._core.errors import GateError, OverrideRefused
from .._core.workspace import Workspace, current_workspace
from ._candidate import Candidate, client, get_run, live_champion, load_subject, pinned_champion, read_profile
from ._candidate import resolve_candidate
from ._evaluate import EvalContext, evaluate
from ._record import now, record_report, recorded_report
from ._report import GateReport, GateResult
from ._specs import GateSpec, SliceParity, spec_from_dict, spec_to_dict


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
    run = get_run(ws, cand.run_id)
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
    ctx = _context(ws, cand, specs, frame, target, data, model_name, live_champion(ws))
    results, notes = _run_gates(specs, ctx)
    report = GateReport(
        # the model whose champion was compared with, so a re-check compares with the same one
        candidate={**cand.info(), "compared_with": ctx.model_name},
        results=results,
        champion=ctx.champion_used,
        specs=[spec_to_dict(s) for s in specs],
        target=target if frame is not None else None,
        created_at=now(),
        author=ws.author,
        notes=notes,
    )
    if override_names is not None:
        if reason is None or not str(reason).strip():
            audit.append(
                "gate.override_refused",
                workspace=ws,
                **cand.audit_fields(),
                gates=override_names,
            )
            raise OverrideRefused(
                f"Override of {', '.join(override_names)} for {report.subject()} refused: no written reason.",
                report=report,
                hint='Say why the failing gate may be ignored: override=[...], reason="...".',
            )
        report = apply_override(report, override_names, by=ws.author, at=now(), reason=str(reason).strip())
    if record:
        report = record_report(ws, cand, report, data)
    if raise_on_fail:
        report.raise_for_verdict()
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
    recorded = recorded_report(ws, cand)
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
                local = client(ws).download_artifacts(cand.run_id, path, tmp)
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
        pinned_champion(ws, recorded.champion),
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
        created_at=now(),
        author=ws.author,
        notes=notes + ([f"kept as recorded: {', '.join(r.name for r in carried)}"] if carried else []),
        artifact_uri=recorded.artifact_uri,
    )
    if recorded.override:
        o = recorded.override
        report = apply_override(report, o["gates"], by=o["by"], at=o["at"], reason=o["reason"])
    return report
