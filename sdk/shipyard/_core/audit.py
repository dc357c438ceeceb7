"""The append-only, tamper-evident audit log of the workspace (JSON lines, one hash chain).

Every state change that matters (a gate verdict, an override, an alias move,
an approval, a rollback) is appended here *before* the call that made it
returns. Lines are written whole under an inter-process lock and fsynced, so
concurrent writers never interleave and a crash never leaves half a line.

Each line carries its place and the chain:

* ``seq``: 1 for the first line, one more for each line after it;
* ``prev``: the ``hash`` of the line before it (of a line written before the
  chain existed: the SHA-256 of its bytes; the first line: 64 zeros);
* ``hash``: the SHA-256 of the line's own canonical JSON without ``hash``.

So :func:`verify` finds an edited line (its hash no longer matches), a removed
one (a gap in ``seq``) and a moved one (``seq`` out of order), and names it.
A chain can be rewritten whole by someone who edits the file, and a removed
last line leaves no gap: that is what the mirror is for. After each line about
a registered model, the model's MLflow tags ``shipyard.audit.seq`` and
``shipyard.audit.hash`` are set to that line's, in another store than this
file; :func:`verify` holds the log against them.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import lineage
from .workspace import Workspace, current_workspace

GENESIS = "0" * 64
_CHAIN_FIELDS = ("seq", "prev", "hash")
_TAIL_BYTES = 1 << 16  # more than most lines: records are small JSON objects


class AuditMirrorWarning(UserWarning):
    """An audit line was written but could not be mirrored to the model's MLflow tags."""


