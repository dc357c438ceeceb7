"""``shipyard audit verify`` and ``shipyard audit show MODEL``: the workspace's audit log, checked and read."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

# what each event says in a model's history
_EVENTS = {
    "model.register": "registered",
    "gate.verdict": "gated",
    "gate.attach": "gate attached",
    "gate.override": "overridden",
    "gate.override_refused": "override refused",
    "alias.move": "alias moved",
    "review.approved": "approved",
    "review.rejected": "rejected",
    "review.refused": "approval refused",
    "promotion.completed": "promoted",
    "promotion.awaiting_approval": "awaiting approval",
    "promotion.allow_retired": "retired version allowed",
    "model.rollback": "rolled back",
    "model.retire": "retired",
    "monitor": "monitored",
    "package": "packaged",
    "retrain.started": "retraining started",
    "retrain.finished": "retrained",
}
# fields shown in their own columns, or that only the chain needs
_SHOWN = {"ts", "who", "event", "model", "version", "seq", "prev", "hash"}


def register(group: click.Group) -> None:
    group.add_command(audit)


@click.group()
def audit() -> None:
    """The workspace's tamper-evident audit log."""


@audit.command()
@click.option("--no-mirror", is_flag=True, help="Check the hash chain only, not the models' MLflow audit tags.")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def verify(no_mirror: bool, as_json: bool) -> None:
    """Check every line's hash, order and place, and each model's MLflow mirror; exit 1 on any finding."""
    from dataclasses import asdict

    from shipyard import audit as log

    result = log.verify(mirror=not no_mirror)
    if as_json:
        click.echo(json.dumps({"ok": result.ok, "path": str(result.path), "lines": result.lines,
                               "unchained": result.unchained, "problems": [asdict(p) for p in result.problems],
                               "notes": result.notes}, indent=2))
    else:
        for problem in result.problems:
            click.secho(f"TAMPERED  {problem.message}", fg="red")
        for note in result.notes:
            click.echo(f"note      {note}")
        if result.unchained:
            click.echo(f"note      the first {result.unchained} line(s) predate the hash chain; the chain covers them "
                       "from its first line on")
        if result.ok:
            click.secho(f"ok        {result.lines} line(s) in {result.path}: the chain holds", fg="green")
    sys.exit(0 if result.ok else 1)


@audit.command()
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON lines.")
def show(model: str, as_json: bool) -> None:
    """MODEL's history, oldest first: registered, gated, overridden, approved, promoted, rolled back, ..."""
    from rich.console import Console
    from rich.table import Table

    from shipyard import audit as log

    records = [r for r in log.read() if r.get("model") == model]
    if as_json:
        for record in records:
            click.echo(json.dumps(record))
        return
    if not records:
        click.echo(f"no audit records for model {model!r} (names are case-sensitive; see `shipyard runs`)")
        return
    table = Table(title=f"{model}: {len(records)} audit record(s), oldest first")
    for column in ("#", "when (UTC)", "who", "what", "version", "details"):
        table.add_column(column, overflow="fold")
    for record in records:
        event = str(record.get("event", ""))
        table.add_row(
            str(record.get("seq", "")), str(record.get("ts", ""))[:19].replace("T", " "), str(record.get("who", "")),
            _EVENTS.get(event, event), str(record.get("version") or ""), _details(record),
        )
    Console(width=max(120, Console().width)).print(table)


def _details(record: dict[str, Any]) -> str:
    parts = []
    for key, value in record.items():
        if key in _SHOWN or value in (None, "", [], {}):
            continue
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        parts.append(f"{key}={text if len(text) <= 80 else text[:77] + '...'}")
    return "; ".join(parts)
