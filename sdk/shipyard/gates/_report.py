"""Gate results and the report that holds them: verdict, JSON, HTML page and figure."""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from .._core.errors import GateError, GateFailed

Status = Literal["pass", "fail", "warn", "error", "overridden"]
STATUSES = ("pass", "fail", "warn", "error", "overridden")
REPORT_VERSION = 2
_COLORS = {"pass": "#1a7f37", "fail": "#cf222e", "warn": "#9a6700", "error": "#a40e26", "overridden": "#8250df"}


@dataclass(frozen=True)
class GateResult:
    """The verdict of one gate.

    Attributes:
        name: gate name (also the tag ``shipyard.gate.<name>``).
        status: ``pass``, ``fail``, ``warn`` (a non-blocking gate failed), ``error`` (the gate could
            not be evaluated, e.g. the model cannot score the holdout; ``message`` says why) or
            ``overridden``.
        value: what was measured (None when nothing numeric was).
        threshold: what it was compared with (None when not numeric).
        message: plain-language reason.
        blocking: whether a failure blocks the model.
        kind: gate kind (``threshold``, ``champion_challenger`` ..., ``external``).
        details: per-metric, per-column or per-slice values.
        source: who computed it (``check`` or e.g. ``smoke`` for attached results).

    Example:
        >>> GateResult("latency", "pass", 41.0, 250.0, "p95 41 ms", True).passed
        True
    """

    name: str
    status: str
    value: float | None
    threshold: float | None
    message: str
    blocking: bool = True
    kind: str = "external"
    details: dict[str, Any] = field(default_factory=dict)
    source: str = "check"

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise GateError(
                f"Gate result {self.name!r} has status {self.status!r}.",
                hint=f"Use one of {', '.join(STATUSES)}.",
            )

    @property
    def passed(self) -> bool:
        """True unless this is a blocking failure (or blocking error) that was not overridden."""
        return not self.blocks

    @property
    def blocks(self) -> bool:
        """Whether this result blocks the model: a failed gate, or a blocking gate that could not be evaluated."""
        return self.status == "fail" or (self.status == "error" and self.blocking)

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GateResult:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def _jsonable(value: Any) -> Any:
    """Plain JSON types; NaN and infinities become None so the JSON stays standard."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isfinite(number):
        return int(number) if hasattr(value, "dtype") and "int" in str(value.dtype) else number
    return None


@dataclass
class GateReport:
    """Every gate's verdict for one candidate, and the overall verdict.

    Attributes:
        candidate: run id, model URI and (when registered) model name/version.
        results: one :class:`GateResult` per gate.
        champion: the champion version it was compared with, when there was one.
        override: who overrode which gates, when and why, when an override was applied.
        specs: the gate specs as JSON, so the report can be re-evaluated.
        data: dataset name → artifact path of the data the gates read.
        target: target column of the holdout set.
        created_at: when the check ran (UTC, ISO 8601).
        author: who ran it.
        notes: anything else worth knowing (e.g. "no champion yet").
        artifact_uri: where the report is stored, once recorded.
        check_id: the check whose gates were evaluated last; results carried from earlier checks
            name theirs in ``details["carried_from"]``.
        attributions: the candidate's feature attributions on the holdout
            (:meth:`Attributions.to_dict <shipyard.gates.Attributions.to_dict>`), when computed.

    Example:
        >>> report = shipyard.check("iris/2", gates=[...], holdout=df)   # doctest: +SKIP
        >>> report.verdict, [r.name for r in report.failed]              # doctest: +SKIP
        ('fail', ['champion_challenger'])
    """

    candidate: dict[str, Any]
    results: list[GateResult]
    champion: dict[str, Any] | None = None
    override: dict[str, Any] | None = None
    specs: list[dict[str, Any]] = field(default_factory=list)
    data: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    created_at: str = ""
    author: str = ""
    notes: list[str] = field(default_factory=list)
    artifact_uri: str | None = None
    check_id: str = ""
    attributions: dict[str, Any] | None = None

    @property
    def verdict(self) -> str:
        """``fail`` if a blocking gate failed or could not be evaluated, ``overridden`` if one was overridden,
        else ``pass``."""
        if any(r.blocks for r in self.results):
            return "fail"
        if any(r.status == "overridden" for r in self.results):
            return "overridden"
        return "pass"

    @property
    def passed(self) -> bool:
        return self.verdict != "fail"

    @property
    def failed(self) -> list[GateResult]:
        """Blocking gates that failed (or could not be evaluated) and were not overridden."""
        return [r for r in self.results if r.blocks]

    @property
    def warnings(self) -> list[GateResult]:
        return [r for r in self.results if r.status == "warn"]

    def __getitem__(self, name: str) -> GateResult:
        for result in self.results:
            if result.name == name:
                return result
        raise KeyError(f"no gate named {name!r} in this report (gates: {', '.join(r.name for r in self.results)})")

    def with_results(self, results: Sequence[GateResult]) -> GateReport:
        """A copy with ``results`` merged in (same name replaces, new names appended)."""
        merged = {r.name: r for r in self.results}
        for r in results:
            merged[r.name] = r
        return replace(self, results=list(merged.values()))

    def raise_for_verdict(self) -> GateReport:
        """Raise :class:`GateFailed` (carrying this report) if the verdict is ``fail``; else return self."""
        if self.verdict == "fail":
            raise GateFailed(
                f"{self.subject()} is blocked: " + "; ".join(f"{r.name}: {r.message}" for r in self.failed),
                report=self,
                hint="Improve the model or data, or override with a written reason: "
                "shipyard gates override REF --gate NAME --reason TEXT (or shipyard.gates.override(...)).",
            )
        return self

    def subject(self) -> str:
        c = self.candidate
        if c.get("version"):
            return f"{c.get('model_name')}/{c.get('version')}"
        return f"run {c.get('run_id')}"

    def summary(self) -> str:
        """Plain-text summary, one line per gate."""
        lines = [f"{self.subject()}: {self.verdict.upper()}"]
        for r in self.results:
            flag = "" if r.blocking else " (warning only)"
            lines.append(f"  [{r.status}] {r.name}{flag}: {r.message}")
        lines += [f"  note: {n}" for n in self.notes]
        if self.override:
            for o in [*self.override.get("previous", []), self.override]:
                lines.append(f"  override of {', '.join(o['gates'])} by {o['by']} at {o['at']}: {o['reason']}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    # ---- JSON ----

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(
            {
                "version": REPORT_VERSION,
                "verdict": self.verdict,
                "candidate": self.candidate,
                "champion": self.champion,
                "results": [r.to_dict() for r in self.results],
                "override": self.override,
                "specs": self.specs,
                "data": self.data,
                "target": self.target,
                "created_at": self.created_at,
                "author": self.author,
                "notes": self.notes,
                "artifact_uri": self.artifact_uri,
                "check_id": self.check_id,
                "attributions": self.attributions,
            }
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GateReport:
        return cls(
            candidate=dict(data.get("candidate") or {}),
            results=[GateResult.from_dict(r) for r in data.get("results") or []],
            champion=data.get("champion"),
            override=data.get("override"),
            specs=list(data.get("specs") or []),
            data=dict(data.get("data") or {}),
            target=data.get("target"),
            created_at=data.get("created_at") or "",
            author=data.get("author") or "",
            notes=list(data.get("notes") or []),
            artifact_uri=data.get("artifact_uri"),
            check_id=data.get("check_id") or "",
            attributions=data.get("attributions"),
        )

    # ---- figure and HTML ----

    def figure(self) -> Any:
        """A matplotlib figure: candidate vs champion per metric, and per-slice bars.

        Gates with neither show measured value against threshold.
        """
        # A bare Figure renders without pyplot, so the user's backend and open figures are untouched.
        from matplotlib.figure import Figure

        panels: list[tuple[str, Any]] = []
        for r in self.results:
            if r.kind == "champion_challenger" and r.details.get("metrics"):
                panels.append(("champion", r))
            elif r.kind == "slice_parity" and r.details.get("groups"):
                panels.append(("slices", r))
        measured = [
            r for r in self.results if r.kind == "threshold" and r.value is not None and r.threshold is not None
        ]
        if measured:
            panels.append(("thresholds", measured))
        if not panels:
            panels.append(("status", self.results))
        fig = Figure(figsize=(4.2 * len(panels), 3.4), layout="constrained")
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        for ax, (what, payload) in zip(axes, panels, strict=True):
            if what == "champion":
                _plot_champion(ax, payload)
            elif what == "slices":
                _plot_slices(ax, payload)
            elif what == "thresholds":
                _plot_thresholds(ax, payload)
            else:
                _plot_status(ax, payload)
        return fig

    def figure_png(self) -> bytes:
        buf = io.BytesIO()
        self.figure().savefig(buf, format="png", dpi=96)
        return buf.getvalue()

    def to_html(self, *, full_page: bool = True) -> str:
        """The report as HTML with the figure embedded as a base64 PNG (no external files)."""
        rows = []
        for r in self.results:
            value = "" if r.value is None else f"{r.value:.4g}"
            limit = "" if r.threshold is None else f"{r.threshold:.4g}"
            rows.append(
                f"<tr><td><code>{html.escape(r.name)}</code></td>"
                f'<td style="color:{_COLORS[r.status]};font-weight:bold">{r.status}</td>'
                f"<td>{'blocking' if r.blocking else 'warning'}</td><td>{value}</td><td>{limit}</td>"
                f"<td>{html.escape(r.message)}</td></tr>"
            )
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in self.notes)
        override = ""
        if self.override:
            o = self.override
            override = (
                f"<p><b>Override</b> of {html.escape(', '.join(o['gates']))} by {html.escape(str(o['by']))} "
                f"at {html.escape(str(o['at']))}: {html.escape(str(o['reason']))}</p>"
            )
        champion = ""
        if self.champion:
            champion = f" · compared with champion {html.escape(str(self.champion.get('model_name')))}/" + html.escape(
                str(self.champion.get("version"))
            )
        png = base64.b64encode(self.figure_png()).decode("ascii")
        body = (
            f'<div class="shipyard-gate-report"><h3>Gate report: {html.escape(self.subject())} — '
            f'<span style="color:{_COLORS.get(self.verdict, "#000")}">{self.verdict.upper()}</span></h3>'
            f"<p>{html.escape(self.created_at)} by {html.escape(self.author)}{champion}</p>"
            '<table border="1" style="border-collapse:collapse" cellpadding="4">'
            "<tr><th>gate</th><th>status</th><th>kind</th><th>measured</th><th>threshold</th><th>reason</th></tr>"
            f"{''.join(rows)}</table>{override}"
            + (f"<ul>{notes}</ul>" if notes else "")
            + f'<img alt="candidate vs champion and slices" src="data:image/png;base64,{png}"/>'
            + self._attributions_html()
            + "</div>"
        )
        if not full_page:
            return body
        return (
            '<!DOCTYPE html><html><head><meta charset="utf-8">'
            f"<title>Gate report {html.escape(self.subject())}</title></head><body>{body}</body></html>"
        )

    def _attributions_html(self) -> str:
        if not self.attributions:
            return ""
        from ._attributions import Attributions

        return Attributions.from_dict(self.attributions).to_html()

    def _repr_html_(self) -> str:
        return self.to_html(full_page=False)

    def __repr__(self) -> str:
        return f"<GateReport {self.subject()} {self.verdict}: {len(self.results)} gates, {len(self.failed)} failed>"


def _plot_champion(ax: Any, r: GateResult) -> None:
    metrics = r.details["metrics"]
    names = list(metrics)
    xs = range(len(names))
    cand = [metrics[m]["candidate"] for m in names]
    champ = [metrics[m].get("champion") for m in names]
    width = 0.38
    ax.bar([x - width / 2 for x in xs], cand, width, label="candidate", color="#0969da")
    if any(c is not None for c in champ):
        ax.bar([x + width / 2 for x in xs], [c or 0 for c in champ], width, label="champion", color="#8c959f")
    ax.set_xticks(list(xs), names)
    ax.set_title(f"{r.name}: {r.status}")
    ax.legend(fontsize=8)


def _plot_slices(ax: Any, r: GateResult) -> None:
    groups = r.details["groups"]
    names = list(groups)
    values = [groups[g]["value"] if groups[g]["value"] is not None else 0 for g in names]
    ax.bar(range(len(names)), values, color=_COLORS[r.status])
    ax.set_xticks(range(len(names)), [str(n)[:12] for n in names], rotation=30, fontsize=8)
    ax.set_title(f"{r.name} ({r.details.get('metric')}): gap {r.value:.3g}" if r.value is not None else r.name)


def _plot_thresholds(ax: Any, results: list[GateResult]) -> None:
    xs = range(len(results))
    ax.bar(xs, [r.value for r in results], color=[_COLORS[r.status] for r in results], label="measured")
    ax.scatter(xs, [r.threshold for r in results], marker="_", s=600, color="black", label="threshold", zorder=3)
    ax.set_xticks(list(xs), [r.name.removeprefix("threshold.") for r in results], fontsize=8)
    ax.set_title("thresholds")
    ax.legend(fontsize=8)


def _plot_status(ax: Any, results: list[GateResult]) -> None:
    counts = {s: sum(1 for r in results if r.status == s) for s in STATUSES}
    ax.bar(list(counts), list(counts.values()), color=[_COLORS[s] for s in counts])
    ax.set_title("gates by status")
