"""Model cards: what a registered version is for, what it was trained and tested on, and who let it ship.

A card is made from what shipyard already recorded, never from new work:

- intended use, limitations and any other section the flow declared
  (``@shipyard.track(card={...})``) or wrote in a ``MODEL_CARD.md`` next to
  the flow file, as written (both are kept on the run when it starts);
- the training data's fingerprints (the run's ``shipyard.data.<name>.sha256``
  tags) and a summary of the reference profile frozen when it was packaged;
- metrics on the holdout and per slice, from the gate report;
- gate verdicts, and every override with its reason;
- feature attributions, when the gates recorded them;
- approvals, with their comments;
- the image digest and the SBOM of the handoff bundle.

It renders as Markdown and as one self-contained HTML page (figures embedded
as ``data:`` URIs; every recorded string escaped). Promotion writes both into
the handoff bundle (``model-card.md``, ``model-card.html``) and logs them on
the version's run (:data:`~shipyard._core.lineage.MODEL_CARD_ARTIFACT`).

Example:
    >>> card = shipyard.model_card("iris/3")        # doctest: +SKIP
    >>> card.save("out/")                           # doctest: +SKIP
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .._core import lineage
from .._core.workspace import Workspace, current_workspace

MARKDOWN_FILE = "model-card.md"
HTML_FILE = "model-card.html"
# declared first and said to be missing when not declared: a card without them answers nothing
REQUIRED = ("intended_use", "limitations")
NOT_RECORDED = "no attributions recorded"
_TOP_PROFILE_CATEGORIES = 3


@dataclass(frozen=True)
class Section:
    """A section of the card the flow's authors wrote: its title and Markdown text, as written."""

    title: str
    text: str
    source: str  # "declared" (@shipyard.track(card=...)) or "MODEL_CARD.md"


