"""Alerting rules of a handoff bundle: valid for Prometheus' own checker, firing on the labels images export.

The series below copy the label sets a real model image exports at /metrics
(BentoML's request metrics: endpoint, http_response_code, runner_name,
service_name, service_version; shipyard's: model, version, digest), so
``promtool test rules`` proves the selectors match them, and match no other
version of the same model.
"""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest
import yaml

import shipyard
from shipyard._core.lineage import Lineage
from shipyard._core.workspace import slug
from shipyard.deploy.alerts import AlertThresholds, measurements, prometheus_rule, rule_groups
from shipyard.deploy.handoff import HandoffSpec, read_bundle, write_bundle
from tests.prometheus_support import bentoml_series, promtool

NAME, VERSION = "Iris Classifier", "3"
SERVICE = slug(NAME)


def _spec(**overrides) -> HandoffSpec:
    values: dict[str, object] = {
        "model_name": NAME,
        "version": VERSION,
        "image_repository": "registry.local/shipyard/iris",
        "image_digest": "sha256:" + "ab" * 32,
        "run_as_user": 10001,
        "lineage": Lineage(model_name=NAME, model_version=VERSION, run_id="r1", pathspec="Flow/1"),
        "gate_report": {"verdict": "pass", "results": []},
    }
    values.update(overrides)
    return HandoffSpec(**values)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], check=False, capture_output=True, text=True, timeout=60)


def _bento(version: str, code: str, per_minute: int, *, seconds_bucket: str = "5") -> list[dict[str, str]]:
    return bentoml_series(SERVICE, version, code, per_minute, seconds_bucket=seconds_bucket,
                          buckets=("0.5", "1", "2.5", "5"), samples=40,
                          extra_labels=f',runner_name="{SERVICE}",job="models"')


def _shipyard(metric: str, values: str, version: str = VERSION, **labels: str) -> dict[str, str]:
    extra = "".join(f',{k}="{v}"' for k, v in labels.items())
    return {
        "series": f'{metric}{{model="{NAME}",version="{version}",digest="7981890d99b7",pid="12"{extra}}}',
        "values": values,
    }


def _alert(name: str, summary: str, **labels: str) -> dict[str, object]:
    rule = next(r for r in rule_groups(_spec())["groups"][0]["rules"] if r["alert"] == name)
    return {
        "exp_labels": {**rule["labels"], **labels},
        "exp_annotations": {"summary": summary, "description": rule["annotations"]["description"]},
    }


def test_rule_file_and_prometheus_rule_pass_promtool_check(tmp_path: Path) -> None:
    bundle = write_bundle(_spec(), tmp_path / "bundle")
    rule = yaml.safe_load((bundle.path / "alerts" / "prometheus-rule.yaml").read_text())
    plain = yaml.safe_load((bundle.path / "alerts" / "rules.yaml").read_text())
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert rule["metadata"]["namespace"] == "default" and rule["spec"] == plain == rule_groups(_spec())
    (tmp_path / "operator.yaml").write_text(yaml.safe_dump(rule["spec"]))
    for path in (bundle.path / "alerts" / "rules.yaml", tmp_path / "operator.yaml"):
        checked = _run("check", "rules", str(path))
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "SUCCESS: 4 rules found" in checked.stdout
    assert {r["alert"] for r in plain["groups"][0]["rules"]} == set(measurements(_spec()))


