"""``shipyard schedule``: deploy a tracked flow to run on a cron schedule on Argo Workflows."""

from __future__ import annotations

import json
from pathlib import Path

import click


def register(group: click.Group) -> None:
    group.add_command(schedule)


@click.command()
@click.argument("flow_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--cron", required=True, help='When to run: five cron fields ("0 3 * * *") or @daily, @hourly, ...')
@click.option("--on", "on", default="argo-workflows", show_default=True, help="The scheduler.")
@click.option("--timezone", default=None, help="IANA time zone the cron is read in; default the cluster's (UTC).")
@click.option("--name", default=None, help="Argo workflow name; default: derived from the flow name.")
@click.option(
    "--image", default=None, help="Container image of the steps; default METAFLOW_KUBERNETES_CONTAINER_IMAGE."
)
@click.option("--experiment", default=None, help="MLflow experiment the scheduled runs record into.")
@click.option("--tag", "tags", multiple=True, help="Metaflow tag for every scheduled run (repeatable).")
@click.option("--dry-run", is_flag=True, help="Compile only: print the WorkflowTemplate, deploy nothing.")
@click.option(
    "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="With --dry-run: write the WorkflowTemplate to this file instead of printing it.",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was scheduled as JSON.")
def schedule(
    flow_file: Path,
    cron: str,
    on: str,
    timezone: str | None,
    name: str | None,
    image: str | None,
    experiment: str | None,
    tags: tuple[str, ...],
    dry_run: bool,
    output: Path | None,
    as_json: bool,
) -> None:
    """Deploy FLOW_FILE (a @shipyard.track flow) to run on --cron, its steps tracking to the team server.

    Needs SHIPYARD_TRACKING_URI (a server the cluster reaches), Metaflow's S3
    datastore (METAFLOW_DEFAULT_DATASTORE=s3, METAFLOW_DATASTORE_SYSROOT_S3)
    and an image with shipyard installed (--image or
    METAFLOW_KUBERNETES_CONTAINER_IMAGE).
    """
    import shipyard

    result = shipyard.schedule(
        flow_file, cron=cron, on=on, timezone=timezone, name=name, image=image, experiment=experiment,
        tags=list(tags), only_json=dry_run,
    )
    if dry_run and output is not None:
        output.write_text(result.json or "", encoding="utf-8")
    if as_json:
        summary = {
            "flow": result.flow, "workflow": result.workflow, "on": result.on, "cron": result.cron,
            "timezone": result.timezone, "deployed": result.deployed, "env": result.env,
        }
        if dry_run and output is None:
            summary["template"] = result.template
        click.echo(json.dumps(summary, indent=2))
        return
    if dry_run and output is None:
        click.echo(result.json)
        return
    zone = f" ({result.timezone})" if result.timezone else " (UTC)"
    verb = "deployed" if result.deployed else "compiled"
    click.echo(f"{verb} {result.flow} as {result.workflow} on {result.on}, runs at {result.cron!r}{zone}")
    if output is not None:
        click.echo(f"template {output}")
    click.echo(f"tracking {result.env.get('SHIPYARD_TRACKING_URI', '')}")