@dataclass(frozen=True)
class ModelCard:
    """The model card of one registered version; :attr:`markdown` and :attr:`html` render it.

    Attributes:
        model: registered model name.
        version: registered version.
        created_at: when the card was made (UTC, ISO 8601).
        sections: what the flow declared (intended use, limitations, ...), as written.
        lineage: the version's lineage (``Lineage.to_dict()``).
        datasets: ``{"name", "sha256", "rows"}`` of each dataset the run logged.
        profile: summary of the reference profile frozen at packaging, or None.
        metrics: ``{"metric", "value", "champion", "where"}`` on the holdout (and as logged by the run).
        slices: ``{"gate", "metric", "column", "status", "groups": {group: {"value", "rows"}}}`` per slice gate.
        gates: ``{"verdict", "results": [{"name", "status", "blocking", "message"}]}``.
        overrides: ``{"gates", "by", "at", "reason"}``, oldest first.
        approvals: ``{"state", "by", "at", "comment"}`` of each review.
        attributions: ``{"method", "scoring", "rows", "n_repeats", "features": [{"feature", "mean", "std",
            "share"}]}``, or None (``notes`` says why).
        image: ``{"reference", "digest", ...}`` of the image, empty when never packaged.
        sbom: ``{"file", "path", "components"}`` of the bundle's SBOM, or None.
        notes: what is missing, and why.
    """

    model: str
    version: str
    created_at: str
    sections: tuple[Section, ...] = ()
    lineage: Mapping[str, Any] = field(default_factory=dict)
    datasets: tuple[Mapping[str, Any], ...] = ()
    profile: Mapping[str, Any] | None = None
    metrics: tuple[Mapping[str, Any], ...] = ()
    slices: tuple[Mapping[str, Any], ...] = ()
    gates: Mapping[str, Any] = field(default_factory=dict)
    overrides: tuple[Mapping[str, Any], ...] = ()
    approvals: tuple[Mapping[str, Any], ...] = ()
    attributions: Mapping[str, Any] | None = None
    image: Mapping[str, Any] = field(default_factory=dict)
    sbom: Mapping[str, Any] | None = None
    notes: tuple[str, ...] = ()

    @property
    def title(self) -> str:
        return f"Model card: {self.model} version {self.version}"

    @property
    def markdown(self) -> str:
        """The card as Markdown (recorded values escaped; the declared sections as written)."""
        return _markdown(self)

    @property
    def html(self) -> str:
        """The card as one self-contained HTML page."""
        return self.to_html()

    def to_html(self, *, full_page: bool = True) -> str:
        """The card as HTML, figures embedded as ``data:`` URIs; ``full_page=False`` gives a fragment."""
        return _html(self, full_page=full_page)

    def files(self) -> dict[str, str]:
        """File name → text, as the handoff bundle holds them."""
        return {MARKDOWN_FILE: self.markdown, HTML_FILE: self.html}

    def save(self, directory: str | Path) -> tuple[Path, Path]:
        """Write ``model-card.md`` and ``model-card.html`` into ``directory`` (created); return both paths."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, text in self.files().items():
            (folder / name).write_text(text, encoding="utf-8")
            paths.append(folder / name)
        return paths[0], paths[1]

    def _repr_html_(self) -> str:
        return self.to_html(full_page=False)

    def __repr__(self) -> str:
        return f"<ModelCard {self.model}/{self.version}: {len(self.sections)} declared sections>"


# ---------------------------------------------------------------------------------------------- building


def model_card(ref: Any, *, workspace: Workspace | None = None) -> ModelCard:
    """The model card of a registered version, from what its run, gates, reviews and bundle recorded.

    A promoted version's card describes what was shipped (the bundle's gate
    report and image); reviews are read as they are now.

    Args:
        ref: ``"NAME/VERSION"``, ``"NAME@ALIAS"`` or a :class:`~shipyard.ModelRef`.

    Raises:
        ModelNotFound: no such version.

    Example:
        >>> card = shipyard.model_card("iris@champion")      # doctest: +SKIP
        >>> card.save("docs/")                               # doctest: +SKIP
    """
    from .. import registry
    from ..deploy.handoff import read_bundle

    ws = workspace or current_workspace()
    version = registry.resolve(ref, workspace=ws)
    directory = ws.bundle_dir(version.name, version.version)
    spec = read_bundle(directory) if (directory / "handoff.json").is_file() else None
    return build(ws, version, spec, bundle_dir=directory if spec is not None else None)


def build(ws: Workspace, version: Any, spec: Any = None, *, bundle_dir: Path | None = None) -> ModelCard:
    """The card of ``version`` (a registry version); ``spec`` is the :class:`~shipyard.deploy.handoff.HandoffSpec`
    of its bundle, when there is one (being written at promotion, or read back)."""
    from .. import registry

    notes: list[str] = []
    run = _run(ws, version.run_id, notes)
    run_tags = dict(run.data.tags) if run is not None else {}
    lineage_record = (spec.lineage if spec is not None else registry.lineage_of(version, workspace=ws)).to_dict()
    report = dict(spec.gate_report) if spec is not None and spec.gate_report else _report(ws, version, notes)
    profile = spec.reference_profile if spec is not None and spec.reference_profile else None
    if profile is None:
        profile = _artifact_json(ws, version.run_id, lineage.REFERENCE_ARTIFACT)
    if profile is None:
        notes.append("no reference profile yet: it is frozen when the version is packaged")
    metrics, slices = _metrics(report, dict(run.data.metrics) if run is not None else {})
    image, sbom = _image(ws, version, spec, bundle_dir)
    if not image:
        notes.append("not packaged yet: no image digest or SBOM")
    attributions = _attributions(ws, version, notes)
    return ModelCard(
        model=version.name,
        version=str(version.version),
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        sections=_sections(_artifact_json(ws, version.run_id, lineage.MODEL_CARD_SPEC_ARTIFACT)),
        lineage=lineage_record,
        datasets=tuple(
            {"name": name, "sha256": sha, "rows": run_tags.get(lineage.data_tag(name, "rows"), "")}
            for name, sha in sorted((lineage_record.get("data_sha256") or {}).items())
        ),
        profile=_profile_summary(profile) if profile else None,
        metrics=metrics,
        slices=slices,
        gates={
            "verdict": report.get("verdict") or "not checked",
            "results": [{k: r.get(k) for k in ("name", "status", "blocking", "message")}
                        for r in report.get("results") or []],
        },
        overrides=_overrides(report),
        approvals=_approvals(version, spec),
        attributions=attributions,
        image=image,
        sbom=sbom,
        notes=tuple(notes),
    )


def log_card(ws: Workspace, run_id: str, card: ModelCard) -> None:
    """Keep the card on the version's run (:data:`~shipyard._core.lineage.MODEL_CARD_ARTIFACT` and its HTML).

    Raises:
        TrackingError: the tracking server refused the artifacts.
    """
    from mlflow.exceptions import MlflowException

    from ..tracking._client import client_for, tracking_error

    client = client_for(ws)
    try:
        client.log_text(run_id, card.markdown, lineage.MODEL_CARD_ARTIFACT)
        client.log_text(run_id, card.html, lineage.MODEL_CARD_HTML_ARTIFACT)
    except MlflowException as exc:
        raise tracking_error(ws, exc) from exc


def _run(ws: Workspace, run_id: str, notes: list[str]) -> Any:
    from ..tracking._client import client_for

    if not run_id:
        notes.append("the version names no run: no run metrics or declared sections")
        return None
    try:
        return client_for(ws).get_run(run_id)
    except Exception as exc:  # the registry still holds the rest of the card
        notes.append(f"run {run_id} could not be read ({type(exc).__name__})")
        return None


def _artifact_json(ws: Workspace, run_id: str, path: str) -> Any:
    """A JSON artifact of ``run_id``, or None when the run has none at ``path``."""
    from ..tracking._client import client_for

    if not run_id:
        return None
    with tempfile.TemporaryDirectory(prefix="shipyard-card-") as tmp:
        try:
            local = client_for(ws).download_artifacts(run_id, path, tmp)
            return json.loads(Path(local).read_text(encoding="utf-8"))
        except Exception:  # absent (never recorded) reads as None; the card says what is missing
            return None


def _report(ws: Workspace, version: Any, notes: list[str]) -> dict[str, Any]:
    from .. import gates
    from .._core.errors import ShipyardError

    try:
        return gates.load_report(version, workspace=ws).to_dict()
    except ShipyardError:
        notes.append("no gate report: the version was never checked")
        return {}


def _sections(spec: Any) -> tuple[Section, ...]:
    """The file's sections as written, then the declared ones (a declared section replaces one of the same title)."""
    spec = spec if isinstance(spec, Mapping) else {}
    found: dict[str, Section] = {}
    file = spec.get("file") or {}
    if isinstance(file.get("text"), str):
        for title, text in _split_markdown(file["text"]):
            found[title.lower()] = Section(title, text, str(file.get("name") or "MODEL_CARD.md"))
    for key, text in (spec.get("declared") or {}).items():
        title = _title(str(key))
        found[title.lower()] = Section(title, str(text), "declared")
    ordered = [found.pop(_title(k).lower()) for k in REQUIRED if _title(k).lower() in found]
    return tuple(ordered + list(found.values()))


