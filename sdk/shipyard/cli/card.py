"""``shipyard card REF``: a version's model card, as Markdown on stdout or as one HTML page."""

from __future__ import annotations

from pathlib import Path

import click


def register(group: click.Group) -> None:
    group.add_command(card)


@click.command()
@click.argument("ref")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the card as one self-contained HTML page here instead of printing Markdown.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write model-card.md and model-card.html into this folder.")
def card(ref: str, html_path: Path | None, out_dir: Path | None) -> None:
    """The model card of REF (NAME/VERSION or NAME@ALIAS): intended use, data, metrics, gates, approvals, image."""
    import shipyard

    found = shipyard.model_card(ref)
    if out_dir is not None:
        for path in found.save(out_dir):
            click.echo(f"wrote {path}")
    if html_path is not None:
        html_path.parent.mkdir(parents=True, exist_ok=True)
        html_path.write_text(found.html, encoding="utf-8")
        click.echo(f"wrote {html_path}")
    if out_dir is None and html_path is None:
        click.echo(found.markdown)
