"""The canary analysis of a handoff bundle, evaluated by a real Prometheus scraping a real model image.

``shipyard.deploy.delivery.checks(spec)`` gives the queries an Argo Rollouts
``AnalysisTemplate`` (or Flagger's ``MetricTemplate``) runs against the new
version. Here they run as Argo Rollouts runs them: an instant query on
Prometheus' HTTP API (``/api/v1/query``), its first sample compared with the
check's threshold. The model (``flows/faulty_model.py``) is logged, gated
(a blocking ``latency_p99_ms <= 1000`` threshold, so a latency check exists),
registered, packaged and pushed to a local registry with shipyard; its one
image runs by its registry digest three times, healthy,
failing every fourth call (``FAULT_RATE``: a ``RuntimeError``, which the
service answers with a 500) and slowed (``SLOW_SECONDS`` above the budget),
each scraped by its own Prometheus every second. What this proves:

* the analysis of a model with a latency gate and a reference profile is the
  errors, latency and drift checks, with the budget of the gate and the
  bundle's error ratio, over the spec's window;
* every query selects what the image really exports: once there is traffic
  each returns one sample (a single-element vector, what Argo's ``result[0]``
  reads), and no traffic at all does not pass the errors check;
* healthy traffic passes every check, and bad requests (bodies that are not
  JSON or not JSON at all, unknown or missing columns, a value the model
  refuses) are counted by the image as 4xx but not by the errors check;
* a share of 5xx answers fails the errors check and only it; a slowed model
  fails the latency check and only it;
* the argo-canary AnalysisTemplate holds exactly these queries and conditions, and each
  ``condition()``, read as Argo reads it, agrees with ``passes()``.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import importlib
import json
import math
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from shipyard.monitoring.serving import INLINE_MAX_ROWS

from tests.docker_support import ServedImage, docker_cli
from tests.monitoring_support import predict_body, project_env
from tests.prometheus_support import PrometheusServer
from tests.registry_support import local_registry  # noqa: F401  (fixture)

pytestmark = pytest.mark.docker
T = TypeVar("T")

MODEL_FILE = Path(__file__).resolve().parent / "flows" / "faulty_model.py"
WINDOW = "30s"  # the queries' rate window: short, so a test's traffic fills it in seconds
# The budget leaves healthy answers (milliseconds) a wide margin on a busy machine; the slowed model's answers
# land in BentoML's (1 s, 2.5 s] bucket, so their p99 reads close to 2.5 s.
LATENCY_BUDGET_MS = 1000.0
FAULT_RATE = 0.25
SLOW_SECONDS = 1.2
SPREAD_SECONDS = 6.0  # each test's traffic is spread over six scrapes
DRIFT_THRESHOLD = 0.1  # Settings.drift_threshold's default, which the image is packaged with
# One worker (the machine has two cores and other tests run beside these), drift recomputed every second
# over every row sent (the window holds more rows than a test sends).
SERVING_ENV = {
    "SHIPYARD_SERVING_WORKERS": "1",
    "SHIPYARD_MONITOR_INTERVAL_SECONDS": "1",
    "SHIPYARD_MONITOR_WINDOW_ROWS": "10000",
}
FAULTS = {
    "healthy": {},
    "failing": {"FAULT_RATE": str(FAULT_RATE)},
    "slow": {"SLOW_SECONDS": str(SLOW_SECONDS)},
}


@dataclass(frozen=True)
class ModelImage:
    """The packaged test model: its image, the spec its bundle would be written from, and its module."""

    tag: str
    spec: Any  # HandoffSpec
    module: Any  # faulty_model, imported from the project

    def rows(self, n: int, seed: int) -> Any:
        return self.module.make_rows(n=n, seed=seed)


@pytest.fixture(scope="module")
def model_image(
    base_image: Any, local_registry: Any, tmp_path_factory: pytest.TempPathFactory  # noqa: F811
) -> Iterator[ModelImage]:
    """Log, gate, register, package and push the faulty model; the HandoffSpec as promotion builds it from that."""
    import shipyard
    from shipyard import registry
    from shipyard.deploy.delivery import DeliverySpec
    from shipyard.deploy.handoff import HandoffSpec
    from shipyard.gates import threshold

    project = tmp_path_factory.mktemp("delivery") / "project"
    project.mkdir()
    # The model's class lives in a module of the user's project, which shipyard ships with the model.
    shutil.copyfile(MODEL_FILE, project / MODEL_FILE.name)
    sys.path.insert(0, str(project))
    try:
        with project_env(project):
            shipyard.init(project_dir=project)
            module = importlib.import_module(MODEL_FILE.stem)
            rows = module.make_rows(n=2000, seed=3)
            with shipyard.start_run("delivery-analysis") as run:
                shipyard.log_dataset(rows, name="train")  # the rows of the reference profile
                shipyard.log_metric("latency_p99_ms", 35.0)  # as a load test before promotion would log it
                shipyard.log_model(module.FaultyModel(), name="model", input_example=rows.head(3))
            report = shipyard.check(
                run.run_id,
                [threshold(f"latency_p99_ms <= {LATENCY_BUDGET_MS:g}", source="logged")],
                model_name=module.MODEL_NAME,
            )
            assert report.verdict == "pass", report.to_dict()
            version = registry.register(module.MODEL_NAME, run.run_id)
            packaged = shipyard.package(f"models:/{module.MODEL_NAME}/{version.version}", quiet=True)
    finally:
        sys.path.remove(str(project))
        sys.modules.pop(MODEL_FILE.stem, None)
    from shipyard.deploy.push import push_image

    image = packaged.image
    repository, _, tag = image.tag.rpartition(":")
    # pinned as a cluster pins it: the registry's digest, which the containers below are started by
    pushed = push_image(image.tag, local_registry.address, repository=repository, tag=tag)
    spec = HandoffSpec(  # the fields promotion's handoff_spec() fills from the same stages' outputs
        model_name=module.MODEL_NAME,
        version=str(version.version),
        image_repository=pushed.repository,
        image_digest=pushed.digest,
        run_as_user=int(image.user.split(":")[0]),
        lineage=packaged.bento.lineage,
        gate_report=report.to_dict(),
        reference_profile=json.loads((packaged.bento.path / "src" / "reference_profile.json").read_text()),
        delivery=DeliverySpec(window=WINDOW),
    )
    try:
        yield ModelImage(spec.image, spec, module)
    finally:
        subprocess.run([docker_cli(), "rmi", "-f", image.tag, f"{pushed.repository}:{tag}"], capture_output=True,
                       check=False)


@pytest.fixture(scope="module")
def containers(model_image: ModelImage) -> Iterator[dict[str, ServedImage]]:
    """The image started once per fault (healthy, failing, slow), all at once: a start is mostly waiting."""
    served = {name: ServedImage(model_image.tag, env={**SERVING_ENV, **env}) for name, env in FAULTS.items()}
    try:
        with concurrent.futures.ThreadPoolExecutor(len(served)) as pool:
            for started in [pool.submit(container.__enter__) for container in served.values()]:
                started.result()
        yield served
    finally:
        for container in served.values():
            container.__exit__()


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[PrometheusServer]:
    """A Prometheus of the test's own: the queries select by model version, not by container, so one Prometheus
    must see one container only, and no samples of another test's traffic in its window."""
    with PrometheusServer(tmp_path / "prometheus") as server:
        yield server