def _title(key: str) -> str:
    words = key.replace("_", " ").replace("-", " ").strip()
    return words[:1].upper() + words[1:]


def _split_markdown(text: str) -> list[tuple[str, str]]:
    """``## Heading`` sections of a Markdown file; text before the first one is its "Overview"."""
    sections: list[tuple[str, list[str]]] = [("Overview", [])]
    fence = False
    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fence = not fence
        if not fence and (match := re.match(r"^##\s+(.+?)\s*#*\s*$", line)):
            sections.append((match.group(1), []))
            continue
        if not fence and len(sections) == 1 and not "".join(sections[0][1]).strip() and re.match(r"^#\s+", line):
            continue  # the file's "# Title" line: the card has its own title
        sections[-1][1].append(line)
    return [(title, "\n".join(lines).strip()) for title, lines in sections if "\n".join(lines).strip()]


def _metrics(report: Mapping[str, Any], logged: Mapping[str, float]) -> tuple[tuple[dict, ...], tuple[dict, ...]]:
    """Holdout metrics (threshold and champion/challenger gates), the run's logged metrics, and slices."""
    found: dict[str, dict[str, Any]] = {}
    slices = []
    for r in report.get("results") or []:
        details = r.get("details") or {}
        if r.get("kind") == "champion_challenger":
            for name, values in (details.get("metrics") or {}).items():
                found[name] = {"metric": name, "value": values.get("candidate"), "champion": values.get("champion"),
                               "where": "holdout"}
        elif r.get("kind") == "threshold" and str(details.get("source", "")).startswith("on "):
            metric = str(details.get("metric") or r.get("name"))
            found.setdefault(metric, {"metric": metric, "value": r.get("value"), "champion": None,
                                      "where": "holdout"})
        elif r.get("kind") == "slice_parity" and details.get("groups"):
            slices.append({"gate": r.get("name"), "metric": details.get("metric"), "column": details.get("column"),
                           "status": r.get("status"), "groups": dict(details["groups"])})
    for name, value in sorted(logged.items()):
        if name not in found:
            found[name] = {"metric": name, "value": value, "champion": None, "where": "logged by the run"}
    return tuple(found.values()), tuple(slices)


