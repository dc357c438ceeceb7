"""The ``shipyard`` command line, for engineers and CI. It uses only the public API.

Each command group lives in its own module and adds itself through a
``register(group)`` function, so ``shipyard --help`` imports nothing heavy.
"""

from __future__ import annotations

import importlib
import sys

import click

from shipyard import ShipyardError

# modules that add commands to the group
_COMMAND_MODULES = ("runs", "gates", "packaging", "promotion")


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except ShipyardError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="shipyard")
def cli() -> None:
    """shipyard: tracked notebook flows, quality gates, bentos and images, one-call promotion."""


for _name in _COMMAND_MODULES:
    try:
        _module = importlib.import_module(f".{_name}", __name__)
    except ModuleNotFoundError as _exc:
        if _exc.name != f"{__name__}.{_name}":
            raise
        continue
    _module.register(cli)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
