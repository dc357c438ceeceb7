"""The monitor a model image runs: a queue that never blocks, a sliding window, metrics and the capture."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shipyard.monitoring import drift
from shipyard.monitoring.runtime import Monitor, MonitorConfig


def _reference() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    columns = {"x": rng.normal(0, 1, 2000), "plan": rng.choice(["a", "b", "c"], 2000)}
    return drift.reference_profile(columns, predictions=rng.choice(["0", "1"], 2000), source="training",
                                   kinds={"x": "numeric", "plan": "categorical"})


def _rows(n: int, *, shift: float = 0.0, seed: int = 1, plans: tuple[str, ...] = ("a", "b", "c")) -> dict[str, list]:
    rng = np.random.default_rng(seed)
    return {"x": (rng.normal(0, 1, n) + shift).tolist(), "plan": rng.choice(list(plans), n).tolist()}


def _monitor(tmp_path: Path, **settings: Any) -> Monitor:
    config = MonitorConfig.from_settings({"enabled": True, "interval_seconds": 3600, **settings},
                                         environ={"SHIPYARD_CAPTURE_DIR": str(tmp_path)})
    return Monitor(_reference(), config, model="churn", version="3", digest="ab" * 32, service="churn")


def _wait(predicate: Any, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_environment_overrides_packaged_settings_and_bad_values_are_named() -> None:
    config = MonitorConfig.from_settings(
        {"enabled": True, "window_rows": 500},
        environ={"SHIPYARD_MONITORING": "off", "SHIPYARD_MONITOR_WINDOW_ROWS": "2000", "SHIPYARD_CAPTURE": "1"},
    )
    assert (config.enabled, config.window_rows, config.capture) == (False, 2000, True)
    assert config.capture_salt  # drawn at start when none is given
    with pytest.raises(ValueError, match="SHIPYARD_CAPTURE=.maybe"):
        MonitorConfig.from_settings({}, environ={"SHIPYARD_CAPTURE": "maybe"})
    with pytest.raises(ValueError, match="out of range"):
        MonitorConfig.from_settings({}, environ={"SHIPYARD_CAPTURE_SAMPLE_RATE": "2"})


def test_a_full_queue_drops_samples_and_counts_them_but_never_waits(tmp_path: Path) -> None:
    monitor = _monitor(tmp_path, queue_rows=1000)
    started = time.perf_counter()
    for _ in range(50):
        monitor.observe(_rows(100), 100, ["0"] * 100)  # the worker is not running: nothing drains
    assert time.perf_counter() - started < 0.5
    assert monitor._enqueued == 1000 and monitor._dropped == 4000
    assert monitor._take_dropped() == 4000 and monitor._take_dropped() == 0


def test_the_window_holds_the_newest_rows_and_drift_follows_them(tmp_path: Path) -> None:
    monitor = _monitor(tmp_path, window_rows=1000)
    monitor.observe(_rows(3000, shift=2.0), 3000, None)  # old, drifted traffic: slides out of the window
    for seed in range(10):
        monitor.observe(_rows(100, seed=seed), 100, ["1"] * 100)
    monitor._drain()
    columns, predictions = monitor.window()
    assert len(columns["x"]) == 1000 and predictions is not None and len(predictions) == 1000
    result = monitor.compute()
    assert result.rows == 1000 and not result.drifted_columns, result
    monitor.observe(_rows(1000, shift=1.0, plans=("a", "z")), 1000, ["1"] * 1000)
    monitor._drain()
    assert set(monitor.compute().drifted_columns) == {"x", "plan"}


def test_a_window_under_min_rows_is_not_measured(tmp_path: Path) -> None:
    """One odd request must not read as drift: a 5-row window of a normal column measures far above 0.1."""
    monitor = _monitor(tmp_path, min_rows=300)
    monitor.observe(_rows(5, seed=4), 5, ["1"] * 5)
    monitor._drain()
    assert monitor.compute() is None and monitor.last is None
    assert drift.compute_drift(_reference(), _rows(5, seed=4), threshold=0.1).drifted_columns  # what it would say
    monitor.observe(_rows(400, seed=5), 400, ["1"] * 400)
    monitor._drain()
    result = monitor.compute()
    assert result.rows == 405 and not result.drifted_columns
    assert MonitorConfig.from_settings({"window_rows": 100, "min_rows": 500}, environ={}).min_rows == 100
    assert MonitorConfig.from_settings({}, environ={"SHIPYARD_MONITOR_MIN_ROWS": "50"}).min_rows == 50


def test_metrics_carry_the_version_labels_and_the_drift_of_each_column(tmp_path: Path) -> None:
    from prometheus_client import REGISTRY

    monitor = _monitor(tmp_path, interval_seconds=0.5).start()
    try:
        monitor.observe(_rows(2000, shift=1.0), 2000, ["1"] * 2000)
        monitor.problem(422)
        monitor.problem(422, model_refused=True)
        labels = {"model": "churn", "version": "3", "digest": "ab" * 6}
        _wait(lambda: REGISTRY.get_sample_value("shipyard_drift_detected", {**labels, "column": "x"}) == 1.0)
        assert REGISTRY.get_sample_value("shipyard_drift_detected", {**labels, "column": "plan"}) == 0.0
        assert REGISTRY.get_sample_value("shipyard_monitor_rows_total", labels) >= 2000
        for reason in ("schema_violation", "model_refused"):
            assert REGISTRY.get_sample_value("shipyard_request_problems_total", {**labels, "reason": reason}) >= 1
        assert REGISTRY.get_sample_value("shipyard_predictions_total", {**labels, "class": "1"}) >= 2000
    finally:
        monitor.stop()


def test_capture_writes_every_row_hashes_sensitive_columns_and_a_clean_stop_loses_nothing(tmp_path: Path) -> None:
    monitor = _monitor(tmp_path, capture=True, capture_sensitive=["plan"]).start()
    for seed in range(7):
        monitor.observe(_rows(30, seed=seed), 30, [str(seed)] * 30)
    monitor.stop()
    folder = tmp_path / "churn" / "v3"
    manifest = json.loads((folder / "capture.json").read_text())
    assert manifest["version"] == "3" and manifest["digest"] == "ab" * 32 and manifest["sensitive"] == {"plan": "hash"}
    rows = [json.loads(line) for f in folder.glob("rows-*.jsonl") for line in f.read_text().splitlines()]
    assert len(rows) == 210
    assert all(r["inputs"]["plan"].startswith("sha256:") and isinstance(r["inputs"]["x"], float) for r in rows)
    assert sorted({r["prediction"] for r in rows}) == [str(s) for s in range(7)]


def test_capture_drops_columns_and_keeps_within_its_budget(tmp_path: Path) -> None:
    monitor = _monitor(tmp_path, capture=True, capture_sensitive=["plan"], capture_sensitive_mode="drop",
                       capture_max_mb=0.05)  # 50 kB over 10 files
    monitor.start()
    try:
        for seed in range(40):
            monitor.observe(_rows(100, seed=seed), 100, ["1"] * 100)
            time.sleep(0.01)
    finally:
        monitor.stop()
    files = list((tmp_path / "churn" / "v3").glob("rows-*.jsonl"))
    assert sum(f.stat().st_size for f in files) <= 0.05 * 1024 * 1024 + 8192
    first = json.loads(files[0].read_text().splitlines()[0])
    assert "plan" not in first["inputs"]


def test_a_disabled_monitor_does_nothing(tmp_path: Path) -> None:
    monitor = Monitor(_reference(), MonitorConfig(enabled=False), model="m", version="1", digest="0" * 64,
                      service="m").start()
    monitor.observe(_rows(10), 10, None)
    assert monitor._thread is None and not monitor._queue
