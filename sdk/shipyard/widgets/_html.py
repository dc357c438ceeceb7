"""HTML for the panel's versions table, gate chips, gate details, promotion progress and errors.

Pure functions of plain data, so the widget state can be tested without a
browser and the DOM carries stable classes and ``data-*`` attributes.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

CHIP_COLORS = {"pass": "#1a7f37", "fail": "#cf222e", "error": "#a40e26", "warn": "#9a6700", "overridden": "#8250df"}
ALIAS_COLORS = {"champion": "#1a7f37", "challenger": "#0969da", "previous": "#57606a"}
STAGE_MARKS = {"started": "⏳", "done": "✓", "reused": "↺", "failed": "✗", "waiting": "…"}

STYLE = """<style>
.shipyard-panel table.shipyard-versions{border-collapse:collapse;font-size:12px;width:100%}
.shipyard-panel table.shipyard-versions th,.shipyard-panel table.shipyard-versions td{
  border-bottom:1px solid #d0d7de;padding:3px 6px;text-align:left;vertical-align:top}
.shipyard-panel tr.shipyard-selected{background:#ddf4ff}
.shipyard-panel tr.shipyard-retired{color:#8c959f}
.shipyard-chip,.shipyard-alias{display:inline-block;border-radius:10px;padding:0 7px;margin:1px 2px;
  font-size:11px;color:#fff;line-height:17px}
.shipyard-error{color:#cf222e}
.shipyard-stages li{list-style:none;font-size:12px}
</style>"""


def esc(value: Any) -> str:
    return html.escape(str(value))


def chip(gate: str, status: str, title: str = "") -> str:
    """One gate verdict as a coloured chip, e.g. ``<span class="shipyard-chip shipyard-chip-pass" …>``."""
    color = CHIP_COLORS.get(status, "#57606a")
    return (
        f'<span class="shipyard-chip shipyard-chip-{esc(status)}" data-gate="{esc(gate)}" data-status="{esc(status)}" '
        f'style="background:{color}" title="{esc(title or status)}">{esc(gate)}: {esc(status)}</span>'
    )


def alias_badge(alias: str) -> str:
    color = ALIAS_COLORS.get(alias, "#8250df")
    return f'<span class="shipyard-alias" data-alias="{esc(alias)}" style="background:{color}">@{esc(alias)}</span>'


def versions_table(versions: Sequence[Mapping[str, Any]], selected: str, *, approval_required: bool) -> str:
    """The versions table; rows carry ``data-version``, chips carry ``data-gate``/``data-status``."""
    if not versions:
        return '<p class="shipyard-empty">No versions registered yet.</p>'
    head = "<tr><th>version</th><th>aliases</th><th>key metrics</th><th>gates</th><th>review</th>"
    head += "<th>created</th><th>author</th><th>state</th></tr>"
    rows = []
    for v in versions:
        classes = ["shipyard-version"]
        if v["version"] == selected:
            classes.append("shipyard-selected")
        if v["retired"]:
            classes.append("shipyard-retired")
        metrics = ", ".join(f"{esc(k)}={float(val):.4g}" for k, val in v["key_metrics"].items()) or "—"
        chips = "".join(chip(g, s) for g, s in v["gates"].items()) or '<span class="shipyard-nogates">not checked</span>'
        review = v["review_state"] or ("pending" if approval_required else "—")
        rows.append(
            f'<tr class="{" ".join(classes)}" data-version="{esc(v["version"])}" '
            f'data-aliases="{esc(",".join(v["aliases"]))}" data-verdict="{esc(v["verdict"] or "")}">'
            f"<td><b>v{esc(v['version'])}</b></td>"
            f"<td>{''.join(alias_badge(a) for a in v['aliases']) or '—'}</td>"
            f"<td>{metrics}</td><td>{chips}</td>"
            f'<td class="shipyard-review" data-review="{esc(v["review_state"] or "")}">{esc(review)}</td>'
            f"<td>{esc(v['created'])}</td><td>{esc(v['author'] or '—')}</td>"
            f"<td>{'retired' if v['retired'] else 'active'}</td></tr>"
        )
    return f'<table class="shipyard-versions">{head}{"".join(rows)}</table>'


def gate_details(version: Mapping[str, Any], report: Any = None, error: str = "") -> str:
    """Every gate of ``version`` with its reason, measured value and threshold, and any override."""
    parts = [f'<div class="shipyard-gate-details" data-version="{esc(version["version"])}">']
    if report is not None:
        parts.append("<ul>")
        for r in report.results:
            measured = "" if r.value is None else f" — measured {r.value:.4g}"
            limit = "" if r.threshold is None else f", threshold {r.threshold:.4g}"
            kind = "" if r.blocking else " (warning only)"
            parts.append(f"<li>{chip(r.name, r.status)}{kind}{measured}{limit}: {esc(r.message)}</li>")
        parts.append("</ul>")
        parts.extend(f"<p>note: {esc(n)}</p>" for n in report.notes)
    elif version["gates"]:
        parts.append("<ul>" + "".join(f"<li>{chip(g, s)}</li>" for g, s in version["gates"].items()) + "</ul>")
    else:
        parts.append("<p>No gate verdict is recorded for this version.</p>")
    if error:
        parts.append(f'<p class="shipyard-error">{esc(error)}</p>')
    override = version.get("override")
    if override:
        parts.append(
            f'<p class="shipyard-override"><b>Override</b> of {esc(override.get("gates", ""))} by '
            f'{esc(override.get("by", "?"))} at {esc(override.get("at", "?"))}: {esc(override.get("reason", ""))}</p>'
        )
    parts.append("</div>")
    return "".join(parts)


def stages_list(stages: Sequence[Mapping[str, Any]]) -> str:
    """Promotion progress, one line per stage, from the promotion's progress events."""
    if not stages:
        return ""
    items = []
    for s in stages:
        timing = f" {s['seconds']:.1f}s" if s["state"] in {"done", "failed"} and s["seconds"] else ""
        note = f" — {esc(s['message'])}" if s.get("message") else ""
        items.append(
            f'<li class="shipyard-stage" data-stage="{esc(s["stage"])}" data-state="{esc(s["state"])}">'
            f"{STAGE_MARKS.get(s['state'], '·')} [{s['index'] + 1}/{s['total']}] {esc(s['title'])}{timing}{note}</li>"
        )
    return f'<ul class="shipyard-stages">{"".join(items)}</ul>'


def error_box(kind: str, message: str, hint: str = "") -> str:
    if not message:
        return ""
    tail = f"<br><i>What to do:</i> {esc(hint)}" if hint else ""
    return (
        f'<div class="shipyard-error shipyard-promotion-error" data-error="{esc(kind)}">'
        f"<b>{esc(kind)}</b>: {esc(message)}{tail}</div>"
    )
