"""``shipyard monitor``: a model version's production drift, judged by drift gates, for cron jobs and CI.

Exit status: 0 when every blocking drift gate passes, 1 when one fails, 2 when
the report could not be made (no rows, Prometheus not answering, a capture of
another version: a :class:`shipyard.ShipyardError`, handled by the group).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click


def register(group: click.Group) -> None:
    """Add ``monitor`` to ``group``."""
    group.add_command(monitor)


@click.command()
@click.argument("model")
@click.option(
    "--capture",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Capture folder the image writes (the root, or <model>/v<version>).",
)
@click.option("--prometheus", metavar="URL", default=None, help="Prometheus server that scrapes the image.")
@click.option(
    "--data", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Production rows as CSV or Parquet."
)
@click.option(
    "--max-distance",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Largest drift distance a column may reach (default: the drift_threshold setting).",
)
@click.option(
    "--retrain",
    "do_retrain",
    is_flag=True,
    help="When a drift gate fails, retrain on --data-for-retrain and promote what passes its gates.",
)
@click.option(
    "--data-for-retrain",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Data the flow is re-run on with --retrain.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def monitor(
    model: str,
    capture: Path | None,
    prometheus: str | None,
    data: Path | None,
    max_distance: float | None,
    do_retrain: bool,
    data_for_retrain: Path | None,
    as_json: bool,
) -> None:
    """Measure MODEL's production drift (NAME for its champion, NAME@ALIAS or NAME/VERSION); exit 1 if it drifted.

    Exactly one of --capture, --prometheus and --data. The report is recorded as an MLflow run
    (experiment shipyard-monitoring) and on the model version's tags.
    """
    import shipyard
    from shipyard.gates import drift

    if do_retrain and data_for_retrain is None:
        raise click.UsageError("--retrain needs --data-for-retrain PATH (the data to re-run the flow on).")
    if data_for_retrain is not None and not do_retrain:
        raise click.UsageError("--data-for-retrain is used with --retrain only.")
    bound = max_distance if max_distance is not None else shipyard.current_workspace().settings.drift_threshold
    report = shipyard.monitor(
        model,
        capture=capture,
        prometheus=prometheus,
        data=data,
        gates=[drift(max_distance=bound)],
        retrain_data=data_for_retrain,
    )
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        colour = "green" if report.passed else "red"
        click.secho(report.summary().splitlines()[0], fg=colour, bold=True)
        for line in report.summary().splitlines()[1:]:
            click.echo(line)
        click.echo(f"run     {report.run_id}")
        if report.html_path:
            click.echo(f"report  {report.html_path}")
    sys.exit(0 if report.passed else 1)
