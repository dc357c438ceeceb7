"""The shipyard panel: live metrics, versions with aliases and gates, and one-click promotion.

Everything the panel shows is read through shipyard's public API
(``shipyard.registry.model_names``, ``shipyard.model_versions``,
``shipyard.metric_history``, ``shipyard.gates.load_report``, ``shipyard.model_card``, and the drift
report ``shipyard monitor`` last recorded for the champion) from MLflow and
the workspace, so a panel opened after a kernel restart shows the same state.
Slow work (reading reports, promoting) runs on daemon threads; the kernel stays
usable and the widgets update as results arrive.
"""

from __future__ import annotations

import threading
from typing import Any

import ipywidgets as widgets
import traitlets

from .._core import lineage
from . import _html
from ._metrics import MetricsView

_PLAIN_KIND = {
    "GateFailed": "Blocked by a quality gate",
    "OverrideRefused": "Override refused",
    "DeployError": "The image failed its deployment checks",
    "PackagingError": "Packaging failed",
    "DockerUnavailable": "Docker is not running",
    "BaseImageMissing": "The base image is missing",
    "PromotionError": "Promotion stopped",
    "RegistryError": "The model registry refused",
    "ModelNotFound": "Version not found",
    "TrackingUnavailable": "The tracking server cannot be reached",
    "MonitoringError": "Monitoring failed",
}


