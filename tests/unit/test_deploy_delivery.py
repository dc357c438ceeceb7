"""Progressive delivery objects: valid against the upstream CRDs' schemas, accepted by kustomize, and analysis
queries that measure only the new version and never pass on silence (checked with ``promtool``)."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import subprocess
from importlib.resources import files
from pathlib import Path

import pytest
import shipyard
import yaml
from shipyard._core.lineage import Lineage
from shipyard._core.workspace import slug
from shipyard.deploy import delivery
from shipyard.deploy.alerts import prometheus_rule
from tests.prometheus_support import bentoml_series, promtool
from shipyard.deploy.delivery import (
    CHECKS,
    MODES,
    Check,
    DeliverySpec,
    checks,
    delivery_objects,
    gitops_objects,
    latency_budget,
    readme_lines,
    validate_custom,
)
from shipyard.deploy.handoff import GitOpsSource, HandoffSpec, Overlay
from shipyard.deploy.kustomize import build

NAME, VERSION = "Iris Classifier", "3"
APP = slug(NAME)
PROMETHEUS = "http://prometheus.monitoring.svc:9090"


def _latency_gate(metric: str = "latency_p99_ms", op: str = "<=", threshold: float = 250.0, **extra) -> dict:
    return {"name": f"threshold.{metric}", "kind": "threshold", "status": "pass", "blocking": True,
            "value": threshold / 2, "threshold": threshold, "message": "", "source": "check",
            "details": {"metric": metric, "op": op, "source": "logged by the run"}, **extra}


def _spec(mode: str = "argo-canary", *, gates: list[dict] | None = None, profile: bool = True, **delivery_kw):
    results = [{"name": "accuracy", "kind": "threshold", "status": "pass", "blocking": True, "threshold": 0.9,
                "details": {"metric": "accuracy", "op": ">="}}]
    return HandoffSpec(
        model_name=NAME,
        version=VERSION,
        image_repository="registry.local/shipyard/iris",
        image_digest="sha256:" + "ab" * 32,
        run_as_user=10001,
        lineage=Lineage(model_name=NAME, model_version=VERSION, run_id="r1", pathspec="Flow/1"),
        gate_report={"verdict": "pass", "results": results + (gates if gates is not None else [_latency_gate()])},
        reference_profile={"columns": {}} if profile else None,
        delivery=DeliverySpec(mode=mode, prometheus=PROMETHEUS, **delivery_kw),
        overlays=(Overlay("staging", "models-staging", 1), Overlay("production", "models", 3)),
        gitops=GitOpsSource(url="https://git.example.com/ops/deploy.git", path="deploy/iris", revision="main",
                            flux_source="deploy-repo", argocd_project="models", argocd_namespace="argocd"),
    )


def _custom(objects: dict[str, dict]) -> dict[str, dict]:
    return {name: obj for name, obj in objects.items() if obj["kind"] != "Service"}


# ---- objects per mode ----------------------------------------------------------------------------------------


def test_rolling_adds_nothing_to_base() -> None:
    assert delivery_objects(_spec("rolling")) == {}


def test_argo_canary_steps_services_and_analysis() -> None:
    spec = _spec("argo-canary", steps=(20, 50), pause="1m")
    objects = delivery_objects(spec)
    assert sorted(objects) == ["analysis-template.yaml", "rollout.yaml", "service-canary.yaml", "service-stable.yaml"]
    rollout = objects["rollout.yaml"]["spec"]
    assert rollout["workloadRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": APP,
                                      "scaleDown": "never"}
    assert rollout["selector"]["matchLabels"] == {"app.kubernetes.io/name": APP}
    canary = rollout["strategy"]["canary"]
    assert (canary["canaryService"], canary["stableService"]) == (f"{APP}-canary", f"{APP}-stable")
    analysis = {"analysis": {"templates": [{"templateName": f"{APP}-analysis"}]}}
    assert canary["steps"] == [{"setWeight": 20}, {"pause": {"duration": "1m"}}, analysis,
                               {"setWeight": 50}, {"pause": {"duration": "1m"}}, analysis]
    for name in ("service-canary.yaml", "service-stable.yaml"):
        assert objects[name]["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
    template = objects["analysis-template.yaml"]
    assert template["metadata"]["name"] == f"{APP}-analysis"
    metrics = template["spec"]["metrics"]
    assert [m["name"] for m in metrics] == ["errors", "latency", "drift"]
    for metric, check in zip(metrics, checks(spec)):
        assert metric["provider"] == {"prometheus": {"address": PROMETHEUS, "query": check.query}}
        assert (metric["interval"], metric["count"], metric["failureLimit"]) == ("1m", 3, 1)
        assert metric["successCondition"] == check.condition()
    for obj in _custom(objects).values():
        validate_custom(obj)


def test_argo_bluegreen_analyses_before_and_after_the_switch() -> None:
    objects = delivery_objects(_spec("argo-bluegreen"))
    # the base Service <app> is the active one: clients only ever reach analysed pods
    assert sorted(objects) == ["analysis-template.yaml", "rollout.yaml", "service-preview.yaml"]
    blue_green = objects["rollout.yaml"]["spec"]["strategy"]["blueGreen"]
    templates = {"templates": [{"templateName": f"{APP}-analysis"}]}
    assert blue_green == {"activeService": APP, "previewService": f"{APP}-preview",
                          "prePromotionAnalysis": templates, "postPromotionAnalysis": templates}
    assert "autoPromotionEnabled" not in blue_green  # the analysis decides, not a person
    for obj in _custom(objects).values():
        validate_custom(obj)


def test_flagger_canary_and_one_metric_template_per_check() -> None:
    spec = _spec("flagger", failure_limit=2, count=4)
    objects = delivery_objects(spec)
    assert sorted(objects) == ["canary.yaml", "metric-drift.yaml", "metric-errors.yaml", "metric-latency.yaml"]
    canary = objects["canary.yaml"]["spec"]
    assert canary["targetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": APP}
    assert canary["service"]["port"] == 80 and canary["service"]["targetPort"] == "http"
    analysis = canary["analysis"]
    assert analysis["threshold"] == 3  # Flagger rolls back at threshold failures, Argo above failureLimit
    assert (analysis["maxWeight"], analysis["stepWeights"]) == (50, [10, 25, 50])
    by_name = {m["name"]: m for m in analysis["metrics"]}
    for check in checks(spec):
        template = objects[f"metric-{check.name}.yaml"]
        assert template["metadata"]["name"] == by_name[check.name]["templateRef"]["name"] == f"{APP}-{check.name}"
        assert template["spec"] == {"provider": {"type": "prometheus", "address": PROMETHEUS}, "query": check.query}
        assert by_name[check.name]["thresholdRange"] == {"max": check.threshold}
    for obj in objects.values():
        validate_custom(obj)


def test_gitops_objects_per_overlay() -> None:
    spec = _spec("argo-canary")
    objects = gitops_objects(spec)
    assert sorted(objects) == ["argocd/production.yaml", "argocd/staging.yaml", "flux/production.yaml",
                               "flux/staging.yaml"]
    app = objects["argocd/production.yaml"]
    assert app["metadata"]["name"] == f"{APP}-production" and app["metadata"]["namespace"] == "argocd"
    assert app["spec"]["project"] == "models"
    assert app["spec"]["source"] == {"repoURL": "https://git.example.com/ops/deploy.git", "targetRevision": "main",
                                     "path": "deploy/iris/overlays/production"}
    assert app["spec"]["destination"] == {"server": "https://kubernetes.default.svc", "namespace": "models"}
    assert app["spec"]["syncPolicy"] == {"automated": {"prune": True, "selfHeal": True},
                                         "syncOptions": ["CreateNamespace=true"]}
    flux = objects["flux/staging.yaml"]["spec"]
    assert flux["path"] == "./deploy/iris/overlays/staging" and flux["targetNamespace"] == "models-staging"
    assert flux["sourceRef"] == {"kind": "GitRepository", "name": "deploy-repo"}
    assert flux["prune"] is True and flux["wait"] is True
    for obj in objects.values():
        validate_custom(obj)
    assert gitops_objects(dataclasses.replace(spec, gitops=None)) == {}


def test_prometheus_rule_passes_its_schema() -> None:
    validate_custom(prometheus_rule(_spec()))


# ---- schemas: every one catches a wrong manifest --------------------------------------------------------------


def _every_custom_object() -> dict[str, dict]:
    objects: dict[str, dict] = {}
    for mode in ("argo-canary", "flagger"):
        spec = _spec(mode)
        generated = _custom({**delivery_objects(spec), **gitops_objects(spec)})
        objects.update({obj["kind"]: obj for obj in generated.values()})
    objects["PrometheusRule"] = prometheus_rule(_spec())
    return objects


BREAKAGES = {
    # kind: (how to break it, the path the error must name)
    "Rollout": (lambda o: o["spec"]["strategy"]["canary"].update(stableServce="x"), "spec.strategy.canary"),
    "AnalysisTemplate": (lambda o: o["spec"]["metrics"][0].update(interval=60), "spec.metrics.0.interval"),
    "Canary": (lambda o: o["spec"]["analysis"].update(stepWeights="10,25"), "spec.analysis.stepWeights"),
    "MetricTemplate": (lambda o: o["spec"]["provider"].update(adress="http://x"), "spec.provider"),
    "Application": (lambda o: o["spec"]["syncPolicy"]["automated"].update(selfheal=True), "spec.syncPolicy.automated"),
    "Kustomization": (lambda o: o["spec"].update(prune="yes"), "spec.prune"),
    "PrometheusRule": (lambda o: o["spec"]["groups"][0]["rules"][0].update(expression="up"), "spec.groups.0.rules.0"),
}


def test_a_schema_for_every_generated_kind_and_each_comes_from_upstream() -> None:
    objects = _every_custom_object()
    assert set(objects) == set(BREAKAGES)
    for obj in objects.values():
        schema = json.loads(files("shipyard.deploy").joinpath(
            "schemas", delivery.schema_file(obj["apiVersion"], obj["kind"])).read_text())
        assert "openAPIV3Schema" in schema["$comment"] and "commit" in schema["$comment"]


@pytest.mark.parametrize("kind", sorted(BREAKAGES))
def test_each_schema_catches_a_wrong_manifest(kind: str) -> None:
    good = _every_custom_object()[kind]
    validate_custom(good)
    broken = copy.deepcopy(good)
    breakage, path = BREAKAGES[kind]
    breakage(broken)
    with pytest.raises(shipyard.DeployError, match=rf"{kind} {good['metadata']['name']} is not valid: at {path}:"):
        validate_custom(broken)


def test_unknown_custom_kind_is_refused() -> None:
    with pytest.raises(shipyard.DeployError, match="no schema for argoproj.io/v1alpha1 Experiment"):
        validate_custom({"apiVersion": "argoproj.io/v1alpha1", "kind": "Experiment", "metadata": {"name": "x"}})
    with pytest.raises(shipyard.DeployError, match="no schema for flagger.app/v1 Canary"):
        validate_custom({"apiVersion": "flagger.app/v1", "kind": "Canary", "metadata": {"name": "x"}})


# ---- kustomize accepts the objects ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_kustomize_accepts_the_objects(tmp_path: Path, mode: str) -> None:
    spec = _spec(mode)
    objects = {**delivery_objects(spec), "prometheus-rule.yaml": prometheus_rule(spec)}
    for name, obj in objects.items():
        (tmp_path / name).write_text(yaml.safe_dump(obj, sort_keys=False))
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(
        {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "namespace": "models",
         "resources": sorted(objects)}))
    rendered = build(tmp_path)
    assert sorted((o["kind"], o["metadata"]["name"]) for o in rendered) == sorted(
        (o["kind"], o["metadata"]["name"]) for o in objects.values())
    assert {o["metadata"]["namespace"] for o in rendered} == {"models"}
    for obj in rendered:
        if obj["kind"] != "Service":
            validate_custom(obj)


def test_kustomize_accepts_the_gitops_objects(tmp_path: Path) -> None:
    objects = gitops_objects(_spec())
    for name, obj in objects.items():
        (tmp_path / name.replace("/", "-")).write_text(yaml.safe_dump(obj))
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(
        {"resources": sorted(n.replace("/", "-") for n in objects)}))
    assert len(build(tmp_path)) == 4


# ---- checks ---------------------------------------------------------------------------------------------------


def test_checks_are_picked_from_what_the_model_has() -> None:
    assert [c.name for c in checks(_spec())] == ["errors", "latency", "drift"]
    assert [c.name for c in checks(_spec(gates=[], profile=False))] == ["errors"]
    assert [c.name for c in checks(_spec(checks=("drift", "errors")))] == ["errors", "drift"]
    errors, latency, drift = checks(_spec(max_error_ratio=0.02))
    assert (errors.op, errors.threshold) == ("<=", 0.02)
    assert (latency.op, latency.threshold) == ("<=", 0.25)
    assert (drift.op, drift.threshold) == ("<=", 0.0)


def test_latency_check_without_a_latency_gate_names_the_fix() -> None:
    with pytest.raises(shipyard.DeployError, match="no latency gate") as caught:
        checks(_spec(gates=[], checks=("errors", "latency")))
    assert "latency_p99_ms <= 250" in (caught.value.hint or "")
    with pytest.raises(shipyard.DeployError, match="no reference profile"):
        delivery_objects(_spec(profile=False, checks=("drift",)))


def test_queries_select_only_the_new_version() -> None:
    errors, latency, drift = checks(_spec())
    for query in (errors.query, latency.query):
        assert f'service_name="{APP}"' in query and 'service_version=~"v3-.*"' in query
        assert 'endpoint="/predict"' in query and "[2m]" in query
    assert 'http_response_code=~"5.."' in errors.query and "4.." not in errors.query
    assert latency.query.startswith("histogram_quantile(0.99, sum by (le) (rate(")
    assert drift.query == f'max(shipyard_dataset_drift{{model="{NAME}",version="{VERSION}"}})'
    assert "[5m]" in checks(_spec(window="5m"))[0].query


def _bento(version: str, code: str, per_minute: int, seconds_bucket: str = "0.1") -> list[dict[str, str]]:
    return bentoml_series(APP, version, code, per_minute, seconds_bucket=seconds_bucket, buckets=("0.1", "0.5", "1"),
                          samples=20)


def _promql_test(tmp_path: Path, series: list[dict], expected: list[tuple[str, list[float]]]) -> None:
    tests = [{"expr": expr, "eval_time": "10m", "exp_samples": [{"labels": "{}", "value": v} for v in values]}
             for expr, values in expected]
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(
        {"rule_files": [], "evaluation_interval": "1m",
         "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": tests}]}))
    out = subprocess.run([promtool(), "test", "rules", str(tmp_path / "test.yaml")],
                         check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_queries_measure_the_image_series_and_ignore_other_versions_and_4xx(tmp_path: Path) -> None:
    errors, latency, drift = checks(_spec())
    new, other = "v3-787363dd51b4f054", "v4-0000000000000000"
    drift_series = [{"series": f'shipyard_dataset_drift{{model="{NAME}",version="{v}",pid="{p}"}}', "values": x}
                    for v, p, x in ((VERSION, "1", "0x20"), (VERSION, "2", "0x20"), ("4", "1", "1x20"))]
    # 120 fast answers a minute, 3 of them 5xx, 30 of them 4xx; the other version's slow 5xx are not ours
    series = [*_bento(new, "200", 87), *_bento(new, "400", 30), *_bento(new, "503", 3),
              *_bento(other, "500", 60, seconds_bucket="1"), *drift_series]
    _promql_test(tmp_path, series, [(errors.query, [0.025]), (drift.query, [0]), (latency.query, [0.099])])
    assert not errors.passes(0.025) and drift.passes(0) and latency.passes(0.099)


def test_no_5xx_yet_is_zero_and_no_traffic_is_no_number(tmp_path: Path) -> None:
    errors, latency, drift = checks(_spec())
    # No 5xx series at all: a ratio of 0, not an empty answer.
    _promql_test(tmp_path, _bento("v3-787363dd51b4f054", "200", 60), [(errors.query, [0])])
    # Only another version answered: every query is empty, which Argo counts as a measurement error (no pass).
    _promql_test(tmp_path, _bento("v4-0000000000000000", "200", 60),
                 [(errors.query, []), (latency.query, []), (drift.query, [])])


# ---- Check, latency budget, DeliverySpec ------------------------------------------------------------------------


def test_check_condition_and_passes() -> None:
    at_most = Check("errors", "q", "<=", 0.01)
    below = Check("drift", "q", "<", 1.0)
    assert at_most.condition() == "result[0] <= 0.01" and below.condition() == "result[0] < 1.0"
    assert Check("x", "q", "<=", 1e-5).condition() == "result[0] <= 0.00001"
    assert at_most.passes(0.01) and not at_most.passes(0.011) and not at_most.passes(math.nan)
    assert below.passes(0.0) and not below.passes(1.0)
    with pytest.raises(shipyard.DeployError, match="operator '>='"):
        Check("x", "q", ">=", 1.0)


@pytest.mark.parametrize(("metric", "threshold", "seconds"), [
    ("latency_p99_ms", 250.0, 0.25), ("p95_latency_us", 5000.0, 0.005), ("latency_s", 0.5, 0.5),
    ("request_latency_seconds", 2.0, 2.0), ("latency", 1.5, 1.5), ("Latency_P99_MS", 100.0, 0.1),
])
def test_latency_budget_units(metric: str, threshold: float, seconds: float) -> None:
    assert latency_budget({"results": [_latency_gate(metric, threshold=threshold)]}) == pytest.approx(seconds)


def test_latency_budget_reads_only_blocking_ceilings_on_latency_and_takes_the_smallest() -> None:
    assert latency_budget({}) is None and latency_budget({"results": []}) is None
    assert latency_budget({"results": [_latency_gate(op=">=")]}) is None
    assert latency_budget({"results": [_latency_gate(blocking=False)]}) is None
    assert latency_budget({"results": [_latency_gate("accuracy")]}) is None
    # the smoke test's latency result is not a threshold gate (milliseconds, no unit in its name)
    smoke = {"name": "latency", "kind": "external", "status": "pass", "blocking": True, "value": 41.0,
             "threshold": 250.0, "details": {}}
    assert latency_budget({"results": [smoke]}) is None
    both = [_latency_gate("latency_p99_ms", "<", 300.0), _latency_gate("latency_p95_s", "<=", 0.2)]
    assert latency_budget({"results": both}) == pytest.approx(0.2)
    # a report whose result lacks details falls back to the gate spec it was evaluated from
    bare = {**_latency_gate(), "details": {}}
    specs = [{"kind": "threshold", "name": bare["name"], "metric": "latency_p99_ms", "op": "<=", "value": 250.0}]
    assert latency_budget({"results": [bare], "specs": specs}) == pytest.approx(0.25)


def test_delivery_spec_round_trips_through_json() -> None:
    for spec in (DeliverySpec(), DeliverySpec(mode="flagger", steps=(5, 50, 90), checks=("errors", "drift"),
                                              pause="1m30s", window="500ms", max_error_ratio=0.005)):
        again = DeliverySpec.from_dict(json.loads(json.dumps(spec.to_dict())))
        assert again == spec and isinstance(again.steps, tuple)
    assert DeliverySpec.from_dict({"steps": [20, 40]}).steps == (20, 40)
    with pytest.raises(shipyard.DeployError, match="stepz are not known"):
        DeliverySpec.from_dict({"stepz": [20]})


@pytest.mark.parametrize(("settings", "message"), [
    ({"mode": "canary"}, "rolling, argo-canary, argo-bluegreen, flagger"),
    ({"pause": "2 minutes"}, "pause='2 minutes' is not a positive duration"),
    ({"interval": "0s"}, "interval='0s' is not a positive duration"),
    ({"window": "1.5m"}, "window='1.5m'"),
    ({"window": "1d"}, "window='1d'"),
    ({"steps": (25, 25, 50)}, "must increase"),
    ({"steps": (50, 25)}, "must increase"),
    ({"steps": (10, 100)}, "each from 1 to 99"),
    ({"steps": ()}, "each from 1 to 99"),
    ({"count": 0}, "count=0 must be an integer >= 1"),
    ({"failure_limit": 3}, "tolerates all 3 measurements failing"),
    ({"max_error_ratio": 1.5}, "between 0 and 1"),
    ({"checks": ("errors", "speed")}, "unknown or repeated"),
    ({"checks": ()}, "at least one check"),
    ({"prometheus": "prometheus:9090"}, "not an http"),
])
def test_delivery_spec_refuses_bad_settings(settings: dict, message: str) -> None:
    with pytest.raises(shipyard.DeployError, match=message.replace("(", r"\(").replace(".", r"\.")):
        DeliverySpec(**settings)


def test_readme_lines_give_the_real_commands() -> None:
    canary = "\n".join(readme_lines(_spec("argo-canary")))
    assert f"kubectl argo rollouts get rollout {APP} -n models --watch" in canary
    assert f"kubectl argo rollouts get rollout {APP} -n models-staging --watch" in canary
    assert f"argocd app sync {APP}-production" in canary
    assert f"flux reconcile kustomization {APP}-production -n flux-system --with-source" in canary
    for check in checks(_spec()):
        assert check.query in canary
    assert f"kubectl get canary/{APP} -n models --watch" in "\n".join(readme_lines(_spec("flagger")))
    rolling = "\n".join(readme_lines(dataclasses.replace(_spec("rolling"), gitops=None)))
    assert f"kubectl rollout status deployment/{APP} -n models" in rolling and "argocd" not in rolling
    assert set(CHECKS) == {"errors", "latency", "drift"}
