"""The card's page: one self-contained HTML document (inline style, charts as PNG data URIs).

The Metaflow UI shows a card in a sandboxed frame and a card may be opened as a
file, so nothing is fetched from elsewhere.
"""

from __future__ import annotations

import base64
import html
from typing import Any

_STATUS_COLORS = {"pass": "#1a7f37", "fail": "#cf222e", "warn": "#9a6700", "error": "#a40e26",
                  "overridden": "#8250df", "RUNNING": "#0969da", "FINISHED": "#1a7f37", "FAILED": "#cf222e"}
_PANELS_PER_CHART = 2

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1f2328;margin:0;padding:16px 20px}
h1{font-size:18px;margin:0 0 2px}
h2{font-size:15px;margin:22px 0 8px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
.sub{color:#57606a;font-size:12px} code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eaeef2;vertical-align:top}
th{color:#57606a;font-weight:600}
.badge{display:inline-block;padding:0 8px;border-radius:10px;color:#fff;font-size:12px;font-weight:600}
.alias{display:inline-block;padding:0 7px;margin-right:4px;border:1px solid #8c959f;border-radius:10px;font-size:12px}
img.chart{display:block;max-width:100%;margin:4px 0 10px;border:1px solid #eaeef2} .error{color:#cf222e}
a{color:#0969da}
"""


def page(snapshot: dict[str, Any], task_pathspec: str, *, final: bool, reload_token: str) -> str:
    """The card for one task, from a snapshot (:mod:`._snapshot`)."""
    run = snapshot.get("run") or {}
    status = run.get("status") or ("" if final else "RUNNING")
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>shipyard</title>",
        f"<style>{_STYLE}</style>",
        f"<script>var METAFLOW_RELOAD_TOKEN = \"{reload_token}\";</script></head>",
        f"<body data-final='{'true' if final else 'false'}' data-origin='{_e(snapshot.get('origin', ''))}'>",
        f"<h1>shipyard {_badge(status)}</h1>",
        f"<div class='sub'><code>{_e(task_pathspec)}</code> · {'final' if final else 'updated while the step runs'}",
        f" · {_e(snapshot['collected_at'])}" if snapshot.get("collected_at") else "",
        "</div>",
    ]
    if snapshot.get("error"):
        parts.append(f"<p class='error' id='card-error'>{_e(snapshot['error'])}</p>")
    if run:
        parts += [_metrics(snapshot, status), _gates(snapshot.get("gates")), _versions(snapshot.get("versions") or []),
                  _lineage(snapshot, task_pathspec)]
    parts.append("</body></html>")
    return "".join(parts)


def _metrics(snapshot: dict[str, Any], status: str) -> str:
    metrics: dict[str, list[list[Any]]] = snapshot.get("metrics") or {}
    out = ["<section id='metrics'><h2>Metrics</h2>"]
    if not metrics:
        out.append("<p class='sub'>no metrics logged yet</p>")
    for names in _chart_groups(metrics):
        png = _chart(snapshot, {n: metrics[n] for n in names}, status)
        out.append(f"<img class='chart' alt='{_e(', '.join(names))}' data-metrics='{_e(' '.join(names))}' "
                   f"src='data:image/png;base64,{base64.b64encode(png).decode()}'>")
    if metrics:
        out.append("<table><tr><th>metric</th><th>last</th><th>points</th></tr>")
        for name, points in metrics.items():
            last = points[-1][1] if points else None
            out.append(f"<tr data-metric='{_e(name)}'><td><code>{_e(name)}</code></td>"
                       f"<td>{'' if last is None else f'{last:.6g}'}</td><td>{len(points)}</td></tr>")
        out.append("</table>")
    return "".join(out) + "</section>"


def _chart_groups(metrics: dict[str, list[list[Any]]]) -> list[tuple[str, ...]]:
    """Metrics with several points, grouped by prefix (``train/…``) as the chart's panels, a few panels a chart."""
    groups: dict[str, list[str]] = {}
    for name in sorted(n for n, p in metrics.items() if len(p) > 1):
        groups.setdefault(name.split("/", 1)[0] if "/" in name else "", []).append(name)
    ordered = [names for _, names in sorted(groups.items())]
    return [tuple(n for g in ordered[i : i + _PANELS_PER_CHART] for n in g)
            for i in range(0, len(ordered), _PANELS_PER_CHART)]


def _chart(snapshot: dict[str, Any], metrics: dict[str, list[list[Any]]], status: str) -> bytes:
    from shipyard.tracking import MetricHistory, MetricPoint
    from shipyard.widgets import MetricsChart

    run = snapshot.get("run") or {}
    history = MetricHistory(
        run.get("id", ""), status or "FINISHED", run.get("experiment_id", ""),
        metrics={n: tuple(MetricPoint(int(s), float("nan") if v is None else float(v), 0) for s, v in pts)
                 for n, pts in metrics.items()},
    )
    return MetricsChart(width=8.0, height=2.6, dpi=96).render(history)


def _gates(gates: dict[str, Any] | None) -> str:
    out = ["<section id='gates'><h2>Gates</h2>"]
    if not gates:
        return "".join(out) + "<p class='sub'>no gates checked on this run yet</p></section>"
    out.append(f"<p>verdict <span id='gate-verdict'>{_badge(gates.get('verdict', ''))}</span></p>")
    out.append("<table><tr><th>gate</th><th>status</th><th>reason</th></tr>")
    for r in gates.get("results") or ():
        flag = "" if r.get("blocking", True) else " <span class='sub'>(warning only)</span>"
        out.append(f"<tr class='gate' data-gate='{_e(r['name'])}' data-status='{_e(r['status'])}'>"
                   f"<td><code>{_e(r['name'])}</code>{flag}</td><td>{_badge(r['status'])}</td>"
                   f"<td class='reason'>{_e(r.get('message') or '')}</td></tr>")
    out.append("</table>")
    override = gates.get("override")
    if override:
        gates_overridden = ", ".join(override.get("gates") or ())
        out.append(f"<p id='gate-override'>overridden ({_e(gates_overridden)}) by {_e(override.get('by', ''))} "
                   f"at {_e(override.get('at', ''))}: {_e(override.get('reason', ''))}</p>")
    out += [f"<p class='sub'>{_e(n)}</p>" for n in gates.get("notes") or ()]
    return "".join(out) + "</section>"


def _versions(versions: list[dict[str, Any]]) -> str:
    out = ["<section id='versions'><h2>Registered versions</h2>"]
    if not versions:
        return "".join(out) + "<p class='sub'>no version registered from this run yet</p></section>"
    out.append("<table><tr><th>version</th><th>aliases</th><th>URI</th></tr>")
    for v in versions:
        label = f"{v['name']}/{v['version']}"
        name = f"<a href='{_e(v['url'])}' target='_blank'>{_e(label)}</a>" if v.get("url") else _e(label)
        aliases = "".join(f"<span class='alias'>@{_e(a)}</span>" for a in v.get("aliases") or ()) or "—"
        out.append(f"<tr class='version' data-version='{_e(label)}'><td>{name}</td><td class='aliases'>{aliases}</td>"
                   f"<td><code>{_e(v['uri'])}</code></td></tr>")
    return "".join(out) + "</table></section>"


def _lineage(snapshot: dict[str, Any], task_pathspec: str) -> str:
    run = snapshot.get("run") or {}
    lin = snapshot.get("lineage") or {}
    run_label = f"<code>{_e(run.get('id', ''))}</code>"
    if run.get("url"):
        run_label = f"<a id='mlflow-run' href='{_e(run['url'])}' target='_blank'>{run_label}</a>"
    rows = [
        ("MLflow run", run_label + (f" <span class='sub'>{_e(run['experiment'])}</span>" if run.get("experiment")
                                    else "")),
        ("Metaflow run", f"<code id='metaflow-pathspec'>{_e(lin.get('metaflow_pathspec', ''))}</code>"),
        ("Metaflow task", f"<code>{_e(task_pathspec)}</code>"),
    ]
    for v in snapshot.get("versions") or ():
        label = f"{v['name']}/{v['version']}"
        link = f"<a href='{_e(v['url'])}' target='_blank'>{_e(label)}</a>" if v.get("url") else _e(label)
        rows.append(("model version", f"<span class='lineage-version'>{link}</span>"))
    for key, label in (("git_commit", "git commit"), ("source_sha256", "flow source sha256"),
                       ("data_fingerprint", "data sha256"), ("env_lock_sha256", "environment lock sha256")):
        if lin.get(key):
            rows.append((label, f"<code>{_e(lin[key])}</code>"))
    body = "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f"<section id='lineage'><h2>Lineage</h2><table>{body}</table></section>"


def _badge(status: str) -> str:
    if not status:
        return ""
    return f"<span class='badge' style='background:{_STATUS_COLORS.get(status, '#57606a')}'>{_e(status)}</span>"


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)
