"""The four-eyes rule on real promotions: a real MLflow store, real runs and gate verdicts, the real stage machine.

These tests run the promotion's own stages up to and including the approval
(gates, register, approval: where the rule lives) and need no image; a whole
promotion with two required approvals, to the champion swap and the handoff
bundle, is in tests/e2e/test_promotion.py.
"""

from __future__ import annotations


import pytest

import shipyard
from shipyard import ApprovalRefused
from shipyard._core import audit, lineage
from shipyard.promotion import _duties

IDENTITY = "SHIPYARD_TEST_IDENTITY"  # the test suite's own prefix: no unknown-variable warning
SERVE_AUTH_APP = """
import sys
from werkzeug.serving import make_server
import mlflow.server
from mlflow.server.auth import create_app
make_server("127.0.0.1", int(sys.argv[1]), create_app(mlflow.server.app)).serve_forever()
"""


def _four_eyes(project, **settings):
    """A workspace with the rule on, runs authored by ada, and identities read from IDENTITY."""
    from shipyard._core.workspace import reset_workspace

    reset_workspace()
    return shipyard.init(project_dir=project, author="ada", separation_of_duties=True, identity_source="env",
                         identity_env=IDENTITY, **settings)


def _candidate(ws) -> str:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from shipyard.gates import threshold

    X, y = load_iris(return_X_y=True, as_frame=True)
    with shipyard.start_run("four-eyes", workspace=ws) as run:
        model = LogisticRegression(max_iter=300).fit(X, y)
        shipyard.log_metric("accuracy", model.score(X, y))
        shipyard.log_model(model, name="model", input_example=X.head(3))
    shipyard.check(run.run_id, gates=[threshold("accuracy >= 0.5")], workspace=ws)
    return run.run_id


def _as(monkeypatch, who: str) -> None:
    monkeypatch.setenv(IDENTITY, who)


def _through_approval(ws, run_id: str, model: str):
    """The real promotion stages up to the approval, on the real machine and state file."""
    from shipyard.promotion._machine import StageContext, run_stages
    from shipyard.promotion._promote import STAGES, resolve_inputs

    inputs = resolve_inputs(run_id, ws, model_name=model, model="model", target="production")
    stages = [s for s in STAGES if s.name in ("gates", "register", "approval")]
    return run_stages(inputs.key, stages, StageContext(inputs.key, inputs),
                      state_file=ws.promotions_dir / f"{inputs.key}.json", lock_file=ws.lock_path("promote", model))


def test_the_author_and_the_promoter_are_refused_and_another_approval_lets_the_promotion_on(
        project, monkeypatch) -> None:
    ws = _four_eyes(project)
    run_id = _candidate(ws)
    model = "four-eyes"

    _as(monkeypatch, "bob")
    waiting = _through_approval(ws, run_id, model)
    assert waiting.status == "awaiting_approval"
    version = waiting.outputs["register"].version
    ref = f"{model}/{version}"
    assert "has 0 of 1 approvals (nobody yet)" in waiting.stages[-1].error

    for who, rule in (("ada", "author"), ("Bob", "promoter")):  # case does not make another person
        _as(monkeypatch, who)
        with pytest.raises(ApprovalRefused, match=f"by {who} is refused by the separation of duties") as err:
            shipyard.approve(ref, "looks fine to me")
        assert (err.value.rule, err.value.who) == (rule, who) and "someone else" in err.value.hint
    _as(monkeypatch, "eng-1")
    with pytest.raises(ApprovalRefused, match="as 'eng-9' is refused") as err:
        shipyard.approve(ref, "on behalf of eng-9", reviewer="eng-9")
    assert err.value.rule == "identity"

    refused = [(r["who"], r["rule"]) for r in audit.read(workspace=ws, event="review.refused")]
    assert refused == [("ada", "author"), ("Bob", "promoter"), ("eng-1", "identity")]
    tags = shipyard.registry.resolve(ref, workspace=ws).tags
    assert {r["by"]: r["rule"] for r in lineage.refusals(tags).values()} == {
        "ada": "author", "Bob": "promoter", "eng-1": "identity"}
    assert lineage.approvals(tags) == {} and tags[lineage.REVIEW_REQUESTED_BY] == "bob"

    record = shipyard.approve(ref, "parity and latency look right")
    assert (record["state"], record["by"], record["approvals"]) == ("approved", "eng-1", "1/1")
    _as(monkeypatch, "bob")
    done = _through_approval(ws, run_id, model)
    assert done.status == "completed"
    approval = done.outputs["approval"]
    assert [(a["by"], a["identity_source"], a["comment"]) for a in approval.approvals] == [
        ("eng-1", "env", "parity and latency look right")]
    approved = [r for r in audit.read(workspace=ws, event="review.approved") if r.get("model") == model]
    assert [(r["who"], r["identity_source"], r["approvals"], r["required"]) for r in approved] == [
        ("eng-1", "env", 1, 1)]


def test_an_approval_given_before_its_giver_starts_the_promotion_does_not_count(project, monkeypatch) -> None:
    ws = _four_eyes(project)
    run_id = _candidate(ws)
    version = shipyard.registry.register("early", run_id, "model", reason="review first", workspace=ws)
    _as(monkeypatch, "bob")
    assert shipyard.approve(str(version), "I checked it myself")["state"] == "approved"  # nobody started it yet
    waiting = _through_approval(ws, f"early/{version.version}", "early")
    assert waiting.status == "awaiting_approval"
    assert "bob's approval does not count (promoter)" in waiting.stages[-1].error
    assert _duties.tally(ws, shipyard.registry.resolve(str(version), workspace=ws), needed=1).ignored == {
        "bob": "promoter"}


def test_the_tracking_identity_is_the_user_the_server_authenticates(tmp_path, monkeypatch) -> None:
    import importlib.util
    import os
    import subprocess
    import sys

    from shipyard import ConfigError
    from shipyard._core.config import Settings
    from tests.conftest import free_port
    from tests.team_support import _stop, _wait_http, require

    require(importlib.util.find_spec("flask_wtf") is not None,
            "MLflow's basic-auth app needs flask-wtf (pip install 'mlflow[auth]')")
    password = "a-long-test-password-1"  # an account of a throwaway server on 127.0.0.1
    config = tmp_path / "basic_auth.ini"
    config.write_text(f"[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{tmp_path / 'auth.db'}\n"
                      f"admin_username = ada\nadmin_password = {password}\n"
                      "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    port, log = free_port(), tmp_path / "server.log"
    with log.open("ab") as out:
        # MLflow's own basic-auth app (what `mlflow server --app-name basic-auth` serves), in werkzeug instead
        # of uvicorn: the same routes, started in a quarter of the time
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVE_AUTH_APP, str(port)],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "MLFLOW_AUTH_CONFIG_PATH": str(config), "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-only"},
        )
    try:
        _wait_http(f"http://127.0.0.1:{port}/health", proc, log, timeout=90)
        settings = Settings(identity_source="tracking", tracking_uri=f"http://127.0.0.1:{port}")
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "ada")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
        assert _duties.current_identity(settings) == "ada"
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "bob")  # a name without its password proves nothing
        with pytest.raises(ConfigError, match="refused your credentials") as err:
            _duties.current_identity(settings)
        assert password not in str(err.value)
    finally:
        _stop(proc)
