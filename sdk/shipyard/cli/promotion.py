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
                              canary_weight=canary_weight, allow_retired=allow_retired, progress=_progress())
    click.echo(f"{result.model} v{result.version}: {result.status}")
    if result.image:
        click.echo(f"image   {result.image}")
    if result.bundle_path:
        click.echo(f"bundle  {result.bundle_path}")


@click.command()
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print the review as JSON (the diff under explicit keys).")
def review(ref: str, as_json: bool) -> None:
    """Everything an engineer needs to decide on REF (NAME/VERSION or NAME@ALIAS)."""
    from dataclasses import asdict

    r = shipyard.review(ref)
    if as_json:
        click.echo(json.dumps(asdict(r), indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    flags = ", ".join(r.aliases) or "no alias"
    champion = f"champion v{r.champion}" if r.champion else "no champion yet"
    console.print(f"[bold]{r.model} v{r.version}[/]  ({flags}{', RETIRED' if r.retired else ''})  {champion}")
    _kv(console, "lineage", r.lineage)
    gates = Table(title=f"gates · verdict {r.gates.get('verdict') or 'not checked'}")
    for column in ("gate", "status", "blocking", "message"):
        gates.add_column(column, overflow="fold")
    for g in r.gates.get("results", []):
        colour = {"pass": "green", "fail": "red", "error": "bold red", "warn": "yellow", "overridden": "magenta"}.get(g.get("status"), "white")
        gates.add_row(g.get("name"), f"[{colour}]{g.get('status')}[/]", str(g.get("blocking")), str(g.get("message")))
    console.print(gates)
    if r.gates.get("override"):
        _kv(console, "override", r.gates["override"])
    image = {k: v for k, v in r.image.items() if k != "labels"}
    _kv(console, "image", image) if image else console.print("image: not built yet")
    if r.diff:
        _print_diff(console, r.diff)
    elif r.champion == r.version:
        console.print(f"diff: v{r.version} is the champion; nothing to compare with")
    else:
        console.print("diff: no champion to compare with")
    _kv(console, "review", r.review or {"state": "not reviewed"})


def _print_diff(console: Any, diff: dict[str, Any]) -> None:
    """Every value of the diff under a column that names its version."""
    from rich.table import Table

    old, new = f"champion v{diff['champion']}", f"candidate v{diff['candidate']}"
    console.rule(f"diff against champion v{diff['champion']}")

    def table(title: str, *columns: str) -> Any:
        t = Table(title=title)
        for i, column in enumerate(columns):
            t.add_column(column, justify="right" if i else "left", overflow="fold")
        return t

    metrics = table("metrics", "metric", old, new, "delta")
    for name, row in diff["metrics"].items():
        metrics.add_row(name, _num(row["champion"]), _num(row["candidate"]), _num(row["delta"], signed=True))
    console.print(metrics if diff["metrics"] else "metrics: none logged on either version")

    added, removed = diff["requirements"]["added"], diff["requirements"]["removed"]
    if added or removed:
        requirements = table("requirements", "requirement", old, new)
        for req in removed:
            requirements.add_row(req, "yes", "removed")
        for req in added:
            requirements.add_row(req, "-", "added")
        console.print(requirements)
    else:
        console.print("requirements: the same on both versions")

    schema = diff["input_schema"]
    if schema["changed"] is None:
        console.print(f"input schema: could not be read for the {' and the '.join(schema['unreadable'])}")
    elif schema["changed"]:
        columns = table("input schema", "column", old, new)
        for column in schema["removed"]:
            columns.add_row(column, "present", "removed")
        for column in schema["added"]:
            columns.add_row(column, "-", "added")
        for column, types in schema["retyped"].items():
            columns.add_row(column, types["champion"], types["candidate"])
        console.print(columns)
    else:
        console.print("input schema: the same on both versions")

    size = diff["image_size_bytes"]
    if size["champion"] is None and size["candidate"] is None:
        console.print("image size: neither version has an image yet")
    else:
        sizes = table("image size", "", old, new, "delta")
        sizes.add_row("size_bytes", _size(size["champion"]), _size(size["candidate"]), _size(size["delta"], signed=True))
        console.print(sizes)

    attributions = diff["attributions"]
    if not attributions["features"]:
        missing = [side for side, there in attributions["recorded"].items() if not there]
        console.print(f"attributions: no attributions recorded for the {' and the '.join(missing)}")
    else:
        shares = table("attributions (share of total importance)", "feature", f"{old} share", f"{new} share",
                       "change")
        for row in attributions["features"]:
            shares.add_row(row["feature"], _pct(row["champion"]), _pct(row["candidate"]),
                           _pct(row["change"], signed=True))
        console.print(shares)


def _num(value: Any, *, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.4g}" if signed else f"{value:.4g}"


def _pct(value: float | None, *, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{100 * value:+.1f} pts" if signed else f"{100 * value:.1f} %"


def _size(value: int | None, *, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value / 1e6:+.1f} MB" if signed else f"{value / 1e6:.1f} MB"


@click.command()
@click.argument("ref")
@click.option("-m", "--comment", required=True, help="Why you approve.")
def approve(ref: str, comment: str) -> None:
    """Approve REF for production (a waiting promotion then completes on `shipyard promote`)."""
    record = shipyard.approve(ref, comment)
    counted = f" ({record['approvals']} approvals)" if "approvals" in record else ""  # when counted per person
    click.echo(f"approved {ref} by {record['by']}{counted}")


@click.command()
@click.argument("ref")
@click.option("-m", "--comment", required=True, help="What must change.")
@click.option("--force", is_flag=True, help="Reject the serving champion too (it keeps serving; recorded as forced).")
def reject(ref: str, comment: str, force: bool) -> None:
    """Reject REF; promotions of it stop with your comment."""
    record = shipyard.reject(ref, comment, force=force)
    click.echo(f"rejected {ref} by {record['by']}")


@click.command()
@click.argument("model")
@click.option("--reason", required=True, help="Why you roll back (recorded).")
def rollback(model: str, reason: str) -> None:
    """Move MODEL's champion back to its previous version and regenerate the handoff bundle.

    A rollback goes back one champion; right after one, a second is refused (it would serve the version
    just rolled back from again): promote the version you want instead.
    """
    swap = shipyard.rollback(model, reason)
    click.echo(f"{model}: champion v{swap.champion.version}, previous v{swap.previous.version if swap.previous else '-'}")


@click.command()
@click.argument("ref")
@click.option("--reason", required=True, help="Why it is retired (recorded).")
def retire(ref: str, reason: str) -> None:
    """Remove REF's aliases and mark it retired; it cannot be promoted again without --allow-retired."""
    version = shipyard.retire(ref, reason)
    click.echo(f"retired {version}")


def _progress() -> Any:
    """One line per stage on stderr (a spinner while it runs, on a terminal).

    A failed stage's line carries no text: the command prints the error right
    after it, and a reason said twice reads as two failures.
    """
    import sys

    running: list[Any] = []

    def show(event: Any) -> None:
        while running:
            running.pop().stop()
        if event.state == "started":
            if sys.stderr.isatty():
                from rich.console import Console

                running.append(Console(stderr=True).status(f"[{event.index + 1}/{event.total}] {event.title} …"))
                running[0].start()
            return
        mark = {"done": "✓", "reused": "↺", "failed": "✗", "waiting": "…"}[event.state]
        timing = f" {event.seconds:.1f}s" if event.state == "done" else ""
        note = " (reused)" if event.state == "reused" else f" — {event.message}" if event.state == "waiting" else ""
        click.echo(f"{mark} [{event.index + 1}/{event.total}] {event.title}{timing}{note}", err=True)

    return show


def _kv(console: Any, title: str, values: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=title, show_header=False)
    table.add_column("key")
    table.add_column("value", overflow="fold")
    for key, value in values.items():
        table.add_row(str(key), value if isinstance(value, str) else json.dumps(value, default=str))
    console.print(table)