def _overrides(report: Mapping[str, Any]) -> tuple[dict[str, Any], ...]:
    latest = report.get("override")
    if not latest:
        return ()
    every = [*latest.get("previous", []), {k: v for k, v in latest.items() if k != "previous"}]
    return tuple({"gates": list(o.get("gates") or []), "by": o.get("by"), "at": o.get("at"),
                  "reason": o.get("reason")} for o in every)


def _approvals(version: Any, spec: Any) -> tuple[dict[str, Any], ...]:
    """The approval the bundle went out with, and the version's review as it stands now."""
    found: list[dict[str, Any]] = []
    for a in spec.approvals if spec is not None else ():
        found.append({"state": "approved", "by": a.get("by"), "at": a.get("at"), "comment": a.get("comment")})
    review = lineage.review(version.tags)
    if review and not any((a["by"], a["at"]) == (review.get("by"), review.get("at")) for a in found):
        found.append({k: review.get(k) for k in ("state", "by", "at", "comment")})
    return tuple(found)


def _image(ws: Workspace, version: Any, spec: Any, bundle_dir: Path | None) -> tuple[dict[str, Any], Any]:
    if spec is None:
        from ._review import _packaged_image

        return _packaged_image(ws, version), None
    image = {"reference": spec.image, "digest": spec.image_digest, "repository": spec.image_repository}
    for key in ("tag", "image_id", "size_bytes", "user", "pushed"):
        if key in spec.image_facts:
            image[key] = spec.image_facts[key]
    sbom = {"file": "sbom.cdx.json", "path": str(bundle_dir / "sbom.cdx.json") if bundle_dir else "",
            "components": len(set(spec.python_packages))}
    return image, sbom


def _attributions(ws: Workspace, version: Any, notes: list[str]) -> dict[str, Any] | None:
    """The attributions recorded for the version's run, or None (the card then says none were recorded)."""
    try:
        from ..gates import _attributions
    except ImportError:
        return None
    try:
        found = _attributions.load(version.run_id, workspace=ws) if version.run_id else None
    except Exception as exc:  # an unreadable record is a note on the card, not a card that cannot be made
        notes.append(f"attributions could not be read ({type(exc).__name__}: {exc})")
        return None
    if found is None:
        return None
    shares = found.share()
    features = sorted(found.features.items(), key=lambda item: -item[1][0])
    return {
        "method": found.method, "scoring": found.scoring, "rows": found.rows, "n_repeats": found.n_repeats,
        "seed": found.seed,
        "features": [{"feature": name, "mean": mean, "std": std, "share": shares.get(name)}
                     for name, (mean, std) in features],
    }


