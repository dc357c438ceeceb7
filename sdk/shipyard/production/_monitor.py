"""``shipyard monitor``: production data held against a model version's reference profile, on record.

Production rows come from one of three sources:

- a **capture** folder the model image wrote (``<model slug>/v<version>/``:
  ``capture.json`` and ``rows-*.jsonl``, format in docs/monitoring.md);
- a **Prometheus** server that scrapes the image: the drift gauges the image
  computed itself (``shipyard_drift_distance`` and its siblings), read through
  the query API;
- **data** you hand over: a DataFrame, a dict of columns, or a CSV or Parquet file.

Rows are measured with :func:`shipyard.monitoring.drift.compute_drift`
against the profile frozen when the version's bento was built
(:func:`shipyard.packaging.reference.reference_for`), the same call the image
makes, so the report and the image's gauges agree on the same rows. Drift
gates judge the result; the report is an MLflow run of experiment
``shipyard-monitoring`` (a metric per column, ``monitoring/drift.json`` and
``monitoring/drift.html``), tags on the version, and an audit event. A failed
blocking drift gate can start :func:`shipyard.production.retrain`.

Q: Why does a Prometheus report hold no figures of the current distribution?
A: Prometheus keeps what the image computed (distances, PSI, window sizes),
   not the rows; the figures then show the reference only, with the
   distance. A capture or a DataFrame gives both sides.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._core import audit, lineage
from .._core.errors import ModelNotFound, MonitoringError, ShipyardError
from .._core.refs import ModelRef
from .._core.workspace import Workspace, current_workspace, slug

if TYPE_CHECKING:
    from ..gates import GateResult, GateSpec
    from ..monitoring.drift import ColumnDrift, DriftResult
    from ._retrain import RetrainResult

EXPERIMENT = "shipyard-monitoring"
DRIFT_JSON = f"{lineage.MONITOR_ARTIFACT_DIR}/drift.json"
DRIFT_HTML = f"{lineage.MONITOR_ARTIFACT_DIR}/drift.html"
ROWS_GLOB = "rows-*.jsonl"  # the image's capture files (shipyard.monitoring.runtime writes them)
PREDICTION_COLUMN = "prediction"  # in a DataFrame given as data: the model's predictions, when present
DEFAULT_ALIAS = "champion"
_METRIC_KEY = re.compile(r"[^\w\-. /]")
_PROMETHEUS_TIMEOUT = 10.0


@dataclass(frozen=True)
class DriftReport:
    """What ``shipyard monitor`` found for one model version.

    Attributes:
        model: registered model name.
        version: the version watched.
        source: ``capture``, ``prometheus`` or ``data``.
        rows: production rows measured.
        result: per-column and prediction drift (:class:`shipyard.monitoring.drift.DriftResult`).
        gates: one :class:`~shipyard.gates.GateResult` per drift gate.
        verdict: ``fail`` when a blocking drift gate failed (or could not be evaluated), else ``pass``.
        run_id: the MLflow run holding the report (experiment ``shipyard-monitoring``).
        html_path: a local copy of the HTML report.
        retrain: what retraining did, when it was asked for and a blocking gate failed.
        notes: anything else worth knowing (columns left out, a reference that differs from the capture's).

    Example:
        >>> report = shipyard.monitor("iris", capture="/var/lib/shipyard/capture")   # doctest: +SKIP
        >>> report.verdict, report.result.drifted_columns                           # doctest: +SKIP
        ('fail', ['petal length (cm)'])
    """

    model: str
    version: str
    source: str
    rows: int
    result: DriftResult
    gates: list[GateResult]
    verdict: str
    run_id: str
    html_path: Path | None
    retrain: RetrainResult | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    @property
    def failed(self) -> list[GateResult]:
        """Blocking drift gates that failed or could not be evaluated."""
        return [g for g in self.gates if g.blocks]

    def to_dict(self) -> dict[str, Any]:
        from ..gates._report import _jsonable

        retrain = None
        if self.retrain is not None:
            r = self.retrain
            retrain = {"from_version": r.from_version, "version": r.version, "verdict": r.verdict, "data": r.data}
        return _jsonable(
            {
                "model": self.model,
                "version": self.version,
                "source": self.source,
                "rows": self.rows,
                "verdict": self.verdict,
                "result": self.result.to_dict(),
                "gates": [g.to_dict() for g in self.gates],
                "run_id": self.run_id,
                "html_path": str(self.html_path) if self.html_path else None,
                "retrain": retrain,
                "notes": list(self.notes),
            }
        )

    def summary(self) -> str:
        """Plain text: the verdict, one line per gate, one per drifted column."""
        lines = [f"{self.model}/{self.version} ({self.source}, {self.rows} rows): {self.verdict.upper()}"]
        lines += [f"  [{g.status}] {g.name}: {g.message}" for g in self.gates]
        for c in self.result.columns:
            if c.drifted:
                lines.append(f"  drifted {c.column}: {c.method} {c.distance:.4g} (PSI {c.psi:.3g})")
        lines += [f"  note: {n}" for n in self.notes]
        if self.retrain is not None:
            lines.append(f"  retrain: {self.retrain.verdict}, new version {self.retrain.version or '-'}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:
        return (
            f"<DriftReport {self.model}/{self.version} {self.verdict}: {self.rows} rows, "
            f"{len(self.result.drifted_columns)} of {len(self.result.columns)} columns drifted>"
        )

    def _repr_html_(self) -> str:
        from . import _report

        if self.html_path is not None and self.html_path.is_file():
            return _report.body_of(self.html_path.read_text(encoding="utf-8"))
        return _report.report_body(self, {})


def monitor(
    model: str,
    *,
    capture: str | Path | None = None,
    prometheus: str | None = None,
    data: Any = None,
    gates: Sequence[GateSpec] | None = None,
    retrain_data: str | Path | None = None,
    workspace: Workspace | None = None,
) -> DriftReport:
    """Measure a model version's production drift, judge it with drift gates, and record it.

    Args:
        model: ``NAME`` (its champion), ``NAME@ALIAS`` or ``NAME/VERSION``.
        capture: a capture root or the version's capture folder, as the image writes it.
        prometheus: base URL of a Prometheus server that scrapes the image.
        data: a DataFrame, a dict of columns, or a CSV or Parquet path (a ``prediction``
            column, when present, is compared with the reference predictions).
        gates: drift gates (default ``[shipyard.gates.drift()]``).
        retrain_data: when a blocking drift gate fails, retrain on this data
            (:func:`shipyard.production.retrain`) and attach the result.

    Returns:
        The :class:`DriftReport`; its ``run_id`` names the MLflow run holding it.

    Raises:
        MonitoringError: not exactly one source; Prometheus not answering; a capture folder of
            another version; no rows; no reference profile.
        ModelNotFound: no such model version.

    Example:
        >>> report = shipyard.monitor("iris@champion", data="last_week.parquet")   # doctest: +SKIP
        >>> report.passed                                                           # doctest: +SKIP
        True
    """
    from ..gates._drift import Drift, PredictionDrift, drift, evaluate_drift
    from ..monitoring.drift import compute_drift
    from ..registry import resolve

    given = [n for n, v in (("capture", capture), ("prometheus", prometheus), ("data", data)) if v is not None]
    if len(given) != 1:
        raise MonitoringError(
            f"Pass exactly one source of production data, not {len(given)} ({', '.join(given) or 'none'}).",
            hint="capture=DIR (the image's capture folder), prometheus=URL or data=DataFrame/CSV/Parquet.",
        )
    source = given[0]
    specs = list(gates) if gates is not None else [drift()]
    for spec in specs:
        if not isinstance(spec, (Drift, PredictionDrift)):
            raise MonitoringError(
                f"{getattr(spec, 'gate_name', spec)!r} is not a drift gate; shipyard monitor judges production data only.",
                hint="Use shipyard.gates.drift(...) and shipyard.gates.prediction_drift(...); run the other gates "
                "with shipyard.check on a holdout.",
            )
    ws = workspace or current_workspace()
    parsed = _model_ref(model)
    version = resolve(parsed, workspace=ws)
    profile = _reference(version.name, version.version, ws)
    threshold = ws.settings.drift_threshold
    notes: list[str] = list(profile.get("notes") or [])

    current: dict[str, Any] | None = None
    predictions: Any = None
    if source == "prometheus":
        assert prometheus is not None
        result = _from_prometheus(prometheus, version.name, version.version, profile, threshold)
    else:
        if source == "capture":
            assert capture is not None
            current, predictions, more = _from_capture(Path(capture), version.name, version.version, profile)
        else:
            current, predictions, more = _from_data(data, profile)
        notes += more
        if profile.get("prediction") is None:
            predictions = None
        result = compute_drift(profile, current, predictions=predictions, threshold=threshold)
    if result.rows <= 0:
        raise MonitoringError(
            f"No production rows to measure for {version} from {source}.",
            hint="Send the model some traffic (with capture or monitoring on in the image) or pass rows as data.",
        )
    missing = [c for c in profile.get("columns") or {} if c not in {r.column for r in result.columns}]
    if missing:
        notes.append(f"not in the production data, so not measured: {', '.join(missing)}")

    gate_results = [evaluate_drift(spec, result) for spec in specs]
    verdict = "fail" if any(g.blocks for g in gate_results) else "pass"
    at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    shown = _drifting(result, gate_results)
    draft = DriftReport(
        version.name, version.version, source, result.rows, result, gate_results, verdict, "", None, None, tuple(notes)
    )
    run_id, html_path = _record(ws, draft, profile, current, predictions, shown, at)
    _tag_version(ws, version, verdict, run_id, at, result)
    audit.append(
        "monitor",
        workspace=ws,
        model=version.name,
        version=version.version,
        source=source,
        rows=result.rows,
        verdict=verdict,
        drifted=result.drifted_columns,
        failed=[g.name for g in gate_results if g.blocks],
        run_id=run_id,
    )
    retrained = None
    if retrain_data is not None and any(g.status == "fail" for g in gate_results):
        # imported only when asked for: retraining pulls in the flow runner
        from ._retrain import retrain

        reason = "drift: " + "; ".join(f"{g.name}: {g.message}" for g in gate_results if g.blocks)
        retrained = retrain(
            version.name, data=retrain_data, alias=parsed.alias or DEFAULT_ALIAS, reason=reason[:500], workspace=ws
        )
    return DriftReport(
        version.name,
        version.version,
        source,
        result.rows,
        result,
        gate_results,
        verdict,
        run_id,
        html_path,
        retrained,
        tuple(notes),
    )


def _model_ref(model: str) -> ModelRef:
    """``model`` as a reference; a bare name means its champion."""
    try:
        parsed = ModelRef.parse(model)
    except ModelNotFound as first:
        try:
            parsed = ModelRef.parse(f"{str(model).strip()}@{DEFAULT_ALIAS}")
        except ModelNotFound:
            raise first from None
    if parsed.is_run:
        raise ModelNotFound(
            f"{model} is a run; shipyard monitor watches a registered model version.",
            hint="Pass NAME (its champion), NAME@ALIAS or NAME/VERSION.",
        )
    return parsed


def _reference(name: str, version: str, ws: Workspace) -> dict[str, Any]:
    from ..packaging.reference import reference_for

    try:
        profile = reference_for(name, version, workspace=ws)
    except (MonitoringError, ModelNotFound):
        raise
    except ShipyardError as exc:
        raise MonitoringError(
            f"No reference profile for {name}/{version}: {exc.message}",
            hint=exc.hint or "Package the version (shipyard package) so its reference profile is frozen.",
        ) from exc
    if not profile or not profile.get("columns"):
        raise MonitoringError(
            f"{name}/{version} has no reference profile with input columns to hold production data against.",
            hint="Log the training data with shipyard.log_dataset (or an input example with the model), "
            "then package the version again.",
        )
    return profile


# ---- sources ------------------------------------------------------------------------------


def _from_capture(
    path: Path, name: str, version: str, profile: Mapping[str, Any]
) -> tuple[dict[str, list[Any]], list[Any] | None, list[str]]:
    from ..monitoring.runtime import MANIFEST

    folder = _capture_folder(path.expanduser(), name, version, MANIFEST)
    manifest = _read_manifest(folder / MANIFEST)
    found_model, found_version = str(manifest.get("model", "")), str(manifest.get("version", ""))
    if (found_model, found_version) != (name, str(version)):
        raise MonitoringError(
            f"The capture folder {folder} holds {found_model} v{found_version}, not {name} v{version}.",
            hint=f"Pass the folder of {name} v{version} (<capture root>/{slug(name)}/v{version}), "
            f"or monitor {found_model}/{found_version}.",
        )
    notes: list[str] = []
    if manifest.get("reference") and manifest["reference"] != profile.get("fingerprint"):
        notes.append(
            f"the capture was written against reference {str(manifest['reference'])[:12]}, "
            f"not {str(profile.get('fingerprint'))[:12]} (the version's profile now)"
        )
    sensitive = set(manifest.get("sensitive") or {})
    if sensitive:
        notes.append(
            f"sensitive columns are captured hashed or not at all, so not measured: {', '.join(sorted(sensitive))}"
        )
    names = [c for c in profile.get("columns") or {} if c not in sensitive]
    columns: dict[str, list[Any]] = {c: [] for c in names}
    predictions: list[Any] = []
    skipped = 0
    rows: list[tuple[float, dict[str, Any], Any]] = []
    for file in sorted(folder.glob(ROWS_GLOB)):
        with file.open(encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # the line the image was writing when the file was read
                    skipped += 1
                    continue
                rows.append((float(row.get("ts") or 0.0), row.get("inputs") or {}, row.get("prediction")))
    rows.sort(key=lambda r: r[0])
    for _, inputs, prediction in rows:
        for c in names:
            columns[c].append(inputs.get(c))
        predictions.append(prediction[0] if isinstance(prediction, list) and len(prediction) == 1 else prediction)
    if skipped:
        notes.append(f"{skipped} unreadable capture line(s) skipped")
    if not rows:
        raise MonitoringError(
            f"The capture folder {folder} holds no rows yet.",
            hint="Capture writes rows as requests arrive (SHIPYARD_CAPTURE=1 in the container); send traffic first.",
        )
    has_predictions = any(p is not None for p in predictions)
    return columns, predictions if has_predictions else None, notes


def _capture_folder(path: Path, name: str, version: str, manifest: str) -> Path:
    if not path.is_dir():
        raise MonitoringError(f"The capture folder {path} does not exist.", hint="Pass the folder the image writes to.")
    for candidate in (path, path / f"v{version}", path / slug(name) / f"v{version}"):
        if (candidate / manifest).is_file():
            return candidate
    others = sorted({*path.glob(f"*/{manifest}"), *path.glob(f"*/*/{manifest}")})
    if others:
        held = []
        for other in others:
            meta = _read_manifest(other)
            held.append(f"{meta.get('model')} v{meta.get('version')}")
        raise MonitoringError(
            f"The capture under {path} holds {', '.join(held)}, not {name} v{version}.",
            hint=f"Pass the capture of {name} v{version}, or monitor one of the versions captured.",
        )
    raise MonitoringError(
        f"No capture under {path} (no {manifest}).",
        hint="Turn capture on in the container (SHIPYARD_CAPTURE=1, SHIPYARD_CAPTURE_DIR on a volume) and pass "
        "that folder.",
    )


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise MonitoringError(f"Cannot read the capture manifest {path}: {exc}") from exc
    if not isinstance(meta, dict):
        raise MonitoringError(f"The capture manifest {path} is not a JSON object.")
    return meta


def _from_data(data: Any, profile: Mapping[str, Any]) -> tuple[dict[str, Any], Any, list[str]]:
    if isinstance(data, (str, Path)):
        data = _read_table(Path(data).expanduser())
    if isinstance(data, Mapping):
        table = dict(data)
        keys = {str(c): c for c in table}
    elif hasattr(data, "columns") and hasattr(data, "__getitem__"):
        table = data
        keys = {
            str(c): c for c in data.columns
        }  # a tensor model's columns are numbered: the profile names them "0", "1" …
    else:
        raise MonitoringError(
            f"data must be a DataFrame, a dict of columns or a CSV or Parquet path, not {type(data).__name__}.",
        )
    wanted = list(profile.get("columns") or {})
    names = list(keys)
    if not set(wanted) & set(names):
        raise MonitoringError(
            f"The data has none of the model's input columns ({', '.join(wanted[:10])}); it has {', '.join(names[:10])}.",
            hint="Pass the rows the model was asked to predict, with its input column names.",
        )
    columns = {c: table[keys[c]] for c in wanted if c in keys}
    predictions = (
        table[keys[PREDICTION_COLUMN]] if PREDICTION_COLUMN in keys and PREDICTION_COLUMN not in wanted else None
    )
    notes = [] if predictions is not None else [f"no {PREDICTION_COLUMN!r} column: prediction drift not measured"]
    return columns, predictions, notes


def _read_table(path: Path) -> Any:
    import pandas as pd

    if not path.is_file():
        raise MonitoringError(f"The data file {path} does not exist.")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path)
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
    except Exception as exc:
        raise MonitoringError(f"Cannot read {path}: {type(exc).__name__}: {exc}") from exc
    raise MonitoringError(f"{path} is neither CSV nor Parquet.", hint="Pass a .csv or .parquet file, or a DataFrame.")


def _from_prometheus(url: str, name: str, version: str, profile: Mapping[str, Any], threshold: float) -> DriftResult:
    """The drift the image computed, as Prometheus last scraped it (the worst replica per column)."""
    from ..monitoring.drift import DATASET_SHARE, ColumnDrift, DriftResult

    selector = "{" + f'model="{_label(name)}",version="{_label(version)}"' + "}"
    distances = _query(url, f"max by (column, method) (shipyard_drift_distance{selector})")
    if not distances:
        raise MonitoringError(
            f"Prometheus at {url} has no shipyard_drift_distance for model={name!r}, version={version!r}.",
            hint="Check that Prometheus scrapes the image's /metrics, that monitoring is on in the image, and "
            "that the model has served requests since it started.",
        )
    psi = {s["metric"].get("column"): _value(s) for s in _query(url, f"max by (column) (shipyard_drift_psi{selector})")}
    rows = int(sum(_value(s) for s in _query(url, f"sum(shipyard_drift_window_rows{selector})")))
    nulls = {
        s["metric"].get("column"): _value(s)
        for s in _query(url, f"sum by (column) (shipyard_input_nulls_total{selector})")
    }
    seen = sum(_value(s) for s in _query(url, f"sum(shipyard_monitor_rows_total{selector})"))
    by_column = {s["metric"].get("column"): s for s in distances}
    references: Mapping[str, Any] = profile.get("columns") or {}

    def column(name: str, reference: Mapping[str, Any], method: str, distance: float, psi_value: float) -> ColumnDrift:
        return ColumnDrift(
            column=name,
            kind=str(reference.get("kind", "")),
            method=method,
            distance=distance,
            psi=psi_value,
            threshold=threshold,
            drifted=distance >= threshold,
            rows=rows,
            null_rate=(nulls.get(name, 0.0) / seen) if seen else math.nan,
            reference_null_rate=float(reference.get("null_rate", 0.0)),
        )

    columns = tuple(
        column(c, ref, by_column[c]["metric"].get("method", ""), _value(by_column[c]), psi.get(c, math.nan))
        for c, ref in references.items()
        if c in by_column
    )
    prediction = None
    if profile.get("prediction") is not None:
        found = _query(url, f"max by (method) (shipyard_prediction_drift_distance{selector})")
        if found:
            p = found[0]
            prediction = column("prediction", profile["prediction"], p["metric"].get("method", ""), _value(p), math.nan)
    drifted = sum(1 for c in columns if c.drifted)
    share = drifted / len(columns) if columns else 0.0
    return DriftResult(
        columns=columns, prediction=prediction, share=share, dataset_drift=share >= DATASET_SHARE, rows=rows
    )


def _label(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"')


def _value(series: Mapping[str, Any]) -> float:
    try:
        return float(series["value"][1])
    except (KeyError, IndexError, TypeError, ValueError):
        return math.nan


def _query(url: str, promql: str) -> list[dict[str, Any]]:
    """One instant query through Prometheus's HTTP API (``/api/v1/query``)."""
    import urllib.error
    import urllib.parse
    import urllib.request

    endpoint = url.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    hint = "Check the URL and that Prometheus is running and reachable from here (e.g. curl URL/-/ready)."
    try:
        with urllib.request.urlopen(endpoint, timeout=_PROMETHEUS_TIMEOUT) as response:
            body = json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")[:300]
        raise MonitoringError(
            f"Prometheus at {url} refused the query {promql!r}: HTTP {exc.code} {detail}", hint=hint
        ) from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise MonitoringError(f"Prometheus at {url} does not answer: {reason}", hint=hint) from exc
    except ValueError as exc:
        raise MonitoringError(f"{url} answered something that is not Prometheus's JSON: {exc}", hint=hint) from exc
    if not isinstance(body, dict) or body.get("status") != "success":
        error = body.get("error") if isinstance(body, dict) else body
        raise MonitoringError(f"Prometheus at {url} refused the query {promql!r}: {error}", hint=hint)
    return list((body.get("data") or {}).get("result") or [])


# ---- recording ----------------------------------------------------------------------------


def _drifting(result: DriftResult, gate_results: Sequence[GateResult]) -> list[str]:
    """Columns the report draws: those that drifted, and those over a drift gate's own bound."""
    from ..gates._drift import failed_columns

    shown = list(result.drifted_columns)
    for g in gate_results:
        shown += [c for c in failed_columns(g) if c not in shown]
    return shown


def _record(
    ws: Workspace,
    report: DriftReport,
    profile: Mapping[str, Any],
    current: Mapping[str, Any] | None,
    predictions: Any,
    shown: Sequence[str],
    at: str,
) -> tuple[str, Path | None]:
    """The monitoring run: tags, a metric per column, drift.json and drift.html; returns (run id, HTML path)."""
    from mlflow.entities import Metric
    from mlflow.exceptions import MlflowException

    from ..tracking._client import client_for, experiment_id, tracking_error
    from . import _report

    by_column = {c.column: c for c in report.result.columns}
    references = profile.get("columns") or {}
    figures = {}
    for name in shown:
        if name in by_column and name in references:
            values = None if current is None else _as_list(current.get(name))
            figures[name] = _report.column_figure_png(name, references[name], values, by_column[name])
    page = _report.page(_report.report_body(report, figures), f"Drift report {report.model}/{report.version}")
    document = {
        **report.to_dict(),
        "at": at,
        "reference": {"fingerprint": profile.get("fingerprint"), "source": profile.get("source")},
    }
    document.pop("run_id", None)
    document.pop("html_path", None)
    now = int(time.time() * 1000)
    metrics = [
        Metric("rows", float(report.rows), now, 0),
        Metric("drift_share", float(report.result.share), now, 0),
        Metric("dataset_drift", float(report.result.dataset_drift), now, 0),
    ]
    for c in report.result.columns:
        key = _METRIC_KEY.sub("_", c.column)
        metrics.append(Metric(f"drift.{key}", c.distance, now, 0))
        if math.isfinite(c.psi):
            metrics.append(Metric(f"psi.{key}", c.psi, now, 0))
    if report.result.prediction is not None:
        metrics.append(Metric("prediction_drift", report.result.prediction.distance, now, 0))
    client = client_for(ws)
    tags = {
        lineage.MANAGED: "true",
        lineage.MLFLOW_USER: ws.author,
        lineage.MONITOR_OF_VERSION: f"{report.model}/{report.version}",
        lineage.MONITOR_VERDICT: report.verdict,
        lineage.MONITOR_DRIFTED: ",".join(report.result.drifted_columns)[:5000],
        # what MLflow's run page shows in full: the verdict and summary, without opening an artifact
        lineage.MLFLOW_NOTE: "#### shipyard drift report\n\n"
        f"**{report.model}/{report.version}: {report.verdict.upper()}**\n\n"
        f"```\n{report.summary()[:4000]}\n```\n\nFull report: artifact `{DRIFT_HTML}`.",
    }
    try:
        run = client.create_run(
            experiment_id(ws, EXPERIMENT), tags=tags, run_name=f"{slug(report.model)}-v{report.version}-{report.source}"
        )
        run_id = run.info.run_id
        for start in range(0, len(metrics), 1000):  # MLflow's batch limit
            client.log_batch(run_id, metrics=metrics[start : start + 1000])
        client.log_text(run_id, json.dumps(document, indent=2, allow_nan=False), DRIFT_JSON)
        client.log_text(run_id, page, DRIFT_HTML)
        client.set_terminated(run_id, "FINISHED")
        html_path = _local_artifact(client, run, DRIFT_HTML)
    except MlflowException as exc:
        raise tracking_error(ws, exc) from exc
    return run_id, html_path


def _local_artifact(client: Any, run: Any, path: str) -> Path:
    """The artifact itself in a local store; a downloaded copy (kept) from a remote one."""
    import tempfile

    from mlflow.utils.file_utils import local_file_uri_to_path

    root = run.info.artifact_uri
    if root.startswith("file:"):
        local = Path(local_file_uri_to_path(root)) / path
        if local.is_file():
            return local
    return Path(client.download_artifacts(run.info.run_id, path, tempfile.mkdtemp(prefix="shipyard-drift-")))


def _as_list(values: Any) -> list[Any] | None:
    if values is None:
        return None
    if hasattr(values, "tolist"):
        return list(values.tolist())
    return list(values)


def _tag_version(ws: Workspace, version: Any, verdict: str, run_id: str, at: str, result: DriftResult) -> None:
    from ..registry import set_version_tags

    set_version_tags(
        version,
        {
            lineage.MONITOR_VERDICT: verdict,
            lineage.MONITOR_RUN: run_id,
            lineage.MONITOR_AT: at,
            lineage.MONITOR_DRIFTED: ",".join(result.drifted_columns),
        },
        workspace=ws,
    )


def last_drift(version_tags: Mapping[str, str], *, workspace: Workspace | None = None) -> dict[str, Any] | None:
    """The drift report last recorded for a version (its ``drift.json``), found by the version's tags.

    None when the version was never monitored or the report cannot be read.

    Example:
        >>> last_drift(shipyard.registry.resolve("iris@champion").tags)["verdict"]   # doctest: +SKIP
        'pass'
    """
    run_id = version_tags.get(lineage.MONITOR_RUN)
    if not run_id:
        return None
    import tempfile

    from mlflow.exceptions import MlflowException

    from ..tracking._client import client_for

    client = client_for(workspace or current_workspace())
    with tempfile.TemporaryDirectory(prefix="shipyard-drift-") as tmp:
        try:
            local = client.download_artifacts(run_id, DRIFT_JSON, tmp)
            data = json.loads(Path(local).read_text(encoding="utf-8"))
        except (MlflowException, OSError, ValueError):
            return None
    return data if isinstance(data, dict) else None
