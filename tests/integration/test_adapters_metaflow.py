"""The Metaflow adapter (``shipyard.flows._metaflow``) against the installed Metaflow and a real local run.

Each reach into Metaflow's private API is exercised for real, so a Metaflow
release that moves one fails here, and the version test says whether the
installed Metaflow is one the adapter was written for.
"""

from __future__ import annotations

import importlib.util
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import shipyard
from shipyard._core import lineage
from shipyard.flows import _metaflow

REPO = Path(__file__).resolve().parents[2]

FLOW_SOURCE = '''"""A two-step tracked flow with parameters, for the adapter tests."""

from metaflow import FlowSpec, Parameter, step

import shipyard


@shipyard.track
class AdapterFlow(FlowSpec):
    alpha = Parameter("alpha", default=0.5, type=float)
    label = Parameter("label", default="x")

    @step
    def start(self):
        self.next(self.end)

    @step
    def end(self):
        self.answer = 42


if __name__ == "__main__":
    AdapterFlow()
'''


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory):
    """One run of AdapterFlow in a fresh workspace, and the flow file it ran."""
    from shipyard._core.workspace import reset_workspace

    project = tmp_path_factory.mktemp("adapter-flow")
    flow_file = project / "adapter_flow.py"
    flow_file.write_text(FLOW_SOURCE, encoding="utf-8")
    mp = pytest.MonkeyPatch()
    mp.setenv("SHIPYARD_PROJECT_DIR", str(project))
    reset_workspace()
    ws = shipyard.init(project_dir=project)
    result = shipyard.run(flow_file, alpha=0.25)
    yield ws, result, flow_file
    mp.undo()


def test_the_installed_metaflow_is_one_the_adapter_was_written_for() -> None:
    declared = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    supported = Requirement(_metaflow.SUPPORTED)
    assert any(
        Requirement(d).name == "metaflow" and Requirement(d).specifier == supported.specifier for d in declared
    ), f"pyproject.toml and the adapter disagree on the Metaflow versions ({_metaflow.SUPPORTED})"
    installed = metadata.version("metaflow")
    assert supported.specifier.contains(installed), (
        f"metaflow {installed} is installed; shipyard.flows._metaflow was written for {_metaflow.SUPPORTED}: "
        "check each reach in it against this release, then widen SUPPORTED and pyproject.toml together"
    )


def test_a_run_is_read_and_tagged_whatever_the_callers_namespace(finished) -> None:
    import metaflow
    from metaflow.exception import MetaflowNamespaceMismatch

    _, result, _ = finished
    previous = metaflow.get_namespace()
    metaflow.namespace("user:somebody-else")
    try:
        with pytest.raises(MetaflowNamespaceMismatch):
            metaflow.Run(result.pathspec)  # what the public client does: the reason for the adapter
        run = _metaflow.run_in_any_namespace(result.pathspec)
        assert f"{lineage.MLFLOW_RUN_TAG}:{result.mlflow_run_id}" in run.tags  # written by the start step
        assert run["end"].task["answer"].data == 42
        assert result.artifacts["answer"] == 42
    finally:
        metaflow.namespace(previous)


def test_a_flows_parameters_are_listed_from_its_class_and_recorded_by_its_steps(finished) -> None:
    from metaflow import Parameter

    _, result, flow_file = finished
    spec = importlib.util.spec_from_file_location("adapter_flow", flow_file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    parameters = dict(_metaflow.flow_parameters(module.AdapterFlow))
    assert sorted(parameters) == ["alpha", "label"]
    assert all(isinstance(p, Parameter) for p in parameters.values())
    assert result.params == {"alpha": "0.25", "label": "x"}  # the start step listed them the same way


def test_the_step_under_a_bare_user_step_decorator_is_found_with_its_gates() -> None:
    from metaflow import FlowSpec, step

    from shipyard.flows import ShipyardStep
    from shipyard.gates import threshold
    from shipyard.gates._decorator import find_step_gates

    class BareFlow(FlowSpec):
        @ShipyardStep
        @shipyard.gate(threshold("accuracy >= 0.9"))
        @step
        def start(self):
            self.next(self.end)

        @step
        def end(self):
            pass

    stored = vars(BareFlow)["start"]  # the decorator object, as the class holds it
    assert isinstance(stored, ShipyardStep)
    function = _metaflow.decorated_step(stored)
    assert callable(function) and getattr(function, "is_step", False)
    assert _metaflow.decorated_step(function) is None
    found = find_step_gates(stored)
    assert found is not None and [g.gate_name for g in found.gates] == ["threshold.accuracy"]


def test_the_user_decorators_of_a_flow_class_are_listed_before_it_runs(finished) -> None:
    from metaflow import FlowSpec, step

    from shipyard.flows import ShipyardFlow, ShipyardStep

    _, _, flow_file = finished
    spec = importlib.util.spec_from_file_location("adapter_flow_again", flow_file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tracked = module.AdapterFlow  # the class the real run above ran

    class Inherited(tracked):
        pass

    class StepTracked(FlowSpec):
        @shipyard.track(experiment="x")
        @step
        def start(self):
            self.next(self.end)

        @ShipyardStep
        @step
        def end(self):
            pass

    class Plain(FlowSpec):
        @step
        def start(self):
            self.next(self.end)

        @step
        def end(self):
            pass

    assert [type(d) for d in _metaflow.user_decorators(tracked)] == [ShipyardFlow]
    assert [type(d) for d in _metaflow.user_decorators(Inherited)] == [ShipyardFlow]
    assert {type(d) for d in _metaflow.user_decorators(StepTracked)} == {ShipyardStep}
    assert _metaflow.user_decorators(Plain) == []


def test_runner_class_leaves_typing_as_it_was_so_torch_still_imports() -> None:
    """After the Runner and its command-line API are loaded, a library built on typing_extensions still imports."""
    import subprocess
    import sys

    script = (
        "import typing, typing_extensions\n"
        "before = typing._collect_parameters\n"
        "from shipyard.flows._metaflow import runner_class\n"
        "runner_class()\n"
        "import metaflow._vendor.typing_extensions\n"  # already loaded: the guard ran around its first import
        "assert typing._collect_parameters is before, 'typing._collect_parameters was replaced'\n"
        "import torch\n"
        "print('ok', torch.nn.Linear(2, 1)(torch.ones(1, 2)).shape)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("ok torch.Size([1, 1])")


def test_runner_class_loads_the_commands_a_run_uses_so_concurrent_runs_do_not_race() -> None:
    """Runs started at once from threads find Metaflow's lazily loaded commands already whole."""
    import subprocess
    import sys

    script = (
        "import sys, threading\n"
        "from shipyard.flows._metaflow import runner_class\n"
        "threads = [threading.Thread(target=runner_class) for _ in range(4)]\n"
        "[t.start() for t in threads]; [t.join() for t in threads]\n"
        "from metaflow.cli import cli\n"
        "assert {'run', 'resume', 'step'} <= set(cli._lazy_loaded), sorted(cli._lazy_loaded)\n"
        "print('ok', hasattr(sys.modules['metaflow.cli_components.run_cmds'], 'run'))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok True"
