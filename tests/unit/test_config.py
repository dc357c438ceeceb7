"""Settings precedence and errors: init() > env > shipyard.toml > pyproject.toml > default."""

from __future__ import annotations

from pathlib import Path

import pytest

import shipyard
from shipyard._core.config import find_project_dir, load_settings


def test_defaults_put_everything_in_the_project_workspace(project: Path) -> None:
    ws = shipyard.init()
    assert ws.root == project / ".shipyard"
    assert ws.tracking_uri == f"sqlite:///{project / '.shipyard' / 'mlflow.db'}"
    assert ws.embedded
    for folder in (ws.artifacts_dir, ws.metaflow_root, ws.spool_dir, ws.bundles_dir, ws.bentoml_home):
        assert folder.is_dir()
    assert (ws.root / ".gitignore").read_text().strip().endswith("*")


def test_precedence_env_over_files_over_default(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (project / "pyproject.toml").write_text('[tool.shipyard]\nexperiment = "from-pyproject"\nbatch_size = 10\n')
    assert load_settings(project).experiment == "from-pyproject"
    assert load_settings(project).batch_size == 10
    (project / "shipyard.toml").write_text('experiment = "from-shipyard-toml"\n')
    assert load_settings(project).experiment == "from-shipyard-toml"
    monkeypatch.setenv("SHIPYARD_EXPERIMENT", "from-env")
    assert load_settings(project).experiment == "from-env"
    assert load_settings(project, experiment="from-init").experiment == "from-init"
    assert load_settings(project).flush_interval == 0.2  # untouched default


def test_unknown_key_in_pyproject_is_an_error_with_a_suggestion(project: Path) -> None:
    (project / "pyproject.toml").write_text('[tool.shipyard]\nflush_intervall = 1\n')
    with pytest.raises(shipyard.ConfigError, match="Unknown setting 'flush_intervall'") as info:
        shipyard.init()
    assert "Did you mean 'flush_interval'" in str(info.value)


def test_unknown_init_argument_is_an_error(project: Path) -> None:
    with pytest.raises(shipyard.ConfigError, match="Unknown setting 'trackinguri' in shipyard.init"):
        shipyard.init(trackinguri="http://x")


def test_bad_value_names_the_setting(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPYARD_BATCH_SIZE", "5000")
    with pytest.raises(shipyard.ConfigError, match="batch_size"):
        shipyard.init()


def test_broken_toml_is_a_config_error(project: Path) -> None:
    (project / "shipyard.toml").write_text("experiment = \n")
    with pytest.raises(shipyard.ConfigError, match="not valid TOML"):
        shipyard.init()


def test_unreachable_tracking_server_at_init(project: Path) -> None:
    from tests.conftest import free_port

    with pytest.raises(shipyard.TrackingUnavailable, match="does not answer") as info:
        shipyard.init(tracking_uri=f"http://127.0.0.1:{free_port()}")
    assert "unset it to use the embedded sqlite store" in str(info.value)


def test_tracking_uri_from_env_switches_to_a_server(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPYARD_TRACKING_URI", "http://tracking.example:5000")
    ws = shipyard.current_workspace()
    assert ws.tracking_uri == "http://tracking.example:5000"
    assert not ws.embedded
    assert ws.child_env()["SHIPYARD_TRACKING_URI"] == "http://tracking.example:5000"


def test_project_discovery_walks_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHIPYARD_PROJECT_DIR", raising=False)
    (tmp_path / "pyproject.toml").write_text("[project]\nname='x'\n")
    nested = tmp_path / "notebooks" / "deep"
    nested.mkdir(parents=True)
    assert find_project_dir(nested) == tmp_path.resolve()


def test_unwritable_workspace_is_a_config_error(project: Path) -> None:
    blocker = project / "file-not-dir"
    blocker.write_text("")
    with pytest.raises(shipyard.ConfigError, match="Cannot create the shipyard workspace"):
        shipyard.init(workspace=blocker / "ws")


def test_explicit_env_round_trips_lists_and_mappings(monkeypatch) -> None:
    """A child process (a flow step, the panel's worker) reads back exactly the settings its parent had."""
    from shipyard._core.config import Settings

    monkeypatch.delenv("SHIPYARD_METAFLOW_CARD")  # the suite's own choice (tests/conftest.py)
    assert Settings().explicit_env() == {}  # defaults made by a factory are defaults too
    chosen = Settings(canary_steps=[5, 50], analysis_checks=["errors"], capture_sensitive=["email"],
                      deploy_resources={"cpu_request": "1", "memory_request": "1Gi", "cpu_limit": "2",
                                        "memory_limit": "2Gi"}, delivery="flagger", capture=True)
    env = chosen.explicit_env()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert Settings() == chosen
