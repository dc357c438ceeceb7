"""Which project a call works on, and that nothing is created outside one (the filesystem is the reader)."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import pytest

import shipyard
from shipyard._core.config import (
    OTHER_VARIABLES,
    REQUIRE_PREFIX,
    TEST_PREFIX,
    UnknownVariableWarning,
    discover_project_dir,
    find_project_dir,
    known_variables,
    unknown_variables,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def outside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory that no project holds, with SHIPYARD_PROJECT_DIR unset."""
    here = tmp_path / "scratch"
    here.mkdir()
    assert discover_project_dir(here) is None, f"a folder above {here} is a project; this test needs one that is not"
    monkeypatch.delenv("SHIPYARD_PROJECT_DIR", raising=False)
    monkeypatch.chdir(here)
    return here


def _tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


@pytest.mark.parametrize("marker", ["pyproject.toml", "shipyard.toml", ".shipyard"])
def test_each_marker_makes_the_nearest_project_from_a_subdirectory(outside: Path, marker: str) -> None:
    root = outside / "proj"
    deep = root / "notebooks" / "deep"
    deep.mkdir(parents=True)
    if marker == ".shipyard":
        (root / marker).mkdir()
    else:
        (root / marker).write_text("")
    assert discover_project_dir(deep) == root
    assert find_project_dir(deep) == root
    assert discover_project_dir(outside) is None


def test_a_file_named_dot_shipyard_is_no_project(outside: Path) -> None:
    (outside / ".shipyard").write_text("not a workspace")
    assert discover_project_dir(outside) is None


def test_implicit_use_outside_a_project_raises_and_creates_nothing(outside: Path) -> None:
    with pytest.raises(shipyard.NoProject) as info:
        shipyard.current_workspace()
    message = str(info.value)
    assert str(outside) in message and "shipyard init" in message and "--project" in message
    assert info.value.start == str(outside)
    assert isinstance(info.value, shipyard.ConfigError)
    assert _tree(outside) == []


def test_logging_outside_a_project_raises_and_creates_nothing(outside: Path) -> None:
    with pytest.raises(shipyard.NoProject):
        shipyard.runs()
    assert _tree(outside) == []


def test_explicit_init_outside_a_project_makes_the_working_directory_the_project(outside: Path) -> None:
    ws = shipyard.init()
    assert ws.project_dir == outside and ws.root == outside / ".shipyard" and ws.exists
    (outside / "sub").mkdir()
    assert discover_project_dir(outside / "sub") == outside
    # and implicit use now finds it
    from shipyard._core.workspace import reset_workspace

    reset_workspace()
    assert shipyard.current_workspace().root == outside / ".shipyard"


def test_locate_creates_nothing(outside: Path) -> None:
    ws = shipyard.Workspace.locate()
    assert ws.project_dir == outside and not ws.exists
    assert _tree(outside) == []


def test_named_project_that_does_not_exist(outside: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = outside / "nope"
    monkeypatch.setenv("SHIPYARD_PROJECT_DIR", str(missing))
    with pytest.raises(shipyard.NoProject, match="not a folder") as info:
        shipyard.current_workspace()
    assert f"shipyard init --project {missing}" in str(info.value)
    assert not missing.exists()
    assert shipyard.init().project_dir == missing and (missing / ".shipyard").is_dir()


def test_named_project_wins_over_the_search(outside: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (outside / "pyproject.toml").write_text("")
    other = outside / "other"
    other.mkdir()
    monkeypatch.setenv("SHIPYARD_PROJECT_DIR", str(other))
    assert find_project_dir() == other


def test_misspelled_variable_warns_with_the_closest_setting(outside: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPYARD_TRACKNG_URI", "http://127.0.0.1:1")
    with pytest.warns(UnknownVariableWarning, match="SHIPYARD_TRACKNG_URI .*did you mean SHIPYARD_TRACKING_URI"):
        ws = shipyard.init()
    assert ws.embedded  # ignored, as the warning says


def test_variable_close_to_nothing_warns_without_a_guess() -> None:
    found = unknown_variables({"SHIPYARD_ZZZZZZZZZZQQQ": "1", "PATH": "/bin"})
    assert found == {"SHIPYARD_ZZZZZZZZZZQQQ": None}


def test_lower_case_spelling_of_a_setting_is_known() -> None:
    # pydantic-settings reads environment names without regard to case
    assert unknown_variables({"shipyard_tracking_uri": "x"}) == {}


def test_variables_shipyard_uses_outside_settings_do_not_warn(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [*OTHER_VARIABLES, "SHIPYARD_REQUIRE_DOCKER", "SHIPYARD_REQUIRE_BROWSER",
                 "SHIPYARD_TEST_ANYTHING", "SHIPYARD_EXPERIMENT"]:
        monkeypatch.setenv(name, str(project) if name == "SHIPYARD_PROJECT_DIR" else "1")
    monkeypatch.setenv("SHIPYARD_CELL_SOURCE", str(project / "cell.py"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        shipyard.init()


def test_every_shipyard_variable_in_the_repository_is_known() -> None:
    """A new SHIPYARD_* name must be a setting or listed in OTHER_VARIABLES, or users get a false warning."""
    deliberate_typos = {"SHIPYARD_TRACKNG_URI", "SHIPYARD_ZZZZZZZZZZQQQ"}
    known = set(known_variables())
    seen: dict[str, str] = {}
    for folder in ("sdk", "tests", "scripts", "bench", "docs", "notebooks"):
        for path in (REPO / folder).rglob("*"):
            if not path.is_file() or path.suffix not in {".py", ".md", ".sh", ".ipynb", ".toml", ".tmpl", ".txt"}:
                continue
            for name in re.findall(r"SHIPYARD_[A-Z0-9_]*[A-Z0-9]", path.read_text(encoding="utf-8", errors="replace")):
                seen.setdefault(name, str(path.relative_to(REPO)))
    ours = (REQUIRE_PREFIX, TEST_PREFIX)
    unknown = {
        name: where for name, where in seen.items()
        if name not in known and name not in deliberate_typos and not (name + "_").startswith(ours)
    }
    assert not unknown, f"add these to shipyard._core.config.OTHER_VARIABLES or Settings: {unknown}"
    assert "SHIPYARD_REQUIRE_DOCKER" in seen and "SHIPYARD_PROJECT_DIR" in seen  # the scan did read the tree


def test_child_processes_get_only_known_variables(workspace) -> None:
    env = {k: v for k, v in workspace.child_env().items() if k.startswith("SHIPYARD_")}
    assert env and unknown_variables(env) == {}
    assert os.environ.get("SHIPYARD_PROJECT_DIR") == str(workspace.project_dir)
