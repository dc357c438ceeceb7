"""``shipyard promote``, ``review``, ``approve``, ``reject``, ``rollback`` and ``retire``."""

from __future__ import annotations

import json
from typing import Any

import click

import shipyard


def register(group: click.Group) -> None:
    for command in (promote, review, approve, reject, rollback, retire):
        group.add_command(command)


@click.command()
@click.argument("candidate")
@click.option("--to", "target", default="production", show_default=True)
@click.option("--model-name", default=None, help="Registered model name (default: the run's flow name).")
@click.option("--reason", default=None, help="Recorded with the champion move.")
@click.option("--canary", "canary_weight", type=int, default=None, help="Traffic percent for a canary deployment.")
@click.option("--allow-retired", is_flag=True, help="Promote a retired version again (recorded).")
def promote(candidate: str, target: str, model_name: str | None, reason: str | None,
            canary_weight: int | None, allow_retired: bool) -> None:
    """Promote CANDIDATE (an MLflow run id or NAME/VERSION): gates → … → champion."""
    result = shipyard.promote(candidate, to=target, model_name=model_name, reason=reason,
                              canary_weight=canary_weight, allow_retired=allow_retired)
    click.echo(f"{result.model} v{result.version}: {result.status}")
    if result.image:
        click.echo(f"image   {result.image}")
    if result.bundle_path:
        click.echo(f"bundle  {result.bundle_path}")
    if result.status == "awaiting_approval":
        click.echo(f"next    shipyard review {result.model}/{result.version}; shipyard approve {result.model}/{result.version} -m '...'")


@click.command()
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print the review as JSON.")
def review(ref: str, as_json: bool) -> None:
    """Everything an engineer needs to decide on REF (NAME/VERSION or NAME@ALIAS)."""
    from dataclasses import asdict

    from rich.console import Console
    from rich.table import Table

    r = shipyard.review(ref)
    if as_json:
        click.echo(json.dumps(asdict(r), indent=2, default=str))
        return
    console = Console()
    flags = ", ".join(r.aliases) or "no alias"
    console.print(f"[bold]{r.model} v{r.version}[/]  ({flags}{', RETIRED' if r.retired else ''})  champion: v{r.champion}")
    _kv(console, "lineage", {k: v for k, v in r.lineage.items()})
    gates = Table(title=f"gates · verdict {r.gates.get('verdict')}")
    for column in ("gate", "status", "blocking", "message"):
        gates.add_column(column, overflow="fold")
    for g in r.gates.get("results", []):
        colour = {"pass": "green", "fail": "red", "error": "bold red", "warn": "yellow", "overridden": "magenta"}.get(g.get("status"), "white")
        gates.add_row(g.get("name"), f"[{colour}]{g.get('status')}[/]", str(g.get("blocking")), str(g.get("message")))
    console.print(gates)
    if r.gates.get("override"):
        _kv(console, "override", r.gates["override"])
    _kv(console, "image", {k: v for k, v in r.image.items() if k != "labels"})
    if r.diff:
        _kv(console, f"diff against champion v{r.champion}", r.diff)
    _kv(console, "review", r.review or {"state": "not reviewed"})


@click.command()
@click.argument("ref")
@click.option("-m", "--comment", required=True, help="Why you approve.")
def approve(ref: str, comment: str) -> None:
    """Approve REF for production (a waiting promotion then completes on `shipyard promote`)."""
    record = shipyard.approve(ref, comment)
    click.echo(f"approved {ref} by {record['by']}")


@click.command()
@click.argument("ref")
@click.option("-m", "--comment", required=True, help="What must change.")
def reject(ref: str, comment: str) -> None:
    """Reject REF; promotions of it stop with your comment."""
    record = shipyard.reject(ref, comment)
    click.echo(f"rejected {ref} by {record['by']}")


@click.command()
@click.argument("model")
@click.option("--reason", required=True, help="Why you roll back (recorded).")
def rollback(model: str, reason: str) -> None:
    """Move MODEL's champion back to its previous version and regenerate the handoff bundle."""
    swap = shipyard.rollback(model, reason)
    click.echo(f"{model}: champion v{swap.champion.version}, previous v{swap.previous.version if swap.previous else '-'}")


@click.command()
@click.argument("ref")
@click.option("--reason", required=True, help="Why it is retired (recorded).")
def retire(ref: str, reason: str) -> None:
    """Remove REF's aliases and mark it retired; it cannot be promoted again without --allow-retired."""
    version = shipyard.retire(ref, reason)
    click.echo(f"retired {version}")


def _kv(console: Any, title: str, values: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=title, show_header=False)
    table.add_column("key")
    table.add_column("value", overflow="fold")
    for key, value in values.items():
        table.add_row(str(key), value if isinstance(value, str) else json.dumps(value, default=str))
    console.print(table)
