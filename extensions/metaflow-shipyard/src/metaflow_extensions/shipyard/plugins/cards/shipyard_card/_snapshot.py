"""What a shipyard card shows, read from MLflow through shipyard's API into plain JSON-ready data.

The data travels from the step's process to the process Metaflow draws the
card in, as the JSON that ``current.card[...].refresh(data)`` takes: so only
dicts, lists, strings and numbers (a non-finite metric value becomes None).
"""

from __future__ import annotations

import math
import urllib.parse
from datetime import datetime, timezone
from typing import Any

SNAPSHOT_VERSION = 1
_reports: dict[tuple[str, tuple[tuple[str, str], ...]], dict[str, Any] | None] = {}  # gate tags → report, per run


def collect(run_id: str, workspace: Any = None, *, origin: str = "step") -> dict[str, Any]:
    """The card's data for MLflow run ``run_id``: the run, its metric history, gates, versions and lineage.

    Args:
        run_id: the MLflow run the tracked flow logs into.
        workspace: the shipyard workspace; default: the current one.
        origin: ``step`` when collected in the step's process, ``card`` when the drawing process read it itself.
    """
    import shipyard
    from shipyard._core import lineage

    ws = workspace or shipyard.current_workspace()
    run = shipyard.get_run(run_id, workspace=ws)
    history = shipyard.metric_history(run_id, workspace=ws)
    assert history is not None  # only a missing run id gives None
    ui = mlflow_ui(ws)
    gate_tags = tuple(sorted((k, v) for k, v in run.tags.items() if k.startswith(lineage.GATE_PREFIX)))
    return {
        "version": SNAPSHOT_VERSION,
        "origin": origin,
        "collected_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "run": {
            "id": run.run_id,
            "name": run.run_name,
            "experiment": run.experiment,
            "experiment_id": history.experiment_id,
            "status": history.status,
            "url": f"{ui}/#/experiments/{history.experiment_id}/runs/{run.run_id}" if ui else "",
        },
        "metrics": {
            name: [[p.step, p.value if math.isfinite(p.value) else None] for p in points]
            for name, points in sorted(history.metrics.items())
        },
        "gates": _gates(ws, run.run_id, gate_tags) if gate_tags else None,
        "versions": _versions(ws, run.run_id, ui),
        "lineage": run.lineage.to_dict(),
    }


def collect_for_task(task: Any, *, final: bool) -> dict[str, Any]:
    """The card's data read in the drawing process: for a card on a step shipyard did not hand data to."""
    from shipyard.flows._hooks import RUN_ID_ARTIFACT

    try:
        run_id = task[RUN_ID_ARTIFACT].data if final else None
    except KeyError:
        run_id = None
    if not run_id:
        return {"version": SNAPSHOT_VERSION, "origin": "card", "error": (
            "This step logged into no shipyard run: put @shipyard.track on the flow (or the step) to fill this card."
        )}
    return collect(run_id, origin="card")


def summary(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The small data update Metaflow stores between cards: status, points so far, verdict, versions."""
    return {
        "status": (snapshot.get("run") or {}).get("status"),
        "points": sum(len(p) for p in (snapshot.get("metrics") or {}).values()),
        "verdict": (snapshot.get("gates") or {}).get("verdict"),
        "versions": [f"{v['name']}/{v['version']}" for v in snapshot.get("versions") or ()],
    }


def fingerprint(snapshot: dict[str, Any]) -> Any:
    """What changes when the card would show something new (the collection time left out)."""
    return {k: v for k, v in snapshot.items() if k != "collected_at"}


def mlflow_ui(ws: Any) -> str:
    """Base URL of the MLflow UI the links point to ("" when there is none: an embedded store)."""
    return ws.mlflow_ui.rstrip("/")


def version_url(ui: str, name: str, version: str) -> str:
    return f"{ui}/#/models/{urllib.parse.quote(name, safe='')}/versions/{version}" if ui else ""


def _gates(ws: Any, run_id: str, gate_tags: tuple[tuple[str, str], ...]) -> dict[str, Any] | None:
    """The run's gate report, read again only when its gate tags changed (the report is an artifact download)."""
    from shipyard._core import lineage
    from shipyard._core.errors import GateError
    from shipyard.gates import load_report

    key = (run_id, gate_tags)
    if key not in _reports:
        tags = dict(gate_tags)
        try:
            report = load_report(run_id, workspace=ws)
        except GateError:  # tags without a report: a verdict recorded elsewhere, still worth showing
            _reports[key] = {
                "verdict": tags.get(lineage.GATE_VERDICT, ""),
                "results": [{"name": n, "status": s, "message": "", "blocking": True}
                            for n, s in sorted(lineage.gate_statuses(tags).items())],
                "override": lineage.gate_override(tags),
                "notes": ["the gate report could not be read; statuses are from the run's tags"],
            }
        else:
            _reports[key] = {
                "verdict": report.verdict,
                "results": [{"name": r.name, "status": r.status, "message": r.message, "blocking": r.blocking,
                             "value": _finite(r.value), "threshold": _finite(r.threshold), "kind": r.kind}
                            for r in report.results],
                "override": {k: v for k, v in (report.override or {}).items() if k != "previous"} or None,
                "notes": list(report.notes),
            }
    return _reports[key]


def _versions(ws: Any, run_id: str, ui: str) -> list[dict[str, Any]]:
    """Every registered version made from the run, with its aliases as they are now."""
    from shipyard import ModelRef, registry
    from shipyard.tracking._client import client_for

    found = client_for(ws).search_model_versions(f"run_id = '{run_id}'")
    out = []
    for mv in sorted(found, key=lambda v: (v.name, int(v.version))):
        version = registry.resolve(ModelRef(name=mv.name, version=str(mv.version)), workspace=ws)
        out.append({
            "name": version.name,
            "version": version.version,
            "aliases": sorted(version.aliases),
            "uri": version.uri,
            "url": version_url(ui, version.name, version.version),
        })
    return out


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None
