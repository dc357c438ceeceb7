"""``shipyard verify`` (an image against its signed provenance and the registry) and ``shipyard keygen``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

import shipyard


def register(group: click.Group) -> None:
    group.add_command(verify)
    group.add_command(keygen)


@click.command()
@click.argument("target")
@click.option(
    "--key", "public_key", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="PEM public key to check the signature with; default: the provenance_public_key setting, else the "
    "public half of provenance_key.",
)
@click.option(
    "--statement", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="The DSSE envelope to check TARGET against, instead of its bundle's or its MLflow run's.",
)
def verify(target: str, public_key: Path | None, statement: Path | None) -> None:
    """Check that TARGET (a handoff bundle directory or an image) is what its signed provenance says.

    Exit 0 when the signature holds, the image's digest is the statement's subject and the gate
    verdict and approvals are still the registry's; exit 1 with a line per difference otherwise.
    """
    result = shipyard.verify(target, public_key=public_key, statement=statement)
    if result.ok:
        click.echo(result.describe())
        return
    click.secho(result.describe(), fg="red", err=True)
    sys.exit(1)


@click.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace an existing key (statements it signed stay verifiable only "
              "with the old public key).")
def keygen(path: Path, force: bool) -> None:
    """Write a new Ed25519 signing key to PATH (mode 0600) and its public key to PATH.pub."""
    key = shipyard.generate_signing_key(path, overwrite=force)
    click.echo(f"private key  {key.private}   (set provenance_key to it where promotions run; keep it secret)")
    click.echo(f"public key   {key.public}   (give it to whoever runs `shipyard verify --key`)")
    click.echo(f"key id       {key.key_id}")
