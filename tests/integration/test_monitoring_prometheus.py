"""A real Prometheus scraping a real model image, with the handoff bundle's alerting rules loaded.

In-distribution traffic leaves every drift distance under the threshold and
no alert firing; shifted traffic (one numeric column moved by a standard
deviation, one category replaced) drifts exactly those two columns and fires
the drift alert for each, and no other alert.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.docker_support import ServedImage
from tests.monitoring_support import predict_body
from tests.prometheus_support import PrometheusServer, prometheus  # noqa: F401  (fixture)

pytestmark = pytest.mark.docker

THRESHOLD = 0.1  # Settings.drift_threshold's default, which the image is packaged with
WINDOW_ROWS = 1000  # per worker: small enough that a few thousand shifted rows fill it
BATCH = 100


@pytest.fixture
def container(monitored_image: dict[str, Any]) -> Iterator[ServedImage]:
    env = {"SHIPYARD_MONITOR_INTERVAL_SECONDS": "1", "SHIPYARD_MONITOR_WINDOW_ROWS": str(WINDOW_ROWS)}
    with ServedImage(monitored_image["image"], env=env) as served:
        yield served


def _target(container: ServedImage) -> str:
    return f"127.0.0.1:{container.port}"


def _send(container: ServedImage, frame: Any) -> None:
    for start in range(0, len(frame), BATCH):
        rows = frame.iloc[start : start + BATCH]
        status, body = container.request("POST", "/predict", predict_body(rows))
        assert status == 200, body[:500]


def _immediate(text: str) -> str:
    """The rule file with every ``for:`` at 0s: the test cannot wait the production durations."""
    return re.sub(r"(?m)^(\s*for:\s*)\S+$", r"\g<1>0s", text)


def _require_in_distribution(reference: dict[str, Any] | None, holdout: Any, shifted: Any, columns: set[str]) -> None:
    """The traffic this test sends drifts as it expects when computed here, before any server is involved."""
    from shipyard.monitoring.drift import compute_drift

    assert reference is not None, "the bundle has no reference-profile.json"
    for frame, expected in ((holdout, set()), (shifted, columns)):
        result = compute_drift(reference, {c: frame[c].tolist() for c in frame.columns}, threshold=THRESHOLD)
        distances = {c.column: round(c.distance, 3) for c in result.columns}
        assert set(result.drifted_columns) == expected, (
            f"the fixture's rows drift {sorted(result.drifted_columns)} against the bundle's reference profile "
            f"(expected {sorted(expected)}): {distances}"
        )


def test_drift_alert_fires_for_exactly_the_shifted_columns(
    monitored_image: dict[str, Any],
    container: ServedImage,
    prometheus: PrometheusServer,  # noqa: F811
) -> None:
    from shipyard.deploy.alerts import measurements, rule_groups
    from shipyard.deploy.handoff import read_bundle

    bundle = Path(monitored_image["bundle"])
    spec = read_bundle(bundle)
    rules_file = bundle / "alerts" / "rules.yaml"
    assert yaml.safe_load(rules_file.read_text()) == rule_groups(spec)
    selector = f'model="{monitored_image["model"]}",version="{monitored_image["version"]}"'
    holdout, shifted = monitored_image["holdout"], monitored_image["shift"](monitored_image["holdout"])
    _require_in_distribution(spec.reference_profile, holdout, shifted, set(monitored_image["columns"]))

    # One request before scraping starts: a cold first answer is not the latency the alert watches.
    _send(container, holdout.iloc[:1])
    prometheus.load_rules([rules_file], rewrite=_immediate)
    prometheus.scrape([_target(container)])
    prometheus.wait_for(lambda: prometheus.query(f'up{{instance="{_target(container)}"}} == 1'), 30, "target up")

    _send(container, holdout)
    columns = set(holdout.columns)

    def settled() -> dict[str, float] | None:
        rows = prometheus.values(f"max(shipyard_drift_window_rows{{{selector}}})", by="")
        distances = prometheus.values(f"max by (column) (shipyard_drift_distance{{{selector}}})", by="column")
        full = rows and rows[""] >= min(WINDOW_ROWS, len(holdout) // 2)
        return distances if full and set(distances) == columns else None

    distances = prometheus.wait_for(settled, 60, "drift gauges of every column over a full window")
    time.sleep(3)  # three rule evaluations over the same data
    distances = prometheus.values(f"max by (column) (shipyard_drift_distance{{{selector}}})", by="column")
    assert max(distances.values()) < THRESHOLD, distances
    assert prometheus.alerts() == [], prometheus.alerts()

    _send(container, shifted)
    _send(container, shifted)  # twice: every worker's window then holds shifted rows only
    expected = set(monitored_image["columns"])

    def drifted() -> set[str] | None:
        distances = prometheus.values(f"max by (column) (shipyard_drift_distance{{{selector}}})", by="column")
        firing = {
            a["labels"].get("column")
            for a in prometheus.alerts("firing")
            if a["labels"]["alertname"] == "ShipyardDriftDetected"
        }
        over = {c for c, d in distances.items() if d >= THRESHOLD}
        return over if over == expected and firing == expected else None

    prometheus.wait_for(drifted, 60, f"exactly {sorted(expected)} drifted and alerting")
    time.sleep(2)
    distances = prometheus.values(f"max by (column) (shipyard_drift_distance{{{selector}}})", by="column")
    assert {c for c, d in distances.items() if d >= THRESHOLD} == expected, distances
    alerts = prometheus.alerts()
    assert {a["labels"]["alertname"] for a in alerts} == {"ShipyardDriftDetected"}, alerts
    assert all(a["state"] == "firing" and a["labels"]["severity"] == "warning" for a in alerts), alerts
    assert {a["labels"]["column"] for a in alerts} == expected
    assert {(a["labels"]["model"], a["labels"]["version"]) for a in alerts} == {
        (monitored_image["model"], monitored_image["version"])
    }

    # The other rules' selectors match what the image exports: their measurements have values.
    measured = measurements(spec)
    assert prometheus.values(measured["ShipyardHighErrorRatio"], by="") == {"": 0.0}
    p99 = prometheus.values(measured["ShipyardHighLatencyP99"], by="")[""]
    assert 0 < p99 < spec.alerts.latency_p99_seconds
    dropped = prometheus.values(measured["ShipyardMonitorDropped"], by="model")
    assert dropped == {monitored_image["model"]: 0.0}, (
        f"{dropped}: shipyard_monitor_dropped_total must be exported at 0 from the start, or increase() misses "
        "the first samples dropped"
    )