def _watch(prometheus: PrometheusServer, container: ServedImage) -> None:
    target = f"127.0.0.1:{container.port}"
    prometheus.scrape([target])
    prometheus.wait_for(lambda: prometheus.query(f'up{{instance="{target}"}} == 1'), 30, f"{target} scraped")


def _paced(items: Sequence[T], seconds: float = SPREAD_SECONDS) -> Iterable[T]:
    """``items`` one at a time, spread evenly over ``seconds``.

    Q: Why not as fast as possible?
    A: rate() counts what a counter gained between samples. Traffic sent between two scrapes reaches
       Prometheus as a series whose first sample already holds all of it (BentoML creates a status code's
       series at its first answer): no increase, no rate, and a query with nothing to measure, unlike the
       steady traffic a canary gets.
    """
    start = time.monotonic()
    for index, item in enumerate(items):
        time.sleep(max(0.0, start + index * seconds / len(items) - time.monotonic()))
        yield item


def _send(container: ServedImage, frame: Any, batch: int) -> tuple[collections.Counter[int], list[Any]]:
    """POST ``frame`` to /predict in batches (paced): the answers' statuses, and the batches answered with a 200."""
    statuses: collections.Counter[int] = collections.Counter()
    served = []
    for rows in _paced([frame.iloc[start : start + batch] for start in range(0, len(frame), batch)]):
        status, body = container.request("POST", "/predict", predict_body(rows))
        assert status in (200, 500), body[:300]
        statuses[status] += 1
        if status == 200:
            served.append(rows)
    return statuses, served


