"""The panel's widget state against a real MLflow sqlite store (no browser).

Versions, aliases, gate chips and review state in the panel must be what a
plain MLflow client reports; a failed promotion must show the typed error's
message; an empty workspace must render.
"""

from __future__ import annotations

import threading
import time

import pytest

import shipyard
from shipyard import registry
from shipyard.gates import check, threshold

MODEL = "panel-model"


def _train_run(accuracy: float, steps: int = 5) -> str:
    """A tracked run with a real (tiny) sklearn model, a per-step loss curve and a final accuracy."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=200).fit(X, y)
    with shipyard.start_run("panel-tests") as run:
        for step in range(steps):
            shipyard.log_metric("train/loss", 1.0 / (step + 1), step=step)
        shipyard.log_metric("accuracy", accuracy)
        shipyard.log_model(model, name="model", input_example=X.iloc[:3])
    return run.run_id


@pytest.fixture
def two_versions(workspace):
    """v1 champion (gates pass), v2 challenger (threshold fails, a warning gate warns), v2 approved."""
    r1 = _train_run(0.95)
    v1 = registry.register(MODEL, r1)
    check(str(v1), [threshold("accuracy >= 0.9")])
    registry.swap_champion(MODEL, v1.version, reason="first model")
    r2 = _train_run(0.85)
    v2 = registry.register(MODEL, r2)
    check(str(v2), [threshold("accuracy >= 0.9"), threshold("accuracy >= 0.97", blocking=False, name="stretch")])
    shipyard.approve(str(v2), "looks fine to me")
    return v1, v2


def test_empty_workspace_renders(workspace) -> None:
    panel = shipyard.panel()
    assert panel.model == "" and panel.versions == [] and panel.selected == ""
    assert "no registered model yet" in panel._header.value
    assert panel.metrics.renders == 1
    assert bytes(panel.metrics._image.value).startswith(b"\x89PNG")
    assert "no run in this workspace yet" in panel.metrics._caption.value
    assert repr(panel) == "<shipyard Panel model=None versions=0 selected=None>"
    panel.request_promotion()
    assert panel.promotion == "idle" and "Select a registered version" in panel.message


def test_unknown_model_renders_empty(workspace) -> None:
    panel = shipyard.panel("no-such-model")
    assert panel.model == "no-such-model" and panel.versions == []
    assert "No versions registered yet" in panel._versions_html.value


def test_versions_aliases_and_gate_chips_match_mlflow(two_versions, mlflow_client) -> None:
    panel = shipyard.panel(MODEL)
    found = {str(mv.version): mv for mv in mlflow_client.search_model_versions(f"name = '{MODEL}'")}
    aliases = mlflow_client.get_registered_model(MODEL).aliases
    assert [v["version"] for v in panel.versions] == sorted(found, key=int, reverse=True)
    for state in panel.versions:
        mv = mlflow_client.get_model_version(MODEL, state["version"])
        assert set(state["aliases"]) == {a for a, ver in aliases.items() if str(ver) == state["version"]}
        expected_gates = {
            k.removeprefix("shipyard.gate."): v
            for k, v in mv.tags.items()
            if k.startswith("shipyard.gate.") and k not in {"shipyard.gate.verdict", "shipyard.gate.report"}
        }
        assert state["gates"] == expected_gates
        assert state["verdict"] == mv.tags["shipyard.gate.verdict"]
        assert state["review_state"] == mv.tags.get("shipyard.review.state")
        run = mlflow_client.get_run(mv.run_id)
        assert state["key_metrics"]["accuracy"] == run.data.metrics["accuracy"]
        assert state["author"] == run.data.tags["mlflow.user"]
    v2 = panel.version("2")
    assert v2["aliases"] == ["challenger"] and panel.selected == "2"
    assert v2["gates"] == {"threshold.accuracy": "fail", "stretch": "warn"}
    assert v2["review_state"] == "approved"
    assert panel.version("1")["aliases"] == ["champion"]
    html = panel._versions_html.value
    assert 'data-version="2"' in html and 'data-aliases="challenger"' in html
    assert 'data-gate="threshold.accuracy" data-status="fail"' in html
    assert 'data-gate="stretch" data-status="warn"' in html
    assert 'data-version="1"' in html and 'data-aliases="champion"' in html


def test_gate_reasons_and_report_on_demand(two_versions) -> None:
    panel = shipyard.panel(MODEL)
    panel._gates_button.value = True
    assert panel.details == "gates"
    details = panel._details_html.value
    assert "measured 0.85, threshold 0.9" in details and "warning only" in details
    panel._report_button.value = True
    assert panel.details == "report" and panel._gates_button.value is False
    assert "Gate report: " in panel._details_html.value and "data:image/png;base64," in panel._details_html.value


def test_override_is_shown_with_who_and_why(workspace) -> None:
    v = registry.register(MODEL, _train_run(0.5))
    check(str(v), [threshold("accuracy >= 0.9")], override=["threshold.accuracy"], reason="pilot only")
    panel = shipyard.panel(MODEL)
    state = panel.version(v.version)
    assert state["gates"] == {"threshold.accuracy": "overridden"}
    assert state["override"]["reason"] == "pilot only"
    panel._gates_button.value = True
    assert "pilot only" in panel._details_html.value and "Override" in panel._details_html.value


def test_failed_promotion_shows_the_typed_errors_message(two_versions) -> None:
    with pytest.raises(shipyard.GateFailed) as raised:
        shipyard.promote(f"{MODEL}/2")
    panel = shipyard.panel(MODEL)
    panel.request_promotion("2")
    assert panel.promotion == "confirming"
    assert "v1 becomes previous" in panel._confirm_text.value
    panel.confirm_promotion(wait=True)
    assert panel.promotion == "failed"
    assert raised.value.message in panel.error
    assert panel.error_kind == "Blocked by a quality gate"
    assert panel.error_hint == raised.value.hint
    assert "threshold.accuracy" in panel.error and "0.85" in panel.error
    assert [(s["stage"], s["state"]) for s in panel.stages] == [("gates", "failed")]
    assert 'data-error="Blocked by a quality gate"' in panel._message_html.value
    assert shipyard.registry.champion(MODEL).version == "1"


def test_cancelled_promotion_does_nothing(two_versions) -> None:
    panel = shipyard.panel(MODEL)
    panel.request_promotion("2")
    panel.cancel_promotion()
    assert panel.promotion == "idle" and panel.stages == []
    panel.confirm_promotion(wait=True)
    assert panel.promotion == "idle"


def test_a_new_panel_reads_the_same_state(two_versions) -> None:
    first = shipyard.panel(MODEL)
    shipyard.retire(f"{MODEL}/1", "superseded")
    assert first.version("1")["retired"] is False
    first.refresh()
    second = shipyard.panel(MODEL)
    assert first.versions == second.versions
    assert second.version("1")["retired"] is True and second.version("1")["aliases"] == []


@pytest.mark.parametrize("isolated", [True, False], ids=["worker-process", "in-kernel"])
def test_watch_redraws_while_a_run_logs(workspace, isolated: bool) -> None:
    view = shipyard.widgets.MetricsView(interval=0.25, isolated=isolated)
    view.prepare(wait=True)  # as in a notebook: the panel is open before the run starts
    started = threading.Event()
    run_ids: list[str] = []

    def train() -> None:
        with shipyard.start_run("panel-live") as run:
            run_ids.append(run.run_id)
            started.set()
            for step in range(30):
                shipyard.log_metric("train/loss", 1.0 / (step + 1), step=step)
                time.sleep(0.1)

    thread = threading.Thread(target=train)
    thread.start()
    assert started.wait(30)
    images: list[bytes] = []
    view._image.observe(lambda change: images.append(bytes(change["new"])), "value")
    view.watch(run_ids[0], max_seconds=60)
    thread.join(60)
    assert view.wait(30)
    assert view.status == "FINISHED"
    assert view.points == 30
    assert len(set(images)) >= 3, "the chart was not redrawn while the run logged"
    assert view.watching is False
    view.close()


def test_watch_gives_up_after_max_seconds(workspace) -> None:
    with shipyard.start_run("panel-stuck") as run:
        shipyard.log_metric("loss", 1.0)
        shipyard.flush()
        view = shipyard.widgets.MetricsView(interval=0.1)
        view.prepare(wait=True)  # the worker's imports are not part of the half second being measured
        t0 = time.monotonic()
        view.watch(run.run_id, max_seconds=0.5)
        assert view.wait(10)
        assert time.monotonic() - t0 < 5
        assert view.status == "RUNNING"
        view.close()


def test_metric_history_matches_the_mlflow_client(workspace, mlflow_client) -> None:
    run_id = _train_run(0.9, steps=7)
    history = shipyard.metric_history(run_id)
    assert history.status == "FINISHED" and not history.running
    for name in ("train/loss", "accuracy"):
        expected = sorted((p.step, p.value) for p in mlflow_client.get_metric_history(run_id, name))
        assert [(p.step, p.value) for p in history.metrics[name]] == expected
    assert history.points == 8
    assert shipyard.metric_history().run_id == run_id  # None: the newest run of the workspace
    with pytest.raises(shipyard.TrackingError, match="No run 'nope'"):
        shipyard.metric_history("nope")


def test_metric_history_of_an_empty_workspace_is_none(workspace) -> None:
    assert shipyard.metric_history() is None


def test_live_hook_declines_outside_a_notebook() -> None:
    from shipyard.widgets import follow_in_notebook, live_view_available

    started: list[bool] = []
    assert live_view_available() is False
    assert follow_in_notebook(lambda: started.append(True)) is None
    assert started == []


def test_mlflow_link_and_approval_state_come_from_settings(project, monkeypatch) -> None:
    monkeypatch.setenv("SHIPYARD_MLFLOW_UI_URL", "http://127.0.0.1:5000")
    monkeypatch.setenv("SHIPYARD_REQUIRE_APPROVAL", "true")
    shipyard.init(project_dir=project)
    v = registry.register(MODEL, _train_run(0.95))
    panel = shipyard.panel(MODEL)
    assert panel.mlflow_url == "http://127.0.0.1:5000"
    assert 'href="http://127.0.0.1:5000"' in panel._header.value and "approval required" in panel._header.value
    assert 'data-review="">pending' in panel._versions_html.value
    shipyard.reject(str(v), "holdout too small")
    panel.refresh()
    assert panel.version(v.version)["review_state"] == "rejected"
    assert panel.version(v.version)["review"]["comment"] == "holdout too small"
    panel.request_promotion()
    assert "approval is required" in panel._confirm_text.value


def test_no_mlflow_link_for_the_embedded_store(workspace) -> None:
    panel = shipyard.panel()
    assert panel.mlflow_url == "" and "MLflow UI" not in panel._header.value


class _FailedBeforeTracking:
    """A finished FlowRun look-alike whose flow failed before its MLflow run existed."""

    mlflow_run_id = None

    def done(self) -> bool:
        return True

    def result(self, timeout: float | None = None):
        raise shipyard.FlowFailed("Flow X/1 failed in step 'start': boom", step="start", cause="boom")


@pytest.mark.parametrize("isolated", [True, False], ids=["worker-process", "in-kernel"])
def test_watch_ends_when_the_flow_failed_before_tracking(workspace, isolated: bool) -> None:
    view = shipyard.widgets.MetricsView(interval=0.2, isolated=isolated)
    view.watch(_FailedBeforeTracking(), max_seconds=120)
    assert view.wait(60), "the view kept waiting for a run that will never come"
    assert "failed in step &#x27;start&#x27;" in view._caption.value or "failed in step 'start'" in view._caption.value
    view.close()
