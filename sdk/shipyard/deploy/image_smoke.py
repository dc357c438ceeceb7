"""Smoke and parity test of a model image: does the container serve what the registry model predicts?

``smoke(image)`` runs the image on 127.0.0.1 with a random port, waits until
it is ready, sends the model's logged input example and the parity rows (the
holdout its gate check read, else a sample of a logged dataset, else the
input example only: :func:`~shipyard.deploy.parity.choose_rows`), and
compares the answers with the registered model's in-process predictions. A
container that exits or cannot start its model server fails at once with
its log tail (:class:`~shipyard.ContainerFailed`). The container requires a
bearer token drawn for this test alone, so an image packaged with
``serving_auth`` is smoked as it will run.
It measures latency, always removes the container, and records the verdicts
as the ``parity`` and ``latency`` gates of the model version.
"""

from __future__ import annotations

import json
import math
import secrets
import statistics
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._core.errors import DeployError
from .._core.lineage import Lineage
from .._core.refs import ModelRef
from .container import READY_TIMEOUT_S, JsonClient, running_model
from .parity import MIN_HOLDOUT_ROWS, choose_rows, compare, load_reference, records

if TYPE_CHECKING:
    from ..gates import GateResult
    from ..registry import ModelVersionRef

DEFAULT_LATENCY_P95_MS = 250.0
LATENCY_REQUESTS = 40


@dataclass(frozen=True)
class SmokeResult:
    """What the smoke test of an image found.

    Attributes:
        image: image reference tested.
        model: ``models:/NAME/VERSION`` compared against.
        ready_seconds: from ``docker run`` to the first successful ``/readyz``.
        rows: rows compared (input example + holdout).
        holdout_rows: rows of the holdout sample.
        holdout_source: where the parity rows came from ("holdout of 250 rows", "sample of the logged
            dataset 'train' (...)", "input example only (...)").
        notes: rows left out of parity, categories that could not be covered, and why.
        mismatches: rows whose served prediction differs from the in-process one.
        first_mismatch: the first differing row, its expected and served predictions.
        latency_p50_ms: median latency of single-row requests.
        latency_p95_ms: 95th percentile latency of single-row requests.
        metadata: the service's ``/metadata`` answer.
        gates: the ``parity`` and ``latency`` verdicts.
        recorded_via: ``"gates"`` once attached through ``shipyard.gates.attach_results``; ``""`` with ``record=False``.
    """

    image: str
    model: str
    ready_seconds: float
    rows: int
    holdout_rows: int
    holdout_source: str
    mismatches: int
    first_mismatch: dict[str, Any] | None
    latency_p50_ms: float
    latency_p95_ms: float
    metadata: dict[str, Any] = field(default_factory=dict)
    gates: list[GateResult] = field(default_factory=list)
    recorded_via: str = ""
    notes: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return all(g.status != "fail" for g in self.gates if g.blocking)

    @property
    def parity(self) -> bool:
        return self.mismatches == 0

    def summary(self) -> str:
        lines = [f"smoke {self.image} against {self.model}: {'PASS' if self.passed else 'FAIL'}"]
        lines.append(f"  ready in {self.ready_seconds:.2f}s; {self.rows} rows compared ({self.holdout_source})")
        lines.append(f"  latency p50 {self.latency_p50_ms:.1f} ms, p95 {self.latency_p95_ms:.1f} ms")
        lines += [f"  gate {g.name}: {g.status} ({g.message})" for g in self.gates]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def smoke(
    image: str,
    model_version: Any = None,
    holdout: Any = None,
    *,
    latency_p95_ms: float = DEFAULT_LATENCY_P95_MS,
    ready_timeout: float = READY_TIMEOUT_S,
    record: bool = True,
    container_labels: Mapping[str, str] | None = None,
) -> SmokeResult:
    """Run ``image``, check parity with the registered model and measure latency.

    Args:
        image: image reference or id, e.g. ``shipyard/iris:v1-...``.
        model_version: model to compare with; default: the one the image's lineage labels name.
        holdout: a DataFrame (or 2-D array) of at least 100 rows; default: the holdout the version's gate
            check recorded, else a sample of a dataset logged on its run, else the input example.
        latency_p95_ms: threshold of the ``latency`` gate.
        ready_timeout: seconds to wait for ``/readyz``.
        record: attach the gate results to the model version.
        container_labels: extra labels on the test container (a promotion marks its own).

    Raises:
        ContainerFailed: the container exits, or its model server gives up starting (exit code, log tail).
        DeployError: the container does not become ready, or the service answers with errors.
        DockerUnavailable: no Docker daemon answers.

    Example:
        >>> result = shipyard.smoke("shipyard/iris:v1-5d41402abc4b2a76")   # doctest: +SKIP
        >>> result.parity, result.latency_p95_ms                           # doctest: +SKIP
        (True, 6.2)
    """
    from ..packaging.docker_engine import docker_client

    client = docker_client()
    source = _model_version(model_version, _image_labels(client, image))
    with tempfile.TemporaryDirectory(prefix="shipyard-smoke-") as tmp:
        model, example = load_reference(source.uri, Path(tmp) / "model")
        chosen = choose_rows(source, model, example, holdout)
        holdout_frame, holdout_source = chosen.frame, chosen.source
        served = None
        try:
            token = secrets.token_urlsafe(32)
            with running_model(
                client, image, ready_timeout=ready_timeout, labels=container_labels, token=token
            ) as served:
                with JsonClient(served.port, token=token) as http:
                    metadata = http.post_json("/metadata", {})
                    parity = compare(
                        model, [example, holdout_frame], lambda rows: http.post_json("/predict", {"inputs": rows})["predictions"]
                    )
                    latencies = _latencies(http, _complete_rows(records(holdout_frame)) or records(example))
        except DeployError:
            raise
        except Exception as exc:
            logs = served.logs() if served is not None else ""
            raise DeployError(
                f"Smoke test of {image} failed: {type(exc).__name__}: {exc}",
                hint=f"Container log tail:\n{logs}" if logs else "Check `docker logs` of the image.",
            ) from exc
    p50, p95 = statistics.median(latencies), _percentile(latencies, 95)
    notes = chosen.notes + parity.notes
    gates = _verdicts(parity, holdout_frame, holdout_source, (p50, p95, len(latencies)), latency_p95_ms, notes)
    if record:
        from ..gates import attach_results

        attach_results(source, gates, source="smoke")
    return SmokeResult(
        image=image,
        model=source.uri,
        ready_seconds=served.ready_seconds,
        rows=parity.rows,
        holdout_rows=len(holdout_frame),
        holdout_source=holdout_source,
        mismatches=parity.mismatches,
        first_mismatch=parity.first_mismatch,
        latency_p50_ms=round(p50, 3),
        latency_p95_ms=round(p95, 3),
        metadata=metadata,
        gates=gates,
        recorded_via="gates" if record else "",
        notes=notes,
    )


