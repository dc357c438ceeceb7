"""``shipyard.schedule`` compiles a tracked flow for Argo Workflows with Metaflow's Deployer, offline.

Metaflow's real ``argo-workflows create --only-json`` runs against an S3 datastore
(moto's server, tests/team_support.py) and no cluster: it uploads the code
package and returns the ``WorkflowTemplate`` a deploy would apply. The tests
read that template: the schedule, the image, shipyard's tracking environment
in every step's container, one template per step, and what ``@resources`` and
``@kubernetes`` of a step ask for. (The ``CronWorkflow`` itself is made by
Metaflow at deploy time from the template's ``metaflow/cron`` annotation.)
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import shipyard
from shipyard._core.workspace import reset_workspace
from tests.team_support import s3_store  # noqa: F401  (fixture)

FLOW = Path(__file__).parent / "flows" / "scheduled_flow.py"
BUCKET = "scheduled-flows"
IMAGE = "registry.example/churn/train:1.4"
TRACKING = "http://mlflow.mlops.svc:5000"
STEPS = {"start", "train", "report", "end"}


@pytest.fixture(scope="module")
def team_project(s3_store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:  # noqa: F811
    """A project whose Metaflow datastore is S3 and whose tracking is a team server (not reached offline)."""
    root = tmp_path_factory.mktemp("scheduled") / "project"
    root.mkdir()
    shutil.copy(FLOW, root / FLOW.name)
    sysroot = s3_store.create_bucket(BUCKET) + "/metaflow"
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            **s3_store.env,
            "METAFLOW_HOME": str(root / "no-metaflow-config"),
            "METAFLOW_DEFAULT_DATASTORE": "s3",
            "METAFLOW_DATASTORE_SYSROOT_S3": sysroot,
            "METAFLOW_KUBERNETES_NAMESPACE": "mlops",
            "METAFLOW_KUBERNETES_CONTAINER_IMAGE": "registry.example/not-this-one:0",
            "SHIPYARD_PROJECT_DIR": str(root),
            "SHIPYARD_TRACKING_URI": TRACKING,
        }.items():
            patch.setenv(name, value)
        patch.delenv("METAFLOW_PROFILE", raising=False)
        patch.chdir(root)
        reset_workspace()
        yield root
    reset_workspace()


@pytest.fixture(scope="module")
def compiled(team_project: Path) -> shipyard.ScheduledFlow:
    return shipyard.schedule(
        team_project / FLOW.name, cron="0 3 * * *", timezone="Europe/Berlin", image=IMAGE, experiment="nightly",
        only_json=True,
    )


def _env(template: dict) -> dict[str, str]:
    return {item["name"]: item.get("value") for item in template["container"].get("env", [])}


def test_the_template_carries_the_schedule_and_one_template_per_step(compiled, team_project: Path) -> None:
    assert not compiled.deployed and compiled.flow == "ScheduledFlow" and compiled.workflow == "scheduledflow"
    template = compiled.template
    assert template["kind"] == "WorkflowTemplate" and json.loads(compiled.json) == template
    annotations = template["metadata"]["annotations"]
    assert json.loads(annotations["metaflow/cron"]) == {"schedule": "0 3 * * *", "tz": "Europe/Berlin"}
    assert set(compiled.step_templates) == STEPS
    steps = [t for t in template["spec"]["templates"] if t.get("metadata", {}).get("annotations", {}).get(
        "metaflow/step_name")]
    assert len(steps) == len(STEPS)
    # the steps run the deploy copy, which Metaflow packaged beside the original and shipyard then removed
    command = " ".join(compiled.step_templates["start"]["container"]["command"])
    assert "_shipyard_scheduled_scheduled_flow_" in command and " step start " in command
    assert sorted(p.name for p in team_project.glob("*.py")) == [FLOW.name]
    assert (team_project / FLOW.name).read_text(encoding="utf-8") == FLOW.read_text(encoding="utf-8")


def test_every_step_runs_the_image_with_shipyards_tracking_environment(compiled) -> None:
    for name, template in compiled.step_templates.items():
        env = _env(template)
        assert template["container"]["image"] == IMAGE, name
        assert env["SHIPYARD_TRACKING_URI"] == TRACKING == env["MLFLOW_TRACKING_URI"], name
        assert env["MLFLOW_REGISTRY_URI"] == TRACKING and env["SHIPYARD_PROJECT_DIR"] == ".", name
        assert env["SHIPYARD_SOURCE_KIND"] == "file" and env["SHIPYARD_CELL_SOURCE"] == FLOW.name, name
        assert "SHIPYARD_WORKSPACE" not in env, name  # a path on this machine means nothing in a pod
        expected = "from-the-step" if name == "end" else "nightly"  # a step's own @environment wins
        assert env["SHIPYARD_EXPERIMENT"] == expected, name
    assert _env(compiled.step_templates["end"])["FLOW_OWN"] == "kept"
    assert compiled.env["SHIPYARD_EXPERIMENT"] == "nightly"


def test_resources_and_kubernetes_of_a_step_are_in_its_container(compiled) -> None:
    requests = {n: t["container"]["resources"]["requests"] for n, t in compiled.step_templates.items()}
    assert float(requests["train"]["cpu"]) == 2 and requests["train"]["memory"].startswith("6144")
    assert float(requests["report"]["cpu"]) == 3 and requests["report"]["memory"].startswith("2048")
    assert float(requests["start"]["cpu"]) == 1  # Metaflow's default, where the step asks for nothing


def test_the_code_package_went_to_the_s3_datastore(compiled, s3_store) -> None:  # noqa: F811
    listed = s3_store.client().list_objects_v2(Bucket=BUCKET, Prefix="metaflow/ScheduledFlow/")
    assert any("/data/" in item["Key"] for item in listed.get("Contents", []))


def test_the_cli_writes_the_template_of_a_dry_run(team_project: Path, tmp_path: Path, monkeypatch) -> None:
    for name, value in {"SHIPYARD_PROJECT_DIR": str(team_project), "SHIPYARD_TRACKING_URI": TRACKING}.items():
        monkeypatch.setenv(name, value)  # the autouse isolation cleared them for this test
    out = tmp_path / "workflow-template.json"
    result = CliRunner().invoke(
        shipyard.cli.cli,
        ["schedule", str(team_project / FLOW.name), "--cron", "@daily", "--dry-run", "--output", str(out), "--json"],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["cron"] == "@daily" and summary["deployed"] is False and summary["workflow"] == "scheduledflow"
    template = json.loads(out.read_text(encoding="utf-8"))
    assert json.loads(template["metadata"]["annotations"]["metaflow/cron"])["schedule"] == "@daily"
    images = {t["container"]["image"] for t in template["spec"]["templates"] if "container" in t}
    assert images == {"registry.example/not-this-one:0"}  # without --image: METAFLOW_KUBERNETES_CONTAINER_IMAGE
