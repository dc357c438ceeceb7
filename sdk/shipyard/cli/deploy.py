"""``shipyard deploy local``, ``status`` and ``stop``: a bundle's production Deployment on this machine."""

from __future__ import annotations

from pathlib import Path

import click

import shipyard


def register(group: click.Group) -> None:
    group.add_command(deploy)


@click.group()
def deploy() -> None:
    """Run a model's handoff bundle on this machine (podman kube play)."""


def _bundle(ref: str) -> tuple[str, Path]:
    """(model name, bundle folder) of MODEL (its champion), MODEL@ALIAS or MODEL/VERSION."""
    from shipyard import registry

    if "@" not in ref and "/" not in ref:
        ref = f"{ref}@{registry.CHAMPION}"
    version = registry.resolve(ref)
    return version.name, shipyard.current_workspace().bundle_dir(version.name, version.version)


@deploy.command("local")
@click.argument("model")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="Host port on 127.0.0.1 for the Service; default: a free one.")
@click.option("--timeout", "ready_timeout", type=float, default=180.0, show_default=True,
              help="Seconds to wait for the readiness probe.")
def local(model: str, port: int | None, ready_timeout: float) -> None:
    """Run MODEL's production overlay here (MODEL = its champion, MODEL@ALIAS or MODEL/VERSION).

    A running deployment of the same model is replaced once the new one is ready.
    """
    from shipyard.deploy import local as local_deploy

    _, bundle = _bundle(model)
    running, notes = local_deploy.deploy(shipyard.current_workspace(), bundle, port=port, ready_timeout=ready_timeout)
    click.echo(f"{running.model} v{running.version}: ready at {running.url}")
    click.echo(f"image      {running.image}")
    click.echo(f"container  {running.container_id[:12]} (pod {running.name}-pod-0)")
    if running.token_file:
        click.echo(f"token      requests need it: curl -H \"Authorization: Bearer $(cat {running.token_file})\" "
                   f"{running.url}/predict ...")
    for note in notes:
        click.echo(f"note       {note}")


@deploy.command("status")
@click.argument("model")
def status(model: str) -> None:
    """Show MODEL's local deployment."""
    from shipyard.deploy import local as local_deploy

    found = local_deploy.status(shipyard.current_workspace(), model)
    if found is None:
        click.echo(f"{model}: not deployed locally")
        return
    record, state = found
    click.echo(f"{record.model} v{record.version}: {state} at {record.url}")
    click.echo(f"image      {record.image}")
    click.echo(f"container  {record.container_id[:12]}")
    click.echo(f"bundle     {record.bundle}")


@deploy.command("stop")
@click.argument("model")
def stop(model: str) -> None:
    """Stop and remove MODEL's local deployment."""
    from shipyard.deploy import local as local_deploy

    record = local_deploy.stop(shipyard.current_workspace(), model)
    click.echo(f"{model}: not deployed locally" if record is None else f"{record.model} v{record.version}: stopped")
