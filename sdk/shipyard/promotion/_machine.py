"""An ordered, persisted, resumable sequence of stages: the engine under ``promote()``.

Each stage returns a small frozen dataclass (its ``output`` type); it is
written to the workspace (atomically, fsynced) before the next stage starts.
Running the same promotion again skips every finished stage whose outputs are
still intact and resumes at the first one that is not. Only one process at a
time may run a given promotion: the lock is an OS file lock, so a holder that
crashes (even by SIGKILL) releases it, and its ``.holder`` note is removed by
the next process that takes any promotion lock.

Q: Why check that outputs are "intact" instead of trusting the state file?
A: The state says a stage finished; the world may disagree (an image was
   pruned, a bundle deleted). A stage whose output is gone runs again; one
   whose output is there is never repeated.

Q: Why does every stage after a re-run stage run again too?
A: Each stage builds on the ones before it: a rebuilt image has a new id, so
   the smoke verdict, the pushed digest and the bundle recorded for the old
   one no longer describe it. Reusing them would ship a record of something
   else.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .._core.errors import PromotionError, ShipyardError

Progress = Callable[["StageEvent"], None]


@dataclass(frozen=True)
class Stage:
    """One step of a promotion.

    Attributes:
        name: stable identifier, used in the persisted state.
        title: what the progress display shows.
        run: does the work; returns an instance of ``output``.
        output: the frozen dataclass the stage returns; its fields must be JSON-serialisable
            (a field that must be a tuple is rebuilt in the class's ``__post_init__``).
        intact: given the recorded output, says whether it still holds; default: yes.
    """

    name: str
    title: str
    run: Callable[[StageContext], Any]
    output: type
    intact: Callable[[StageContext, Any], bool] = field(default=lambda ctx, out: True)

    def load(self, recorded: Mapping[str, Any]) -> Any:
        return self.output(**recorded)


@dataclass(frozen=True)
class StageEvent:
    """A progress event: a stage started, finished, was reused, failed, or is waiting."""

    stage: str
    title: str
    index: int
    total: int
    state: str  # "started" | "done" | "reused" | "failed" | "waiting"
    seconds: float = 0.0
    message: str = ""


class AwaitingApproval(ShipyardError):
    """Raised by a stage that may not go on until an engineer approves."""


@dataclass
class StageContext:
    """What stages share: the promotion's key, its inputs (resolved once) and the outputs of earlier stages."""

    key: str
    inputs: Any
    outputs: dict[str, Any] = field(default_factory=dict)

    def output(self, stage: str) -> Any:
        """The output of an earlier stage of this pass (a frozen dataclass)."""
        try:
            return self.outputs[stage]
        except KeyError:
            raise PromotionError(f"The output of stage {stage!r} is missing from promotion {self.key}.") from None


@dataclass(frozen=True)
class StageRecord:
    name: str
    status: str  # "done" | "failed" | "pending" | "waiting"
    seconds: float
    reused: bool
    output: Any = None
    error: str | None = None


@dataclass(frozen=True)
class RunOutcome:
    """What one pass over the stages achieved."""

    key: str
    status: str  # "completed" | "awaiting_approval"
    stages: tuple[StageRecord, ...]
    outputs: dict[str, Any]  # stage name → its output
    state_file: Path


class StateFile:
    """The persisted state of one promotion (JSON, replaced atomically)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Any]:
        if not self.path.exists():
            return {"stages": {}}
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:  # a write is atomic, so this is outside damage
            raise PromotionError(
                f"The promotion state {self.path} is damaged: {exc}.",
                hint="Delete the file to start this promotion over; nothing outside it is changed.",
            ) from exc

    def save(self, state: Mapping[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            json.dump(state, fh, indent=2, sort_keys=True, default=str)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def recorded_outputs(state_file: Path, stages: Sequence[Stage]) -> dict[str, Any]:
    """The typed outputs of the stages a promotion's state file records as done (nothing is checked or run)."""
    recorded = StateFile(state_file).load()["stages"]
    return {
        stage.name: stage.load(recorded[stage.name].get("outputs", {}))
        for stage in stages
        if recorded.get(stage.name, {}).get("status") == "done"
    }


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def run_stages(
    key: str,
    stages: Sequence[Stage],
    ctx: StageContext,
    *,
    state_file: Path,
    lock_file: Path,
    lock_timeout: float = 600.0,
    progress: Progress | None = None,
) -> RunOutcome:
    """Run ``stages`` in order under an inter-process lock, resuming from persisted state.

    Raises:
        PromotionError: the lock could not be had in time, or a stage failed with a
            non-shipyard error (chained). A stage's own ``ShipyardError`` is re-raised as is.
    """
    from filelock import FileLock, Timeout

    lock_file.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_file))
    holder = lock_file.with_suffix(".holder")
    try:
        lock.acquire(timeout=lock_timeout)
    except Timeout:
        who = holder.read_text().strip() if holder.exists() else "another process"
        raise PromotionError(
            f"Promotion {key} is already running ({who}); waited {lock_timeout:.0f}s.",
            hint="Wait for it to finish, or pass a longer lock_timeout. A crashed holder releases the lock by itself.",
        ) from None
    try:
        remove_dead_holders(lock_file.parent)
        holder.write_text(f"pid {os.getpid()} since {_now()}\n")
        return _run_locked(key, stages, ctx, StateFile(state_file), progress)
    finally:
        holder.unlink(missing_ok=True)
        lock.release()


