"""An ordered, persisted, resumable sequence of stages: the engine under ``promote()``.

Each finished stage's outputs are written to the workspace (atomically, fsynced)
before the next stage starts. Running the same promotion again skips every
finished stage whose outputs are still intact and resumes at the first one
that is not. Only one process at a time may run a given promotion: the lock is
an OS file lock, so a holder that crashes (even by SIGKILL) releases it.

Q: Why check that outputs are "intact" instead of trusting the state file?
A: The state says a stage finished; the world may disagree (an image was
   pruned, a bundle deleted). A stage whose output is gone runs again; one
   whose output is there is never repeated.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .._core.errors import PromotionError, ShipyardError

Outputs = Mapping[str, Any]
Progress = Callable[["StageEvent"], None]


@dataclass(frozen=True)
class Stage:
    """One step of a promotion.

    Attributes:
        name: stable identifier, used in the persisted state.
        title: what the progress display shows.
        run: does the work; returns JSON-serialisable outputs for later stages.
        intact: given the recorded outputs, says whether they still hold; default: yes.
    """

    name: str
    title: str
    run: Callable[[StageContext], Outputs]
    intact: Callable[[StageContext, Outputs], bool] = field(default=lambda ctx, out: True)


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
    """What stages share: the promotion's key, the outputs of earlier stages, and free-form inputs."""

    key: str
    inputs: dict[str, Any]
    outputs: dict[str, Any] = field(default_factory=dict)

    def output(self, stage: str, name: str) -> Any:
        try:
            return self.outputs[stage][name]
        except KeyError:
            raise PromotionError(f"Stage output {stage}.{name} is missing from promotion {self.key}.") from None


@dataclass(frozen=True)
class StageRecord:
    name: str
    status: str  # "done" | "failed" | "pending" | "waiting"
    seconds: float
    reused: bool
    outputs: dict[str, Any]
    error: str | None = None


@dataclass(frozen=True)
class RunOutcome:
    """What one pass over the stages achieved."""

    key: str
    status: str  # "completed" | "awaiting_approval"
    stages: tuple[StageRecord, ...]
    outputs: dict[str, Any]
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
        holder.write_text(f"pid {os.getpid()} since {_now()}\n")
        return _run_locked(key, stages, ctx, StateFile(state_file), progress)
    finally:
        holder.unlink(missing_ok=True)
        lock.release()


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
    for index, stage in enumerate(stages):
        previous = recorded.get(stage.name)
        if previous and previous.get("status") == "done":
            ctx.outputs[stage.name] = previous.get("outputs", {})
            if stage.intact(ctx, ctx.outputs[stage.name]):
                records.append(StageRecord(stage.name, "done", previous.get("seconds", 0.0), True, ctx.outputs[stage.name]))
                emit(StageEvent(stage.name, stage.title, index, total, "reused"))
                continue
        emit(StageEvent(stage.name, stage.title, index, total, "started"))
        started = time.monotonic()
        try:
            outputs = dict(stage.run(ctx))
        except AwaitingApproval as waiting:
            recorded[stage.name] = {"status": "waiting", "since": _now(), "message": waiting.message}
            state["status"] = "awaiting_approval"
            state_file.save(state)
            emit(StageEvent(stage.name, stage.title, index, total, "waiting", message=waiting.message))
            records.append(StageRecord(stage.name, "waiting", 0.0, False, {}, waiting.message))
            records += [StageRecord(s.name, "pending", 0.0, False, {}) for s in stages[index + 1 :]]
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
        ctx.outputs[stage.name] = outputs
        recorded[stage.name] = {"status": "done", "seconds": seconds, "outputs": outputs, "at": _now()}
        state["status"] = "running"
        state_file.save(state)
        records.append(StageRecord(stage.name, "done", seconds, False, outputs))
        emit(StageEvent(stage.name, stage.title, index, total, "done", seconds))
    state["status"] = "completed"
    state["completed"] = _now()
    state_file.save(state)
    return RunOutcome(key, "completed", tuple(records), dict(ctx.outputs), state_file.path)
