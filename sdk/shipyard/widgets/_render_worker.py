"""The live chart's worker process: reads a run's new points once per interval and renders PNG frames.

Q: Why a separate process?
A: Reading new points and drawing them with matplotlib still costs a few
   milliseconds of Python per second (tens when axes move). In the kernel that
   time is taken from a training loop under the same interpreter lock; in a
   worker it runs beside the kernel, and the kernel only copies finished PNG
   frames into the widget. The worker is
   started (and its imports done, at normal priority) when the panel opens, not
   when a run starts, and then runs at a low CPU priority, so on a busy machine
   the training comes first.

Protocol. stdin, one JSON line per command: ``{"follow": RUN_ID or null,
"since_ms": N, "interval": S, "max_seconds": S}`` starts following a run (null:
the newest run started after ``since_ms``); ``{"stop": true}`` stops following;
end of input ends the worker. stdout, one frame per message: a JSON line
(``ready``, ``end``, or ``run_id``/``status``/``points``/``run_name``/``error``,
and ``png``: a byte count), then that many PNG bytes.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import sys
import time
from typing import Any, BinaryIO

_NICE = 10


def _frame(out: BinaryIO, header: dict[str, Any], png: bytes = b"") -> None:
    out.write(json.dumps({**header, "png": len(png)}).encode() + b"\n" + png)
    out.flush()


def _command(stdin: BinaryIO, timeout: float) -> dict[str, Any] | None:
    """The next command if one arrives within ``timeout`` seconds, else None; exits the process at end of input."""
    ready, _, _ = select.select([stdin], [], [], timeout)
    if not ready:
        return None
    line = stdin.readline()
    if not line:
        sys.exit(0)
    return json.loads(line)


_follower: Any = None  # the last run's MetricFollower: following that run again reads only what is new


def follow(command: dict[str, Any], stdin: BinaryIO, out: BinaryIO, chart: Any) -> None:
    """Send a frame whenever the run's metrics or status change, until it ends, a stop, or ``max_seconds``."""
    global _follower
    from ..tracking import MetricFollower, metric_history

    run_id: str | None = command.get("follow")
    since_ms = int(command.get("since_ms") or 0)
    interval = float(command.get("interval") or 1.0)
    deadline = time.monotonic() + float(command.get("max_seconds") or 6 * 3600.0)
    last: Any = None
    try:
        while time.monotonic() < deadline:
            started = time.monotonic()
            try:
                if run_id is None:
                    newest = metric_history(None, names=())
                    if newest is not None and (newest.start_time or 0) >= since_ms:
                        run_id = newest.run_id
                if run_id is None:
                    if last != "waiting":
                        _frame(out, {"run_id": None, "status": "", "points": 0}, chart.render(None, "starting …"))
                        last = "waiting"
                else:
                    if _follower is None or _follower.run_id != run_id:
                        _follower = MetricFollower(run_id)
                    history = _follower.read()
                    fingerprint = history.fingerprint()
                    if fingerprint != last:
                        header = {"run_id": history.run_id, "status": history.status, "points": history.points,
                                  "run_name": history.run_name}
                        _frame(out, header, chart.render(history))
                        last = fingerprint
                    if not history.running:
                        return
            except Exception as exc:  # reported to the view, which shows it in words
                _frame(out, {"run_id": run_id, "status": "", "points": 0, "error": f"{type(exc).__name__}: {exc}"})
            if _command(stdin, max(0.05, interval - (time.monotonic() - started))) is not None:
                return  # a stop (any command ends the current follow)
    finally:
        _frame(out, {"end": True, "run_id": run_id})


def main() -> int:
    """Serve commands until end of input; see the module docstring for the protocol."""
    from ._chart import MetricsChart

    stdin, out = sys.stdin.buffer, sys.stdout.buffer
    chart = MetricsChart()
    chart.warm_up()  # fonts, figures and ticks are made before a run's first frame is due
    with contextlib.suppress(Exception):  # MLflow and the store are opened before a run needs them
        from ..tracking import metric_history

        metric_history(None, names=())
    # Lower the priority only now: at a low priority from the start, the imports alone took the rest of a
    # short run on a busy machine, and the chart showed nothing until the run had ended.
    with contextlib.suppress(OSError, AttributeError):
        os.nice(_NICE)
    _frame(out, {"ready": True})
    try:
        while True:
            command = _command(stdin, 3600.0)
            if command is not None and "follow" in command:
                follow(command, stdin, out, chart)
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
