"""``shipyard retrain`` on a real Metaflow run and a real MLflow store: the champion's own flow on new rows.

One module workspace: the flow trained once on rows it makes and registered
as champion (v1). Promotion needs Docker and is left to the end-to-end test;
here every retrain runs with ``promote=False`` / ``--no-promote``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import shipyard
from shipyard import MonitoringError, registry
from shipyard._core import audit, lineage
from shipyard._core.workspace import reset_workspace
from tests.monitoring_support import FLOW, flow_module

MODEL = "retrain-demo"
SHIPYARD = Path(sys.executable).with_name("shipyard")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A project whose champion (v1) was trained by the flow on its own rows."""
    mp = pytest.MonkeyPatch()
    project = tmp_path_factory.mktemp("retrain-project")
    mp.setenv("SHIPYARD_PROJECT_DIR", str(project))
    mp.setenv("SHIPYARD_AUTHOR", "ada")
    reset_workspace()
    ws = shipyard.init(project_dir=project)
    first = shipyard.run(FLOW)
    assert first.tags[lineage.GATE_VERDICT] == "pass", first.tags
    v1 = registry.register(MODEL, first.mlflow_run_id)
    registry.swap_champion(MODEL, v1.version, reason="first model")
    rows = flow_module().make_rows
    shifted = project / "june.csv"
    rows(n=400, seed=11, shift=6.0).to_csv(shifted, index=False)
    noise = rows(n=400, seed=12)
    noise["target"] = np.random.default_rng(3).integers(0, 2, len(noise))  # labels nothing can learn
    noisy = project / "noise.csv"
    noise.to_csv(noisy, index=False)
    yield {"ws": ws, "project": project, "v1": v1, "first": first, "shifted": shifted, "noisy": noisy}
    reset_workspace()
    mp.undo()


@pytest.fixture(autouse=True)
def _in_world(_isolated_settings, world, monkeypatch):
    monkeypatch.setenv("SHIPYARD_PROJECT_DIR", str(world["project"]))
    monkeypatch.setenv("SHIPYARD_AUTHOR", "ada")
    monkeypatch.chdir(world["project"])
    reset_workspace()
    shipyard.init(project_dir=world["project"])


def _client(ws):
    from shipyard.tracking._client import client_for

    return client_for(ws)


def _fingerprint_of_csv(path: Path) -> str:
    import pandas as pd

    with shipyard.start_run("fingerprint-of-new-data"):
        return shipyard.log_dataset(pd.read_csv(path), name="data").sha256


