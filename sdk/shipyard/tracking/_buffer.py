"""Buffered, asynchronous metric logging that never stalls training and never loses a point.

The caller's thread only appends a tuple to a deque (a few microseconds). A
daemon thread sends batches with ``MlflowClient.log_batch``. A batch that
cannot be sent is written to the workspace spool *before* it leaves memory,
and spooled batches are replayed oldest first when the backend answers again.

Q: How is "exactly once" possible over an unreliable link?
A: Every point keeps the timestamp it was logged with, and MLflow stores a
   metric point once per (key, timestamp, step, value): a replay of a batch
   that did reach the server before the connection dropped is a no-op there.
   Delivery is at-least-once; the store makes it exactly-once.
"""

from __future__ import annotations

import collections
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from .._core.errors import TrackingError
from ._points import Point

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

# MLflow answers these for data it will never accept: retrying cannot help.
_PERMANENT_CODES = frozenset({"INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "INVALID_STATE"})


@dataclass(frozen=True)
class FlushResult:
    """What a flush achieved: points sent now, and batches left on disk for later.

    After a flush nothing is only in memory: every point is sent or spooled.
    """

    sent: int
    spooled_batches: int


class PointCopy(Protocol):
    """Where the buffer hands a copy of every point as it leaves memory (the live log, :mod:`._live`)."""

    def write(self, points: list[Point]) -> None: ...

    def close(self) -> None: ...


class Spool:
    """Batches waiting for the tracker, one fsynced JSON-lines file per batch.

    A metric line is ``{"metric": key, "value": …, "ts": …, "step": …}``; the
    keys stay as they are so that batches spooled by older versions replay.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._seq = 0

    def write(self, points: list[Point], params: list[tuple[str, str]], tags: list[tuple[str, str]]) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        name = f"{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}.jsonl"
        tmp = self.directory / f".{name}.tmp"
        with tmp.open("w", encoding="utf-8") as fh:
            for key, value in params:
                fh.write(json.dumps({"param": key, "value": value}) + "\n")
            for key, value in tags:
                fh.write(json.dumps({"tag": key, "value": value}) + "\n")
            for key, step, value, ts in points:
                fh.write(json.dumps({"metric": key, "value": value, "ts": ts, "step": step}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        final = self.directory / name
        os.replace(tmp, final)
        return final

    def pending(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.iterdir() if p.suffix == ".jsonl" and not p.name.startswith("."))

    @staticmethod
    def read(path: Path) -> tuple[list[Point], list[tuple[str, str]], list[tuple[str, str]]]:
        points: list[Point] = []
        params: list[tuple[str, str]] = []
        tags: list[tuple[str, str]] = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line:
                continue
            rec = json.loads(line)
            if "metric" in rec:
                points.append((rec["metric"], int(rec["step"]), float(rec["value"]), int(rec["ts"])))
            elif "param" in rec:
                params.append((rec["param"], rec["value"]))
            else:
                tags.append((rec["tag"], rec["value"]))
        return points, params, tags


def send_batch(
    client: MlflowClient,
    run_id: str,
    points: list[Point],
    params: list[tuple[str, str]] = (),  # type: ignore[assignment]
    tags: list[tuple[str, str]] = (),  # type: ignore[assignment]
) -> None:
    """Send one batch through ``log_batch`` (at most 1000 metrics, as MLflow requires)."""
    from mlflow.entities import Metric, Param, RunTag

    client.log_batch(
        run_id,
        metrics=[Metric(key, value, ts, step) for key, step, value, ts in points],
        params=[Param(k, v) for k, v in params],
        tags=[RunTag(k, v) for k, v in tags],
        synchronous=True,
    )


def is_permanent(exc: BaseException) -> bool:
    return getattr(exc, "error_code", None) in _PERMANENT_CODES


def replay(client: MlflowClient, run_id: str, spool: Spool) -> int:
    """Send every spooled batch of ``run_id`` oldest first; return how many were sent.

    Stops at the first batch that fails and re-raises its error.
    """
    sent = 0
    for path in spool.pending():
        points, params, tags = Spool.read(path)
        send_batch(client, run_id, points, params, tags)
        path.unlink()
        sent += 1
    return sent


class MetricBuffer:
    """Per-run buffer with a background writer.

    Args:
        client_factory: returns the MLflow client for the run's tracking URI. It is
            called on the writer thread, so importing MLflow overlaps with the step's work.
        run_id: the MLflow run every point belongs to.
        spool_dir: workspace folder for batches that could not be sent.
        flush_interval: seconds between background flushes.
        batch_size: points per ``log_batch`` call (≤ 1000).
        live: where a copy of every point goes as it leaves memory, for live views (the live log).
    """

    def __init__(
        self,
        client_factory: Callable[[], MlflowClient],
        run_id: str,
        spool_dir: Path,
        *,
        flush_interval: float = 0.2,
        batch_size: int = 1000,
        live: PointCopy | None = None,
    ) -> None:
        self._client_factory = client_factory
        self._client: MlflowClient | None = None
        self._client_lock = threading.Lock()
        self.run_id = run_id
        self.spool = Spool(spool_dir / run_id)
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self.live = live
        self._points: collections.deque[Point] = collections.deque()
        self._params: collections.deque[tuple[str, str]] = collections.deque()
        self._tags: collections.deque[tuple[str, str]] = collections.deque()
        self._send_lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._backoff = 0.0
        self.last_error: BaseException | None = None
        self.sent_points = 0
        self._thread = threading.Thread(target=self._loop, name=f"shipyard-writer-{run_id[:8]}", daemon=True)
        self._thread.start()

    # -- caller side: only appends -------------------------------------------------
    def put(self, key: str, step: int, value: float, timestamp_ms: int) -> None:
        """Queue one point; the arguments are a :data:`~._points.Point` in its order."""
        self._points.append((key, step, value, timestamp_ms))

    def put_params(self, params: dict[str, str]) -> None:
        self._params.extend(params.items())

    def put_tags(self, tags: dict[str, str]) -> None:
        self._tags.extend(tags.items())

    @property
    def pending(self) -> int:
        return len(self._points) + len(self._params) + len(self._tags)

    # -- writer side ----------------------------------------------------------------
    @property
    def client(self) -> MlflowClient:
        with self._client_lock:
            if self._client is None:
                self._client = self._client_factory()
            return self._client

    def _loop(self) -> None:
        try:
            self.client  # make the client now, while the step computes, not at the first flush
        except Exception as exc:
            self.last_error = exc
        while not self._closed:
            self._wake.wait(self.flush_interval + self._backoff)
            self._wake.clear()
            if self._closed:
                break
            with self._send_lock:
                try:
                    self._drain()
                    self._backoff = 0.0
                except Exception as exc:  # keep the writer alive; the data is on disk
                    self.last_error = exc
                    self._backoff = min(max(self._backoff * 2, 0.25), 2.0)

    def _take(self) -> tuple[list[Point], list[tuple[str, str]], list[tuple[str, str]]]:
        points = [self._points.popleft() for _ in range(min(self.batch_size, len(self._points)))]
        params = [self._params.popleft() for _ in range(min(100, len(self._params)))]
        tags = [self._tags.popleft() for _ in range(min(100, len(self._tags)))]
        if self.live is not None:  # leaving memory: sent or spooled next, so the copy is never ahead of the record
            self.live.write(points)
        return points, params, tags

    def _drain(self) -> int:
        """Replay the spool, then send what is queued. Raises on the first failure,
        after moving the unsent batch (and everything queued) to the spool."""
        replay(self.client, self.run_id, self.spool)
        sent = 0
        while self._points or self._params or self._tags:
            points, params, tags = self._take()
            try:
                send_batch(self.client, self.run_id, points, params, tags)
            except Exception:
                self.spool.write(points, params, tags)
                self._spool_queue()
                raise
            sent += len(points)
            self.sent_points += len(points)
        return sent

    def _spool_queue(self) -> None:
        while self._points or self._params or self._tags:
            self.spool.write(*self._take())

    def flush(self, timeout: float = 30.0) -> FlushResult:
        """Make every point durable: sent to the tracker, or after ``timeout`` seconds on disk.

        Raises:
            TrackingError: the tracker refused the data for good (it stays in the spool).
        """
        deadline = time.monotonic() + timeout
        delay = 0.1
        with self._send_lock:
            while True:
                try:
                    sent = self._drain()
                    self.last_error = None
                    return FlushResult(sent=sent, spooled_batches=0)
                except Exception as exc:
                    self.last_error = exc
                    if is_permanent(exc):
                        raise TrackingError(
                            f"The tracker refused logged data for run {self.run_id}: {exc}",
                            hint=f"The data is kept in {self.spool.directory}; fix the cause and run `shipyard sync`.",
                        ) from exc
                    if time.monotonic() + delay > deadline:
                        self._spool_queue()
                        return FlushResult(sent=0, spooled_batches=len(self.spool.pending()))
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def close(self, timeout: float = 30.0) -> FlushResult:
        """Flush and stop the background writer."""
        try:
            return self.flush(timeout)
        finally:
            self._closed = True
            self._wake.set()
            self._thread.join(timeout=5)
            if self.live is not None:
                self.live.close()