def record_hash(record: dict[str, Any]) -> str:
    """SHA-256 of ``record``'s canonical JSON, without its own ``hash``."""
    body = {k: v for k, v in record.items() if k != "hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _link(line: bytes) -> str:
    """What the next line's ``prev`` names: the line's ``hash``, or the SHA-256 of an unchained line's bytes."""
    try:
        found = json.loads(line).get("hash")
    except (ValueError, AttributeError):
        found = None
    return found if isinstance(found, str) else hashlib.sha256(line.strip()).hexdigest()


def _last_line(path: Path) -> tuple[int, bytes | None]:
    """(number of lines, last non-empty line) of the log, reading only its tail (plus a line count)."""
    if not path.exists():
        return 0, None
    with path.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        chunk = _TAIL_BYTES
        while True:  # widen the tail until it holds the whole last line (a long reason makes a long line)
            start = max(0, size - chunk)
            fh.seek(start)
            lines = [line for line in fh.read().splitlines() if line.strip()]
            if start == 0 or len(lines) > 1:
                break
            chunk *= 4
    if not lines:
        return 0, None
    last = lines[-1]
    try:
        seq = json.loads(last).get("seq")
    except (ValueError, AttributeError):
        seq = None
    if isinstance(seq, int):
        return seq, last
    # a log written before the chain: its lines are counted once, when the first chained line is written
    with path.open("rb") as fh:
        return sum(1 for line in fh if line.strip()), last


def append(event: str, *, workspace: Workspace | None = None, **fields: Any) -> dict[str, Any]:
    """Append one event to the audit log, chained to the line before it, and return the record written.

    Example:
        >>> append("alias.move", model="iris", alias="champion", version="3")  # doctest: +SKIP
    """
    from filelock import FileLock

    ws = workspace or current_workspace()
    record = {
        "ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        "who": fields.pop("who", None) or ws.author,
        "event": event,
        **{k: v for k, v in fields.items() if k not in _CHAIN_FIELDS},
    }
    ws.locks_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(ws.locks_dir / "audit.lock")):
        count, last = _last_line(ws.audit_log)
        record["seq"] = count + 1
        record["prev"] = _link(last) if last is not None else GENESIS
        # through JSON and back, so the hash covers exactly what a reader of the line will parse
        record = json.loads(json.dumps(record, default=str))
        record["hash"] = record_hash(record)
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode()
        fd = os.open(ws.audit_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        # inside the lock, so a model's mirror never goes back to an older line
        _mirror(ws, record)
    return record


def _mirror(ws: Workspace, record: dict[str, Any]) -> None:
    """Set the registered model's audit tags to ``record``'s seq and hash (when the model is registered)."""
    model = record.get("model")
    if not isinstance(model, str) or not model:
        return
    from ..tracking._client import client_for

    try:
        from mlflow.exceptions import MlflowException

        client = client_for(ws)
        try:
            client.set_registered_model_tag(model, lineage.AUDIT_SEQ, str(record["seq"]))
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return  # not registered (yet): nothing to mirror onto; its register event will be
            raise
        client.set_registered_model_tag(model, lineage.AUDIT_HASH, record["hash"])
    except Exception as exc:  # noqa: BLE001 - the line is written; say the mirror is behind, `verify` shows it
        warnings.warn(
            f"audit line {record['seq']} ({record['event']} of {model!r}) is written, but its MLflow mirror "
            f"could not be set: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}. "
            "`shipyard audit verify` reports the model's mirror as behind until its next audit line.",
            AuditMirrorWarning,
            stacklevel=4,
        )


def read(*, workspace: Workspace | None = None, event: str | None = None) -> Iterator[dict[str, Any]]:
    """Yield audit records, oldest first, optionally only those of one ``event`` kind."""
    path = (workspace or current_workspace()).audit_log
    if not path.exists():
        return
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                record = json.loads(line)
                if event is None or record.get("event") == event:
                    yield record


@dataclass(frozen=True)
class Problem:
    """One finding of :func:`verify`: the line (1-based) and what is wrong with it."""

    line: int
    kind: str  # edited | removed | reordered | unreadable | mirror
    message: str


@dataclass
class Verification:
    """What :func:`verify` found: ``ok`` when the chain and the mirrors hold."""

    path: Path
    lines: int = 0
    unchained: int = 0  # lines written before the chain existed (covered from the first chained line on)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _describe(record: dict[str, Any]) -> str:
    what = [str(record.get("event", "?"))]
    if record.get("model"):
        what.append(f"of {record['model']}" + (f"/{record['version']}" if record.get("version") else ""))
    if record.get("ts"):
        what.append(f"at {record['ts']}")
    return " ".join(what)


def verify(*, workspace: Workspace | None = None, mirror: bool = True) -> Verification:
    """Check the audit log's hash chain and, with ``mirror``, each registered model's MLflow audit tags.

    Names every edited, removed or reordered line; a clean log verifies with no problem.
    """
    ws = workspace or current_workspace()
    result = Verification(path=ws.audit_log)
    if not ws.audit_log.exists():
        result.notes.append("the workspace has no audit log yet")
        return result
    raw = [line for line in ws.audit_log.read_bytes().splitlines() if line.strip()]
    result.lines = len(raw)
    records: list[dict[str, Any] | None] = []
    for line in raw:
        try:
            parsed = json.loads(line)
            records.append(parsed if isinstance(parsed, dict) else None)
        except ValueError:
            records.append(None)
    at_seq = {r["seq"]: i for i, r in enumerate(records, 1) if r and isinstance(r.get("seq"), int)}

    chained = False
    expected_seq, expected_prev = 1, GENESIS
    for number, (line, record) in enumerate(zip(raw, records), 1):
        if record is None:
            result.problems.append(Problem(number, "unreadable", f"line {number} is not a JSON record: it was edited"))
            expected_seq, expected_prev = expected_seq + 1, hashlib.sha256(line.strip()).hexdigest()
            continue
        if "hash" not in record:
            if chained:
                result.problems.append(Problem(
                    number, "edited", f"line {number} ({_describe(record)}) has no hash: it was edited or inserted"))
            else:
                result.unchained += 1
            expected_seq, expected_prev = expected_seq + 1, _link(line)
            continue
        chained = True
        seq, label = record.get("seq"), _describe(record)
        if record_hash(record) != record.get("hash"):
            result.problems.append(Problem(
                number, "edited", f"line {number} (seq {seq}, {label}) was edited: its content does not match its hash"))
        elif seq != expected_seq:
            if isinstance(seq, int) and expected_seq in at_seq and at_seq[expected_seq] != number:
                result.problems.append(Problem(
                    number, "reordered",
                    f"line {number} (seq {seq}, {label}) is out of order: seq {expected_seq} belongs here and is "
                    f"at line {at_seq[expected_seq]}"))
            elif isinstance(seq, int) and seq > expected_seq:
                gap = f"seq {expected_seq}" if seq == expected_seq + 1 else f"seq {expected_seq}–{seq - 1}"
                result.problems.append(Problem(
                    number, "removed", f"{gap} before line {number} ({label}) was removed"))
            else:
                result.problems.append(Problem(
                    number, "reordered", f"line {number} (seq {seq}, {label}) is out of order: expected seq "
                    f"{expected_seq}"))
        elif record.get("prev") != expected_prev:
            result.problems.append(Problem(
                number - 1, "edited",
                f"line {number - 1} was changed: line {number} (seq {seq}, {label}) records another hash for it"))
        expected_seq = (seq if isinstance(seq, int) else expected_seq) + 1
        expected_prev = record["hash"]
    if mirror:
        _verify_mirrors(ws, records, result)
    return result


def _verify_mirrors(ws: Workspace, records: list[dict[str, Any] | None], result: Verification) -> None:
    """Hold each model's last chained line against its MLflow audit tags."""
    from ..tracking._client import client_for

    last: dict[str, tuple[int, dict[str, Any]]] = {}
    by_seq = {r["seq"]: r for r in records if r and isinstance(r.get("seq"), int) and "hash" in r}
    for number, record in enumerate(records, 1):
        if record and "hash" in record and isinstance(record.get("model"), str):
            last[record["model"]] = (number, record)
    try:
        models: dict[str, dict[str, str]] = {}
        token = None
        while True:
            page = client_for(ws).search_registered_models(max_results=1000, page_token=token)
            models.update({m.name: m.tags for m in page})
            token = page.token
            if not token:
                break
    except Exception as exc:  # noqa: BLE001 - the chain is checked; say the mirrors could not be
        result.notes.append(f"the MLflow mirrors were not checked: {str(exc).splitlines()[0]}")
        return
    final_line = len(records)
    for name, tags in sorted(models.items()):
        seq_text, mirrored = tags.get(lineage.AUDIT_SEQ), tags.get(lineage.AUDIT_HASH)
        if seq_text is None or mirrored is None:
            continue
        seq = int(seq_text) if seq_text.isdigit() else -1
        found = by_seq.get(seq)
        if found is None:
            result.problems.append(Problem(
                final_line, "removed",
                f"MLflow records audit line seq {seq_text} for model {name!r}, which the log no longer has: lines were "
                "removed from its end"))
        elif found.get("hash") != mirrored:
            result.problems.append(Problem(
                final_line, "edited",
                f"the log's seq {seq} ({_describe(found)}) differs from the line MLflow mirrored for model {name!r}: "
                "the chain was rewritten"))
        elif name in last and last[name][1].get("seq") != seq:
            number, record = last[name]
            result.notes.append(
                f"model {name!r}: MLflow's mirror is at seq {seq}, the log goes on to line {number} "
                f"(seq {record.get('seq')}); a mirror write failed then")
