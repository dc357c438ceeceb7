"""Running gates against a candidate and applying overrides: :func:`check`, :func:`recheck`, :func:`override`.

Which model is checked, and how it predicts, is :mod:`._candidate`'s job;
writing the verdict down and reading it back is :mod:`._record`'s.

Q: Which report does ``promote`` trust, when a candidate was checked several times?
A: Its *binding* report (``shipyard/gates/report.json`` on the run), which
   every recorded check updates by :func:`bind`, never simply replaces:
   results of gates the new check did not run are carried over, and a
   blocking gate that failed (or could not be evaluated) stays failed unless
   the *same* gate (same name and settings; for a custom gate the same
   function source) is evaluated again and passes, or an override with a
   written reason names it. A more lenient gate under the same name, or
   different gates, give a new report of their own (kept under
   ``shipyard/gates/checks/``) but cannot turn the failure into a pass.
   Otherwise any later ``check(run, gates=[threshold("rmse <= 1000")])``
   would silently undo the gates the flow declared.
"""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from .._core import audit
from .._core.errors import GateError, OverrideRefused
from .._core.workspace import Workspace, current_workspace
from . import _attributions
from ._candidate import Candidate, client, get_run, live_champion, load_subject, pinned_champion, read_profile
from ._candidate import resolve_candidate
from ._evaluate import CannotEvaluate, EvalContext, evaluate
from ._record import now, read_report, record_override, record_report, recorded_report
from ._report import GateReport, GateResult
from ._specs import GateSpec, SliceParity, spec_from_dict, spec_identity, spec_to_dict


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
    """Mark the blocking failures among ``names`` as ``overridden``; record who, when, why.

    An earlier override of the report is kept under ``override["previous"]``.
    """
    targets = [r.name for r in report.results if r.blocks and r.name in names]
    if not targets:
        report.notes.append(f"override of {', '.join(names)} requested, but none of them failed; nothing overridden")
        return report
    results = [
        replace(r, status="overridden", message=f"{r.message} — overridden by {by}: {reason}")
        if r.name in targets
        else r
        for r in report.results
    ]
    earlier = report.override
    report = replace(report, results=results)
    report.override = {"gates": targets, "by": by, "at": at, "reason": reason}
    if earlier:
        latest = {k: v for k, v in earlier.items() if k != "previous"}
        report.override["previous"] = [*earlier.get("previous", []), latest]
    return report


def _describe(spec: Mapping[str, Any] | None) -> str:
    if not spec:
        return "a result attached from elsewhere"
    if spec.get("kind") == "threshold":
        return f"{spec.get('metric')} {spec.get('op')} {spec.get('value'):g}"
    if spec.get("kind") == "custom":
        return f"custom {spec.get('fn', {}).get('qualname')}"
    return str(spec.get("kind"))


def _carried(result: GateResult, previous: GateReport) -> GateResult:
    if "carried_from" in result.details:
        return result
    return replace(result, details={**result.details, "carried_from": previous.check_id or previous.created_at})


