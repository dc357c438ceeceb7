"""The append-only audit log of the workspace (JSON lines).

Every state change that matters (a gate verdict, an override, an alias move,
an approval, a rollback) is appended here *before* the call that made it
returns. Lines are written whole under an inter-process lock and fsynced, so
concurrent writers never interleave and a crash never leaves half a line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

from .workspace import Workspace, current_workspace


def append(event: str, *, workspace: Workspace | None = None, **fields: Any) -> dict[str, Any]:
    """Append one event to the audit log and return the record written.

    Example:
        >>> append("alias.move", model="iris", alias="champion", version="3")  # doctest: +SKIP
    """
    from filelock import FileLock

    ws = workspace or current_workspace()
    record = {
        "ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        "who": fields.pop("who", None) or ws.author,
        "event": event,
        **fields,
    }
    line = (json.dumps(record, sort_keys=False, default=str) + "\n").encode()
    ws.locks_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(ws.locks_dir / "audit.lock")):
        fd = os.open(ws.audit_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
    return record


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
