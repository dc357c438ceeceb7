"""Which project the `shipyard` command works on, as a user runs it: the installed script in a subprocess.

The filesystem is the independent reader: outside a project nothing may
appear, inside one the workspace appears at the project's root only.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from shipyard._core.config import discover_project_dir

from tests.conftest import outside_env

SHIPYARD = Path(sys.executable).with_name("shipyard")


def _shipyard(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = outside_env()
    return subprocess.run(
        [str(SHIPYARD), *args], cwd=cwd, capture_output=True, text=True, timeout=180,
        env={**base, "COLUMNS": "200", **env},
    )


def _tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


@pytest.fixture
def empty_dir(tmp_path: Path) -> Path:
    here = tmp_path / "empty"
    here.mkdir()
    assert discover_project_dir(here) is None, f"a folder above {here} is a project; this test needs one that is not"
    return here


def test_installed_script_exists() -> None:
    assert SHIPYARD.is_file(), f"{SHIPYARD} missing: install the package (pip install -e .)"


@pytest.mark.parametrize(
    "args",
    [
        ("runs",),
        ("review", "iris/1"),
        ("gates", "check", "iris/1"),
        ("package", "models:/iris/1", "--no-image"),
        ("promote", "iris/1"),
    ],
    ids=lambda a: a[0] if len(a) < 2 or a[0] != "gates" else "gates-check",
)
def test_outside_a_project_commands_stop_and_create_nothing(empty_dir: Path, args: tuple[str, ...]) -> None:
    out = _shipyard(empty_dir, *args)
    assert out.returncode != 0, out.stdout
    if "No such option" in out.stderr or "Usage:" in out.stderr and "Error:" in out.stderr:
        pytest.fail(f"the test's arguments are wrong for {args}: {out.stderr}")
    assert "No shipyard project here" in out.stderr, out.stderr
    assert "shipyard init" in out.stderr and "--project" in out.stderr
    assert "Traceback" not in out.stderr
    assert _tree(empty_dir) == []
    assert not (empty_dir.parent / ".shipyard").exists()


def test_from_a_subdirectory_the_project_root_is_found(tmp_path: Path) -> None:
    root = tmp_path / "churn"
    deep = root / "notebooks" / "drafts"
    deep.mkdir(parents=True)
    (root / "pyproject.toml").write_text('[project]\nname = "churn"\n')
    out = _shipyard(deep, "runs")
    assert out.returncode == 0, out.stderr
    assert "No tracked runs yet" in out.stdout
    assert (root / ".shipyard" / "mlflow.db").is_file()
    assert _tree(deep) == [] and not (root / "notebooks" / ".shipyard").exists()


def test_init_creates_the_workspace_once_and_says_where(empty_dir: Path) -> None:
    first = _shipyard(empty_dir, "init")
    assert first.returncode == 0, first.stderr
    workspace = empty_dir / ".shipyard"
    assert f"created    {workspace}" in first.stdout and f"project    {empty_dir}" in first.stdout
    assert workspace.is_dir() and (workspace / ".gitignore").is_file() and (workspace / "artifacts").is_dir()
    before = _tree(empty_dir)
    again = _shipyard(empty_dir, "init")
    assert again.returncode == 0, again.stderr
    assert f"workspace  {workspace}" in again.stdout and "created" not in again.stdout
    assert _tree(empty_dir) == before
    # now a project: other commands work from here and from below
    (empty_dir / "sub").mkdir()
    assert _shipyard(empty_dir / "sub", "runs").returncode == 0
    assert not (empty_dir / "sub" / ".shipyard").exists()


def test_project_option_and_variable_name_the_project(empty_dir: Path, tmp_path: Path) -> None:
    project = tmp_path / "elsewhere"
    made = _shipyard(empty_dir, "--project", str(project), "init")
    assert made.returncode == 0, made.stderr
    assert (project / ".shipyard").is_dir() and _tree(empty_dir) == []
    assert _shipyard(empty_dir, "--project", str(project), "runs").returncode == 0
    assert _shipyard(empty_dir, "runs", SHIPYARD_PROJECT_DIR=str(project)).returncode == 0
    missing = _shipyard(empty_dir, "--project", str(tmp_path / "missing"), "runs")
    assert missing.returncode == 2 and "is not a folder" in missing.stderr
    assert f"shipyard init --project {tmp_path / 'missing'}" in missing.stderr
    assert not (tmp_path / "missing").exists() and _tree(empty_dir) == []


def test_misspelled_variable_warns_with_the_closest_setting(tmp_path: Path) -> None:
    project = tmp_path / "p"
    project.mkdir()
    (project / "shipyard.toml").write_text("")
    out = _shipyard(project, "runs", SHIPYARD_TRACKNG_URI="http://127.0.0.1:9")
    assert out.returncode == 0, out.stderr
    assert (
        "warning: The environment variable SHIPYARD_TRACKNG_URI is not a shipyard setting and is ignored; "
        "did you mean SHIPYARD_TRACKING_URI?" in out.stderr
    ), out.stderr
    assert out.stderr.count("SHIPYARD_TRACKNG_URI") == 1  # once, not once per settings read
    # and the variables shipyard and its tests use themselves do not warn
    quiet = _shipyard(project, "runs", SHIPYARD_REQUIRE_DOCKER="1", SHIPYARD_REQUIRE_BROWSER="1",
                      SHIPYARD_CACHE_DIR=str(tmp_path / "cache"))
    assert quiet.returncode == 0 and "warning" not in quiet.stderr, quiet.stderr
