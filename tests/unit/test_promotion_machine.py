"""The promotion engine: ordered, persisted, resumable, locked; killed at every boundary it resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import shipyard
from shipyard.promotion._machine import AwaitingApproval, Stage, StageContext, run_stages

NAMES = ("gates", "register", "bento", "image", "smoke", "bundle", "push", "aliases")


def _stages(root: Path, fail_at: str | None = None) -> list[Stage]:
    def make(name: str) -> Stage:
        def run(ctx: StageContext):
            with (root / "runs.log").open("a") as fh:
                fh.write(name + "\n")
            if name == fail_at:
                raise RuntimeError(f"{name} broke")
            (root / f"{name}.out").write_text(name)
            return {"file": str(root / f"{name}.out")}

        return Stage(name, name.title(), run, lambda ctx, out: Path(out["file"]).exists())

    return [make(n) for n in NAMES]


def _run(root: Path, **kwargs):
    return run_stages(
        "iris/1", _stages(root, kwargs.pop("fail_at", None)), StageContext("iris/1", {}),
        state_file=root / "state.json", lock_file=root / "promote.lock", **kwargs,
    )


def _runs(root: Path) -> list[str]:
    return (root / "runs.log").read_text().split()


def test_stages_run_in_order_and_a_second_call_repeats_nothing(tmp_path: Path) -> None:
    events = []
    first = _run(tmp_path, progress=events.append)
    assert first.status == "completed"
    assert [r.name for r in first.stages] == list(NAMES)
    assert [e.state for e in events] == ["started", "done"] * len(NAMES)
    second = _run(tmp_path)
    assert all(r.reused for r in second.stages)
    assert _runs(tmp_path) == list(NAMES)
    assert json.loads((tmp_path / "state.json").read_text())["status"] == "completed"


def test_a_stage_whose_output_vanished_runs_again(tmp_path: Path) -> None:
    _run(tmp_path)
    (tmp_path / "image.out").unlink()
    outcome = _run(tmp_path)
    assert [r.name for r in outcome.stages if not r.reused] == ["image"]
    assert _runs(tmp_path).count("image") == 2


def test_a_failure_stops_and_the_next_call_resumes_at_the_failed_stage(tmp_path: Path) -> None:
    with pytest.raises(shipyard.PromotionError, match="Stage 'smoke' of promotion iris/1 failed: RuntimeError: smoke broke"):
        _run(tmp_path, fail_at="smoke")
    assert not (tmp_path / "bundle.out").exists()
    _run(tmp_path)
    assert _runs(tmp_path) == [*NAMES[:5], *NAMES[4:]]  # smoke twice, nothing else repeated


def test_a_shipyard_error_from_a_stage_keeps_its_type(tmp_path: Path) -> None:
    def refuse(ctx):
        raise shipyard.GateFailed("accuracy 0.7 < 0.9")

    with pytest.raises(shipyard.GateFailed, match="accuracy"):
        run_stages("k", [Stage("gates", "Gates", refuse)], StageContext("k", {}),
                   state_file=tmp_path / "s.json", lock_file=tmp_path / "l.lock")


def test_awaiting_approval_stops_without_error_and_resumes_later(tmp_path: Path) -> None:
    approved = {"ok": False}

    def gate(ctx):
        if not approved["ok"]:
            raise AwaitingApproval("waiting for an engineer to approve iris/1")
        return {"approved": True}

    stages = [Stage("build", "Build", lambda ctx: {"n": 1}), Stage("approval", "Approval", gate),
              Stage("swap", "Swap", lambda ctx: {"swapped": True})]
    args = dict(state_file=tmp_path / "s.json", lock_file=tmp_path / "l.lock")
    waiting = run_stages("k", stages, StageContext("k", {}), **args)
    assert waiting.status == "awaiting_approval"
    assert [r.status for r in waiting.stages] == ["done", "waiting", "pending"]
    approved["ok"] = True
    done = run_stages("k", stages, StageContext("k", {}), **args)
    assert done.status == "completed" and done.stages[0].reused and not done.stages[2].reused


def test_a_second_promotion_waits_for_the_lock_then_fails_clearly(tmp_path: Path) -> None:
    release = threading.Event()
    entered = threading.Event()

    def slow(ctx):
        entered.set()
        release.wait(10)
        return {}

    args = dict(state_file=tmp_path / "s.json", lock_file=tmp_path / "l.lock")
    holder = threading.Thread(target=run_stages, args=("k", [Stage("slow", "Slow", slow)], StageContext("k", {})), kwargs=args)
    holder.start()
    entered.wait(10)
    try:
        with pytest.raises(shipyard.PromotionError, match=r"already running \(pid \d+"):
            run_stages("k", [Stage("slow", "Slow", slow)], StageContext("k", {}), lock_timeout=0.3, **args)
    finally:
        release.set()
        holder.join()


CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from unit.test_promotion_machine import _run
    root = Path(sys.argv[1]); kill_after = sys.argv[2]

    def progress(event):
        if event.stage == kill_after and event.state == "done":
            os.kill(os.getpid(), signal.SIGKILL)

    _run(root, progress=progress)
    """
)


@pytest.mark.parametrize("kill_after", NAMES[:-1])
def test_sigkill_at_each_stage_boundary_then_resume_repeats_nothing(tmp_path: Path, kill_after: str) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(tests=str(Path(__file__).resolve().parents[1])))
    killed = subprocess.run([sys.executable, str(script), str(tmp_path), kill_after], capture_output=True, timeout=60)
    assert killed.returncode == -signal.SIGKILL
    upto = NAMES.index(kill_after) + 1
    assert _runs(tmp_path) == list(NAMES[:upto])
    assert not (tmp_path / f"{NAMES[upto]}.out").exists()
    outcome = _run(tmp_path, lock_timeout=5)  # the dead holder's lock is free
    assert outcome.status == "completed"
    assert _runs(tmp_path) == list(NAMES)  # every stage exactly once


def test_crashed_holder_does_not_block_the_next_promotion(tmp_path: Path) -> None:
    script = tmp_path / "hold.py"
    script.write_text(
        "import sys, time\nfrom filelock import FileLock\n"
        f"lock = FileLock({str(tmp_path / 'promote.lock')!r})\nlock.acquire()\nprint('held', flush=True)\ntime.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    with pytest.raises(shipyard.PromotionError, match="already running"):
        _run(tmp_path, lock_timeout=0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    started = time.monotonic()
    assert _run(tmp_path, lock_timeout=5).status == "completed"
    assert time.monotonic() - started < 5
