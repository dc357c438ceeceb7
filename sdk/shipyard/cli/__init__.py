"""The ``shipyard`` command line, for engineers and CI. It uses only the public API.

Each command group lives in its own module and adds itself through a
``register(group)`` function, so ``shipyard --help`` imports nothing heavy.

Every command works on the project found by walking up from the working
directory, or the one ``--project DIR`` (or ``SHIPYARD_PROJECT_DIR``) names;
outside a project they stop with :class:`shipyard.NoProject`, and only
``shipyard init`` creates a workspace.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import click

from shipyard import ShipyardError

# modules that add commands to the group; a later module's command replaces an earlier one of the same name
_COMMAND_MODULES = (
    "runs", "gates", "packaging", "promotion", "deploy", "monitoring", "retrain", "schedule", "project", "audit", "card",
    "worker", "verify",
)
_PROJECT_DIR_ENV = "SHIPYARD_PROJECT_DIR"  # shipyard._core.config.PROJECT_DIR_ENV, not imported: --help stays cheap


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except ShipyardError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="shipyard")
@click.option(
    "--project",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Project folder; default: the nearest folder from here up with a .shipyard/, shipyard.toml or "
    "pyproject.toml (or SHIPYARD_PROJECT_DIR).",
)
@click.pass_context
def cli(ctx: click.Context, project: Path | None) -> None:
    """shipyard: tracked notebook flows, quality gates, bentos and images, one-call promotion."""
    if project is None:
        return
    # The same as SHIPYARD_PROJECT_DIR for this command (and the processes it starts), then restored.
    before = os.environ.get(_PROJECT_DIR_ENV)
    os.environ[_PROJECT_DIR_ENV] = str(project.expanduser().resolve())
    ctx.call_on_close(lambda: _restore(before))


def _restore(before: str | None) -> None:
    if before is None:
        os.environ.pop(_PROJECT_DIR_ENV, None)
    else:
        os.environ[_PROJECT_DIR_ENV] = before


for _name in _COMMAND_MODULES:
    try:
        _module = importlib.import_module(f".{_name}", __name__)
    except ModuleNotFoundError as _exc:
        if _exc.name != f"{__name__}.{_name}":
            raise
        continue
    _module.register(cli)


def _show_warning(message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None,
                  line: str | None = None) -> None:
    """Warnings from shipyard as one line a user reads; others as Python prints them."""
    if category.__module__.startswith("shipyard."):
        click.secho(f"warning: {message}", fg="yellow", err=True)
    else:
        _python_show_warning(message, category, filename, lineno, file, line)


_python_show_warning = warnings.showwarning


def main() -> None:
    """The ``shipyard`` command: a fast command goes to the preloaded worker (:mod:`._worker`) when one can take it."""
    from . import _worker

    argv = sys.argv[1:]
    if _worker.wanted(argv):
        code = _worker.run(argv, _prog_name())
        if code is not None:
            sys.exit(code)
    run_here()


def run_here(argv: list[str] | None = None, prog_name: str | None = None) -> None:
    """Run the command in this process (``argv``: default ``sys.argv[1:]``)."""
    warnings.showwarning = _show_warning
    cli.main(args=argv, prog_name=prog_name)


def _prog_name() -> str:
    """What usage lines call the program, as click would name it in this process."""
    name = os.path.basename(sys.argv[0])
    return "python -m shipyard.cli" if name == "__main__.py" else name


if __name__ == "__main__":
    main()