def _bad_requests(model_image: ModelImage) -> list[tuple[bytes, dict[str, str]]]:
    """Requests the service must refuse with a 4xx: the client's fault, none of the new version's."""
    row = model_image.rows(1, seed=5).to_dict(orient="records")[0]
    json_type = {"Content-Type": "application/json"}
    bodies = [
        b'{"inputs": [{"load": 1.0,',  # cut off
        b"\x00\xff not json at all",
        json.dumps({"inputs": [{**row, "surprise": 1}]}).encode(),  # an unknown column
        json.dumps({"inputs": [{k: v for k, v in row.items() if k != "spend"}]}).encode(),  # a missing one
        json.dumps({"inputs": [{**row, "load": "heavy"}]}).encode(),  # text where a number goes
        json.dumps({"rows": [row]}).encode(),  # not the request's shape
        json.dumps({"inputs": [{**row, "plan": model_image.module.REFUSED_PLAN}]}).encode(),  # the model refuses
    ]
    wrong_type = [(json.dumps({"inputs": [row]}).encode(), {"Content-Type": "text/plain"})]
    return [(body, json_type) for body in bodies] + wrong_type


def _checks(model_image: ModelImage) -> dict[str, Any]:
    from shipyard.deploy.delivery import checks

    found = checks(model_image.spec)
    assert len({c.name for c in found}) == len(found), [c.name for c in found]
    return {c.name: c for c in found}


def _bentoml(model_image: ModelImage) -> str:
    """The label filter of BentoML's /predict metrics of the model version, as the alerts and the analysis use it."""
    from shipyard.deploy.alerts import bentoml_selector

    return bentoml_selector(model_image.spec)


def _shipyard(model_image: ModelImage) -> str:
    """The label filter of the image's shipyard_* metrics of the model version."""
    from shipyard.deploy.alerts import shipyard_selector

    return shipyard_selector(model_image.spec)


def _answered(prometheus: PrometheusServer, model_image: ModelImage) -> dict[str, float]:
    """/predict answers by status code, as Prometheus last scraped BentoML's counter of them."""
    expr = f"sum by (http_response_code) (bentoml_service_request_duration_seconds_count{{{_bentoml(model_image)}}})"
    return prometheus.values(expr, by="http_response_code")


def _drift_rows(prometheus: PrometheusServer, model_image: ModelImage) -> int:
    """The rows the image's last drift computation covered (0 before the first)."""
    found = prometheus.values(f"max(shipyard_drift_window_rows{{{_shipyard(model_image)}}})", by="")
    return int(found.get("", 0))