def remove_dead_holders(locks_dir: Path) -> list[Path]:
    """Delete the ``*.holder`` notes of processes that are gone (killed holders cannot delete their own)."""
    removed = []
    for note in locks_dir.glob("*.holder"):
        try:
            pid = int(note.read_text().split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if not _alive(pid):
            note.unlink(missing_ok=True)
            removed.append(note)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _run_locked(
    key: str, stages: Sequence[Stage], ctx: StageContext, state_file: StateFile, progress: Progress | None
) -> RunOutcome:
    state = state_file.load()
    state.setdefault("key", key)
    state.setdefault("created", _now())
    recorded: dict[str, Any] = state["stages"]
    records: list[StageRecord] = []
    emit = progress or (lambda event: None)
    total = len(stages)
    rerun = False  # once a stage runs, every stage after it runs too
    for index, stage in enumerate(stages):
        previous = recorded.get(stage.name)
        if not rerun and previous and previous.get("status") == "done":
            output = stage.load(previous.get("outputs", {}))
            ctx.outputs[stage.name] = output
            if stage.intact(ctx, output):
                records.append(StageRecord(stage.name, "done", previous.get("seconds", 0.0), True, output))
                emit(StageEvent(stage.name, stage.title, index, total, "reused"))
                continue
        rerun = True
        emit(StageEvent(stage.name, stage.title, index, total, "started"))
        started = time.monotonic()
        try:
            output = stage.run(ctx)
            if not isinstance(output, stage.output):
                raise TypeError(f"stage {stage.name!r} returned {type(output).__name__}, not {stage.output.__name__}")
        except AwaitingApproval as waiting:
            recorded[stage.name] = {"status": "waiting", "since": _now(), "message": waiting.message}
            state["status"] = "awaiting_approval"
            state_file.save(state)
            emit(StageEvent(stage.name, stage.title, index, total, "waiting", message=waiting.message))
            records.append(StageRecord(stage.name, "waiting", 0.0, False, None, waiting.message))
            records += [StageRecord(s.name, "pending", 0.0, False) for s in stages[index + 1 :]]
            return RunOutcome(key, "awaiting_approval", tuple(records), dict(ctx.outputs), state_file.path)
        except BaseException as exc:
            seconds = time.monotonic() - started
            message = str(exc) or type(exc).__name__
            recorded[stage.name] = {"status": "failed", "seconds": seconds, "error": message, "at": _now()}
            state["status"] = "failed"
            state_file.save(state)
            emit(StageEvent(stage.name, stage.title, index, total, "failed", seconds, message))
            if isinstance(exc, ShipyardError) or not isinstance(exc, Exception):
                raise
            raise PromotionError(
                f"Stage '{stage.name}' of promotion {key} failed: {type(exc).__name__}: {exc}",
                hint="Fix the cause and promote again; finished stages are not repeated.",
            ) from exc
        seconds = time.monotonic() - started
        ctx.outputs[stage.name] = output
        recorded[stage.name] = {"status": "done", "seconds": seconds, "outputs": dataclasses.asdict(output), "at": _now()}
        state["status"] = "running"
        state_file.save(state)
        records.append(StageRecord(stage.name, "done", seconds, False, output))
        emit(StageEvent(stage.name, stage.title, index, total, "done", seconds))
    state["status"] = "completed"
    state["completed"] = _now()
    state_file.save(state)
    return RunOutcome(key, "completed", tuple(records), dict(ctx.outputs), state_file.path)