def _profile_summary(profile: Mapping[str, Any]) -> dict[str, Any]:
    columns = []
    for name, c in (profile.get("columns") or {}).items():
        if c.get("kind") == "numeric":
            q = c.get("quantiles") or []
            summary = (f"mean {_num(c.get('mean'))}, std {_num(c.get('std'))}, "
                       f"min {_num(q[0] if q else None)}, median {_num(q[len(q) // 2] if q else None)}, "
                       f"max {_num(q[-1] if q else None)}")
        else:
            top = sorted((c.get("frequencies") or {}).items(), key=lambda kv: -kv[1])[:_TOP_PROFILE_CATEGORIES]
            summary = ", ".join(f"{k} {v:.0%}" for k, v in top) + (" …" if len(c.get("frequencies") or {}) > 3 else "")
        columns.append({"column": name, "kind": c.get("kind"), "null_rate": c.get("null_rate"), "summary": summary})
    return {"source": profile.get("source"), "dataset": profile.get("dataset"), "rows": profile.get("rows"),
            "fingerprint": profile.get("fingerprint"), "columns": columns, "notes": list(profile.get("notes") or [])}


def _num(value: Any) -> str:
    if value is None:
        return "—"
    try:
        return f"{float(value):.4g}"
    except (TypeError, ValueError):
        return str(value)


# ---------------------------------------------------------------------------------------------- Markdown


def _cell(value: Any) -> str:
    """A recorded value in a Markdown table cell: HTML-escaped, pipes and line breaks neutralised."""
    text = value if isinstance(value, str) else _num(value) if isinstance(value, float) else str(value)
    return html.escape(text, quote=False).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(_cell(v) for v in row) + " |" for row in rows), ""]


