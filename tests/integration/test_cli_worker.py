"""The preloaded command worker, through the real ``shipyard`` executable on a real MLflow sqlite store.

Each command is run twice as a user types it: answered by a worker (a real forked process of a real worker),
and in its own process (``SHIPYARD_CLI_WORKER=0``); exit code, stdout and stderr must be the same.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import shipyard
from shipyard import registry
from shipyard._core.workspace import reset_workspace

MODEL = "iris-worker"
SHIPYARD = Path(sys.executable).with_name("shipyard")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from shipyard.gates import check, threshold

    mp = pytest.MonkeyPatch()
    project = tmp_path_factory.mktemp("worker-project")
    mp.setenv("SHIPYARD_PROJECT_DIR", str(project))
    mp.setenv("SHIPYARD_ATTRIBUTIONS", "false")
    reset_workspace()
    shipyard.init(project_dir=project)
    X, y = load_iris(return_X_y=True, as_frame=True)
    for C in (1.0, 0.05):
        model = LogisticRegression(C=C, max_iter=300).fit(X, y)
        with shipyard.start_run("worker-it") as run:
            shipyard.log_model(model, name="model", input_example=X.iloc[:2])
            shipyard.log_metric("accuracy", float(model.score(X, y)))
        version = registry.register(MODEL, run.run_id, alias=None)
        check(str(version), [threshold("accuracy >= 0.5")], X.assign(target=y))
    registry.swap_champion(MODEL, "1", reason="first model")
    reset_workspace()
    mp.undo()
    folder = Path(f"/tmp/shipyard-test-{os.getpid()}")  # short: a socket's path has a length limit
    folder.mkdir(mode=0o700)
    yield {"project": project, "folder": folder}
    _shipyard(["worker", "stop"], _env(project, folder))
    subprocess.run(["rm", "-rf", str(folder)], check=False)


def _env(project: Path, folder: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_") or k.startswith("SHIPYARD_REQUIRE")}
    return {**env, "SHIPYARD_PROJECT_DIR": str(project), "SHIPYARD_CLI_WORKER_DIR": str(folder),
            "SHIPYARD_ATTRIBUTIONS": "false", "COLUMNS": "200", **extra}


def _shipyard(args: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SHIPYARD), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def _status(env: dict[str, str]) -> list[dict]:
    done = _shipyard(["worker", "status", "--json"], env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["workers"]


def test_fast_commands_answer_alike_from_the_worker_and_from_their_own_process(world):
    env = _env(world["project"], world["folder"])
    alone = {**env, "SHIPYARD_CLI_WORKER": "0"}
    commands = [
        ["review", f"{MODEL}/2", "--json"],
        ["review", f"{MODEL}/2"],
        ["audit", "show", MODEL, "--json"],
        ["review", "no-such-model/9"],  # a typed error: exit 2, one line and a hint on stderr
        ["--project", str(world["project"]), "show", "no-such-run"],
    ]
    for args in commands:
        served = _shipyard(args, env)
        own = _shipyard(args, alone)
        assert (served.returncode, served.stdout, served.stderr) == (own.returncode, own.stdout, own.stderr), args
    assert served.returncode != 0 and "error:" in served.stderr
    [worker] = [w for w in _status(env) if w["current"]]
    assert worker["served"] >= len(commands)
    assert worker["pid"] != os.getpid()


def test_a_command_writes_what_it_records_through_the_worker(world):
    env = _env(world["project"], world["folder"])
    assert _shipyard(["runs"], env).returncode == 0  # the worker is up
    before = [w for w in _status(env) if w["current"]]
    done = _shipyard(["approve", f"{MODEL}/2", "-m", "reviewed through the worker"], env)
    assert done.returncode == 0, done.stderr
    assert [w["served"] for w in _status(env) if w["current"]] == [before[0]["served"] + 1]
    history = _shipyard(["audit", "show", MODEL, "--json"], {**env, "SHIPYARD_CLI_WORKER": "0"})
    events = [json.loads(line) for line in history.stdout.splitlines()]
    approved = [e for e in events if e["event"] == "review.approved"]
    assert approved and approved[-1]["comment"] == "reviewed through the worker"
    assert _shipyard(["audit", "verify"], env).returncode == 0


def test_the_child_works_in_the_callers_folder_and_environment(world):
    """A worker started from one place and environment serves a command from another as that command's own."""
    env = _env(world["project"], world["folder"])
    assert _shipyard(["runs"], env).returncode == 0  # the worker is up, started with this environment
    inner = world["project"] / "notebooks" / "drafts"
    inner.mkdir(parents=True, exist_ok=True)
    elsewhere = {k: v for k, v in env.items() if k != "SHIPYARD_PROJECT_DIR"}
    elsewhere["SHIPYARD_TRACKNG_URI"] = "http://127.0.0.1:9"  # a typo: a warning, not a different store
    served = _shipyard(["review", f"{MODEL}/2", "--json"], elsewhere, cwd=inner)
    assert served.returncode == 0, served.stderr
    assert "SHIPYARD_TRACKING_URI" in served.stderr  # the warning names the variable meant
    assert json.loads(served.stdout)["version"] == "2"
    outside = _shipyard(["runs"], elsewhere, cwd=Path("/"))
    assert outside.returncode != 0 and "project" in outside.stderr.lower()


def test_an_idle_worker_exits_and_the_next_command_starts_one(world, tmp_path):
    folder = Path(f"/tmp/shipyard-test-{os.getpid()}-idle")
    folder.mkdir(mode=0o700)
    try:
        env = _env(world["project"], folder, SHIPYARD_CLI_WORKER_IDLE="1")
        assert _shipyard(["runs"], env).returncode == 0
        assert list(folder.glob("*.sock"))
        deadline = time.monotonic() + 30
        while list(folder.glob("*.sock")) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not list(folder.glob("*.sock")), "the idle worker did not exit"
        assert _shipyard(["runs"], env).returncode == 0
        assert len(_status(env)) == 1
    finally:
        _shipyard(["worker", "stop"], _env(world["project"], folder))
        subprocess.run(["rm", "-rf", str(folder)], check=False)


def test_a_folder_others_can_enter_is_not_used(world):
    folder = Path(f"/tmp/shipyard-test-{os.getpid()}-open")
    folder.mkdir()
    folder.chmod(0o755)
    try:
        env = _env(world["project"], folder)
        done = _shipyard(["review", f"{MODEL}/2", "--json"], env)
        assert done.returncode == 0
        assert "not a folder that only you can use" in done.stderr
        assert json.loads(done.stdout)["version"] == "2"
        assert not list(folder.iterdir())
    finally:
        folder.rmdir()
