"""``shipyard init``: create (or check) the workspace of a project.

Every other command finds the project by walking up from the working
directory (or takes ``--project DIR``) and stops outside one; this is the
command that makes a folder a project.
"""

from __future__ import annotations

from pathlib import Path

import click

import shipyard


def register(group: click.Group) -> None:
    group.add_command(init)


@click.command()
@click.option("--tracking-uri", default=None, help="MLflow tracking server; default: embedded sqlite store.")
@click.pass_context
def init(ctx: click.Context, tracking_uri: str | None) -> None:
    """Create the project's workspace, or check the one that is there, and print where it is.

    The project is the folder `--project` names, else the nearest folder from
    here up with a .shipyard/, shipyard.toml or pyproject.toml, else this one.
    Running it again changes nothing.
    """
    settings = {"tracking_uri": tracking_uri} if tracking_uri else {}
    named = (ctx.find_root().params or {}).get("project")
    planned = shipyard.Workspace.locate(named, **settings)
    existed = planned.exists
    if named is not None:
        Path(named).mkdir(parents=True, exist_ok=True)
    ws = shipyard.init(planned.project_dir, **settings)
    click.echo(f"{'workspace' if existed else 'created  '}  {ws.root}")
    click.echo(f"project    {ws.project_dir}")
    click.echo(f"tracking   {ws.tracking_uri}")