def bind(previous: GateReport | None, new: GateReport) -> GateReport:
    """The candidate's binding report after ``new``: ``new``'s results merged into ``previous``.

    Gates ``new`` did not run keep their recorded results. A recorded blocking
    failure (``fail``, or a blocking ``error``) or override stays unless ``new``
    evaluated the same gate (:func:`~._specs.spec_identity`): a different gate
    under the same name is noted and does not replace it. The same gate's new
    result replaces the recorded one, whatever it is: an override covers the
    failure it was given for, so the same gate failing again needs a new one.

    Example:
        >>> bind(None, report) is report                      # doctest: +SKIP
        True
    """
    if previous is None:
        return new
    prev_specs = {s["name"]: s for s in previous.specs}
    new_specs = {s["name"]: s for s in new.specs}
    results = {r.name: r for r in new.results}
    specs = dict(new_specs)
    notes = list(new.notes)
    keeps_override = False
    for old in previous.results:
        fresh = results.get(old.name)
        held = old.blocks or old.status == "overridden"
        same = old.name in prev_specs and spec_identity(prev_specs[old.name]) == spec_identity(new_specs.get(old.name))
        if fresh is None or (held and not same):
            results[old.name] = _carried(old, previous)
            specs.pop(old.name, None)
            if old.name in prev_specs:
                specs[old.name] = prev_specs[old.name]
            keeps_override |= old.status == "overridden"
            if fresh is not None:
                ran = _describe(new_specs.get(old.name))
                notes.append(
                    f"{old.name}: this check ran a different gate under that name ({ran}, "
                    f"{fresh.status}); the recorded gate ({_describe(prev_specs.get(old.name))}) stays {old.status}: "
                    "a blocking failure is lifted only by the same gate passing, or by an override with a reason"
                )
    carried = [name for name, r in results.items() if "carried_from" in r.details and name not in new_specs]
    if carried:
        notes.append(f"carried from earlier checks: {', '.join(carried)}")
    return replace(
        new,
        results=list(results.values()),
        specs=list(specs.values()),
        notes=notes,
        override=previous.override if keeps_override else None,
        # attributions describe the model, not a gate: a check without a holdout keeps the recorded ones
        attributions=new.attributions or previous.attributions,
    )


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

    ctx = EvalContext(
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
    if subject is not None and holdout is not None:
        ctx.attributions = _attributions.AtGateTime(ws, ctx, _attributions.metrics_of(specs))
    return ctx


def _attributions_of(ws: Workspace, ctx: EvalContext) -> Any:
    """The candidate's attributions when the setting asks for them or a gate computed them, else None."""
    lazy = ctx.attributions
    if not isinstance(lazy, _attributions.AtGateTime) or not (ws.settings.attributions or lazy.value is not None):
        return None
    return lazy()


def _run_gates(specs: Sequence[GateSpec], ctx: EvalContext) -> tuple[list[GateResult], list[str]]:
    results: list[GateResult] = []
    notes: list[str] = []
    for spec in specs:
        try:
            result = evaluate(spec, ctx)
        except CannotEvaluate as exc:
            result = cannot_evaluate(spec.gate_name, spec.kind, spec.blocking, exc)
        if note := result.details.get("note"):
            notes.append(f"{result.name}: {note}")
        results.append(result)
    return results, notes


def cannot_evaluate(name: str, kind: str, blocking: bool, exc: GateError) -> GateResult:
    """The result of a gate that could not be evaluated: status ``error``, the cause in the message."""
    return GateResult(
        name,
        "error",
        None,
        None,
        f"cannot be evaluated: {exc.message}",
        blocking,
        kind,
        {"error": exc.message, "hint": exc.hint, "cause": repr(exc.__cause__) if exc.__cause__ else None},
    )


def new_check_id() -> str:
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


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
        The candidate's binding :class:`GateReport` (what ``promote`` trusts): these gates' results
        merged with the recorded ones by :func:`bind`, so an earlier blocking failure that these
        gates did not lift is still in it. ``report.verdict`` is ``pass``, ``overridden`` or ``fail``.
        With ``record=False``, only these gates' results.

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
    cand = resolve_candidate(candidate, model=model, workspace=ws)
    frame = _as_holdout(holdout, target)
    data = {name: _as_frame(name, value) for name, value in (datasets or {}).items()}
    if frame is not None:
        data["holdout"] = frame
    ctx = _context(ws, cand, specs, frame, target, data, model_name, live_champion(ws))
    results, notes = _run_gates(specs, ctx)
    attributions = _attributions_of(ws, ctx)
    if attributions is not None and attributions.error:
        notes.append(f"feature attributions not computed: {attributions.error}")
    check_id = new_check_id()
    own = GateReport(
        # the model whose champion was compared with, so a re-check compares with the same one
        candidate={**cand.info(), "compared_with": ctx.model_name},
        results=results,
        champion=ctx.champion_used,
        specs=[{**spec_to_dict(s), "check": check_id} for s in specs],
        target=target if frame is not None else None,
        created_at=now(),
        author=ws.author,
        notes=notes,
        check_id=check_id,
        attributions=attributions.to_dict() if attributions is not None else None,
    )
    report = bind(_binding(ws, cand), own) if record else own
    override_names = _override_names(override, [r.name for r in report.results])
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
        if attributions is not None:
            _attributions.log(ws, cand.run_id, attributions)
        report = record_report(ws, cand, report, data, own=own, new_override=override_names is not None)
    if raise_on_fail:
        report.raise_for_verdict()
    return report


def _binding(ws: Workspace, cand: Candidate) -> GateReport | None:
    """The binding report recorded for ``cand``, or None (also when the run's report is another version's)."""
    from ._record import other_version

    previous = read_report(ws, cand.run_id)
    if previous is None or other_version(cand, previous):
        return None
    return previous


def override(
    ref: Any,
    gates: str | Sequence[str],
    *,
    reason: str | None,
    workspace: Workspace | None = None,
) -> GateReport:
    """Override blocking failures in the binding report of a run or version, without re-running gates.

    The override names its author (the configured ``author``, else the OS
    user), and is written into the report, the run and version tags
    (``shipyard.gate.override.*``) and the audit log before this returns.

    Args:
        ref: run id, ``RunResult`` or registered version (``"churn/4"``, ``"churn@challenger"``).
        gates: the gate name(s) to override; each must be in the recorded report.
        reason: why the failure may be ignored; required.

    Raises:
        OverrideRefused: no reason, or a blank one (an ``gate.override_refused`` audit record is written).
        GateError: nothing is recorded for ``ref``, or a named gate is not in its report.

    Example:
        >>> shipyard.gates.override("churn/4", ["threshold.rmse"],
        ...                         reason="holdout mislabelled, INC-231")  # doctest: +SKIP
    """
    ws = workspace or current_workspace()
    cand = resolve_candidate(ref, workspace=ws)
    report = recorded_report(ws, cand)
    names = _override_names([gates] if isinstance(gates, str) else list(gates), [r.name for r in report.results])
    assert names is not None
    if reason is None or not str(reason).strip():
        audit.append("gate.override_refused", workspace=ws, **cand.audit_fields(), gates=names)
        raise OverrideRefused(
            f"Override of {', '.join(names)} for {report.subject()} refused: no written reason.",
            report=report,
            hint='Say why the failing gate may be ignored: --reason "..." (or reason="...").',
        )
    not_failed = [n for n in names if not report[n].blocks]
    if len(not_failed) == len(names):
        raise GateError(
            f"Nothing to override for {report.subject()}: {', '.join(names)} did not fail "
            f"(statuses: {', '.join(f'{n}={report[n].status}' for n in names)}).",
            hint="Override only gates whose status is fail or error; see `shipyard gates show`.",
        )
    report = apply_override(report, names, by=ws.author, at=now(), reason=str(reason).strip())
    return record_override(ws, cand, report)


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
    # only the last check's gates can be re-run on the data stored with it; results carried
    # from earlier checks were evaluated on theirs and are kept as recorded
    latest = [s for s in recorded.specs if s.get("check", recorded.check_id) == recorded.check_id]
    specs: list[GateSpec] = []
    unloadable: list[GateResult] = []
    for stored in latest:
        try:
            specs.append(spec_from_dict(stored))
        except GateError as exc:
            if stored.get("kind") != "custom":
                raise
            blocking = bool(stored.get("blocking", True))
            unloadable.append(cannot_evaluate(str(stored.get("name")), "custom", blocking, exc))
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
    results += unloadable
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
        check_id=recorded.check_id,
        attributions=recorded.attributions,
    )
    if recorded.override:
        for o in [*recorded.override.get("previous", []), recorded.override]:
            if any(r.blocks for r in report.results if r.name in o["gates"]):
                report = apply_override(report, o["gates"], by=o["by"], at=o["at"], reason=o["reason"])
        report.override = recorded.override
    return report
