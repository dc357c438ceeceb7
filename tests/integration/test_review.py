"""`shipyard review`, `reject`, `rollback` and `promote` as an engineer reads them, on a real MLflow sqlite store.

One workspace per module: two small iris models, each gated; v1 is champion, v2 the candidate, v3 fails
its gates. Nothing here builds an image: every path tested stops before Docker would be needed.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import shipyard
from shipyard import registry
from shipyard._core import audit, lineage
from shipyard._core.errors import ModelNotFound, RegistryError
from shipyard._core.workspace import reset_workspace
from shipyard.cli import cli

MODEL = "iris-review"


def _train(C: float, X, y) -> str:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=C, max_iter=300).fit(X, y)
    with shipyard.start_run("review-it") as run:
        shipyard.log_model(model, name="model", input_example=X.iloc[:2])
        shipyard.log_metric("accuracy", float(model.score(X, y)))
    return run.run_id


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from sklearn.datasets import load_iris

    from shipyard.gates import check, threshold

    mp = pytest.MonkeyPatch()
    project = tmp_path_factory.mktemp("review-project")
    mp.setenv("SHIPYARD_PROJECT_DIR", str(project))
    mp.setenv("SHIPYARD_ATTRIBUTIONS", "false")  # the tests store the attributions they compare
    reset_workspace()
    shipyard.init(project_dir=project)
    X, y = load_iris(return_X_y=True, as_frame=True)
    holdout = X.assign(target=y)
    versions = []
    for C, gate in ((1.0, "accuracy >= 0.5"), (0.05, "accuracy >= 0.5"), (0.001, "accuracy >= 0.99")):
        version = registry.register(MODEL, _train(C, X, y), alias=None)
        check(str(version), [threshold(gate)], holdout)
        versions.append(version)
    registry.swap_champion(MODEL, versions[0].version, reason="first model")
    yield {"project": project, "versions": versions}
    reset_workspace()
    mp.undo()


@pytest.fixture(autouse=True)
def _in_world(_isolated_settings, world, monkeypatch):
    monkeypatch.setenv("SHIPYARD_PROJECT_DIR", str(world["project"]))
    monkeypatch.setenv("SHIPYARD_ATTRIBUTIONS", "false")
    monkeypatch.setenv("COLUMNS", "200")
    reset_workspace()
    shipyard.init(project_dir=world["project"])


def _cli(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _log_attributions(version, shares: dict[str, float]) -> None:
    """Attributions as a gate check stores them (the artifact format is the shared one, not this test's)."""
    from shipyard.tracking._client import client_for

    features = {f: [v, 0.0] for f, v in shares.items()}
    record = {"method": "permutation", "scoring": "accuracy", "seed": 0, "n_repeats": 5, "rows": 150,
              "features": features}
    client_for(shipyard.current_workspace()).log_dict(version.run_id, record, lineage.ATTRIBUTIONS_ARTIFACT)


def _header(text: str, first: str) -> list[str]:
    """The column names of the rich table whose header row starts with ``first``."""
    line = next(line for line in text.splitlines() if line.startswith("┃") and line.strip("┃ ").startswith(first))
    return [cell.strip() for cell in line.strip("┃").split("┃")]


def test_every_diff_value_is_labelled_in_json_and_in_the_table(world) -> None:
    v1, v2, _ = world["versions"]
    _log_attributions(v1, {"petal length (cm)": 0.6, "petal width (cm)": 0.3, "sepal length (cm)": 0.1})
    _log_attributions(v2, {"petal length (cm)": 0.2, "petal width (cm)": 0.7, "sepal length (cm)": 0.1})

    out = _cli("review", str(v2), "--json")
    assert out.exit_code == 0, out.output
    diff = json.loads(out.stdout)["diff"]
    assert (diff["champion"], diff["candidate"]) == (v1.version, v2.version)
    accuracy = diff["metrics"]["accuracy"]
    assert set(accuracy) == {"champion", "candidate", "delta"}
    assert accuracy["delta"] == pytest.approx(accuracy["candidate"] - accuracy["champion"])
    assert set(diff["image_size_bytes"]) == {"champion", "candidate", "delta"}
    assert set(diff["requirements"]) == {"added", "removed"}
    assert diff["input_schema"] == {"changed": False, "added": [], "removed": [], "retyped": {}}
    features = diff["attributions"]["features"]
    assert [row["feature"] for row in features] == ["petal length (cm)", "petal width (cm)", "sepal length (cm)"]
    assert features[0]["champion"] == pytest.approx(0.6) and features[0]["change"] == pytest.approx(-0.4)
    assert all(set(row) == {"feature", "champion", "candidate", "change"} for row in features)

    text = _cli("review", str(v2)).stdout
    old, new = f"champion v{v1.version}", f"candidate v{v2.version}"
    assert _header(text, "metric") == ["metric", old, new, "delta"]
    assert _header(text, "feature") == ["feature", f"{old} share", f"{new} share", "change"]
    assert text.count(f"diff against champion v{v1.version}") == 1
    assert "requirements: the same on both versions" in text and "input schema: the same" in text
    assert "[" not in text.split("diff against champion")[1].split("review")[0]  # no positional lists


def test_without_attributions_the_review_says_so(world) -> None:
    _, _, v3 = world["versions"]
    out = _cli("review", str(v3))
    assert out.exit_code == 0, out.output
    line = next(line for line in out.stdout.splitlines() if line.startswith("attributions:"))
    assert "no attributions recorded for the" in line and line.endswith("candidate"), line


def test_a_refusal_is_printed_once(world) -> None:
    _, _, v3 = world["versions"]
    out = CliRunner().invoke(cli, ["promote", str(v3)])
    assert out.exit_code == 2
    assert out.output.count("failed its blocking gates") == 1, out.output
    assert out.output.count("→ Train a better model") == 1, out.output


def test_rollback_without_previous_and_a_second_rollback_are_typed_errors_with_hints(world) -> None:
    v1, v2, _ = world["versions"]
    out = CliRunner().invoke(cli, ["rollback", MODEL, "--reason", "latency"])
    assert out.exit_code == 2
    assert f"{MODEL} has no 'previous' version to roll back to: v{v1.version} is its first champion" in out.stderr
    assert "→ A rollback returns to the champion before the current one" in out.stderr
    assert "Traceback" not in out.output and "RESOURCE_DOES_NOT_EXIST" not in out.output

    registry.swap_champion(MODEL, v2.version, reason="better")
    try:
        back = registry.rollback(MODEL, reason="p99 regression")
        assert (back.champion.version, back.previous.version) == (v1.version, v2.version)
        with pytest.raises(RegistryError, match=f"already rolled back from v{v2.version} to v{v1.version}") as info:
            shipyard.rollback(MODEL, reason="again")
        assert f"shipyard promote {MODEL}/{v2.version}" in info.value.hint
        champion = registry.champion(MODEL)
        assert champion.version == v1.version
        assert registry.resolve(f"{MODEL}@previous").version == v2.version
    finally:
        registry.remove_alias(MODEL, "previous", reason="test cleanup")
    with pytest.raises(ModelNotFound, match="no 'previous' version"):
        shipyard.rollback(MODEL, reason="nothing to go back to")


def test_rejecting_the_serving_champion_needs_force_and_is_audited(world) -> None:
    champion = registry.champion(MODEL)
    refused = CliRunner().invoke(cli, ["reject", str(champion), "-m", "drifted on segment B"])
    assert refused.exit_code == 2
    assert "is the serving champion" in refused.stderr and "--force" in refused.stderr
    assert lineage.review(registry.resolve(champion).tags) == {}
    with pytest.raises(RegistryError, match="serving champion"):
        shipyard.reject(champion, "drifted on segment B")

    forced = _cli("reject", str(champion), "-m", "drifted on segment B", "--force")
    assert forced.exit_code == 0, forced.output
    assert lineage.review(registry.resolve(champion).tags)["state"] == "rejected"
    record = [r for r in audit.read(event="review.rejected") if r["model"] == MODEL][-1]
    assert (record["version"], record["forced"], record["serving_champion"]) == (champion.version, True, True)
    assert record["comment"] == "drifted on segment B"
