"""``shipyard runs``, ``show`` and ``sync``: the workspace's tracked runs.

``runs`` and ``show`` print what :func:`shipyard.runs` and :func:`shipyard.get_run`
return; how runs are found and read is theirs to know, not the CLI's.
"""

from __future__ import annotations

from datetime import datetime

import click

import shipyard

_KEY_METRICS = 3


def register(group: click.Group) -> None:
    group.add_command(runs)
    group.add_command(show)
    group.add_command(sync)


@click.command()
@click.option("-n", "--limit", default=20, show_default=True, help="How many runs to list.")
@click.option("-e", "--experiment", default=None, help="Only runs of this experiment (flow name).")
def runs(limit: int, experiment: str | None) -> None:
    """Recent tracked runs with key metrics and lineage."""
    from rich.console import Console
    from rich.table import Table

    found = shipyard.runs(limit, experiment)
    table = Table(title=f"shipyard runs · {shipyard.current_workspace().tracking_uri}")
    for column in ("run", "flow / pathspec", "status", "started", "key metrics", "source", "git"):
        table.add_column(column, overflow="fold")
    for run in found:
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(run.metrics.items())[:_KEY_METRICS])
        table.add_row(
            run.run_id[:12],
            run.lineage.pathspec or run.experiment,
            _status(run.status),
            _when(run.start_time),
            metrics or "-",
            f"{run.source_kind} {run.lineage.source_sha256[:10]}".strip() or "-",
            run.lineage.git_commit[:10] or "-",
        )
    Console().print(table if found else "No tracked runs yet. Run a flow decorated with @shipyard.track.")


@click.command()
@click.argument("run")
def show(run: str) -> None:
    """Everything recorded about RUN (an MLflow run id, a prefix of one, or a Metaflow pathspec)."""
    from rich.console import Console
    from rich.table import Table

    found = shipyard.get_run(run)
    console = Console()
    title = found.lineage.pathspec or found.run_name
    console.print(f"[bold]{title}[/]  MLflow run {found.run_id}  {_status(found.status)}")
    console.print(f"started {_when(found.start_time)}  artifacts {found.artifact_uri}")
    for title, values in (
        ("params", found.params),
        ("metrics (last value)", found.metrics),
        ("lineage", found.shipyard_tags),
    ):
        table = Table(title=title, show_header=False)
        table.add_column("key")
        table.add_column("value", overflow="fold")
        for key, value in sorted(values.items()):
            table.add_row(key, f"{value:.6g}" if isinstance(value, float) else str(value))
        console.print(table)
    history = Table(title="metric history")
    for column in ("metric", "points", "first", "last"):
        history.add_column(column)
    series = found.metric_history(sorted(found.metrics)).metrics
    for key in sorted(found.metrics):
        points = series[key]
        history.add_row(key, str(len(points)), f"{points[0].value:.4g}", f"{points[-1].value:.4g}")
    console.print(history)
    console.print("artifacts: " + (", ".join(found.artifacts()) or "-"))


@click.command()
def sync() -> None:
    """Send metric batches that were spooled while the tracker was unreachable."""
    sent = shipyard.sync()
    click.echo(f"sent {sent} spooled batches")


def _status(status: str) -> str:
    colour = {"FINISHED": "green", "FAILED": "red", "RUNNING": "yellow"}.get(status, "white")
    return f"[{colour}]{status}[/]"


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment is not None else "-"
