"""The command worker's rules: which commands it takes, what makes a worker stale, which folder it trusts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shipyard.cli import _worker


@pytest.mark.parametrize(("argv", "command"), [
    (["review", "m/2"], "review"),
    (["--project", "/p", "runs", "-n", "3"], "runs"),
    (["--project=/p", "approve", "m/2"], "approve"),
    (["--help"], None),
    (["--version"], None),
    ([], None),
])
def test_command_of(argv, command):
    assert _worker.command_of(argv) == command


def test_only_fast_commands_go_to_a_worker_and_the_switch_turns_it_off():
    assert _worker.wanted(["review", "m/2"], {})
    assert not _worker.wanted(["promote", "m/2"], {})  # long: keeps its own process
    assert not _worker.wanted(["review", "m/2"], {"SHIPYARD_CLI_WORKER": "0"})
    assert not _worker.wanted(["review", "m/2"], {"SHIPYARD_CLI_WORKER": "off"})
    assert _worker.wanted(["review", "m/2"], {"SHIPYARD_CLI_WORKER": "1"})


def test_the_environment_hash_follows_import_time_variables_only():
    base = {"PATH": "/bin", "MLFLOW_TRACKING_URI": "sqlite:///a.db"}
    same = _worker.environment_hash(base)
    assert _worker.environment_hash({**base, "MLFLOW_TRACKING_URI": "http://x"}) == same  # read per call
    assert _worker.environment_hash({**base, "SHIPYARD_PROJECT_DIR": "/elsewhere"}) == same
    assert _worker.environment_hash({**base, "PATH": "/usr/bin"}) == same
    assert _worker.environment_hash({**base, "PYTHONWARNINGS": "error"}) != same  # read at import
    assert _worker.environment_hash({**base, "MLFLOW_LOGGING_LEVEL": "DEBUG"}) != same


def test_the_code_hash_changes_with_any_source_file_and_the_path(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "a.py").write_text("x = 1\n")
    (package / "sub" / "b.py").write_text("y = 2\n")
    (package / "__pycache__").mkdir()
    path = [str(tmp_path)]
    first = _worker.code_hash(package, path)
    (package / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"")  # compiled files do not count
    assert _worker.code_hash(package, path) == first
    os.utime(package / "sub" / "b.py", ns=(1, 1))
    assert _worker.code_hash(package, path) != first
    assert _worker.code_hash(package, [*path, "/nowhere"]) != _worker.code_hash(package, path)


def test_a_folder_anyone_else_may_write_to_is_refused(capsys):
    import shutil
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="sy-", dir="/tmp"))  # short: the folder holds sockets
    try:
        private = root / "private"
        assert _worker.private_folder({"SHIPYARD_CLI_WORKER_DIR": str(private)}) == private
        assert private.stat().st_mode & 0o777 == 0o700
        shared = root / "shared"
        shared.mkdir()
        shared.chmod(0o777)
        assert _worker.private_folder({"SHIPYARD_CLI_WORKER_DIR": str(shared)}) is None
        assert "only you can use" in capsys.readouterr().err
        too_long = root / ("x" * 80)
        assert _worker.private_folder({"SHIPYARD_CLI_WORKER_DIR": str(too_long)}) is None
        assert "too long" in capsys.readouterr().err
    finally:
        shutil.rmtree(root)
