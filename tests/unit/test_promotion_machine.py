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
from dataclasses import dataclass
from pathlib import Path

import pytest

import shipyard
from shipyard.promotion._machine import AwaitingApproval, Stage, StageContext, run_stages

NAMES = ("gates", "register", "bento", "image", "smoke", "bundle", "push", "aliases")


@dataclass(frozen=True)
class Written:
    file: str


@dataclass(frozen=True)
class Nothing:
    pass


def _stages(root: Path, fail_at: str | None = None) -> list[Stage]:
    def make(name: str) -> Stage:
        def run(ctx: StageContext):
            with (root / "runs.log").open("a") as fh:
                fh.write(name + "\n")
            if name == fail_at:
                raise RuntimeError(f"{name} broke")
            (root / f"{name}.out").write_text(name)
            return Written(str(root / f"{name}.out"))

        return Stage(name, name.title(), run, Written, lambda ctx, out: Path(out.file).exists())

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


def test_a_stage_whose_output_vanished_runs_again_and_so_does_every_stage_after_it(tmp_path: Path) -> None:
    _run(tmp_path)
    (tmp_path / "image.out").unlink()
    outcome = _run(tmp_path)
    after = list(NAMES[NAMES.index("image") :])
    assert [r.name for r in outcome.stages if not r.reused] == after
    assert [r.name for r in outcome.stages if r.reused] == list(NAMES[: NAMES.index("image")])
    assert _runs(tmp_path) == [*NAMES, *after]


def test_outputs_come_back_typed_from_the_state_file(tmp_path: Path) -> None:
    _run(tmp_path)
    again = _run(tmp_path)
    assert all(isinstance(r.output, Written) for r in again.stages)
    assert again.outputs["smoke"] == Written(str(tmp_path / "smoke.out"))


def test_a_stage_returning_the_wrong_type_fails_clearly(tmp_path: Path) -> None:
    stage = Stage("bento", "Bento", lambda ctx: {"path": "x"}, Written)
    with pytest.raises(shipyard.PromotionError, match="returned dict, not Written"):
        run_stages("k", [stage], StageContext("k", None), state_file=tmp_path / "s.json", lock_file=tmp_path / "l.lock")


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
        run_stages("k", [Stage("gates", "Gates", refuse, Nothing)], StageContext("k", {}),
                   state_file=tmp_path / "s.json", lock_file=tmp_path / "l.lock")


def test_awaiting_approval_stops_without_error_and_resumes_later(tmp_path: Path) -> None:
    approved = {"ok": False}

    def gate(ctx):
        if not approved["ok"]:
            raise AwaitingApproval("waiting for an engineer to approve iris/1")
        return Nothing()

    stages = [Stage("build", "Build", lambda ctx: Nothing(), Nothing), Stage("approval", "Approval", gate, Nothing),
              Stage("swap", "Swap", lambda ctx: Nothing(), Nothing)]
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
        return Nothing()

    args = dict(state_file=tmp_path / "s.json", lock_file=tmp_path / "l.lock")
    holder = threading.Thread(target=run_stages, args=("k", [Stage("slow", "Slow", slow, Nothing)], StageContext("k", {})), kwargs=args)
    holder.start()
    entered.wait(10)
    try:
        with pytest.raises(shipyard.PromotionError, match=r"already running \(pid \d+"):
            run_stages("k", [Stage("slow", "Slow", slow, Nothing)], StageContext("k", {}), lock_timeout=0.3, **args)
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
    assert (tmp_path / "promote.holder").exists()  # a killed holder cannot remove its note
    outcome = _run(tmp_path, lock_timeout=5)  # the dead holder's lock is free
    assert outcome.status == "completed"
    assert _runs(tmp_path) == list(NAMES)  # every stage exactly once
    assert not list(tmp_path.glob("*.holder"))


def test_a_dead_holders_note_is_removed_by_the_next_promotion_of_any_model(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / "promote-other.holder").write_text(f"pid {dead.stdout.strip()} since then\n")
    (tmp_path / "promote-alive.holder").write_text(f"pid {os.getpid()} since now\n")
    _run(tmp_path)
    assert sorted(p.name for p in tmp_path.glob("*.holder")) == ["promote-alive.holder"]


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