class Panel(widgets.VBox):
    """The JupyterLab panel for one registered model.

    State lives in traitlets (``model``, ``versions``, ``selected``,
    ``promotion``, ``stages``, ``error``, ``message``), each a plain value that
    tests can read; the children render it.

    Example:
        >>> panel = shipyard.panel("breast-cancer")       # doctest: +SKIP
        >>> panel                                           # doctest: +SKIP
        >>> panel.watch(shipyard.run_async(TrainFlow))      # doctest: +SKIP
    """

    model = traitlets.Unicode("")
    models = traitlets.List(traitlets.Unicode())
    versions = traitlets.List(traitlets.Dict())
    selected = traitlets.Unicode("")
    promotion = traitlets.Unicode("idle")  # idle, confirming, running, completed, awaiting_approval, failed
    stages = traitlets.List(traitlets.Dict())
    error = traitlets.Unicode("")
    error_kind = traitlets.Unicode("")
    error_hint = traitlets.Unicode("")
    message = traitlets.Unicode("")
    mlflow_url = traitlets.Unicode("")
    approval_required = traitlets.Bool(False)
    details = traitlets.Unicode("")  # "", "gates", "report" or "card"
    drift = traitlets.Dict()  # the champion's last drift report: version, verdict, at, columns (name -> distance)

    def __init__(self, model: str | None = None, *, interval: float = 1.0, **kwargs: Any) -> None:
        self._header = widgets.HTML()
        self._header.add_class("shipyard-header")
        self._model_picker = widgets.Dropdown(description="model", layout=widgets.Layout(width="260px"))
        self._refresh_button = widgets.Button(description="Refresh", icon="refresh", layout=widgets.Layout(width="100px"))
        self.metrics = MetricsView(interval=interval)
        self._versions_html = widgets.HTML()
        self._versions_html.add_class("shipyard-versions-box")
        self._drift_html = widgets.HTML()
        self._drift_html.add_class("shipyard-drift")
        self._drift_reports: dict[str, dict[str, Any] | None] = {}  # monitoring run id -> its drift.json
        self._version_picker = widgets.Dropdown(description="version", layout=widgets.Layout(width="260px"))
        self._gates_button = widgets.ToggleButton(description="Gate reasons", icon="list")
        self._report_button = widgets.ToggleButton(description="Gate report", icon="file-text")
        self._card_button = widgets.ToggleButton(description="Model card", icon="id-card")
        self._promote_button = widgets.Button(description="Promote…", button_style="primary", icon="rocket")
        self._details_html = widgets.HTML()
        self._details_html.add_class("shipyard-details")
        self._confirm_text = widgets.HTML()
        self._confirm_button = widgets.Button(description="Confirm promotion", button_style="danger")
        self._cancel_button = widgets.Button(description="Cancel")
        self._confirm_box = widgets.HBox(
            [self._confirm_text, self._confirm_button, self._cancel_button], layout=widgets.Layout(display="none")
        )
        self._progress_html = widgets.HTML()
        self._progress_html.add_class("shipyard-progress")
        self._message_html = widgets.HTML()
        self._message_html.add_class("shipyard-message")
        for widget, name in (
            (self._promote_button, "shipyard-promote"),
            (self._confirm_button, "shipyard-confirm"),
            (self._cancel_button, "shipyard-cancel"),
            (self._gates_button, "shipyard-gates-button"),
            (self._report_button, "shipyard-report-button"),
            (self._card_button, "shipyard-card-button"),
            (self._refresh_button, "shipyard-refresh"),
            (self._confirm_box, "shipyard-confirm-box"),
        ):
            widget.add_class(name)
        super().__init__(
            children=[
                widgets.HTML(_html.STYLE),
                widgets.HBox([self._header, self._model_picker, self._refresh_button]),
                self.metrics,
                self._versions_html,
                self._drift_html,
                widgets.HBox([self._version_picker, self._gates_button, self._report_button, self._card_button,
                             self._promote_button]),
                self._details_html,
                self._confirm_box,
                self._progress_html,
                self._message_html,
            ],
            **kwargs,
        )
        self.add_class("shipyard-panel")
        self._busy = threading.Lock()
        self._promotion_thread: threading.Thread | None = None
        self._syncing = False
        self._model_picker.observe(self._on_model_picked, "value")
        self._version_picker.observe(self._on_version_picked, "value")
        self._refresh_button.on_click(lambda _: self.refresh())
        self._gates_button.observe(lambda ch: self._toggle_details("gates", ch["new"]), "value")
        self._report_button.observe(lambda ch: self._toggle_details("report", ch["new"]), "value")
        self._card_button.observe(lambda ch: self._toggle_details("card", ch["new"]), "value")
        self._promote_button.on_click(lambda _: self.request_promotion())
        self._confirm_button.on_click(lambda _: self.confirm_promotion())
        self._cancel_button.on_click(lambda _: self.cancel_promotion())
        self.metrics.on_done.append(lambda _run_id: self.refresh(keep_metrics=True))
        self.refresh(model)
        self.metrics.prepare()  # the live chart's worker starts now, before a run needs it

    def close(self) -> None:
        """Stop the live chart and its worker, and close the panel."""
        metrics = getattr(self, "metrics", None)  # close() also runs from __del__ of a half-built widget
        if metrics is not None:
            metrics.close()
        super().close()

    def __repr__(self) -> str:
        return f"<shipyard Panel model={self.model or None} versions={len(self.versions)} selected={self.selected or None}>"

    # ---- reading state ----

    def refresh(self, model: str | None = None, *, keep_metrics: bool = False) -> None:
        """Read models, versions, aliases, gates and review state again from the registry."""
        import shipyard
        from shipyard import registry

        ws = shipyard.current_workspace()
        self.approval_required = bool(ws.settings.require_approval)
        self.mlflow_url = ws.mlflow_ui
        try:
            self.models = registry.model_names()
        except shipyard.ShipyardError as exc:
            self.models = []
            self._show_error(exc)
        wanted = model or self.model or (self.models[0] if self.models else "")
        versions: list[dict[str, Any]] = []
        if wanted:
            try:
                versions = [_as_state(v) for v in shipyard.model_versions(wanted)]
            except shipyard.ModelNotFound:
                versions = []
            except shipyard.ShipyardError as exc:
                self._show_error(exc)
        self.model = wanted
        self.versions = versions
        numbers = [v["version"] for v in versions]
        if self.selected not in numbers:
            self.selected = _default_version(versions)
        self._sync_pickers()
        self._render_header()
        self._render_versions()
        self._read_drift()
        if not keep_metrics and not self.metrics.watching:
            self._show_selected_metrics()

    def version(self, number: str | None = None) -> dict[str, Any] | None:
        """The state of version ``number`` (default: the selected one), or None."""
        number = number or self.selected
        return next((v for v in self.versions if v["version"] == number), None)

    # ---- live metrics ----

    def watch(self, run: Any, *, max_seconds: float = 6 * 3600.0) -> Panel:
        """Follow ``run`` (a ``FlowRun`` from ``shipyard.run_async`` or an MLflow run id) on the chart.

        Returns the panel, so ``panel.watch(shipyard.run_async(Flow))`` also displays it.

        Example:
            >>> panel.watch(shipyard.run_async(TrainFlow, epochs=50))   # doctest: +SKIP
        """
        self.metrics.watch(run, max_seconds=max_seconds)
        return self

    # ---- promotion ----

    def request_promotion(self, version: str | None = None) -> None:
        """Ask for confirmation before promoting ``version`` (default: the selected one)."""
        info = self.version(version)
        if info is None:
            self._set_message("Select a registered version to promote first.")
            return
        if self.promotion == "running":
            return
        self.selected = info["version"]
        champion = next((v["version"] for v in self.versions if "champion" in v["aliases"]), None)
        after = f"; v{champion} becomes previous" if champion and champion != info["version"] else ""
        approval = " An engineer's approval is required before the champion moves." if self.approval_required else ""
        self._confirm_text.value = (
            f'<span class="shipyard-confirm-text">Promote <b>{_html.esc(self.model)} v{_html.esc(info["version"])}'
            f"</b> to production? It is packaged, smoke-tested and becomes champion{_html.esc(after)}.{approval}</span>"
        )
        self.promotion = "confirming"
        self._confirm_box.layout.display = "flex"

    def cancel_promotion(self) -> None:
        """Close the confirmation without promoting."""
        self._confirm_box.layout.display = "none"
        if self.promotion == "confirming":
            self.promotion = "idle"

    def confirm_promotion(self, *, wait: bool = False) -> None:
        """Promote the version awaiting confirmation, on a background thread (``wait=True`` blocks until done)."""
        if self.promotion != "confirming":
            return
        ref = f"{self.model}/{self.selected}"
        self._confirm_box.layout.display = "none"
        self.promotion, self.stages, self.message = "running", [], ""
        self._clear_error()
        self._promote_button.disabled = True
        self._progress_html.value = f"<p>Promoting {_html.esc(ref)} …</p>"
        self._promotion_thread = threading.Thread(target=self._promote, args=(ref,), name="shipyard-panel-promote", daemon=True)
        self._promotion_thread.start()
        if wait:
            self._promotion_thread.join()

    def wait_for_promotion(self, timeout: float | None = None) -> bool:
        """Block until a running promotion has finished; True when none is running."""
        thread = self._promotion_thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def _promote(self, ref: str) -> None:
        import shipyard

        try:
            result = shipyard.promote(ref, reason="promoted from the shipyard panel", progress=self._on_stage)
        except shipyard.ShipyardError as exc:
            self.promotion = "failed"
            self._show_error(exc)
        except Exception as exc:  # not ours: still said in words, with its type
            self.promotion = "failed"
            self._show_error(exc)
        else:
            self.promotion = result.status
            if result.status == "awaiting_approval":
                self._set_message(
                    f"{ref} is packaged and waits for an engineer's approval: `shipyard review {ref}`, then "
                    f"`shipyard approve {ref} -m '...'`; then press Promote again to finish."
                )
            else:
                self._set_message(f"{ref} is now champion. Image {result.image}.")
        finally:
            self._promote_button.disabled = False
            self.refresh(keep_metrics=True)

    def _on_stage(self, event: Any) -> None:
        entry = {
            "stage": event.stage,
            "title": event.title,
            "index": event.index,
            "total": event.total,
            "state": event.state,
            "seconds": float(event.seconds or 0.0),
            "message": event.message or "",
        }
        stages = [s for s in self.stages if s["stage"] != event.stage]
        stages.append(entry)
        self.stages = sorted(stages, key=lambda s: s["index"])
        self._progress_html.value = _html.stages_list(self.stages)

    # ---- rendering ----

    def _show_error(self, exc: BaseException) -> None:
        kind = _PLAIN_KIND.get(type(exc).__name__, type(exc).__name__)
        message = getattr(exc, "message", None) or str(exc)
        report = getattr(exc, "report", None)
        if report is not None and getattr(report, "failed", None):
            values = "; ".join(
                f"{r.name} measured {r.value:.4g} against {r.threshold:.4g}"
                for r in report.failed
                if r.value is not None and r.threshold is not None
            )
            if values and values not in message:
                message = f"{message} ({values})"
        self.error_kind, self.error, self.error_hint = kind, message, getattr(exc, "hint", None) or ""
        self._message_html.value = _html.error_box(kind, message, self.error_hint)

    def _clear_error(self) -> None:
        self.error_kind = self.error = self.error_hint = ""
        self._message_html.value = ""

    def _set_message(self, text: str) -> None:
        self.message = text
        self._message_html.value = f'<p class="shipyard-info">{_html.esc(text)}</p>'

    def _render_header(self) -> None:
        link = ""
        if self.mlflow_url:
            link = f' · <a href="{_html.esc(self.mlflow_url)}" target="_blank" class="shipyard-mlflow-link">MLflow UI</a>'
        if not self.model:
            title = ('<b>shipyard</b> · no registered model yet — run a flow, then '
                     "<code>shipyard.registry.register(name, run_id)</code> or <code>shipyard.promote(result)</code>")
        else:
            title = f"<b>shipyard</b> · {_html.esc(self.model)} · {len(self.versions)} versions"
        approval = " · approval required" if self.approval_required else ""
        self._header.value = f'<span class="shipyard-title">{title}{approval}{link}</span>'

    def _render_versions(self) -> None:
        if not self.model:
            self._versions_html.value = '<p class="shipyard-empty">Nothing registered in this workspace yet.</p>'
            return
        self._versions_html.value = _html.versions_table(
            self.versions, self.selected, approval_required=self.approval_required
        )
        has_version = self.version() is not None
        self._promote_button.disabled = not has_version or self.promotion == "running"
        self._gates_button.disabled = self._report_button.disabled = self._card_button.disabled = not has_version
        if self.details:
            self._render_details()

    def _read_drift(self) -> None:
        """The champion's drift per column, from its version tags and the report they name."""
        from shipyard.production._monitor import last_drift

        champion = next((v for v in self.versions if "champion" in v["aliases"]), None)
        monitor = (champion or {}).get("monitor") or {}
        run_id = monitor.get("run", "")
        if champion is None or not run_id:
            self.drift = {}
            self._drift_html.value = ""
            return
        if run_id not in self._drift_reports:  # a report never changes once recorded
            self._drift_reports[run_id] = last_drift({lineage.MONITOR_RUN: run_id})
        report = self._drift_reports[run_id] or {}
        result = report.get("result") or {}
        columns = {c["column"]: c for c in result.get("columns") or [] if isinstance(c, dict) and "column" in c}
        self.drift = {
            "version": champion["version"],
            "verdict": monitor.get("verdict", ""),
            "at": monitor.get("at", ""),
            "run_id": run_id,
            "source": report.get("source", ""),
            "rows": report.get("rows"),
            "drifted": [c for c in monitor.get("drifted", "").split(",") if c],
            "columns": {name: c.get("distance") for name, c in columns.items()},
        }
        self._drift_html.value = _drift_view(self.drift, columns)

    def _sync_pickers(self) -> None:
        self._syncing = True
        try:
            self._model_picker.options = self.models
            self._model_picker.value = self.model if self.model in self.models else None
            self._model_picker.layout.display = "flex" if len(self.models) > 1 else "none"
            self._version_picker.options = [
                (f"v{v['version']}" + (f" @{', @'.join(v['aliases'])}" if v["aliases"] else ""), v["version"])
                for v in self.versions
            ]
            self._version_picker.value = self.selected or None
        finally:
            self._syncing = False

    def _on_model_picked(self, change: dict[str, Any]) -> None:
        if not self._syncing and change["new"] and change["new"] != self.model:
            self.selected = ""
            self.refresh(change["new"])

    def _on_version_picked(self, change: dict[str, Any]) -> None:
        if not self._syncing and change["new"]:
            self.selected = change["new"]
            self._render_versions()
            if not self.metrics.watching:
                self._show_selected_metrics()

    def _show_selected_metrics(self) -> None:
        info = self.version()
        if info is not None and info["run_id"]:
            self.metrics.show(info["run_id"])
            return
        import shipyard

        try:
            newest = shipyard.metric_history(None, names=())
        except shipyard.ShipyardError:
            newest = None
        self.metrics.show(newest.run_id if newest else None, "" if newest else "no run in this workspace yet")

    def _toggle_details(self, what: str, on: bool) -> None:
        if on:
            buttons = {"gates": self._gates_button, "report": self._report_button, "card": self._card_button}
            for name, other in buttons.items():
                if name != what:
                    other.value = False
            self.details = what
            self._render_details()
        elif self.details == what:
            self.details = ""
            self._details_html.value = ""

    def _render_details(self) -> None:
        import shipyard

        info = self.version()
        if info is None:
            self._details_html.value = ""
            return
        if self.details == "card":
            try:
                card = shipyard.model_card(f"{self.model}/{info['version']}")
            except shipyard.ShipyardError as exc:
                self._details_html.value = f'<p class="shipyard-error">{_html.esc(getattr(exc, "message", str(exc)))}</p>'
            else:
                self._details_html.value = f'<div class="shipyard-card">{card.to_html(full_page=False)}</div>'
            return
        try:
            report = shipyard.gates.load_report(f"{self.model}/{info['version']}")
        except shipyard.ShipyardError as exc:
            report, error = None, getattr(exc, "message", str(exc))
        else:
            error = ""
        if self.details == "report" and report is not None:
            self._details_html.value = f'<div class="shipyard-report">{report.to_html(full_page=False)}</div>'
        else:
            self._details_html.value = _html.gate_details(info, report, error)


