"""A live copy of the points a run logs on this machine, for views that follow the run while it trains.

Q: Why not poll MLflow for new points?
A: MLflow can only page through a metric's whole history in its stored order.
   Through its SQLAlchemy store one poll costs 20–30 ms of CPU at a few hundred
   points per second (a query per page, an ORM object per row), and a live
   chart polls every second, on the same cores the training uses; against a
   shared tracking server every open panel adds that load. The buffer's writer
   already holds every point when it sends a batch, so it also appends the
   batch to a small file here; a view reads only the bytes added since its last
   read (well under a millisecond).

It is a view, not a record: MLflow stays the record. Points reach the live log
when they leave memory (sent, or spooled until the tracker answers), a run's
folder is removed when the run finishes, and a view reads the final state of a
run from MLflow. A run logged on another machine (a Kubernetes step) has no
live log here, and views page MLflow instead.

Layout: ``<workspace>/live/<run_id>/<pid>-<random>.tsv``, one file per logging
process, one line per point: ``key<TAB>step<TAB>value<TAB>timestamp``. MLflow
metric names cannot contain a tab or a newline, and every batch is one
``write`` to a file opened for appending, so a reader sees whole lines or the
start of the last one (kept until its newline arrives).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from pathlib import Path

from ._points import MetricPoint, Point


class LiveLog:
    """Appends a logging process's points for one run; never raises (a view cache must not stop training)."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / f"{os.getpid()}-{secrets.token_hex(4)}.tsv"
        self._fd: int | None = None
        self.broken = False

    def write(self, points: list[Point]) -> None:
        if not points or self.broken:
            return
        data = "".join(f"{key}\t{step}\t{value!r}\t{timestamp}\n" for key, step, value, timestamp in points).encode()
        try:
            if self._fd is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.write(self._fd, data)
        except OSError:
            # a full disk or a removed folder: views fall back to reading MLflow
            self.broken = True

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


class LiveTail:
    """Reads the points added to a run's live log since the last read, over all its files."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._offsets: dict[str, int] = {}
        self._partial: dict[str, bytes] = {}

    @classmethod
    def for_run(cls, live_dir: Path, run_id: str) -> LiveTail | None:
        """A tail of ``run_id``'s live log, or None when the run logs nowhere on this machine."""
        directory = live_dir / run_id
        return cls(directory) if directory.is_dir() else None

    def read(self) -> dict[str, list[MetricPoint]] | None:
        """New points by metric name, in the order they were written; None once the log is gone (run ended)."""
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return None
        added: dict[str, list[MetricPoint]] = {}
        for name in names:
            if not name.endswith(".tsv"):
                continue
            try:
                with open(self.directory / name, "rb") as fh:
                    fh.seek(self._offsets.get(name, 0))
                    data = fh.read()
            except FileNotFoundError:
                return None
            if not data:
                continue
            self._offsets[name] = self._offsets.get(name, 0) + len(data)
            data = self._partial.pop(name, b"") + data
            complete, _, rest = data.rpartition(b"\n")
            if rest:
                self._partial[name] = rest
            for line in complete.decode().splitlines():
                key, step, value, timestamp = line.split("\t")
                added.setdefault(key, []).append(MetricPoint(int(step), float(value), int(timestamp)))
        return added


def remove(live_dir: Path, run_id: str) -> None:
    """Drop a finished run's live log (MLflow has every point)."""
    shutil.rmtree(live_dir / run_id, ignore_errors=True)
