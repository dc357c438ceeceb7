"""CLI commands of the packaging and deploy layers: ``base-image build``, ``package``, ``smoke``.

:func:`register` adds them to the main ``shipyard`` click group. Errors are
shipyard errors; the main group turns them into a message and exit code.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

import shipyard


@click.group("base-image")
def base_image() -> None:
    """Local base images for model images (no registry needed)."""


@base_image.command("build")
@click.option("--rebuild", is_flag=True, help="Build again even if the image exists.")
@click.option("--suite", default="bookworm", show_default=True, help="Debian suite to bootstrap.")
@click.option("--mirror", default="http://deb.debian.org/debian", show_default=True, help="Debian mirror.")
@click.option("--quiet", is_flag=True, help="No progress display.")
def base_image_build(rebuild: bool, suite: str, mirror: str, quiet: bool) -> None:
    """Build the Debian + Python base image with debootstrap (reused when it exists)."""
    image = shipyard.build_base_image(suite=suite, mirror=mirror, rebuild=rebuild, quiet=quiet)
    verb = "built" if image.built else "exists, reused"
    click.echo(f"{image.name} ({verb}): {image.size_bytes / 1e6:.1f} MB, Python {image.python}, {image.seconds:.1f}s")
    click.echo(f"builder: {image.builder_ref}")


@click.command("package")
@click.argument("model_version")
@click.option("--no-image", is_flag=True, help="Build the bento only.")
@click.option("--env", "env", multiple=True, metavar="NAME=VALUE", help="Environment variable for the image.")
@click.option("--no-cache", is_flag=True, help="Rebuild every image step (the base image is kept).")
@click.option("--quiet", is_flag=True, help="No progress display.")
def package_command(model_version: str, no_image: bool, env: tuple[str, ...], no_cache: bool, quiet: bool) -> None:
    """Package MODEL_VERSION (models:/NAME/VERSION, NAME/VERSION or NAME@ALIAS) as a bento and an image."""
    variables: dict[str, str] = {}
    for item in env:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="--env")
        variables[name] = value
    result = shipyard.package(model_version, image=not no_image, env=variables or None, no_cache=no_cache, quiet=quiet)
    bento = result.bento
    click.echo(f"bento  {bento.tag}{' (reused)' if bento.reused else ''}  {bento.path}")
    click.echo(f"service source  {bento.service_source}")
    if result.image is not None:
        click.echo(result.image.describe())
    click.echo(f"done in {result.seconds:.1f}s")


@click.command("smoke")
@click.argument("image")
@click.option("--model-version", default=None, help="Model to compare with; default: from the image labels.")
@click.option(
    "--holdout",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="CSV or Parquet file of holdout rows (features only).",
)
@click.option("--latency-p95-ms", type=float, default=250.0, show_default=True, help="Latency gate threshold.")
@click.option("--no-record", is_flag=True, help="Do not attach the gate results to the model version.")
def smoke_command(
    image: str, model_version: str | None, holdout: Path | None, latency_p95_ms: float, no_record: bool
) -> None:
    """Run IMAGE on 127.0.0.1, check parity with the registered model and measure latency."""
    frame = None
    if holdout is not None:
        import pandas as pd

        frame = pd.read_parquet(holdout) if holdout.suffix in {".parquet", ".pq"} else pd.read_csv(holdout)
    result = shipyard.smoke(image, model_version, frame, latency_p95_ms=latency_p95_ms, record=not no_record)
    click.echo(result.summary())
    if not result.passed:
        sys.exit(1)


def register(cli_group: click.Group) -> None:
    """Add the packaging and deploy commands to the main ``shipyard`` group."""
    cli_group.add_command(base_image)
    cli_group.add_command(package_command)
    cli_group.add_command(smoke_command)


__all__ = ["base_image", "package_command", "register", "smoke_command"]
