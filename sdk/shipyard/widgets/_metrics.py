"""The live metrics view: a chart of one run's metrics, redrawn while the run goes on.

While a run is followed, a worker process (:mod:`._render_worker`) reads the
points added since its last look once per ``interval``
(:class:`~shipyard.tracking.MetricFollower`) and renders a PNG only when a point was added or
the status changed; a daemon thread in the kernel copies each frame into the
widget. The kernel stays free, and a training loop in the kernel keeps its
interpreter to itself. ``isolated=False`` does the polling and drawing on the
kernel thread instead (no extra process; costs the loop more).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time
from typing import Any

import ipywidgets as widgets
import traitlets

from ._chart import MetricsChart

_DEFAULT_MAX_SECONDS = 6 * 3600.0


class MetricsView(widgets.VBox):
    """A chart of a run's metrics that follows the run live.

    State lives in traitlets: ``run_id``, ``status``, ``points`` (points drawn),
    ``renders`` (how many times the chart was drawn) and ``watching``.

    Example:
        >>> view = MetricsView()                              # doctest: +SKIP
        >>> view.watch(shipyard.run_async(TrainFlow))         # doctest: +SKIP
        >>> view                                              # doctest: +SKIP
    """

    run_id = traitlets.Unicode("").tag(sync=True)
    status = traitlets.Unicode("").tag(sync=True)
    points = traitlets.Int(0).tag(sync=True)
    renders = traitlets.Int(0).tag(sync=True)
    watching = traitlets.Bool(False).tag(sync=True)
    interval = traitlets.Float(1.0)

    def __init__(
        self, *, interval: float = 1.0, isolated: bool | None = None, workspace: Any = None, **kwargs: Any
    ) -> None:
        self._caption = widgets.HTML(value="")
        self._caption.add_class("shipyard-metrics-caption")
        self._image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))
        self._image.add_class("shipyard-metrics-chart")
        super().__init__(children=[self._caption, self._image], **kwargs)
        self.add_class("shipyard-metrics")
        self.interval = interval
        self.isolated = os.name == "posix" if isolated is None else isolated  # the worker protocol needs select() on pipes
        self._workspace = workspace
        self._worker: subprocess.Popen[bytes] | None = None
        self._chart = MetricsChart()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._fingerprint: Any = None
        self._follower: Any = None
        self.on_done: list[Any] = []

    def __repr__(self) -> str:
        return f"<MetricsView run={self.run_id or None} status={self.status or None} renders={self.renders}>"

    def show(self, run_id: str | None, note: str = "") -> None:
        """Draw the metrics of ``run_id`` once (None: a placeholder saying ``note``)."""
        from ..tracking import metric_history

        if run_id is None:
            self._draw(None, note)
            return
        try:
            history = metric_history(run_id, workspace=self._workspace)
        except Exception as exc:  # shown in plain words; the panel stays usable
            self._caption.value = f'<span class="shipyard-error">Could not read metrics: {_esc(exc)}</span>'
            return
        self._draw(history, note)

    def watch(self, run: Any, *, max_seconds: float = _DEFAULT_MAX_SECONDS) -> None:
        """Follow ``run`` live until it ends (or ``max_seconds`` pass), redrawing at most once per ``interval``.

        Args:
            run: a :class:`~shipyard.FlowRun` (from ``shipyard.run_async``) or an MLflow run id.
            max_seconds: stop following after this long even if the run goes on.

        Returns at once; a daemon thread does the polling.
        """
        self.stop()
        self._stop = threading.Event()
        self.watching = True
        self._thread = threading.Thread(
            target=self._follow_isolated if self.isolated else self._follow,
            args=(run, self._stop, max_seconds),
            name="shipyard-panel-metrics",
            daemon=True,
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop following (the last chart stays)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread.is_alive() and self.isolated:
            self._to_worker({"stop": True})
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._thread = None

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the followed run has ended and its final chart is drawn; True if it has."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def prepare(self, wait: bool = False) -> None:
        """Start the render worker now, so its imports are done before a run is followed (no-op in-process).

        Args:
            wait: block until the worker is ready (at most 120 s).
        """
        if not self.isolated:
            return
        worker = self._ensure_worker()
        if wait and (self._thread is None or not self._thread.is_alive()) and worker.stdout is not None:
            ready, _, _ = select.select([worker.stdout], [], [], 120.0)
            if ready:
                header = json.loads(worker.stdout.readline() or b'{"png": 0}')
                _read_exact(worker.stdout, header.get("png", 0))

    def close(self) -> None:
        """Stop following, end the render worker and close the widget."""
        if not hasattr(self, "_stop"):  # close() also runs from __del__ of a half-built widget
            super().close()
            return
        self.stop()
        worker, self._worker = self._worker, None
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait(10)
        super().close()

    def _ensure_worker(self) -> subprocess.Popen[bytes]:
        import shipyard

        worker = self._worker
        if worker is None or worker.poll() is not None:
            ws = self._workspace or shipyard.current_workspace()
            worker = self._worker = subprocess.Popen(
                [sys.executable, "-m", "shipyard.widgets._render_worker"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                env={**os.environ, **ws.child_env()}, bufsize=0,  # unbuffered: select() sees every byte
            )
        return worker

    def _to_worker(self, command: dict[str, Any]) -> None:
        worker = self._worker
        if worker is not None and worker.poll() is None and worker.stdin is not None:
            try:
                worker.stdin.write(json.dumps(command).encode() + b"\n")
                worker.stdin.flush()
            except OSError:  # the worker is gone; the reader sees end of output
                pass

    def _follow_isolated(self, run: Any, stop: threading.Event, max_seconds: float) -> None:
        """Ask the render worker to follow ``run``; copy its frames into the widget until the run ends."""
        fixed = isinstance(run, str)
        run_id: str | None = run if fixed else getattr(run, "mlflow_run_id", None)
        try:
            self._caption.value = '<span class="shipyard-metrics-status">starting …</span>'
            worker = self._ensure_worker()
            assert worker.stdout is not None
            self._to_worker({"follow": run_id, "since_ms": int(time.time() * 1000) - 2000, "interval": self.interval,
                        "max_seconds": max_seconds})
            done_since: float | None = None
            while True:
                ready, _, _ = select.select([worker.stdout], [], [], 1.0)  # waits without the interpreter lock
                if not ready:
                    # a flow that ended without a tracked run (or whose run never ends): stop waiting for it
                    if not fixed and run.done():
                        done_since = done_since or time.monotonic()
                        if time.monotonic() - done_since > 5 * self.interval + 5:
                            self._to_worker({"stop": True})
                    if worker.poll() is not None:
                        break
                    continue
                line = worker.stdout.readline()
                if not line:
                    break
                header = json.loads(line)
                png = _read_exact(worker.stdout, header["png"])
                if header.get("end"):
                    run_id = header.get("run_id") or run_id
                    break
                if not header.get("ready"):
                    run_id = header.get("run_id") or run_id
                    self._frame(header, png)
            if not stop.is_set() and not fixed and run.done() and (note := _failure_note(run)):
                self._caption.value += f" · {_esc(note)}"
        except Exception as exc:  # the worker could not start or died: said in words, the kernel goes on
            self._caption.value = f'<span class="shipyard-error">Live metrics stopped: {_esc(exc)}</span>'
        finally:
            self._finish(run_id)

    def _frame(self, header: dict[str, Any], png: bytes) -> None:
        if header.get("error"):
            self._caption.value = f'<span class="shipyard-error">Could not read metrics: {_esc(header["error"])}</span>'
            return
        if png:
            self._image.value = png
        with self.hold_sync():  # one state message per frame, not one per trait
            if header.get("run_id"):
                self.run_id, self.status, self.points = header["run_id"], header["status"], header["points"]
                self._fingerprint = None  # a later in-kernel draw must not be skipped as "unchanged"
            self.renders += 1
        status = header.get("status") or ""
        self._caption.value = (
            f'<span class="shipyard-metrics-status" data-status="{_esc(status.lower())}">'
            f"<b>{_esc(header.get('run_name') or header['run_id'])}</b> · {_esc(status.lower())} · "
            f"{header['points']} points</span>"
            if header.get("run_id")
            else f'<span class="shipyard-metrics-status">{_esc("starting …")}</span>'
        )

    def _finish(self, run_id: str | None) -> None:
        self.watching = False
        for callback in list(self.on_done):
            try:
                callback(run_id)
            except Exception:  # a listener's failure must not kill the view
                pass

    def _follow(self, run: Any, stop: threading.Event, max_seconds: float) -> None:
        deadline = time.monotonic() + max_seconds
        since_ms = int(time.time() * 1000) - 2000
        fixed = isinstance(run, str)
        run_id: str | None = run if fixed else None
        try:
            while not stop.is_set() and time.monotonic() < deadline:
                started = time.monotonic()
                finished = not fixed and run.done()
                if run_id is None:
                    run_id = getattr(run, "mlflow_run_id", None) or self._started_since(since_ms)
                if run_id is None:
                    self._draw(None, (_failure_note(run) or "the run ended before it was tracked") if finished
                               else "starting …")
                    if finished:
                        break
                elif self._poll(run_id, _failure_note(run) if finished else "") and (finished or fixed):
                    break
                stop.wait(max(0.05, self.interval - (time.monotonic() - started)))
        finally:
            self._finish(run_id)

    def _poll(self, run_id: str, note: str) -> bool:
        """Draw the run's metrics if they changed; True when the run has ended."""
        from ..tracking import MetricFollower

        follower = self._follower
        if follower is None or follower.run_id != run_id:
            follower = self._follower = MetricFollower(run_id, workspace=self._workspace)
        try:
            history = follower.read()
        except Exception as exc:
            self._caption.value = f'<span class="shipyard-error">Could not read metrics: {_esc(exc)}</span>'
            return False
        if history is None:
            return False
        self._draw(history, note)
        return not history.running

    def _started_since(self, since_ms: int) -> str | None:
        """The newest run of the workspace if it started after ``since_ms`` (a flow whose id is not known yet)."""
        from ..tracking import metric_history

        try:
            newest = metric_history(None, names=(), workspace=self._workspace)
        except Exception:
            return None
        if newest is None or (newest.start_time or 0) < since_ms:
            return None
        return newest.run_id

    def _draw(self, history: Any, note: str) -> None:
        fingerprint = (history.fingerprint() if history is not None else None, note)
        with self._lock:
            if fingerprint == self._fingerprint:
                return
            png = self._chart.render(history, note)
            self._fingerprint = fingerprint
        self._image.value = png
        with self.hold_sync():
            if history is not None:
                self.run_id, self.status, self.points = history.run_id, history.status, history.points
            self.renders += 1
        self._caption.value = _caption(history, note)


def _read_exact(stream: Any, size: int) -> bytes:
    chunks, left = [], size
    while left > 0:
        chunk = stream.read(left)
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _failure_note(run: Any) -> str:
    if isinstance(run, str) or not run.done():
        return ""
    try:
        run.result(timeout=0)
    except Exception as exc:
        return f"failed: {str(exc).splitlines()[0]}"
    return ""


def _caption(history: Any, note: str) -> str:
    if history is None:
        return f'<span class="shipyard-metrics-status">{_esc(note or "no run yet")}</span>'
    return (
        f'<span class="shipyard-metrics-status" data-status="{_esc(history.status.lower())}">'
        f"<b>{_esc(history.run_name or history.run_id)}</b> · {_esc(history.status.lower())} · "
        f"{history.points} points</span>" + (f" · {_esc(note)}" if note else "")
    )


def _esc(value: Any) -> str:
    import html

    return html.escape(str(value))
