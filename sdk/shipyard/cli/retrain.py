"""``shipyard retrain``: run a version's recorded flow again on new data; exit 1 when its gates fail."""

from __future__ import annotations

import json
import sys

import click


def register(group: click.Group) -> None:
    group.add_command(retrain)


@click.command()
@click.argument("model")
@click.option(
    "--data", "data", required=True, type=click.Path(dir_okay=False), help="The new training data (CSV path)."
)
@click.option(
    "--alias", default="champion", show_default=True, help="Which version of MODEL to retrain, for a bare name."
)
@click.option("--parameter", default="data", show_default=True, help="The flow Parameter that names the data.")
@click.option(
    "--no-promote", "no_promote", is_flag=True, help="Register the new version as challenger, do not promote it."
)
@click.option("--reason", default=None, help="Recorded with the alias moves.")
@click.option(
    "--param", "params", multiple=True, metavar="NAME=VALUE", help="Change another flow parameter (repeatable)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def retrain(
    model: str,
    data: str,
    alias: str,
    parameter: str,
    no_promote: bool,
    reason: str | None,
    params: tuple[str, ...],
    as_json: bool,
) -> None:
    """Run the flow that made MODEL (NAME, NAME@ALIAS or NAME/VERSION) again on --data.

    The new run's gates decide: a pass is registered as challenger and promoted
    (unless --no-promote); a fail exits 1 with nothing registered.
    """
    import shipyard

    extra: dict[str, str] = {}
    for item in params:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r} is not NAME=VALUE.", param_hint="--param")
        extra[key.strip()] = value
    result = shipyard.retrain(
        model, data=data, alias=alias, parameter=parameter, promote=not no_promote, reason=reason, **extra
    )
    if as_json:
        click.echo(
            json.dumps(
                {
                    "from_version": result.from_version,
                    "run": result.run.mlflow_run_id,
                    "pathspec": result.run.pathspec,
                    "version": result.version,
                    "promotion": result.promotion.status if result.promotion else None,
                    "data": result.data,
                    "verdict": result.verdict,
                },
                indent=2,
            )
        )
    else:
        click.echo(f"retrained {result.from_version} on {result.data}: {result.verdict}")
        click.echo(f"run      {result.run.pathspec} (MLflow run {result.run.mlflow_run_id})")
        if result.version:
            name = result.from_version.partition("/")[0]
            click.echo(f"version  {name}/{result.version} (challenger)")
        if result.promotion:
            click.echo(f"promote  {result.promotion.status}")
        elif result.passed:
            click.echo(f"next     shipyard promote {result.from_version.partition('/')[0]}/{result.version}")
        else:
            click.echo(f"gates    see `shipyard gates show {result.run.mlflow_run_id}`; nothing was registered")
    if not result.passed:
        sys.exit(1)
