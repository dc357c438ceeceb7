"""The rule that turns a notebook cell into a flow file (``shipyard.flows._cell``), on cells as users write them."""

from __future__ import annotations

import ast
import textwrap
import types
from pathlib import Path

import pytest

import shipyard
from shipyard.flows._cell import flow_script, starts_a_flow, tracked_in_source


def _cell(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def _load(source: str, **names: object) -> types.ModuleType:
    """Execute a written flow file as a step process imports it (not as ``__main__``)."""
    module = types.ModuleType("written_flow")
    module.__dict__.update(names)
    exec(compile(source, "written_flow.py", "exec"), module.__dict__)
    return module


NOTEBOOK_CELL = _cell(
    '''
    """Training, as a notebook cell."""
    from __future__ import annotations

    import json
    from pathlib import Path

    import shipyard as sy

    LOG.open("a").write("cell ran\\n")
    BASE = 3
    SCALE = BASE * 2
    FEATURES = ["age"]
    FEATURES.append("income")
    UNUSED = ["x"]
    UNUSED.append("y")
    CONFIG = {}
    CONFIG["lr"] = 0.1
    data = json.loads(LOG.read_text() and "[1, 2]")
    for line in LOG.read_text().splitlines():
        LOG.open("a").write("loop ran\\n")
    with LOG.open() as fh:
        HEADER = fh.readline()
    print(data)
    data

    class FlowSpec:
        pass

    class TrainFlow(FlowSpec):
        scale = SCALE

        def start(self):
            return helper(FEATURES, CONFIG, HEADER)

    def helper(*values):
        return values

    result = sy.run(TrainFlow)
    if __name__ == "__main__":
        TrainFlow()
    '''
)


def test_the_flow_and_what_it_needs_are_kept_side_effects_are_not(tmp_path: Path) -> None:
    log = tmp_path / "side_effects.log"
    log.write_text("")
    script = flow_script(NOTEBOOK_CELL, "TrainFlow")
    module = _load(script.source, LOG=log)
    assert log.read_text() == "", "a statement the flow does not need ran again"
    assert module.TrainFlow.scale == 6
    assert module.TrainFlow().start() == (["age", "income"], {"lr": 0.1}, "")
    assert not hasattr(module, "data") and not hasattr(module, "result") and not hasattr(module, "UNUSED")
    assert script.dropped == (
        '"""Training, as a notebook cell."""',
        'LOG.open("a").write("cell ran\\n")',
        'UNUSED = ["x"]',
        'UNUSED.append("y")',
        'data = json.loads(LOG.read_text() and "[1, 2]")',
        "for line in LOG.read_text().splitlines():",
        "print(data)",
        "data",
        "result = sy.run(TrainFlow)",
        'if __name__ == "__main__":',
    )


def test_the_written_file_runs_the_flow_under_main_and_keeps_the_cells_line_numbers() -> None:
    script = flow_script(NOTEBOOK_CELL, "TrainFlow")
    assert script.source.endswith('\n\nif __name__ == "__main__":\n    TrainFlow()\n')
    cell_lines, written_lines = NOTEBOOK_CELL.splitlines(), script.source.splitlines()
    for node in ast.parse(NOTEBOOK_CELL).body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef):
            assert written_lines[node.lineno - 1] == cell_lines[node.lineno - 1], node.name
    assert script.source.count("TrainFlow()") == 1


def test_a_name_the_flow_needs_is_kept_even_when_a_call_computes_it() -> None:
    cell = _cell(
        """
        import shipyard
        from shipyard.gates import threshold

        GATES = [threshold("accuracy >= 0.9")]
        MODEL = "m" + "odel"

        class Flow:
            @shipyard.gate(*GATES, model_name=MODEL)
            def start(self):
                pass
        """
    )
    script = flow_script(cell, "Flow")
    assert script.dropped == ()
    assert "GATES = [threshold" in script.source and 'MODEL = "m" + "odel"' in script.source


def test_shipyard_run_and_get_ipython_are_never_kept_even_when_the_flow_names_them() -> None:
    cell = _cell(
        """
        from shipyard import run as go
        import shipyard.flows

        previous = go(Flow)
        other = shipyard.flows.run_async(Flow)
        files = get_ipython().getoutput("ls")

        class Flow:
            seen = (previous, other, files)
        """
    )
    script = flow_script(cell, "Flow")
    assert script.dropped == ("previous = go(Flow)", "other = shipyard.flows.run_async(Flow)",
                              'files = get_ipython().getoutput("ls")')


