"""`import shipyard` must stay cheap: notebooks pay for every import."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("mlflow", "metaflow", "bentoml", "docker", "ipywidgets", "matplotlib")


def _modules_after(code: str) -> list[str]:
    script = f"import sys\n{code}\nimport json\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_import_shipyard_loads_no_heavy_package() -> None:
    loaded = _modules_after("import shipyard")
    heavy = sorted({m.split(".")[0] for m in loaded} & set(HEAVY))
    assert heavy == [], f"import shipyard imported {heavy}"


def test_errors_and_version_need_no_heavy_package() -> None:
    loaded = _modules_after("import shipyard\nshipyard.ShipyardError, shipyard.FlowFailed, shipyard.__version__")
    assert not {m.split(".")[0] for m in loaded} & set(HEAVY)


def test_cheap_public_names_need_no_heavy_package() -> None:
    loaded = _modules_after(
        "import shipyard\n"
        "shipyard.runs, shipyard.get_run, shipyard.TrackedRun, shipyard.ModelRef, shipyard.Lineage\n"
        "shipyard.metric_history, shipyard.widgets.follow_in_notebook"
    )
    heavy = sorted({m.split(".")[0] for m in loaded} & set(HEAVY))
    assert heavy == [], f"reaching the catalogue, refs and lineage imported {heavy}"


def test_cli_help_loads_no_heavy_package() -> None:
    loaded = _modules_after(
        "from click.testing import CliRunner\nfrom shipyard.cli import cli\n"
        "r = CliRunner().invoke(cli, ['--help'])\nassert r.exit_code == 0, r.output"
    )
    heavy = sorted({m.split(".")[0] for m in loaded} & set(HEAVY))
    assert heavy == [], f"`shipyard --help` imported {heavy}"
