"""``shipyard gates check``, ``show`` and ``override``: the CI side of quality gates.

``check`` re-evaluates the gates recorded for a run or model version from
what was recorded (specs, holdout data, the champion compared with) and exits
0 when the verdict is ``pass`` or ``overridden``, 1 when it is ``fail``
(2 for bad input, from the top-level group). ``override`` lifts named
blocking failures of the recorded report, with a reason and its author on
record.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click


def register(group: click.Group) -> None:
    """Add the ``gates`` command group to ``group``."""
    group.add_command(gates)


@click.group("gates")
def gates() -> None:
    """Quality gates: re-check recorded verdicts, show reports."""


@gates.command("check")
@click.argument("ref", metavar="RUN_OR_MODEL_VERSION")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of a table.")
def check(ref: str, as_json: bool) -> None:
    """Re-evaluate the gates recorded for RUN_OR_MODEL_VERSION; exit 1 if a blocking gate fails.

    RUN_OR_MODEL_VERSION is an MLflow run id, NAME/VERSION, NAME@ALIAS or models:/NAME/VERSION.
    """
    import shipyard.gates

    report = shipyard.gates.recheck(ref)
    _print(report, as_json, title="re-evaluated")
    sys.exit(0 if report.passed else 1)


@gates.command("show")
@click.argument("ref", metavar="RUN_OR_MODEL_VERSION")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of a table.")
def show(ref: str, as_json: bool) -> None:
    """Show the gate report recorded for RUN_OR_MODEL_VERSION, without re-evaluating it."""
    import shipyard.gates

    report = shipyard.gates.load_report(ref)
    _print(report, as_json, title="as recorded")
    sys.exit(0 if report.passed else 1)


@gates.command("override")
@click.argument("ref", metavar="RUN_OR_MODEL_VERSION")
@click.option("--gate", "gate_names", multiple=True, required=True, help="A failed gate to override (repeatable).")
@click.option("--reason", default=None, help="Why the failure may be ignored (required; recorded with your name).")
@click.option("--json", "as_json", is_flag=True, help="Print the updated report as JSON instead of a table.")
def override(ref: str, gate_names: tuple[str, ...], reason: str | None, as_json: bool) -> None:
    """Override failed blocking gates of RUN_OR_MODEL_VERSION's recorded report, with a written reason.

    The override, its author (the configured author, else the OS user) and the reason go into the
    report, the run and version tags and the audit log. Without --reason it is refused (exit 2).
    """
    import shipyard.gates

    report = shipyard.gates.override(ref, list(gate_names), reason=reason)
    _print(report, as_json, title="overridden")
    sys.exit(0 if report.passed else 1)


_STYLE = {"pass": "green", "fail": "bold red", "warn": "yellow", "error": "bold red", "overridden": "magenta"}


def _print(report: Any, as_json: bool, *, title: str) -> None:
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"gates of {report.subject()} ({title}): {report.verdict.upper()}", show_lines=False)
    for column in ("gate", "status", "kind", "measured", "threshold", "reason"):
        table.add_column(column, overflow="fold")
    for r in report.results:
        table.add_row(
            r.name,
            f"[{_STYLE.get(r.status, 'white')}]{r.status}[/]",
            "blocking" if r.blocking else "warning",
            "" if r.value is None else f"{r.value:.4g}",
            "" if r.threshold is None else f"{r.threshold:.4g}",
            r.message,
        )
    console = Console(width=max(120, Console().width))
    console.print(table)
    for note in report.notes:
        console.print(f"note: {note}")
    if report.override:
        for o in [*report.override.get("previous", []), report.override]:
            console.print(f"override of {', '.join(o['gates'])} by {o['by']} at {o['at']}: {o['reason']}")
    console.print(f"verdict: {report.verdict}")