def _settle(
    prometheus: PrometheusServer, model_image: ModelImage, statuses: Mapping[int, int], drift_rows: int
) -> None:
    """Wait until Prometheus has scraped every answer sent and a drift computation over every row served."""
    expected = {str(code): float(n) for code, n in statuses.items() if n}

    def settled() -> bool:
        return _answered(prometheus, model_image) == expected and _drift_rows(prometheus, model_image) == drift_rows

    prometheus.wait_for(settled, 30, f"answers {expected} and a drift window of {drift_rows} rows scraped")


def _argo_condition(condition: str, value: float) -> bool:
    """Argo Rollouts' ``successCondition`` on ``result = [value]`` (expr's comparisons and and/or are Python's)."""
    expression = condition.replace("&&", " and ").replace("||", " or ")
    scope = {"result": [value], "isNaN": math.isnan, "isInf": math.isinf}
    return bool(eval(expression, {"__builtins__": {}}, scope))  # a condition this package generated


def _measure(prometheus: PrometheusServer, checks: Mapping[str, Any]) -> dict[str, float]:
    """Each check's query as Argo Rollouts runs it: one instant query, one sample wanted; its value."""
    values = {}
    for name, check in checks.items():
        samples = prometheus.query(check.query)
        assert len(samples) == 1, f"{name}: {check.query}\nanswered {samples} (Argo reads result[0] of one sample)"
        values[name] = float(samples[0]["value"][1])
        assert _argo_condition(check.condition(), values[name]) == check.passes(values[name]), (
            f"{name}: {check.condition()!r} and passes() disagree on {values[name]}"
        )
    return values


def _verdicts(checks: Mapping[str, Any], values: Mapping[str, float]) -> dict[str, bool]:
    return {name: checks[name].passes(values[name]) for name in checks}


def _require_no_drift(model_image: ModelImage, frames: list[Any]) -> int:
    """The rows served do not drift from the reference when computed here, before any image is involved."""
    import pandas as pd
    from shipyard.monitoring.drift import compute_drift

    frame = pd.concat(frames)
    reference = model_image.spec.reference_profile
    result = compute_drift(reference, {c: frame[c].tolist() for c in frame.columns}, threshold=DRIFT_THRESHOLD)
    assert not result.drifted_columns, {c.column: round(c.distance, 3) for c in result.columns}
    return len(frame)


def test_the_analysis_is_errors_latency_and_drift_of_the_model_version(model_image: ModelImage) -> None:
    checks = _checks(model_image)
    assert set(checks) == {"errors", "latency", "drift"}
    assert checks["latency"].threshold == pytest.approx(LATENCY_BUDGET_MS / 1000)
    assert checks["errors"].threshold == pytest.approx(model_image.spec.delivery.max_error_ratio)
    for name in ("errors", "latency"):
        assert f"[{WINDOW}]" in checks[name].query, checks[name].query
        assert _bentoml(model_image) in checks[name].query, checks[name].query
    assert _shipyard(model_image) in checks["drift"].query, checks["drift"].query

    # What Argo Rollouts is given to run is what these tests run.
    from shipyard.deploy.delivery import DeliverySpec, delivery_objects

    canary = dataclasses.replace(model_image.spec, delivery=DeliverySpec(mode="argo-canary", window=WINDOW))
    (template,) = [o for o in delivery_objects(canary).values() if o["kind"] == "AnalysisTemplate"]
    assert {
        m["name"]: (m["provider"]["prometheus"]["query"], m["successCondition"]) for m in template["spec"]["metrics"]
    } == {name: (c.query, c.condition()) for name, c in checks.items()}


def test_healthy_traffic_passes_every_check(
    model_image: ModelImage, containers: dict[str, ServedImage], prometheus: PrometheusServer
) -> None:
    checks = _checks(model_image)
    _watch(prometheus, containers["healthy"])
    samples = prometheus.query(checks["errors"].query)
    assert not samples or not checks["errors"].passes(float(samples[0]["value"][1])), (
        f"with no traffic at all the errors check passes: {checks['errors'].query} answered {samples}"
    )

    statuses, served = _send(containers["healthy"], model_image.rows(1000, seed=11), batch=25)
    assert statuses == {200: 40}
    _settle(prometheus, model_image, statuses, _require_no_drift(model_image, served))
    values = _measure(prometheus, checks)
    assert _verdicts(checks, values) == dict.fromkeys(checks, True), values
    assert values["errors"] == 0.0, values


