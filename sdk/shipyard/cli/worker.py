"""``shipyard worker status`` and ``shipyard worker stop``: the preloaded workers behind the fast commands."""

from __future__ import annotations

import json
import time

import click

from . import _worker


def register(group: click.Group) -> None:
    group.add_command(worker)


@click.group()
def worker() -> None:
    """The preloaded workers that answer review, approve, rollback, runs, ... quickly (SHIPYARD_CLI_WORKER=0: off)."""


@worker.command()
@click.option("--json", "as_json", is_flag=True, help="Print the workers as JSON.")
def status(as_json: bool) -> None:
    """This user's live workers: pid, age, commands served, and which one this shell's commands use."""
    place = _worker.Place.here()
    if place is None:  # the folder is not private: the warning said why
        raise SystemExit(1)
    folder = place.folder
    found = _worker.workers(folder)
    for item in found:
        item["current"] = item["key"] == f"{place.family}-{place.key}"
    if as_json:
        click.echo(json.dumps({"folder": str(folder), "workers": found}, indent=2))
        return
    if not found:
        click.echo(f"no worker in {folder}; the next fast command starts one")
    now = time.time()
    for item in found:
        mark = "  (this shell's)" if item["current"] else ""
        click.echo(f"pid {item['pid']}  up {now - item['started']:.0f} s  served {item['served']}  "
                   f"running {item['running']}  {item['socket']}{mark}")


@worker.command()
def stop() -> None:
    """Ask every worker of this user to exit (commands they are running finish first)."""
    folder = _worker.private_folder()
    if folder is None:
        raise SystemExit(1)
    click.echo(f"asked {_worker.stop(folder)} worker(s) to exit")