def test_alerts_fire_on_the_series_an_image_exports_and_on_no_other_version(tmp_path: Path) -> None:
    write_bundle(_spec(), tmp_path / "bundle")
    rules = tmp_path / "bundle" / "alerts" / "rules.yaml"
    other = "v4-0000000000000000"  # another version of the same model: its errors are not ours
    series = [
        *_bento("v3-787363dd51b4f054", "200", 90),
        *_bento("v3-787363dd51b4f054", "500", 10),
        *_bento(other, "500", 100, seconds_bucket="0.5"),
        _shipyard("shipyard_drift_detected", "0x5 1x35", column="petal length (cm)"),
        _shipyard("shipyard_drift_detected", "0x40", column="sepal width (cm)"),
        _shipyard("shipyard_drift_detected", "1x40", version="4", column="sepal width (cm)"),
        _shipyard("shipyard_monitor_dropped_total", "0x20 5 5 5"),
    ]
    tests = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    # Drifted since minute 5: pending for 15m, firing after.
                    {"eval_time": "19m", "alertname": "ShipyardDriftDetected", "exp_alerts": []},
                    {
                        "eval_time": "21m",
                        "alertname": "ShipyardDriftDetected",
                        "exp_alerts": [
                            _alert(
                                "ShipyardDriftDetected",
                                f"Input column petal length (cm) of {NAME} v{VERSION} drifted from its reference "
                                "profile.",
                                column="petal length (cm)",
                            )
                        ],
                    },
                    {"eval_time": "5m", "alertname": "ShipyardHighErrorRatio", "exp_alerts": []},
                    {
                        "eval_time": "12m",
                        "alertname": "ShipyardHighErrorRatio",
                        "exp_alerts": [
                            _alert("ShipyardHighErrorRatio", f"10% of {NAME} v{VERSION}'s /predict answers are 5xx.")
                        ],
                    },
                    {"eval_time": "9m", "alertname": "ShipyardHighLatencyP99", "exp_alerts": []},
                    {
                        "eval_time": "17m",
                        "alertname": "ShipyardHighLatencyP99",
                        "exp_alerts": [
                            _alert(
                                "ShipyardHighLatencyP99",
                                f"{NAME} v{VERSION}'s /predict p99 latency is 4.975s.",
                            )
                        ],
                    },
                    {"eval_time": "20m", "alertname": "ShipyardMonitorDropped", "exp_alerts": []},
                    {
                        "eval_time": "22m",
                        "alertname": "ShipyardMonitorDropped",
                        "exp_alerts": [
                            _alert(
                                "ShipyardMonitorDropped", f"The drift monitor of {NAME} v{VERSION} dropped 5 samples."
                            )
                        ],
                    },
                ],
            }
        ],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    tested = _run("test", "rules", str(tmp_path / "tests.yaml"))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_thresholds_and_durations_come_from_the_spec_and_survive_the_bundle(tmp_path: Path) -> None:
    alerts = AlertThresholds(drift_for="0s", error_ratio=0.2, latency_p99_seconds=0.25, rate_window="1m")
    spec = _spec(alerts=alerts, reference_profile={"version": 1, "fingerprint": "f" * 64}, namespace="models")
    rules = {r["alert"]: r for r in rule_groups(spec)["groups"][0]["rules"]}
    assert rules["ShipyardDriftDetected"]["for"] == "0s"
    assert rules["ShipyardHighErrorRatio"]["expr"].endswith("[1m])) > 0.2")
    assert rules["ShipyardHighLatencyP99"]["expr"].endswith(" > 0.25")
    assert prometheus_rule(spec)["metadata"]["namespace"] == "models"

    bundle = write_bundle(spec, tmp_path / "bundle")
    written = {"alerts/prometheus-rule.yaml", "base/kustomization.yaml", "alerts/rules.yaml", "reference-profile.json"}
    assert written <= set(bundle.files)
    # kept out of the overlays: they must apply on a cluster without the Prometheus Operator's CRDs
    assert "prometheus-rule.yaml" not in bundle.manifest("kustomization.yaml")["resources"]
    readme = (bundle.path / "README.md").read_text()
    assert "alerts/rules.yaml" in readme and "alerts/prometheus-rule.yaml" in readme and "0.25 s" in readme
    again = read_bundle(bundle.path)
    assert again.alerts == alerts and again.reference_profile == spec.reference_profile
    assert write_bundle(dataclasses.replace(again), tmp_path / "again").files == bundle.files

    without = write_bundle(_spec(), tmp_path / "plain")
    assert "reference-profile.json" not in without.files and read_bundle(without.path).reference_profile is None
    assert read_bundle(without.path).alerts == AlertThresholds()


def test_label_values_are_quoted_for_promql() -> None:
    expr = measurements(_spec(model_name='odd "name" \\ here'))["ShipyardDriftDetected"]
    assert 'model="odd \\"name\\" \\\\ here"' in expr


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"drift_for": "15 minutes"}, "not a Prometheus duration"),
        ({"rate_window": "0s"}, "longer than zero"),
        ({"error_ratio": 5}, "between 0 and 1"),
        ({"latency_p99_seconds": 0}, "must be positive"),
    ],
)
def test_wrong_alert_settings_are_refused(values, message) -> None:
    with pytest.raises(shipyard.DeployError, match=message):
        AlertThresholds(**values)