def _markdown(card: ModelCard) -> str:
    lin = card.lineage
    out = [f"# {_cell(card.title)}", "", (f"Made {card.created_at} from the records of MLflow run "
           f"`{_cell(lin.get('mlflow_run_id') or '—')}`."), ""]
    declared = {s.title.lower() for s in card.sections}
    for key in REQUIRED:
        if _title(key).lower() not in declared:
            out += [f"## {_title(key)}", "", _missing(key), ""]
    for s in card.sections:
        out += [f"## {s.title}", "", s.text, ""]
    out += ["## Training data", ""]
    if card.datasets:
        out += _table(["dataset", "sha256", "rows"], [[d["name"], d["sha256"], d["rows"]] for d in card.datasets])
    else:
        out += ["No dataset was logged with the run (shipyard.log_dataset).", ""]
    out += [(f"Data fingerprint: `{_cell(lin.get('data_fingerprint') or '—')}`; model sha256: "
            f"`{_cell(lin.get('model_sha256') or '—')}`; flow source sha256: `{_cell(lin.get('source_sha256') or '—')}`;"
            f" git commit: `{_cell(lin.get('git_commit') or '—')}`."), ""]
    if card.profile:
        p = card.profile
        out += [(f"Reference profile ({_cell(p['source'])}, {_cell(p['rows'])} rows, fingerprint "
                f"`{_cell(p['fingerprint'])}`):"), ""]
        out += _table(["column", "kind", "null rate", "summary"],
                      [[c["column"], c["kind"], _pct(c["null_rate"]), c["summary"]] for c in p["columns"]])
    out += ["## Metrics", ""]
    if card.metrics:
        out += _table(["metric", "value", "champion", "where"],
                      [[m["metric"], m["value"], "—" if m["champion"] is None else m["champion"], m["where"]]
                       for m in card.metrics])
    else:
        out += ["No metric was recorded.", ""]
    for s in card.slices:
        out += [(f"Per slice of `{_cell(s['column'])}` ({_cell(s['metric'])}, gate {_cell(s['gate'])}: "
                f"{_cell(s['status'])}):"), ""]
        out += _table(["slice", s["metric"] or "value", "rows"],
                      [[g, v.get("value"), v.get("rows")] for g, v in s["groups"].items()])
    out += ["## Gates", "", f"Verdict: **{_cell(card.gates.get('verdict'))}**", ""]
    if card.gates.get("results"):
        out += _table(["gate", "status", "blocking", "reason"],
                      [[g["name"], g["status"], "yes" if g["blocking"] else "no", g["message"]]
                       for g in card.gates["results"]])
    out += ["### Overrides", ""]
    out += (_table(["gates", "by", "at", "reason"], [[", ".join(o["gates"]), o["by"], o["at"], o["reason"]]
                                                    for o in card.overrides])
            if card.overrides else ["None.", ""])
    out += ["## Attributions", ""]
    a = card.attributions
    if a:
        out += [(f"{_cell(a['method'])} importance ({_cell(a['scoring'])}, {_cell(a['rows'])} rows, "
                f"{_cell(a['n_repeats'])} repeats, seed {_cell(a['seed'])}):"), ""]
        out += _table(["feature", "importance", "std", "share"],
                      [[f["feature"], f["mean"], f["std"], _pct(f["share"])] for f in a["features"]])
    else:
        out += [NOT_RECORDED.capitalize() + ".", ""]
    out += ["## Approvals", ""]
    out += (_table(["decision", "by", "at", "comment"], [[r["state"], r["by"], r["at"], r["comment"]]
                                                        for r in card.approvals])
            if card.approvals else ["No review recorded.", ""])
    out += ["## Image", ""]
    if card.image:
        out += [(f"Image: `{_cell(card.image.get('reference') or card.image.get('tag') or '—')}`, digest "
                f"`{_cell(card.image.get('digest') or card.image.get('image_id') or '—')}`."), ""]
    if card.sbom:
        out += [(f"SBOM: [{card.sbom['file']}]({card.sbom['file']}) in the handoff bundle "
                f"({_cell(card.sbom['components'])} Python packages)."), ""]
    if not card.image:
        out += ["Not packaged yet.", ""]
    if card.notes:
        out += ["## Notes", "", *(f"- {_cell(n)}" for n in card.notes), ""]
    return "\n".join(out)


def _missing(key: str) -> str:
    return (f"Not declared. Add `card={{\"{key}\": \"...\"}}` to `@shipyard.track`, or a `## {_title(key)}` "
            "section to a MODEL_CARD.md next to the flow.")


def _pct(value: Any) -> str:
    return "—" if value is None else f"{float(value):.1%}"


# ---------------------------------------------------------------------------------------------- HTML

_STYLE = """<style>
.shipyard-model-card{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:980px;line-height:1.45}
.shipyard-model-card table{border-collapse:collapse;margin:.4em 0 1em}
.shipyard-model-card th,.shipyard-model-card td{border:1px solid #d0d7de;padding:3px 8px;text-align:left;
vertical-align:top}
.shipyard-model-card code{background:#f6f8fa;padding:0 3px;word-break:break-all}
.shipyard-model-card .pass{color:#1a7f37}.shipyard-model-card .fail,.shipyard-model-card .error{color:#cf222e}
.shipyard-model-card .warn{color:#9a6700}.shipyard-model-card .overridden{color:#8250df}
.shipyard-model-card .missing{color:#6e7781;font-style:italic}
</style>"""


def _e(value: Any) -> str:
    text = value if isinstance(value, str) else _num(value) if isinstance(value, float) else str(value)
    return html.escape(text)


