"""The audit log's hash chain: a clean log verifies; any single edited, removed or moved line is found and named.

Runs on a real embedded workspace (sqlite MLflow store), so the models' MLflow mirror is the real one.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest
from shipyard._core import audit, lineage

from tests.conftest import outside_env

MODEL = "churn"
EVENTS = [
    ("model.register", {"version": "1", "run_id": "r1"}),
    ("gate.verdict", {"version": "1", "verdict": "pass"}),
    ("alias.move", {"version": "1", "alias": "champion", "reason": "first"}),
    ("model.register", {"version": "2", "run_id": "r2"}),
    ("gate.override", {"version": "2", "reason": "seasonal dip, agreed with risk"}),
    ("review.approved", {"version": "2", "comment": "parity ok"}),
    ("promotion.completed", {"version": "2", "image": "churn:2"}),
]


@pytest.fixture(scope="module")
def _chained(tmp_path_factory: pytest.TempPathFactory):
    """One workspace with the events above (its MLflow store holds the mirror), made once for the module."""
    import shipyard
    from mlflow.tracking import MlflowClient

    ws = shipyard.init(project_dir=tmp_path_factory.mktemp("audit") / "project")
    MlflowClient(tracking_uri=ws.tracking_uri, registry_uri=ws.registry_uri).create_registered_model(MODEL)
    for event, fields in EVENTS:
        audit.append(event, workspace=ws, model=MODEL, **fields)
    return ws, ws.audit_log.read_bytes()


@pytest.fixture
def logged(_chained):
    """The chained workspace with its log as written (each test edits it its own way)."""
    ws, original = _chained
    ws.audit_log.write_bytes(original)
    return ws


def _lines(ws) -> list[str]:
    return ws.audit_log.read_text().splitlines()


def _write(ws, lines: list[str]) -> None:
    ws.audit_log.write_text("".join(line + "\n" for line in lines))


def test_each_line_is_chained_to_the_one_before_and_mirrored(logged) -> None:
    from mlflow.tracking import MlflowClient

    mlflow_client = MlflowClient(tracking_uri=logged.tracking_uri, registry_uri=logged.registry_uri)
    records = [json.loads(line) for line in _lines(logged)]
    assert [r["seq"] for r in records] == list(range(1, len(EVENTS) + 1))
    assert records[0]["prev"] == audit.GENESIS
    for before, after in itertools.pairwise(records):
        assert after["prev"] == before["hash"]
    assert all(audit.record_hash(r) == r["hash"] for r in records)
    tags = mlflow_client.get_registered_model(MODEL).tags
    assert tags[lineage.AUDIT_SEQ] == str(len(EVENTS)) and tags[lineage.AUDIT_HASH] == records[-1]["hash"]

    result = audit.verify(workspace=logged)
    assert result.ok and result.lines == len(EVENTS) and not result.notes, result


@pytest.mark.parametrize("index", range(len(EVENTS)))
def test_an_edited_line_is_named(logged, index: int) -> None:
    lines = _lines(logged)
    record = json.loads(lines[index])
    record["who"] = "someone-else"
    lines[index] = json.dumps(record)
    _write(logged, lines)

    problems = audit.verify(workspace=logged).problems
    assert [(p.line, p.kind) for p in problems] == [(index + 1, "edited")], problems
    assert f"line {index + 1} " in problems[0].message and EVENTS[index][0] in problems[0].message


@pytest.mark.parametrize("index", range(len(EVENTS)))
def test_an_edited_line_whose_hash_was_recomputed_is_named_by_the_next_line_or_the_mirror(logged, index: int) -> None:
    lines = _lines(logged)
    record = json.loads(lines[index])
    record["reason"] = "a kinder reason"
    record["hash"] = audit.record_hash(record)
    lines[index] = json.dumps(record)
    _write(logged, lines)

    problems = audit.verify(workspace=logged).problems
    assert len(problems) == 1, problems
    assert problems[0].kind == "edited"
    if index < len(EVENTS) - 1:
        assert problems[0].line == index + 1 and f"line {index + 1} was changed" in problems[0].message
    else:  # the last line: nothing after it in the file, MLflow's mirror holds its hash
        assert "chain was rewritten" in problems[0].message and MODEL in problems[0].message


@pytest.mark.parametrize("index", range(len(EVENTS)))
def test_a_removed_line_is_named(logged, index: int) -> None:
    lines = _lines(logged)
    del lines[index]
    _write(logged, lines)

    problems = audit.verify(workspace=logged).problems
    assert [p.kind for p in problems] == ["removed"], problems
    assert f"seq {index + 1}" in problems[0].message


@pytest.mark.parametrize("index", range(len(EVENTS) - 1))
def test_a_moved_line_is_named(logged, index: int) -> None:
    lines = _lines(logged)
    lines[index], lines[index + 1] = lines[index + 1], lines[index]
    _write(logged, lines)

    problems = audit.verify(workspace=logged).problems
    assert problems and {p.kind for p in problems} == {"reordered"}, problems
    assert problems[0].line == index + 1 and f"seq {index + 1} belongs here" in problems[0].message


def test_a_line_that_is_no_json_is_named(logged) -> None:
    lines = _lines(logged)
    lines[2] = lines[2][:-5]
    _write(logged, lines)
    problems = audit.verify(workspace=logged).problems
    assert (3, "unreadable") in [(p.line, p.kind) for p in problems]


def test_lines_written_before_the_chain_are_covered_from_the_first_chained_line(workspace) -> None:
    legacy = [json.dumps({"ts": "2026-01-01T00:00:00Z", "who": "a", "event": "model.register", "model": "old"}),
              json.dumps({"ts": "2026-01-02T00:00:00Z", "who": "a", "event": "alias.move", "model": "old"})]
    _write(workspace, legacy)
    record = audit.append("model.retire", workspace=workspace, model="old", version="1", reason="superseded")
    assert record["seq"] == 3
    result = audit.verify(workspace=workspace)
    assert result.ok and result.unchained == 2, result

    lines = _lines(workspace)
    lines[1] = lines[1].replace('"a"', '"b"')  # the legacy line the chain pins
    _write(workspace, lines)
    assert [(p.line, p.kind) for p in audit.verify(workspace=workspace).problems] == [(2, "edited")]


def test_a_line_longer_than_the_tail_read_is_chained_whole(workspace) -> None:
    audit.append("gate.override", workspace=workspace, model="long", version="1", reason="x" * 300_000)
    audit.append("review.approved", workspace=workspace, model="long", version="1", comment="ok")
    result = audit.verify(workspace=workspace, mirror=False)
    assert result.ok and result.lines == 2, result.problems


def _append_many(project: str, worker: int, count: int) -> None:
    os.environ["SHIPYARD_PROJECT_DIR"] = project
    from shipyard._core import audit as log
    from shipyard._core.workspace import current_workspace

    ws = current_workspace()
    for i in range(count):
        log.append("gate.verdict", workspace=ws, model=f"m{worker}", version=str(i), verdict="pass")


def test_concurrent_writers_keep_one_unbroken_chain(workspace) -> None:
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_append_many, args=(str(workspace.project_dir), w, 25)) for w in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(120)
        assert process.exitcode == 0
    records = [json.loads(line) for line in _lines(workspace)]
    assert [r["seq"] for r in records] == list(range(1, 101))
    result = audit.verify(workspace=workspace, mirror=False)
    assert result.ok, result.problems


def _shipyard(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = outside_env()
    return subprocess.run([sys.executable, "-m", "shipyard.cli", "--project", str(project), *args],
                          check=False, capture_output=True, text=True, env=env, timeout=120)


def test_cli_verify_exits_1_and_names_the_line_and_show_prints_the_history_in_order(logged) -> None:
    clean = _shipyard(logged.project_dir, "audit", "verify")
    assert clean.returncode == 0, clean.stderr
    assert f"{len(EVENTS)} line(s)" in clean.stdout

    history = _shipyard(logged.project_dir, "audit", "show", MODEL)
    assert history.returncode == 0, history.stderr
    words = ["registered", "gated", "alias moved", "registered", "overridden", "approved", "promoted"]
    positions = [history.stdout.index(word, (history.stdout.index(words[i - 1]) + 1) if i else 0)
                 for i, word in enumerate(words)]
    assert positions == sorted(positions), history.stdout
    assert "seasonal dip" in history.stdout

    lines = _lines(logged)
    del lines[3]
    _write(logged, lines)
    broken = _shipyard(logged.project_dir, "audit", "verify")
    assert broken.returncode == 1
    assert "TAMPERED" in broken.stdout and "seq 4" in broken.stdout and "removed" in broken.stdout
