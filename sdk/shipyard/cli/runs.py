"""``shipyard init``, ``runs``, ``show`` and ``sync``: the workspace and its tracked runs."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import click

import shipyard
from shipyard._core import lineage

_KEY_METRICS = 3


def register(group: click.Group) -> None:
    group.add_command(init)
    group.add_command(runs)
    group.add_command(show)
    group.add_command(sync)


@click.command()
@click.option("--tracking-uri", default=None, help="MLflow tracking server; default: embedded sqlite store.")
def init(tracking_uri: str | None) -> None:
    """Create (or check) the workspace of the project in the current directory."""
    settings = {"tracking_uri": tracking_uri} if tracking_uri else {}
    ws = shipyard.init(**settings)
    click.echo(f"workspace  {ws.root}\ntracking   {ws.tracking_uri}")


@click.command()
@click.option("-n", "--limit", default=20, show_default=True, help="How many runs to list.")
@click.option("-e", "--experiment", default=None, help="Only runs of this experiment (flow name).")
def runs(limit: int, experiment: str | None) -> None:
    """Recent tracked runs with key metrics and lineage."""
    from rich.console import Console
    from rich.table import Table

    client = _client()
    experiments = {e.experiment_id: e.name for e in client.search_experiments()}
    if experiment is not None:
        experiments = {k: v for k, v in experiments.items() if v == experiment}
    found = (
        client.search_runs(
            list(experiments),
            filter_string=f"tags.`{lineage.MANAGED}` = 'true'",
            max_results=limit,
            order_by=["attributes.start_time DESC"],
        )
        if experiments
        else []
    )
    table = Table(title=f"shipyard runs · {shipyard.current_workspace().tracking_uri}")
    for column in ("run", "flow / pathspec", "status", "started", "key metrics", "source", "git"):
        table.add_column(column, overflow="fold")
    for run in found:
        tags = run.data.tags
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(run.data.metrics.items())[:_KEY_METRICS])
        table.add_row(
            run.info.run_id[:12],
            tags.get(lineage.PATHSPEC) or experiments.get(run.info.experiment_id, ""),
            _status(run.info.status),
            _when(run.info.start_time),
            metrics or "-",
            (tags.get(lineage.SOURCE_KIND, "") + " " + tags.get(lineage.SOURCE_SHA256, "")[:10]).strip() or "-",
            tags.get(lineage.GIT_COMMIT, "")[:10] or "-",
        )
    Console().print(table if found else "No tracked runs yet. Run a flow decorated with @shipyard.track.")


@click.command()
@click.argument("run")
def show(run: str) -> None:
    """Everything recorded about RUN (an MLflow run id, a prefix of one, or a Metaflow pathspec)."""
    from rich.console import Console
    from rich.table import Table

    client = _client()
    found = _resolve(client, run)
    console = Console()
    info, data = found.info, found.data
    console.print(f"[bold]{data.tags.get(lineage.PATHSPEC, info.run_name)}[/]  MLflow run {info.run_id}  {_status(info.status)}")
    console.print(f"started {_when(info.start_time)}  artifacts {info.artifact_uri}")
    for title, values in (
        ("params", data.params),
        ("metrics (last value)", data.metrics),
        ("lineage", {k: v for k, v in data.tags.items() if k.startswith(lineage.PREFIX)}),
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
    for key in sorted(data.metrics):
        points = client.get_metric_history(info.run_id, key)
        history.add_row(key, str(len(points)), f"{points[0].value:.4g}", f"{points[-1].value:.4g}")
    console.print(history)
    console.print("artifacts: " + (", ".join(_artifact_files(client, info.run_id)) or "-"))


@click.command()
def sync() -> None:
    """Send metric batches that were spooled while the tracker was unreachable."""
    sent = shipyard.sync()
    click.echo(f"sent {sent} spooled batches")


def _artifact_files(client: Any, run_id: str, path: str | None = None) -> list[str]:
    files: list[str] = []
    for item in client.list_artifacts(run_id, path):
        files += _artifact_files(client, run_id, item.path) if item.is_dir else [item.path]
    return files


def _client() -> Any:
    from shipyard.tracking._client import client_for

    return client_for(shipyard.current_workspace())


def _resolve(client: Any, ref: str) -> Any:
    from mlflow.exceptions import MlflowException

    experiments = [e.experiment_id for e in client.search_experiments()]
    if "/" in ref:
        found = client.search_runs(experiments, filter_string=f"tags.`{lineage.PATHSPEC}` = '{ref}'", max_results=1)
        if found:
            return found[0]
    else:
        try:
            return client.get_run(ref)
        except MlflowException:
            matches = [r for r in client.search_runs(experiments, max_results=1000) if r.info.run_id.startswith(ref)]
            if len(matches) == 1:
                return matches[0]
    raise shipyard.TrackingError(
        f"No tracked run matches {ref!r}.", hint="List runs with `shipyard runs`; pass a run id or Flow/run_id."
    )


def _status(status: str) -> str:
    colour = {"FINISHED": "green", "FAILED": "red", "RUNNING": "yellow"}.get(status, "white")
    return f"[{colour}]{status}[/]"


def _when(ms: int | None) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