def test_bad_requests_do_not_fail_the_errors_check(
    model_image: ModelImage, containers: dict[str, ServedImage], prometheus: PrometheusServer
) -> None:
    container = containers["healthy"]
    checks = _checks(model_image)
    _watch(prometheus, container)
    before, drift_rows = _answered(prometheus, model_image), _drift_rows(prometheus, model_image)
    frame = model_image.rows(500, seed=13)
    good = [(predict_body(frame.iloc[start : start + 25]), {"Content-Type": "application/json"})
            for start in range(0, len(frame), 25)]
    bad = _bad_requests(model_image) * 5  # twice as many refused requests as served ones, mixed in
    assert len(bad) == 2 * len(good)
    mixed = [request for index, bad_one in enumerate(bad) for request in (bad_one, good[index // 2])[: 1 + index % 2]]
    answered: collections.Counter[int] = collections.Counter()
    for body, headers in _paced(mixed):
        status, _ = container.request("POST", "/predict", body, headers)
        answered[status] += 1
    assert answered[200] == len(good) and sum(answered.values()) == len(good) + len(bad), answered
    assert {400, 415, 422} <= set(answered) and all(400 <= code < 500 for code in answered if code != 200), answered

    _settle(prometheus, model_image, collections.Counter({int(c): int(n) for c, n in before.items()}) + answered,
            drift_rows + _require_no_drift(model_image, [frame]))
    refused = prometheus.values(
        f'sum(rate(bentoml_service_request_duration_seconds_count{{{_bentoml(model_image)},'
        f'http_response_code=~"4.."}}[{WINDOW}]))', by=""
    )
    assert refused.get("", 0) > 0, f"the 4xx answers are not in the window the errors check reads: {refused}"
    values = _measure(prometheus, checks)
    assert values["errors"] == 0.0, f"4xx answers count as errors: {checks['errors'].query} = {values['errors']}"
    assert _verdicts(checks, values) == dict.fromkeys(checks, True), values


def test_server_errors_fail_the_errors_check_only(
    model_image: ModelImage, containers: dict[str, ServedImage], prometheus: PrometheusServer
) -> None:
    checks = _checks(model_image)
    _watch(prometheus, containers["failing"])
    statuses, served = _send(containers["failing"], model_image.rows(1200, seed=12), batch=25)
    assert statuses == {200: 36, 500: 12}, "FAULT_RATE=0.25 fails exactly every fourth call"
    _settle(prometheus, model_image, statuses, _require_no_drift(model_image, served))
    values = _measure(prometheus, checks)
    assert _verdicts(checks, values) == {**dict.fromkeys(checks, True), "errors": False}, values
    assert 0.1 < values["errors"] < 0.5, f"a quarter of the answers were 500s: {values}"


def test_a_slow_model_fails_the_latency_check_only(
    model_image: ModelImage, containers: dict[str, ServedImage], prometheus: PrometheusServer
) -> None:
    checks = _checks(model_image)
    _watch(prometheus, containers["slow"])
    # Requests of more rows than the service predicts on its event loop: a thread sleeps, and /metrics still
    # answers the scrapes in time (an event loop asleep makes them time out, and Prometheus sees no traffic).
    batch = INLINE_MAX_ROWS + 1
    statuses, served = _send(containers["slow"], model_image.rows(5 * batch, seed=14), batch=batch)
    assert statuses == {200: 5}
    _settle(prometheus, model_image, statuses, _require_no_drift(model_image, served))
    values = _measure(prometheus, checks)
    assert _verdicts(checks, values) == {**dict.fromkeys(checks, True), "latency": False}, values
    assert values["latency"] > SLOW_SECONDS, values