def _complete_rows(rows: list[Any]) -> list[Any]:
    """Rows without a missing value: latency is measured on ordinary requests."""
    return [r for r in rows if not (isinstance(r, dict) and any(v is None for v in r.values()))]


def _latencies(http: JsonClient, rows: list[Any]) -> list[float]:
    """Milliseconds of :data:`LATENCY_REQUESTS` single-row requests, one after another."""
    latencies = []
    for i in range(LATENCY_REQUESTS):
        body = {"inputs": [rows[i % len(rows)]]}
        t0 = time.perf_counter()
        http.post_json("/predict", body)
        latencies.append((time.perf_counter() - t0) * 1000)
    return latencies


def _verdicts(
    parity: Any,
    holdout: Any,
    holdout_source: str,
    latency: tuple[float, float, int],
    limit: float,
    notes: tuple[str, ...] = (),
) -> list[GateResult]:
    """The ``parity`` and ``latency`` gate results; ``latency`` is (p50, p95, requests)."""
    from ..gates import GateResult

    p50, p95, requests = latency
    status = "pass" if parity.mismatches == 0 else "fail"
    message = f"{parity.rows - parity.mismatches}/{parity.rows} rows identical ({holdout_source})"
    if parity.mismatches == 0 and len(holdout) < MIN_HOLDOUT_ROWS:
        status = "warn"
        message += f"; fewer than {MIN_HOLDOUT_ROWS} holdout rows"
    if parity.first_mismatch:
        first = parity.first_mismatch
        message += (
            f"; first differing row {json.dumps(first['row'], default=str)[:500]}: "
            f"expected {json.dumps(first['expected'], default=str)[:200]}, "
            f"served {json.dumps(first['served'], default=str)[:200]}"
        )
    message += "".join(f"; {n}" for n in notes)
    return [
        GateResult("parity", status, float(parity.mismatches), 0.0, message),
        GateResult(
            "latency",
            "pass" if p95 <= limit else "fail",
            round(p95, 3),
            limit,
            f"p95 {p95:.1f} ms, p50 {p50:.1f} ms over {requests} single-row requests (limit p95 {limit:g} ms)",
        ),
    ]


def _image_labels(client: Any, image: str) -> dict[str, str]:
    from docker.errors import ImageNotFound

    try:
        found = client.images.get(image)
    except ImageNotFound:
        raise DeployError(
            f"Image {image} does not exist in the local Docker engine.",
            hint="Build it with `shipyard package MODEL_VERSION` and use the tag it prints.",
        ) from None
    return dict((found.attrs.get("Config") or {}).get("Labels") or {})


def _model_version(model_version: Any, labels: dict[str, str]) -> ModelVersionRef:
    from .. import registry

    if model_version is None:
        lin = Lineage.from_labels(labels)
        if not lin.model_name or not lin.model_version:
            raise DeployError(
                "The image carries no shipyard.model.name/version labels, so the model to compare with is unknown.",
                hint="Pass model_version= (e.g. models:/iris/3) or smoke an image built by `shipyard package`.",
            )
        return registry.resolve(ModelRef(name=lin.model_name, version=lin.model_version))
    return registry.resolve(model_version)


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * pct / 100
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


__all__ = ["SmokeResult", "smoke"]