def panel(model: str | None = None, *, interval: float = 1.0) -> Panel:
    """Open the shipyard panel in a notebook: live metrics, versions, gates and promotion.

    Args:
        model: registered model to show; default: the first registered model (the panel
            says so when the workspace has none yet).
        interval: seconds between live metric polls while a run is followed.

    Returns:
        The panel widget; the last expression of a cell displays it.

    Example:
        >>> panel = shipyard.panel("breast-cancer")          # doctest: +SKIP
        >>> panel                                              # doctest: +SKIP
        >>> panel.watch(shipyard.run_async(TrainFlow))         # doctest: +SKIP
    """
    return Panel(model, interval=interval)


def _drift_view(drift: dict[str, Any], columns: dict[str, dict[str, Any]]) -> str:
    """The champion's drift: its verdict and one chip per column (distance against threshold)."""
    verdict = drift["verdict"] or "unknown"
    chips = []
    for name, c in columns.items():
        distance, threshold = c.get("distance"), c.get("threshold")
        status = "fail" if c.get("drifted") else "pass"
        value = "n/a" if distance is None else f"{float(distance):.3g}"
        title = f"{c.get('method', '')} distance {value}" + (f", threshold {threshold}" if threshold is not None else "")
        chips.append(
            f'<span class="shipyard-chip shipyard-drift-column" data-column="{_html.esc(name)}" '
            f'data-drifted="{str(bool(c.get("drifted"))).lower()}" data-distance="{_html.esc(value)}" '
            f'style="background:{_html.CHIP_COLORS[status]}" title="{_html.esc(title)}">{_html.esc(name)}: {value}</span>'
        )
    rows = f" · {drift['rows']} rows" if drift.get("rows") is not None else ""
    source = f" from {_html.esc(drift['source'])}" if drift.get("source") else ""
    return (
        f'<div class="shipyard-drift-view" data-version="{_html.esc(drift["version"])}" data-verdict="{_html.esc(verdict)}">'
        f"champion v{_html.esc(drift['version'])} drift: "
        f'<b style="color:{_html.CHIP_COLORS.get(verdict, "#57606a")}">{_html.esc(verdict)}</b>'
        f" ({_html.esc(drift['at'])}{source}{rows}) {''.join(chips) or '<i>no column measured</i>'}</div>"
    )


def _as_state(v: Any) -> dict[str, Any]:
    tags = getattr(v, "tags", None) or {}
    return {
        "version": v.version,
        "run_id": v.run_id,
        "aliases": list(v.aliases),
        "created": v.created_at.strftime("%Y-%m-%d %H:%M UTC") if v.created_at else "",
        "author": v.author,
        "key_metrics": v.key_metrics(),
        "gates": dict(v.gates),
        "verdict": v.verdict,
        "override": dict(v.override) if v.override else None,
        "retired": v.retired,
        "review_state": v.review_state,
        "review": dict(v.review),
        "monitor": {
            "verdict": tags.get(lineage.MONITOR_VERDICT, ""),
            "at": tags.get(lineage.MONITOR_AT, ""),
            "run": tags.get(lineage.MONITOR_RUN, ""),
            "drifted": tags.get(lineage.MONITOR_DRIFTED, ""),
        },
    }


def _default_version(versions: list[dict[str, Any]]) -> str:
    for alias in ("challenger", "champion"):
        for v in versions:
            if alias in v["aliases"]:
                return v["version"]
    active = [v for v in versions if not v["retired"]]
    return (active or versions)[0]["version"] if versions else ""


