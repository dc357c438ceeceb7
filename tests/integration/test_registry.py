"""The registry layer against a real MLflow sqlite store: versions, aliases, audit trail, swaps.

Two runs are logged once per module; each test registers them under its own model name.
"""

from __future__ import annotations

import pytest

import shipyard
from shipyard import registry
from shipyard._core import audit
from shipyard._core.errors import GateFailed, ModelNotFound, RegistryError

from shipyard._core.workspace import reset_workspace


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    project = tmp_path_factory.mktemp("registry-project")
    mp = pytest.MonkeyPatch()
    mp.setenv("SHIPYARD_PROJECT_DIR", str(project))
    reset_workspace()
    shipyard.init(project_dir=project)
    logged = {"project": project, "a": _logged_run(1.0), "b": _logged_run(0.01)}
    reset_workspace()
    mp.undo()
    return logged


@pytest.fixture
def workspace(_isolated_settings, runs, monkeypatch):
    monkeypatch.setenv("SHIPYARD_PROJECT_DIR", str(runs["project"]))
    reset_workspace()
    return shipyard.init(project_dir=runs["project"])


def _moves(name):
    return [m for m in audit.read(event="alias.move") if m["model"] == name]


def _logged_run(C: float) -> str:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True, as_frame=True)
    model = LogisticRegression(C=C, max_iter=300).fit(X, y)
    with shipyard.start_run("registry-it") as run:
        shipyard.log_model(model, name="clf", input_example=X.iloc[:2])
        shipyard.log_metric("accuracy", float(model.score(X, y)))
    return run.run_id


def test_register_aliases_swap_rollback_and_audit(workspace, mlflow_client, runs):
    NAME = "iris"
    run_a, run_b = runs["a"], runs["b"]

    v1 = registry.register(NAME, run_a, model="clf")
    assert (v1.name, v1.version, v1.aliases, v1.run_id) == (NAME, "1", ("challenger",), run_a)
    assert str(mlflow_client.get_model_version_by_alias(NAME, "challenger").version) == "1"
    tags = mlflow_client.get_model_version(NAME, "1").tags
    assert tags["shipyard.alias.challenger.by"] == workspace.author
    assert tags["shipyard.alias.challenger.reason"] == f"registered from run {run_a}"
    assert tags["shipyard.alias.challenger.at"]
    assert registry.champion(NAME) is None

    first = registry.swap_champion(NAME, 1, reason="first model")
    assert first.champion.version == "1" and first.previous is None
    assert first.champion.aliases == ("champion",)  # the challenger alias left the new champion

    v2 = registry.register(NAME, run_b, model="clf", reason="retrained with stronger regularisation")
    second = registry.swap_champion(NAME, v2.version, reason="better on the May holdout")
    assert second.champion.version == "2" and second.previous.version == "1"
    assert str(mlflow_client.get_model_version_by_alias(NAME, "champion").version) == "2"
    assert str(mlflow_client.get_model_version_by_alias(NAME, "previous").version) == "1"
    v2_tags = mlflow_client.get_model_version(NAME, "2").tags
    assert v2_tags["shipyard.alias.champion.reason"] == "better on the May holdout"
    assert v2_tags["shipyard.alias.champion.from_version"] == "1"
    v1_tags = mlflow_client.get_model_version(NAME, "1").tags
    assert "replaced as champion by version 2" in v1_tags["shipyard.alias.previous.reason"]

    moves = _moves(NAME)
    assert [(m["alias"], m["version"]) for m in moves] == [
        ("challenger", "1"),
        ("champion", "1"),
        ("challenger", None),
        ("challenger", "2"),
        ("previous", "1"),
        ("champion", "2"),
        ("challenger", None),
    ]
    assert all(m["who"] == workspace.author and m["reason"] for m in moves)

    back = registry.rollback(NAME, reason="latency regression")
    assert back.champion.version == "1" and back.previous.version == "2"
    assert str(mlflow_client.get_model_version_by_alias(NAME, "champion").version) == "1"
    assert len(_moves(NAME)) == len(moves) + 2

    again = registry.swap_champion(NAME, 1, reason="no-op")
    assert again.moves == 0


def test_refs_resolve_in_every_form(workspace, runs):
    registry.register("refs", runs["a"], model="clf")
    for ref in ("refs/1", "models:/refs/1", "refs@challenger", "models:/refs@challenger"):
        assert registry.resolve(ref).version == "1", ref
    assert registry.resolve("refs/1").uri == "models:/refs/1"


def test_errors_are_typed_and_say_what_to_do(workspace, runs):
    NAME = "errors"
    run_a = runs["a"]
    with pytest.raises(ModelNotFound, match="no model logged as 'model'.*clf"):
        registry.register(NAME, run_a)
    with pytest.raises(ModelNotFound, match="does not exist"):
        registry.register(NAME, "0" * 32, model="clf")
    registry.register(NAME, run_a, model="clf")
    with pytest.raises(ModelNotFound):
        registry.resolve("errors/7")
    with pytest.raises(ModelNotFound):
        registry.resolve("errors@champion")
    with pytest.raises(ModelNotFound, match="not a model version reference"):
        registry.resolve("just-a-name")
    with pytest.raises(RegistryError, match="needs a reason"):
        registry.swap_champion(NAME, 1, reason=" ")
    with pytest.raises(RegistryError, match="needs a reason"):
        registry.set_alias(NAME, "champion", 1, reason="")
    with pytest.raises(ModelNotFound, match="no 'previous' version"):
        registry.rollback(NAME, reason="oops")
    assert [m["alias"] for m in _moves(NAME)] == ["challenger"]


def test_a_version_that_failed_its_gates_cannot_become_champion(workspace, mlflow_client, runs):
    NAME = "blocked"
    v1 = registry.register(NAME, runs["a"], model="clf")
    mlflow_client.set_model_version_tag(NAME, v1.version, "shipyard.gate.verdict", "fail")
    with pytest.raises(GateFailed, match="failed its blocking gates"):
        registry.swap_champion(NAME, v1.version, reason="ship it anyway")
    assert registry.champion(NAME) is None
