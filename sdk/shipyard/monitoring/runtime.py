"""What a model image measures about the traffic it serves: drift, predictions, problems, and a capture of it.

The request path only hands its validated columns and predictions to
:meth:`Monitor.observe`: an append to a bounded in-memory queue, no copy, no
lock, no metric update, never a wait. A daemon thread in each worker process
does the rest:

- keeps the last ``window_rows`` rows (per worker) and, every
  ``interval_seconds``, holds them against the reference profile frozen into
  the bento with :func:`shipyard_monitoring.drift.compute_drift` (the function
  ``shipyard monitor`` calls on captured rows, so both give the same verdicts);
- updates the Prometheus metrics BentoML serves at ``/metrics`` (its
  multiprocess registry; each gauge shows the value its worker computed last);
- writes sampled rows to the capture folder when capture is on.

A request that finds the queue full is served as usual and its rows are
counted in ``shipyard_monitor_dropped_total``. A clean stop (SIGTERM: BentoML
calls the service's shutdown hook) drains the queue and flushes the capture
files; a kill loses at most what arrived since the last flush, one
``FLUSH_SECONDS`` apart.

It needs the Python standard library and numpy, plus ``prometheus_client``
(a BentoML dependency) once metrics are on.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import math
import os
import random
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .validation import _json_value  # one rule for predictions that are not plain JSON, here and in responses

_log = logging.getLogger("shipyard_monitoring.runtime")

FLUSH_SECONDS = 1.0
"""How often the worker writes captured rows to disk: the most a kill of the container can lose."""
POLL_SECONDS = 0.05
CAPTURE_DIR = "/var/lib/shipyard/capture"
CAPTURE_FILES = 10  # the capture budget is split over this many files; the oldest is deleted first
MANIFEST = "capture.json"
MAX_CLASSES = 50  # distinct predicted classes counted by name; the rest as "other"
PROBLEM_REASONS = {
    400: "unreadable_body",
    401: "unauthorized",
    404: "unknown_path",
    405: "wrong_method",
    408: "body_timeout",
    413: "too_large",
    415: "wrong_content_type",
    422: "schema_violation",
}
"""The ``reason`` label of ``shipyard_request_problems_total``, by the status the request was refused with."""
MODEL_REFUSED = "model_refused"  # valid rows the model could not score (a 422 from the model itself)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class MonitorConfig:
    """How an image monitors itself: the settings frozen at packaging, some overridable when it starts."""

    enabled: bool = True
    window_rows: int = 10_000
    min_rows: int = 200
    interval_seconds: float = 10.0
    queue_rows: int = 100_000
    threshold: float = 0.1
    capture: bool = False
    capture_dir: str = CAPTURE_DIR
    capture_sample_rate: float = 1.0
    capture_max_mb: float = 100.0
    capture_sensitive: tuple[str, ...] = ()
    capture_sensitive_mode: str = "hash"
    capture_salt: str = field(default="", repr=False)

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> MonitorConfig:
        """The packaged ``settings``, with what the container's environment overrides at start.

        ``SHIPYARD_MONITORING``, ``SHIPYARD_MONITOR_WINDOW_ROWS``, ``SHIPYARD_MONITOR_MIN_ROWS``,
        ``SHIPYARD_MONITOR_INTERVAL_SECONDS``, ``SHIPYARD_CAPTURE``,
        ``SHIPYARD_CAPTURE_DIR``, ``SHIPYARD_CAPTURE_SAMPLE_RATE`` and
        ``SHIPYARD_CAPTURE_SALT`` (a secret for hashing sensitive columns the same
        way across restarts; without it each start draws a random one).

        Raises:
            ValueError: an override is not a valid value (the service does not start).
        """
        env = os.environ if environ is None else environ
        values = {k: v for k, v in settings.items() if k in cls.__dataclass_fields__}
        values["capture_sensitive"] = tuple(values.get("capture_sensitive") or ())
        for name, convert in (
            ("monitoring", _flag),
            ("monitor_window_rows", int),
            ("monitor_min_rows", int),
            ("monitor_interval_seconds", float),
            ("capture", _flag),
            ("capture_dir", str),
            ("capture_sample_rate", float),
            ("capture_salt", str),
        ):
            raw = env.get(f"SHIPYARD_{name.upper()}")
            if raw is None or raw == "":
                continue
            try:
                value = convert(raw)
            except ValueError as exc:
                raise ValueError(f"SHIPYARD_{name.upper()}={raw!r} is not valid: {exc}") from None
            key = {"monitoring": "enabled", "monitor_window_rows": "window_rows", "monitor_min_rows": "min_rows",
                   "monitor_interval_seconds": "interval_seconds"}.get(name, name)
            values[key] = value
        config = cls(**values)
        # a window smaller than min_rows would never be measured: the whole window is the minimum then
        config = replace(config, min_rows=min(config.min_rows, config.window_rows))
        if config.window_rows < 1 or config.min_rows < 1 or config.interval_seconds <= 0 \
                or not 0 < config.capture_sample_rate <= 1:
            raise ValueError(f"monitoring settings out of range: {config}")
        return config if config.capture_salt else replace(config, capture_salt=secrets.token_hex(16))


def _flag(raw: str) -> bool:
    text = raw.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("use 1/0, true/false, yes/no or on/off")


class Monitor:
    """The monitoring of one worker process; see the module docstring.

    Args:
        reference: the reference profile (``reference_profile.json`` of the bento).
        config: see :class:`MonitorConfig`.
        model, version, digest: the served model version and its SHA-256 (metric labels, capture manifest).
        service: the bento's service name (the model's slug): the capture folder is ``<service>/v<version>``.
        tensor: the model takes rows of numbers; column ``i`` of the profile is position ``i``.
    """

    def __init__(
        self,
        reference: Mapping[str, Any],
        config: MonitorConfig,
        *,
        model: str,
        version: str,
        digest: str,
        service: str,
        tensor: bool = False,
    ) -> None:
        self.reference = reference
        self.config = config
        self.model, self.version, self.digest, self.service = model, version, digest, service
        self.tensor = tensor
        self._queue: collections.deque[tuple[Mapping[str, Sequence[Any]], int, Any]] = collections.deque()
        # Each count has one writer, so no lock is needed and no count is lost: the request path only adds
        # to its totals, the worker only to what it has taken and reported.
        self._enqueued = self._dequeued = 0  # rows
        self._dropped = self._dropped_reported = 0
        self._problems: collections.Counter[str] = collections.Counter()
        self._problems_reported: collections.Counter[str] = collections.Counter()
        self._window: collections.deque[tuple[dict[str, Any], Any, int]] = collections.deque()
        self._window_rows = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._metrics: _Metrics | None = None
        self._capture: _Capture | None = None
        self.last: Any = None
        """The last :class:`~shipyard_monitoring.drift.DriftResult` computed, or None."""

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    # -- the request path --------------------------------------------------------------------------

    def observe(self, columns: Mapping[str, Sequence[Any]], rows: int, predictions: Any) -> None:
        """Queue one request's validated columns and predictions; never blocks, never raises."""
        if not self.config.enabled:
            return
        if self._enqueued - self._dequeued + rows > self.config.queue_rows:
            self._dropped += rows
            return
        self._enqueued += rows
        self._queue.append((columns, rows, predictions))

    def problem(self, status: int, *, model_refused: bool = False) -> None:
        """Count a request refused with ``status`` (validation), or valid rows the model refused."""
        if self.config.enabled:
            self._problems[MODEL_REFUSED if model_refused else PROBLEM_REASONS.get(status, str(status))] += 1

    # -- the worker ------------------------------------------------------------------------------------

    def start(self) -> Monitor:
        """Create the metrics and the capture folder, and start the worker thread (no-op when disabled)."""
        if not self.config.enabled or self._thread is not None:
            return self
        labels = {"model": self.model, "version": self.version, "digest": self.digest[:12]}
        self._metrics = _Metrics(labels, self.reference)
        if self.config.capture:
            self._capture = _Capture(self, Path(self.config.capture_dir) / self.service / f"v{self.version}")
        self._thread = threading.Thread(target=self._run, name="shipyard-monitor", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Drain the queue, compute drift once more and flush the capture; then the worker ends."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        next_drift = time.monotonic() + self.config.interval_seconds
        next_flush = time.monotonic() + FLUSH_SECONDS
        while True:
            stopping = self._stop.wait(POLL_SECONDS)
            try:
                self._drain()
                now = time.monotonic()
                if stopping or now >= next_drift:
                    self.compute()
                    next_drift = now + self.config.interval_seconds
                if self._capture is not None and (stopping or now >= next_flush):
                    self._capture.flush()
                    next_flush = now + FLUSH_SECONDS
            except Exception:  # the service goes on serving; the log says why its metrics stopped moving
                _log.exception("monitoring failed; drift metrics may be stale")
            if stopping:
                if self._capture is not None:
                    self._capture.close()
                return

    def _drain(self) -> None:
        metrics = self._metrics
        taken = 0
        while self._queue:
            columns, rows, predictions = self._queue.popleft()
            self._dequeued += rows
            taken += rows
            columns = self._as_columns(columns)
            predictions = _flat(predictions, rows)
            self._window.append((columns, predictions, rows))
            self._window_rows += rows
            if metrics is not None:
                metrics.observed(columns, predictions)
            if self._capture is not None:
                self._capture.add(columns, predictions, rows)
        while self._window and self._window_rows - self._window[0][2] >= self.config.window_rows:
            self._window_rows -= self._window.popleft()[2]
        if metrics is not None:
            metrics.counted(taken, self._take_dropped(), self._take_problems())

    def _take_dropped(self) -> int:
        total = self._dropped
        new, self._dropped_reported = total - self._dropped_reported, total
        return new

    def _take_problems(self) -> dict[str, int]:
        totals = dict(self._problems)
        new = {reason: n - self._problems_reported[reason] for reason, n in totals.items()}
        self._problems_reported.update(new)
        return {reason: n for reason, n in new.items() if n}

    def _as_columns(self, columns: Mapping[str, Sequence[Any]]) -> dict[str, Any]:
        if not self.tensor:
            return dict(columns)
        import numpy as np

        matrix = np.asarray(columns[""], dtype="float64").reshape(-1, len(self.reference.get("columns") or {}) or 1)
        return {str(i): matrix[:, i] for i in range(matrix.shape[1])}

    def window(self) -> tuple[dict[str, Any], Any]:
        """The rows of the current window: ``(columns, predictions)``, the newest last."""
        import numpy as np

        chunks = list(self._window)
        skip = max(0, sum(c[2] for c in chunks) - self.config.window_rows)  # the oldest chunk, cut to the window
        names = list((self.reference.get("columns") or {}).keys())
        out: dict[str, Any] = {}
        for name in names:
            parts = [c[0][name] for c in chunks if name in c[0]]
            if parts:
                out[name] = np.concatenate([np.asarray(p, dtype=object) for p in parts])[skip:]
        preds = [c[1] for c in chunks if c[1] is not None]
        predictions = np.concatenate([np.asarray(p, dtype=object) for p in preds])[skip:] if preds else None
        return out, predictions

    def compute(self) -> Any:
        """Drift of the current window against the reference; updates the gauges.

        None while the window holds fewer than ``min_rows`` rows: a handful of
        rows differs from any reference by chance alone, and a gauge set from
        them would page someone (or fail a canary) for nothing. Until then the
        drift gauges are absent, not 0.
        """
        from .drift import compute_drift

        if self._window_rows < max(1, self.config.min_rows):
            return None
        columns, predictions = self.window()
        if self.reference.get("prediction") is None:
            predictions = None
        result = compute_drift(self.reference, columns, predictions=predictions, threshold=self.config.threshold)
        self.last = result
        if self._metrics is not None:
            self._metrics.drift(result)
        return result


def _flat(predictions: Any, rows: int) -> Any:
    """One value per row (a list), or None when the model answers something else (a probability row each)."""
    values = predictions.tolist() if hasattr(predictions, "tolist") else predictions
    if not isinstance(values, list) or len(values) != rows:
        return None
    if values and isinstance(values[0], list | dict):
        if all(isinstance(v, list) and len(v) == 1 for v in values):
            return [v[0] for v in values]
        return None
    return values


_CREATED: dict[str, Any] = {}


class _Metrics:
    """The image's Prometheus metrics (names in docs/monitoring.md), created in the worker process."""

    def __init__(self, labels: Mapping[str, str], reference: Mapping[str, Any]) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.labels = dict(labels)
        names = list(self.labels)

        def metric(kind: Any, name: str, doc: str, extra: Sequence[str] = (), **options: Any) -> Any:
            # once per process: prometheus_client refuses a second metric of the same name
            if name not in _CREATED:
                if kind is Gauge:  # each worker drifts over its own window; /metrics shows the last value set
                    options.setdefault("multiprocess_mode", "livemostrecent")
                _CREATED[name] = kind(name, doc, [*names, *extra], **options)
            return _CREATED[name]

        self.distance = metric(Gauge, "shipyard_drift_distance", "Drift distance of each input column against the "
                               "reference profile (normalized Wasserstein, Jensen-Shannon)", ["column", "method"])
        self.psi = metric(Gauge, "shipyard_drift_psi", "Population stability index of each input column", ["column"])
        self.detected = metric(Gauge, "shipyard_drift_detected",
                               "1 when the column's drift distance reaches the threshold", ["column"])
        self.share = metric(Gauge, "shipyard_drift_share", "Share of input columns that drift")
        self.dataset = metric(Gauge, "shipyard_dataset_drift", "1 when at least half of the input columns drift")
        self.window_rows = metric(Gauge, "shipyard_drift_window_rows", "Rows the last drift computation covered")
        self.prediction_distance = metric(Gauge, "shipyard_prediction_drift_distance",
                                          "Drift distance of the predictions against the reference", ["method"])
        self.info = metric(Gauge, "shipyard_model_info", "The served model version and its reference profile",
                           ["reference"])
        self.rows = metric(Counter, "shipyard_monitor_rows", "Request rows the drift monitor received")
        self.dropped = metric(Counter, "shipyard_monitor_dropped", "Request rows not monitored: the queue was full")
        self.nulls = metric(Counter, "shipyard_input_nulls", "Null input values, by column", ["column"])
        self.problems = metric(Counter, "shipyard_request_problems", "Requests refused, by reason", ["reason"])
        prediction = reference.get("prediction") or {}
        self.numeric_predictions = prediction.get("kind") == "numeric"
        if self.numeric_predictions:
            edges = sorted({float(e) for e in prediction.get("edges") or () if math.isfinite(float(e))})
            self.predicted = metric(Histogram, "shipyard_prediction_value", "Predicted values",
                                    buckets=[*edges, math.inf] if edges else Histogram.DEFAULT_BUCKETS)
        else:
            self.predicted = metric(Counter, "shipyard_predictions", "Predictions, by class", ["class"])
        for counter in (self.rows, self.dropped):  # exported at 0 from the start, so increase() sees the first rise
            counter.labels(**self.labels)
        self.classes: set[str] = set()
        self.info.labels(**self.labels, reference=str(reference.get("fingerprint", ""))[:12]).set(1)

    def observed(self, columns: Mapping[str, Any], predictions: Any) -> None:
        for name, values in columns.items():
            # JSON has no NaN (validation refuses the literal), so a missing value is a None
            nulls = values.count(None) if isinstance(values, list) else 0
            if nulls:
                self.nulls.labels(**self.labels, column=name).inc(nulls)
        if predictions is None:
            return
        if self.numeric_predictions:
            self._histogram(predictions)
            return
        counts = collections.Counter(map(str, predictions))
        for name, n in counts.items():
            if name not in self.classes and len(self.classes) >= MAX_CLASSES:
                name = "other"
            else:
                self.classes.add(name)
            self.predicted.labels(**self.labels, **{"class": name}).inc(n)

    def _histogram(self, predictions: Sequence[Any]) -> None:
        """Count a batch of numeric predictions into the histogram at once (one add per bucket, not per value)."""
        import numpy as np

        values = np.asarray([v for v in predictions if isinstance(v, int | float) and not isinstance(v, bool)],
                            dtype="float64")
        values = values[np.isfinite(values)]
        if not len(values):
            return
        child = self.predicted.labels(**self.labels)
        buckets, total = getattr(child, "_buckets", None), getattr(child, "_sum", None)
        bounds = np.asarray(getattr(child, "_upper_bounds", ()), dtype="float64")
        if buckets is None or total is None or len(bounds) != len(buckets):  # another prometheus_client
            for value in values.tolist():
                child.observe(value)
            return
        # a value goes to the first bucket whose upper bound is >= it, as Histogram.observe puts it
        counts = np.bincount(np.searchsorted(bounds, values, side="left"), minlength=len(bounds))
        for bucket, n in zip(buckets, counts.tolist(), strict=True):
            if n:
                bucket.inc(n)
        total.inc(float(values.sum()))

    def counted(self, rows: int, dropped: int, problems: Mapping[str, int]) -> None:
        if rows:
            self.rows.labels(**self.labels).inc(rows)
        if dropped:
            self.dropped.labels(**self.labels).inc(dropped)
        for reason, n in problems.items():
            if n:
                self.problems.labels(**self.labels, reason=reason).inc(n)

    def drift(self, result: Any) -> None:
        for col in result.columns:
            self.distance.labels(**self.labels, column=col.column, method=col.method).set(col.distance)
            self.psi.labels(**self.labels, column=col.column).set(col.psi)
            self.detected.labels(**self.labels, column=col.column).set(1 if col.drifted else 0)
        self.share.labels(**self.labels).set(result.share)
        self.dataset.labels(**self.labels).set(1 if result.dataset_drift else 0)
        self.window_rows.labels(**self.labels).set(result.rows)
        if result.prediction is not None:
            p = result.prediction
            self.prediction_distance.labels(**self.labels, method=p.method).set(p.distance)


class _Capture:
    """Sampled rows and predictions as JSON lines in rotating files (format in docs/monitoring.md)."""

    def __init__(self, monitor: Monitor, folder: Path) -> None:
        config = monitor.config
        self.config = config
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        manifest = {
            "model": monitor.model,
            "version": monitor.version,
            "digest": monitor.digest,
            "reference": monitor.reference.get("fingerprint", ""),
            "columns": list((monitor.reference.get("columns") or {}).keys()),
            "sensitive": {name: config.capture_sensitive_mode for name in config.capture_sensitive},
        }
        path = folder / MANIFEST
        if not path.exists():
            tmp = path.with_name(f".{MANIFEST}.{os.getpid()}")
            tmp.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
            os.replace(tmp, path)  # one writer wins; every worker writes the same content
        self.max_file = max(4096, int(config.capture_max_mb * 1024 * 1024 / CAPTURE_FILES))
        self.sensitive = frozenset(config.capture_sensitive)
        self.salt = config.capture_salt.encode()
        self.random = random.Random()
        self.lines: list[str] = []
        self.file: Any = None
        self.size = 0
        self.serial = 0

    def add(self, columns: Mapping[str, Any], predictions: Any, rows: int) -> None:
        if self.config.capture_sample_rate < 1 and self.random.random() >= self.config.capture_sample_rate:
            return
        now = round(time.time(), 3)
        names = [n for n in columns if not (n in self.sensitive and self.config.capture_sensitive_mode == "drop")]
        for i in range(rows):
            inputs = {n: self._value(n, columns[n][i]) for n in names}
            prediction = predictions[i] if predictions is not None else None
            self.lines.append(json.dumps({"ts": now, "inputs": inputs, "prediction": prediction},
                                         default=_json_value, allow_nan=False, ensure_ascii=False))

    def _value(self, name: str, value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            value = None  # JSON has no NaN; a null is what the reader counts it as
        if name not in self.sensitive or value is None:
            return value.item() if hasattr(value, "item") else value
        return "sha256:" + hashlib.sha256(self.salt + str(value).encode()).hexdigest()

    def flush(self) -> None:
        lines, self.lines = self.lines, []
        for line in lines:
            data = line.encode("utf-8") + b"\n"
            if self.file is None or (self.size and self.size + len(data) > self.max_file):
                self._rotate()
            self.file.write(data)
            self.size += len(data)
        if self.file is not None:
            self.file.flush()

    def _rotate(self) -> None:
        if self.file is not None:
            self.file.close()
        self.serial += 1
        path = self.folder / f"rows-{os.getpid()}-{int(time.time() * 1000)}-{self.serial}.jsonl"
        self.file = open(path, "ab")  # noqa: SIM115 - kept open across flushes, closed on rotate/close
        self.size = 0
        files = sorted(self.folder.glob("rows-*.jsonl"), key=lambda p: p.stat().st_mtime)
        budget = self.config.capture_max_mb * 1024 * 1024
        total = sum(p.stat().st_size for p in files)
        for old in files[:-1]:
            if total <= budget - self.max_file:
                break
            total -= old.stat().st_size
            old.unlink(missing_ok=True)

    def close(self) -> None:
        self.flush()
        if self.file is not None:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            self.file = None


def load_reference(path: Path) -> dict[str, Any]:
    """The reference profile at ``path``; an empty profile (nothing drifts) when the bento has none."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"version": 1, "source": "none", "rows": 0, "columns": {}, "prediction": None, "fingerprint": ""}


__all__ = ["FLUSH_SECONDS", "MODEL_REFUSED", "PROBLEM_REASONS", "Monitor", "MonitorConfig", "load_reference"]