def _cli(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SHIPYARD_PROJECT_DIR": str(project), "SHIPYARD_AUTHOR": "ada", "COLUMNS": "200"}
    return subprocess.run(
        [str(SHIPYARD), *args], check=False, capture_output=True, text=True, env=env, cwd=project, timeout=600
    )


def test_retrain_on_shifted_rows_registers_a_challenger_with_its_lineage(world):
    ws = world["ws"]
    result = shipyard.retrain(MODEL, data=world["shifted"].relative_to(world["project"]), promote=False)

    assert result.verdict == "pass" and result.passed
    assert result.from_version == f"{MODEL}/{world['v1'].version}"
    assert result.data == str(world["shifted"].resolve())
    assert result.promotion is None
    challenger = registry.resolve(f"{MODEL}@challenger")
    assert challenger.version == result.version != world["v1"].version
    assert challenger.run_id == result.run.mlflow_run_id
    assert registry.champion(MODEL).version == world["v1"].version  # not promoted

    run = _client(ws).get_run(result.run.mlflow_run_id)
    assert run.data.params["data"] == str(world["shifted"].resolve())
    assert run.data.tags[lineage.data_tag("data", "sha256")] == _fingerprint_of_csv(world["shifted"])
    assert run.data.tags[lineage.data_tag("data", "sha256")] != world["first"].tags[lineage.data_tag("data", "sha256")]
    assert run.data.tags[lineage.FLOW] == "RetrainFlow"
    assert run.data.tags[lineage.gate_tag("champion_challenger")] == "pass"
    # the new run and its version both name the version it was retrained from, and on what
    for tags in (run.data.tags, challenger.tags):
        assert tags[lineage.RETRAIN_FROM] == f"{MODEL}/{world['v1'].version}"
        assert tags[lineage.RETRAIN_DATA] == str(world["shifted"].resolve())
    # the same source ran: the flow file in the workspace is the one the champion's run recorded
    assert run.data.tags[lineage.SOURCE_SHA256] == world["first"].tags[lineage.SOURCE_SHA256]
    assert "retrained from" in challenger.tags[lineage.alias_tag("challenger", "reason")]

    started = [r for r in audit.read(workspace=ws, event="retrain.started")][-1]
    finished = [r for r in audit.read(workspace=ws, event="retrain.finished")][-1]
    assert started["from_version"] == world["v1"].version and started["data"] == result.data
    assert finished["version"] == result.version and finished["run"] == result.run.mlflow_run_id
    assert finished["verdict"] == "pass" and finished["who"] == "ada"


def test_a_flow_without_the_data_parameter_is_refused_with_the_line_to_add(world):
    with pytest.raises(MonitoringError) as err:
        shipyard.retrain(MODEL, data=world["shifted"], parameter="rows_csv", promote=False)
    assert "has no Parameter 'rows_csv'" in str(err.value) and "RetrainFlow" in str(err.value)
    assert 'rows_csv = Parameter("rows_csv"' in err.value.hint and "class RetrainFlow" in err.value.hint


def test_a_missing_data_file_is_refused_before_anything_runs(world):
    before = len(list(audit.read(workspace=world["ws"], event="retrain.started")))
    missing = world["project"] / "nowhere.csv"
    with pytest.raises(MonitoringError, match="No data to retrain on at .*nowhere.csv"):
        shipyard.retrain(MODEL, data=missing, promote=False)
    assert len(list(audit.read(workspace=world["ws"], event="retrain.started"))) == before


def test_an_unknown_flow_parameter_is_refused(world):
    with pytest.raises(MonitoringError, match="no parameter 'epochs'.*data, seed"):
        shipyard.retrain(MODEL, data=world["shifted"], promote=False, epochs="3")


def test_cli_retrains_with_a_changed_parameter_and_exits_0(world):
    out = _cli(
        world["project"],
        "retrain",
        f"{MODEL}@champion",
        "--data",
        str(world["shifted"]),
        "--no-promote",
        "--param",
        "seed=3",
        "--reason",
        "June rows",
        "--json",
    )
    assert out.returncode == 0, out.stdout + out.stderr
    printed = json.loads(out.stdout[out.stdout.index("{") :])
    assert printed["verdict"] == "pass" and printed["promotion"] is None
    assert printed["from_version"] == f"{MODEL}/{world['v1'].version}"
    challenger = registry.resolve(f"{MODEL}@challenger")
    assert challenger.version == printed["version"]
    assert challenger.tags[lineage.alias_tag("challenger", "reason")] == "June rows"
    params = _client(world["ws"]).get_run(printed["run"]).data.params
    assert params["seed"] == "3" and params["data"] == str(world["shifted"])


def test_cli_exits_1_when_the_new_run_fails_its_gates_and_registers_nothing(world):
    before = registry.resolve(f"{MODEL}@challenger").version
    out = _cli(world["project"], "retrain", MODEL, "--data", str(world["noisy"]), "--no-promote")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "retrained" in out.stdout and ": fail" in out.stdout and "nothing was registered" in out.stdout
    assert registry.resolve(f"{MODEL}@challenger").version == before
    finished = [r for r in audit.read(workspace=world["ws"], event="retrain.finished")][-1]
    assert finished["verdict"] == "fail" and finished["version"] is None
    run = _client(world["ws"]).get_run(finished["run"])
    assert run.data.tags[lineage.GATE_VERDICT] == "fail"
    assert run.data.tags[lineage.RETRAIN_FROM] == f"{MODEL}/{world['v1'].version}"


def test_cli_exits_2_on_a_missing_file_or_model(world):
    out = _cli(world["project"], "retrain", MODEL, "--data", "missing.csv", "--no-promote")
    assert out.returncode == 2 and "No data to retrain on" in out.stderr, out.stderr
    out = _cli(world["project"], "retrain", "no-such-model", "--data", str(world["shifted"]), "--no-promote")
    assert out.returncode == 2 and "does not exist" in out.stderr, out.stderr
