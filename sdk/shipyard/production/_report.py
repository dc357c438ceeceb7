"""The drift report as a self-contained HTML page, and its figures.

One figure per drifting column: the reference distribution (from the
profile frozen at packaging) beside the current one, binned the same way.
Figures are bare matplotlib ``Figure`` objects rendered to PNG and embedded as
base64, so the page needs no other file and pyplot's global state (the user's
backend, open figures) is never touched.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

_COLORS = {"pass": "#1a7f37", "fail": "#cf222e", "warn": "#9a6700", "error": "#a40e26", "overridden": "#8250df"}
_REFERENCE_COLOR, _CURRENT_COLOR = "#8c959f", "#0969da"
_MAX_BARS = 15  # categories shown per figure; the rest are summed into "other"
_STYLE = (
    "<style>.shipyard-drift-report table{border-collapse:collapse;font-size:13px}"
    ".shipyard-drift-report td,.shipyard-drift-report th{border:1px solid #d0d7de;padding:3px 6px;text-align:left}"
    ".shipyard-drift-report tr.shipyard-drifted{background:#ffebe9}"
    ".shipyard-drift-report figure{display:inline-block;margin:6px}</style>"
)


def column_figure_png(column: str, reference: Mapping[str, Any], values: Sequence[Any] | None, drift: Any) -> bytes:
    """PNG of one column: reference vs current distribution (only the reference when ``values`` is None,
    as for a report read from Prometheus, which holds distances but no rows)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.2, 3.0), layout="constrained")
    ax = fig.subplots()
    if reference.get("kind") == "categorical":
        _categorical(ax, reference, values)
    else:
        _numeric(ax, reference, values)
    ax.set_title(f"{column}: {drift.method} {drift.distance:.3g} (threshold {drift.threshold:.3g})", fontsize=10)
    ax.legend(fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()


def _present(values: Sequence[Any]) -> list[Any]:
    out = []
    for v in values:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        out.append(v)
    return out


def _numeric(ax: Any, reference: Mapping[str, Any], values: Sequence[Any] | None) -> None:
    import numpy as np

    edges = np.asarray(reference.get("edges") or [], dtype=float)
    counts = np.asarray(reference.get("counts") or [], dtype=float)
    current = None
    if values is not None:
        current = np.asarray([float(v) for v in _present(values) if _is_number(v)], dtype=float)
    if len(edges) < 2 or len(counts) != len(edges) - 1 or counts.sum() <= 0:
        # a constant reference column: its one value against the current histogram
        if current is not None and len(current):
            ax.hist(current, bins=20, color=_CURRENT_COLOR, alpha=0.7, label="current")
        mean = reference.get("mean")
        if mean is not None:
            ax.axvline(float(mean), color=_REFERENCE_COLOR, linewidth=2, label="reference")
        return
    widths = np.diff(edges)
    ax.stairs(counts / counts.sum() / widths, edges, fill=True, color=_REFERENCE_COLOR, alpha=0.6, label="reference")
    if current is not None and len(current):
        # binned on its own range: clipped into the reference's, a shifted column would look like a spike
        density, own_edges = np.histogram(current, bins=len(counts), density=True)
        ax.stairs(density, own_edges, color=_CURRENT_COLOR, linewidth=2, label="current")
    ax.set_ylabel("density")


def _is_number(value: Any) -> bool:
    try:
        return math.isfinite(float(value)) and not isinstance(value, str)
    except (TypeError, ValueError):
        return False


def _categorical(ax: Any, reference: Mapping[str, Any], values: Sequence[Any] | None) -> None:
    frequencies: Mapping[str, float] = reference.get("frequencies") or {}
    shown = sorted(frequencies, key=lambda k: -frequencies[k])[:_MAX_BARS]
    ref_shares = [float(frequencies[k]) for k in shown]
    hidden = 1.0 - sum(ref_shares)
    labels = [*shown, "other"]
    ref_shares.append(max(hidden, 0.0))
    xs = range(len(labels))
    width = 0.4
    ax.bar([x - width / 2 for x in xs], ref_shares, width, color=_REFERENCE_COLOR, label="reference")
    if values is not None:
        present = [str(v) for v in _present(values)]
        total = len(present) or 1
        counts = {k: 0 for k in shown}
        other = 0
        for v in present:
            if v in counts:
                counts[v] += 1
            else:
                other += 1
        cur_shares = [counts[k] / total for k in shown] + [other / total]
        ax.bar([x + width / 2 for x in xs], cur_shares, width, color=_CURRENT_COLOR, label="current")
    ax.set_xticks(list(xs), [label[:14] for label in labels], rotation=30, fontsize=8)
    ax.set_ylabel("share of rows")


def report_body(report: Any, figures: Mapping[str, bytes]) -> str:
    """The report as an HTML fragment: verdict, gates, a row per column, one figure per drifting column."""
    esc = html.escape
    verdict = report.verdict
    result = report.result
    gate_rows = "".join(
        f'<tr data-gate="{esc(g.name)}"><td><code>{esc(g.name)}</code></td>'
        f'<td style="color:{_COLORS.get(g.status, "#000")};font-weight:bold">{esc(g.status)}</td>'
        f"<td>{'blocking' if g.blocking else 'warning'}</td><td>{esc(g.message)}</td></tr>"
        for g in report.gates
    )
    column_rows = "".join(_column_row(c) for c in result.columns)
    if result.prediction is not None:
        column_rows += _column_row(result.prediction, label="(prediction)")
    shown = "".join(
        f'<figure data-column="{esc(column)}"><img alt="{esc(column)}: reference vs current" '
        f'src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}"/>'
        f"<figcaption>{esc(column)}</figcaption></figure>"
        for column, png in figures.items()
    )
    notes = "".join(f"<li>{esc(n)}</li>" for n in getattr(report, "notes", ()))
    return (
        f'<div class="shipyard-drift-report" data-verdict="{esc(verdict)}">{_STYLE}'
        f"<h3>Drift report: {esc(report.model)} v{esc(report.version)} — "
        f'<span style="color:{_COLORS.get(verdict, "#000")}">{esc(verdict.upper())}</span></h3>'
        f"<p>{esc(report.source)} · {report.rows} rows · {len(result.drifted_columns)} of {len(result.columns)} "
        f"columns drifted (share {result.share:.2f}{', dataset drift' if result.dataset_drift else ''})</p>"
        "<table><tr><th>gate</th><th>status</th><th>kind</th><th>reason</th></tr>"
        f"{gate_rows}</table><br>"
        "<table><tr><th>column</th><th>kind</th><th>method</th><th>distance</th><th>PSI</th><th>threshold</th>"
        f"<th>drifted</th><th>null rate</th><th>reference null rate</th></tr>{column_rows}</table>"
        + (f"<ul>{notes}</ul>" if notes else "")
        + (f'<div class="shipyard-drift-figures">{shown}</div>' if shown else "")
        + "</div>"
    )


def _column_row(c: Any, *, label: str | None = None) -> str:
    esc = html.escape
    cls = ' class="shipyard-drifted"' if c.drifted else ""
    return (
        f'<tr{cls} data-column="{esc(c.column)}" data-drifted="{str(c.drifted).lower()}">'
        f"<td>{esc(label or c.column)}</td><td>{esc(c.kind)}</td><td>{esc(c.method)}</td>"
        f"<td>{_num(c.distance)}</td><td>{_num(c.psi)}</td><td>{_num(c.threshold)}</td>"
        f"<td>{'yes' if c.drifted else 'no'}</td><td>{_num(c.null_rate)}</td><td>{_num(c.reference_null_rate)}</td></tr>"
    )


def _num(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return ""
    return "n/a" if math.isnan(number) else f"{number:.4g}"


def page(body: str, title: str) -> str:
    """``body`` as a whole HTML page."""
    return (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title></head>'
        f"<body>{body}</body></html>"
    )


def body_of(page_html: str) -> str:
    """The fragment :func:`page` wrapped (the whole text when it is not such a page)."""
    start, end = page_html.find("<body>"), page_html.rfind("</body>")
    return page_html[start + len("<body>") : end] if start >= 0 and end > start else page_html