def _html_table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _render_markdown(text: str) -> str:
    """A declared section's Markdown as HTML, raw HTML in it shown as text (it may come from anyone's file)."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False}).enable("table").render(text)


def _html(card: ModelCard, *, full_page: bool) -> str:
    lin = card.lineage
    parts = [f'<div class="shipyard-model-card"><h1>{_e(card.title)}</h1>',
             (f"<p>Made {_e(card.created_at)} from the records of MLflow run "
             f"<code>{_e(lin.get('mlflow_run_id') or '—')}</code>.</p>")]
    declared = {s.title.lower() for s in card.sections}
    for key in REQUIRED:
        if _title(key).lower() not in declared:
            parts.append(f'<section><h2>{_e(_title(key))}</h2><p class="missing">{_e(_missing(key))}</p></section>')
    for s in card.sections:
        parts.append(f'<section class="declared"><h2>{_e(s.title)}</h2>{_render_markdown(s.text)}</section>')

    data = ['<section id="training-data"><h2>Training data</h2>']
    data.append(_html_table(["dataset", "sha256", "rows"], [[d["name"], d["sha256"], d["rows"]] for d in card.datasets])
                if card.datasets else '<p class="missing">No dataset was logged with the run.</p>')
    data.append("<p>" + "; ".join(
        f"{label}: <code>{_e(lin.get(key) or '—')}</code>"
        for label, key in (("data fingerprint", "data_fingerprint"), ("model sha256", "model_sha256"),
                           ("flow source sha256", "source_sha256"), ("git commit", "git_commit"))) + "</p>")
    if card.profile:
        p = card.profile
        data.append(f"<p>Reference profile ({_e(p['source'])}, {_e(p['rows'])} rows, fingerprint "
                    f"<code>{_e(p['fingerprint'])}</code>):</p>")
        data.append(_html_table(["column", "kind", "null rate", "summary"],
                                [[c["column"], c["kind"], _pct(c["null_rate"]), c["summary"]] for c in p["columns"]]))
    parts.append("".join(data) + "</section>")

    metrics = ['<section id="metrics"><h2>Metrics</h2>']
    metrics.append(_html_table(["metric", "value", "champion", "where"],
                               [[m["metric"], m["value"], "—" if m["champion"] is None else m["champion"], m["where"]]
                                for m in card.metrics])
                   if card.metrics else '<p class="missing">No metric was recorded.</p>')
    for s in card.slices:
        metrics.append(f"<h3>Per slice of <code>{_e(s['column'])}</code> ({_e(s['metric'])}, gate {_e(s['gate'])}: "
                       f'<span class="{_e(s["status"])}">{_e(s["status"])}</span>)</h3>')
        metrics.append(_html_table(["slice", str(s["metric"] or "value"), "rows"],
                                   [[g, v.get("value"), v.get("rows")] for g, v in s["groups"].items()]))
    metrics.extend(_img(alt, png) for alt, png in _metric_figures(card))
    parts.append("".join(metrics) + "</section>")

    verdict = str(card.gates.get("verdict"))
    gates = [f'<section id="gates"><h2>Gates</h2><p>Verdict: <b class="{_e(verdict)}">{_e(verdict)}</b></p>']
    if card.gates.get("results"):
        head = "".join(f"<th>{h}</th>" for h in ("gate", "status", "blocking", "reason"))
        rows = "".join(
            f'<tr><td><code>{_e(g["name"])}</code></td><td class="{_e(g["status"])}">{_e(g["status"])}</td>'
            f'<td>{"yes" if g["blocking"] else "no"}</td><td>{_e(g["message"])}</td></tr>'
            for g in card.gates["results"])
        gates.append(f"<table><tr>{head}</tr>{rows}</table>")
    gates.append("<h3>Overrides</h3>")
    gates.append(_html_table(["gates", "by", "at", "reason"],
                             [[", ".join(o["gates"]), o["by"], o["at"], o["reason"]] for o in card.overrides])
                 if card.overrides else "<p>None.</p>")
    parts.append("".join(gates) + "</section>")

    attributions = ['<section id="attributions"><h2>Attributions</h2>']
    a = card.attributions
    if a:
        attributions.append(f"<p>{_e(a['method'])} importance ({_e(a['scoring'])}, {_e(a['rows'])} rows, "
                            f"{_e(a['n_repeats'])} repeats, seed {_e(a['seed'])}):</p>")
        attributions.append(_html_table(["feature", "importance", "std", "share"],
                                        [[f["feature"], f["mean"], f["std"], _pct(f["share"])] for f in a["features"]]))
        attributions.append(_img("feature attributions", _bars_png(
            [f["feature"] for f in a["features"]], [f["mean"] or 0.0 for f in a["features"]], "importance")))
    else:
        attributions.append(f'<p class="missing">{_e(NOT_RECORDED.capitalize())}.</p>')
    parts.append("".join(attributions) + "</section>")

    parts.append('<section id="approvals"><h2>Approvals</h2>' + (
        _html_table(["decision", "by", "at", "comment"], [[r["state"], r["by"], r["at"], r["comment"]]
                                                          for r in card.approvals])
        if card.approvals else '<p class="missing">No review recorded.</p>') + "</section>")

    image = ['<section id="image"><h2>Image</h2>']
    if card.image:
        image.append(f"<p>Image <code>{_e(card.image.get('reference') or card.image.get('tag') or '—')}</code>, "
                     f"digest <code>{_e(card.image.get('digest') or card.image.get('image_id') or '—')}</code>.</p>")
    else:
        image.append('<p class="missing">Not packaged yet.</p>')
    if card.sbom:
        image.append(f'<p>SBOM: <a href="{_e(card.sbom["file"])}">{_e(card.sbom["file"])}</a> in the handoff bundle '
                     f"({_e(card.sbom['components'])} Python packages).</p>")
    parts.append("".join(image) + "</section>")
    if card.notes:
        parts.append('<section id="notes"><h2>Notes</h2><ul>' + "".join(f"<li>{_e(n)}</li>" for n in card.notes)
                     + "</ul></section>")
    body = _STYLE + "".join(parts) + "</div>"
    if not full_page:
        return body
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(card.title)}</title></head>'
            f"<body>{body}</body></html>")


def _img(alt: str, png: bytes) -> str:
    return f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}"/></p>'


def _metric_figures(card: ModelCard) -> list[tuple[str, bytes]]:
    figures = []
    numeric = [m for m in card.metrics if isinstance(m["value"], (int, float))]
    if numeric:
        champion = [m["champion"] if isinstance(m["champion"], (int, float)) else None for m in numeric]
        figures.append(("metrics", _bars_png([m["metric"] for m in numeric], [float(m["value"]) for m in numeric],
                                             "metrics", champion if any(c is not None for c in champion) else None)))
    for s in card.slices:
        groups = list(s["groups"].items())
        figures.append((f"{s['metric']} per slice of {s['column']}", _bars_png(
            [str(g) for g, _ in groups], [float(v.get("value") or 0.0) for _, v in groups],
            f"{s['metric']} by {s['column']}")))
    return figures


def _bars_png(labels: list[str], values: list[float], title: str, champion: list[float | None] | None = None) -> bytes:
    """A horizontal bar plot as PNG bytes (a bare Figure: the user's pyplot state is untouched)."""
    from matplotlib.figure import Figure

    # "$" would start matplotlib's math text, which a hostile name could make fail to parse
    labels = [(label if len(label) <= 28 else label[:27] + "…").replace("$", r"\$") for label in labels]
    title = title.replace("$", r"\$")
    fig = Figure(figsize=(6.0, 0.45 * len(labels) + 1.2), layout="constrained")
    ax = fig.subplots()
    ys = list(range(len(labels)))
    height = 0.4 if champion else 0.7
    ax.barh([y - (height / 2 if champion else 0) for y in ys], values, height, color="#0969da", label="this version")
    if champion:
        ax.barh([y + height / 2 for y in ys], [c or 0.0 for c in champion], height, color="#8c959f", label="champion")
        ax.legend(fontsize=8)
    ax.set_yticks(ys, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_title(title, fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return buf.getvalue()


__all__ = ["HTML_FILE", "MARKDOWN_FILE", "ModelCard", "Section", "build", "log_card", "model_card"]
