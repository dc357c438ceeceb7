"""``shipyard.schedule`` refuses what cannot be deployed, before Metaflow starts: each check with its typed error.

Compiling for Argo Workflows for real is tests/integration/test_schedule_argo.py.
"""

from __future__ import annotations

import ast
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

import shipyard
from shipyard.cli import cli
from shipyard.flows._schedule import check_cron, deploy_source

TRACKED = textwrap.dedent(
    """\
    from metaflow import FlowSpec, step

    import shipyard


    @shipyard.track
    class NightlyFlow(FlowSpec):
        @step
        def start(self):
            self.next(self.end)

        @step
        def end(self):
            pass


    if __name__ == "__main__":
        NightlyFlow()
    """
)


@pytest.fixture
def flow_file(project: Path) -> Path:
    path = project / "nightly_flow.py"
    path.write_text(TRACKED, encoding="utf-8")
    return path


@pytest.fixture
def team_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Everything a deploy needs, so that each test takes away the one thing it checks."""
    monkeypatch.setenv("METAFLOW_HOME", str(tmp_path / "no-metaflow-config"))
    monkeypatch.delenv("METAFLOW_PROFILE", raising=False)
    monkeypatch.setenv("SHIPYARD_TRACKING_URI", "http://mlflow.team.svc:5000")
    monkeypatch.setenv("METAFLOW_DEFAULT_DATASTORE", "s3")
    monkeypatch.setenv("METAFLOW_DATASTORE_SYSROOT_S3", "s3://bucket/metaflow")
    monkeypatch.setenv("METAFLOW_KUBERNETES_CONTAINER_IMAGE", "registry.example/shipyard:1")


@pytest.mark.parametrize(
    ("cron", "normalized"),
    [
        ("0 3 * * *", "0 3 * * *"),
        ("  */15  0-6,22,23 1 jan-mar MON-fri ", "*/15 0-6,22,23 1 jan-mar mon-fri"),
        ("@Daily", "@daily"),
        ("0 0 ? * 7", "0 0 ? * 7"),
    ],
)
def test_a_cron_is_normalized(cron: str, normalized: str) -> None:
    assert check_cron(cron) == normalized


@pytest.mark.parametrize(
    ("cron", "says"),
    [
        ("0 3 * *", "4 fields, not 5"),
        ("0 3 * * * 2027", "6 fields, not 5"),
        ("", "0 fields"),
        ("61 3 * * *", "'61' is no minute"),
        ("0 24 * * *", "'24' is no hour"),
        ("0 3 0 * *", "'0' is no day of month"),
        ("0 3 * 13 *", "'13' is no month"),
        ("0 3 * * 8", "'8' is no day of week"),
        ("0 9-5 * * *", "'9-5' is no hour"),
        ("*/0 * * * *", "'*/0' is no minute"),
        ("0 3 * * mon-funday", "'mon-funday' is no day of week"),
        ("@fortnightly", "1 fields"),
    ],
)
def test_a_bad_cron_says_which_field(cron: str, says: str) -> None:
    with pytest.raises(shipyard.FlowError, match="is not a cron schedule") as caught:
        check_cron(cron)
    assert says in str(caught.value)
    assert "0 3 * * *" in caught.value.hint


def test_unknown_scheduler_is_refused(flow_file: Path, team_env: None) -> None:
    with pytest.raises(shipyard.FlowError, match="cannot deploy on 'airflow'") as caught:
        shipyard.schedule(flow_file, cron="0 3 * * *", on="airflow", only_json=True)
    assert "argo-workflows" in caught.value.hint


def test_unknown_timezone_is_refused(flow_file: Path, team_env: None) -> None:
    with pytest.raises(shipyard.FlowError, match="'Mars/Olympus' is not a time zone"):
        shipyard.schedule(flow_file, cron="0 3 * * *", timezone="Mars/Olympus", only_json=True)


def test_missing_kubernetes_package_names_the_extra(
    flow_file: Path, team_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "kubernetes", None)  # what find_spec reports for a package that is absent
    with pytest.raises(shipyard.MissingDependency, match="kubernetes package") as caught:
        shipyard.schedule(flow_file, cron="0 3 * * *", only_json=True)
    assert "shipyard[team]" in caught.value.hint


def test_a_flow_without_track_is_refused(project: Path, team_env: None) -> None:
    path = project / "plain_flow.py"
    path.write_text(TRACKED.replace("@shipyard.track\n", ""), encoding="utf-8")
    with pytest.raises(shipyard.FlowError, match="is not tracked") as caught:
        shipyard.schedule(path, cron="0 3 * * *", only_json=True)
    assert "@shipyard.track" in caught.value.hint
    assert not list(project.glob("_shipyard_scheduled_*"))  # no deploy copy was written


def test_the_embedded_store_is_refused(flow_file: Path, team_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHIPYARD_TRACKING_URI")
    with pytest.raises(shipyard.ConfigError, match="steps on the cluster cannot reach") as caught:
        shipyard.schedule(flow_file, cron="0 3 * * *", only_json=True)
    assert "SHIPYARD_TRACKING_URI" in caught.value.hint


def test_a_local_datastore_names_the_variables_to_set(
    flow_file: Path, team_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("METAFLOW_DEFAULT_DATASTORE")
    with pytest.raises(shipyard.ConfigError, match="datastore in S3, and it is local") as caught:
        shipyard.schedule(flow_file, cron="0 3 * * *", only_json=True)
    for variable in ("METAFLOW_DEFAULT_DATASTORE=s3", "METAFLOW_DATASTORE_SYSROOT_S3", "METAFLOW_S3_ENDPOINT_URL"):
        assert variable in caught.value.hint


def test_an_s3_datastore_without_its_root_is_refused(
    flow_file: Path, team_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("METAFLOW_DATASTORE_SYSROOT_S3")
    with pytest.raises(shipyard.ConfigError, match="METAFLOW_DATASTORE_SYSROOT_S3 is not set"):
        shipyard.schedule(flow_file, cron="0 3 * * *", only_json=True)


def test_the_datastore_may_come_from_metaflows_config_file(
    flow_file: Path, team_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("METAFLOW_DEFAULT_DATASTORE")
    home = tmp_path / "metaflow-home"
    home.mkdir()
    (home / "config.json").write_text('{"METAFLOW_DEFAULT_DATASTORE": "s3"}', encoding="utf-8")
    monkeypatch.setenv("METAFLOW_HOME", str(home))
    monkeypatch.delenv("METAFLOW_KUBERNETES_CONTAINER_IMAGE")  # the next check: passing it proves the file was read
    with pytest.raises(shipyard.ConfigError, match="No container image"):
        shipyard.schedule(flow_file, cron="0 3 * * *", only_json=True)


def test_no_image_is_refused(flow_file: Path, team_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("METAFLOW_KUBERNETES_CONTAINER_IMAGE")
    with pytest.raises(shipyard.ConfigError, match="No container image") as caught:
        shipyard.schedule(flow_file, cron="0 3 * * *", only_json=True)
    assert "METAFLOW_KUBERNETES_CONTAINER_IMAGE" in caught.value.hint and "image=" in caught.value.hint


def test_the_deploy_copy_keeps_every_line_of_the_flow_where_it_was() -> None:
    copy = deploy_source(TRACKED, "NightlyFlow", "0 3 * * *", "UTC", {"SHIPYARD_TRACKING_URI": "http://m:5000"})
    original, added = TRACKED.splitlines(), copy.splitlines()
    guard = original.index('if __name__ == "__main__":')
    assert added[:guard] == original[:guard]
    assert added[guard + 2:] == original[guard:]
    applied = ast.parse(added[guard + 1]).body[0]
    assert isinstance(applied, ast.Assign) and applied.targets[0].id == "NightlyFlow"  # type: ignore[attr-defined]
    assert "cron='0 3 * * *'" in added[guard + 1] and "'SHIPYARD_TRACKING_URI': 'http://m:5000'" in added[guard + 1]


def test_the_deploy_copy_of_a_file_without_main_guard_gets_one() -> None:
    source = TRACKED.split('if __name__ == "__main__":')[0]
    copy = deploy_source(source, "NightlyFlow", "@daily", None, {})
    assert copy.rstrip().endswith('if __name__ == "__main__":\n    NightlyFlow()')
    ast.parse(copy)


def test_the_cli_reports_a_bad_cron_as_an_error(flow_file: Path, team_env: None) -> None:
    result = CliRunner().invoke(cli, ["schedule", str(flow_file), "--cron", "0 3 * *", "--dry-run"])
    assert result.exit_code == 2
    assert "is not a cron schedule" in result.output