def test_statements_sharing_a_line_are_split_correctly() -> None:
    cell = _cell(
        """
        A = 1; print("a")
        print("b"); B = 2
        C = "é"; print("é", C)
        print(
            "spans lines",
        ); D = 4
        class Flow:
            values = (A, B, C, D)
        """
    )
    script = flow_script(cell, "Flow")
    module = _load(script.source)
    assert module.Flow.values == (1, 2, "é", 4)
    assert len(script.dropped) == 4
    assert script.source.splitlines()[6] == "class Flow:"  # the dropped lines were blanked, not removed


def test_a_block_that_binds_a_needed_name_is_kept_whole(tmp_path: Path) -> None:
    cell = _cell(
        """
        try:
            import not_installed_anywhere as accel
        except ImportError:
            accel = None
        if accel is None:
            MODE = "cpu"
        else:
            MODE = "gpu"

        class Flow:
            mode = MODE
        """
    )
    module = _load(flow_script(cell, "Flow").source)
    assert module.Flow.mode == "cpu"


def test_ipython_magics_become_calls_that_are_dropped() -> None:
    from IPython.core.inputtransformer2 import TransformerManager

    raw = _cell(
        """
        %matplotlib inline
        !echo hello
        X = 1
        class Flow:
            x = X
        """
    )
    script = flow_script(TransformerManager().transform_cell(raw), "Flow")
    assert len(script.dropped) == 2 and all("get_ipython()" in d for d in script.dropped)
    assert _load(script.source).Flow.x == 1


def test_the_newest_definition_of_the_flow_wins_and_a_missing_flow_is_a_flow_error() -> None:
    cell = "class Flow:\n    v = 1\nclass Flow:\n    v = 2\n"
    assert _load(flow_script(cell, "Flow").source).Flow.v == 2
    with pytest.raises(shipyard.FlowError, match="no top-level class Other") as info:
        flow_script(cell, "Other")
    assert "Define the flow class" in str(info.value)
    with pytest.raises(shipyard.FlowError, match="not valid Python"):
        flow_script("class Flow(:\n", "Flow")


TRACKED = """
from metaflow import FlowSpec, step
import shipyard

@shipyard.track
class A(FlowSpec):
    @step
    def start(self):
        self.next(self.end)
"""


@pytest.mark.parametrize(
    ("source", "tracked"),
    [
        (TRACKED, True),
        (TRACKED.replace("@shipyard.track\n", ""), False),
        (TRACKED.replace("@shipyard.track\n", "@shipyard.track(experiment='x')\n"), True),
        (TRACKED.replace("import shipyard", "from shipyard import track as t").replace("@shipyard.track", "@t"), True),
        # on a step
        (TRACKED.replace("@shipyard.track\n", "").replace("    @step", "    @shipyard.track\n    @step"), True),
        # Metaflow's own decorators and shipyard's gate do not track
        (TRACKED.replace("@shipyard.track\n", "@metaflow_project\n").replace(
            "import shipyard", "from metaflow import project as metaflow_project\nimport shipyard"), False),
        # a decorator or a base class from elsewhere may track: it cannot tell
        (TRACKED.replace("@shipyard.track\n", "@company.tracked\n"), None),
        (TRACKED.replace("@shipyard.track\n", "").replace("(FlowSpec)", "(CompanyFlow)"), None),
        ("print('not a flow')\n", None),
        ("class (:\n", None),
    ],
)
def test_whether_a_flow_file_is_tracked_is_read_from_its_text(source: str, tracked: bool | None) -> None:
    assert tracked_in_source(source).tracked is tracked


@pytest.mark.parametrize(
    ("ending", "starts"),
    [
        ('\nif __name__ == "__main__":\n    A()\n', True),
        ("\nif '__main__' == __name__:\n    A()\n", True),
        ("\nA()\n", True),
        ("", False),
        ('\nif __name__ == "__main__":\n    pass\n', False),
        # something else is called: it cannot tell (a flow starting itself through shipyard.run is told apart later)
        ('\nif __name__ == "__main__":\n    shipyard.run(__file__)\n', None),
    ],
)
def test_whether_a_flow_file_starts_its_flow_is_read_from_its_text(ending: str, starts: bool) -> None:
    assert starts_a_flow(TRACKED + ending) is starts


def test_running_a_flow_file_that_never_starts_its_flow_is_refused_at_once(workspace, tmp_path: Path) -> None:
    # Metaflow's runner would wait forever for a flow that never starts
    path = tmp_path / "no_main.py"
    path.write_text(TRACKED)
    with pytest.raises(shipyard.FlowError, match="never starts it") as raised:
        shipyard.run(path)
    assert 'if __name__ == "__main__":\n    A()' in raised.value.hint
