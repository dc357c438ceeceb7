"""Smoke and parity test of a model image: does the container serve what the registry model predicts?

``smoke(image)`` runs the image on 127.0.0.1 with a random port, waits until
it is ready, sends the model's logged input example and a holdout sample,
and compares the answers with the registered model's in-process predictions.
It measures latency, always removes the container, and records the verdicts
as the ``parity`` and ``latency`` gates of the model version.
"""

from __future__ import annotations

import http.client
import json
import math
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._core.errors import DeployError

if TYPE_CHECKING:
    from ..gates import GateResult

CONTAINER_PORT = 3000
MIN_HOLDOUT_ROWS = 100
DEFAULT_LATENCY_P95_MS = 250.0
LATENCY_REQUESTS = 40
READY_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 30.0
FLOAT_RTOL = 1e-9


@dataclass(frozen=True)
class SmokeResult:
    """What the smoke test of an image found.

    Attributes:
        image: image reference tested.
        model: ``models:/NAME/VERSION`` compared against.
        ready_seconds: from ``docker run`` to the first successful ``/readyz``.
        rows: rows compared (input example + holdout).
        holdout_rows: rows of the holdout sample.
        holdout_source: where the holdout came from.
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
        return "\n".join(lines)


def smoke(
    image: str,
    model_version: Any = None,
    holdout: Any = None,
    *,
    latency_p95_ms: float = DEFAULT_LATENCY_P95_MS,
    ready_timeout: float = READY_TIMEOUT_S,
    record: bool = True,
) -> SmokeResult:
    """Run ``image``, check parity with the registered model and measure latency.

    Args:
        image: image reference or id, e.g. ``shipyard/iris:v1-...``.
        model_version: model to compare with; default: read from the image's ``shipyard.model.*`` labels.
        holdout: a DataFrame (or 2-D array) of at least 100 rows; default: derived from the input example.
        latency_p95_ms: threshold of the ``latency`` gate.
        ready_timeout: seconds to wait for ``/readyz``.
        record: attach the gate results to the model version.

    Raises:
        DeployError: the container does not become ready, or the service answers with errors.
        DockerUnavailable: no Docker daemon answers.

    Example:
        >>> result = shipyard.smoke("shipyard/iris:v1-5d41402abc4b2a76")   # doctest: +SKIP
        >>> result.parity, result.latency_p95_ms                           # doctest: +SKIP
        (True, 6.2)
    """
    from ..packaging.docker_engine import docker_client

    client = docker_client()
    labels = _image_labels(client, image)
    source = _model_source(model_version, labels)
    with tempfile.TemporaryDirectory(prefix="shipyard-smoke-") as tmp:
        model, example = _load_reference(source, Path(tmp) / "model")
        holdout_frame, holdout_source = _holdout(holdout, example)
        container = None
        try:
            started = time.monotonic()
            container = client.containers.run(
                image,
                detach=True,
                name=f"shipyard-smoke-{uuid.uuid4().hex[:12]}",
                ports={f"{CONTAINER_PORT}/tcp": ("127.0.0.1", None)},
                labels={"shipyard.smoke": "true"},
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
            )
            port = _host_port(container)
            ready_seconds = _wait_ready(container, port, ready_timeout, started)
            with _Http(port) as http:
                metadata = http.post_json("/metadata", {})
                rows = 0
                mismatches = 0
                first: dict[str, Any] | None = None
                for frame in (example, holdout_frame):
                    if frame is None or len(frame) == 0:
                        continue
                    expected = _to_json(model.predict(frame))
                    served = http.post_json("/predict", {"inputs": _rows(frame)})["predictions"]
                    for i, (want, got) in enumerate(zip(expected, served, strict=False)):
                        if not _same(want, got):
                            mismatches += 1
                            if first is None:
                                first = {
                                    "row": _rows(frame.iloc[[i]] if hasattr(frame, "iloc") else frame[i : i + 1])[0],
                                    "expected": want,
                                    "served": got,
                                }
                    if len(served) != len(expected):
                        mismatches += abs(len(served) - len(expected))
                    rows += len(expected)
                single = _rows(holdout_frame if holdout_frame is not None else example)
                latencies = []
                for i in range(LATENCY_REQUESTS):
                    body = {"inputs": [single[i % len(single)]]}
                    t0 = time.perf_counter()
                    http.post_json("/predict", body)
                    latencies.append((time.perf_counter() - t0) * 1000)
        except DeployError:
            raise
        except Exception as exc:
            logs = _logs(container)
            raise DeployError(
                f"Smoke test of {image} failed: {type(exc).__name__}: {exc}",
                hint=f"Container log tail:\n{logs}" if logs else "Check `docker logs` of the image.",
            ) from exc
        finally:
            if container is not None:
                try:
                    container.remove(force=True)
                except Exception:  # the container may already be gone; nothing else to clean
                    pass

    p50 = statistics.median(latencies)
    p95 = _percentile(latencies, 95)
    parity_status = "pass" if mismatches == 0 else "fail"
    parity_msg = f"{rows - mismatches}/{rows} rows identical ({holdout_source})"
    if mismatches == 0 and len(holdout_frame) < MIN_HOLDOUT_ROWS:
        parity_status = "warn"
        parity_msg += f"; fewer than {MIN_HOLDOUT_ROWS} holdout rows"
    from ..gates import GateResult

    gates = [
        GateResult("parity", parity_status, float(mismatches), 0.0, parity_msg),
        GateResult(
            "latency",
            "pass" if p95 <= latency_p95_ms else "fail",
            round(p95, 3),
            latency_p95_ms,
            f"p95 {p95:.1f} ms, p50 {p50:.1f} ms over {len(latencies)} single-row requests "
            f"(limit p95 {latency_p95_ms:g} ms)",
        ),
    ]
    via = _record(source, gates, image) if record else ""
    return SmokeResult(
        image=image,
        model=source.uri,
        ready_seconds=ready_seconds,
        rows=rows,
        holdout_rows=len(holdout_frame),
        holdout_source=holdout_source,
        mismatches=mismatches,
        first_mismatch=first,
        latency_p50_ms=round(p50, 3),
        latency_p95_ms=round(p95, 3),
        metadata=metadata,
        gates=gates,
        recorded_via=via,
    )


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


def _model_source(model_version: Any, labels: dict[str, str]) -> Any:
    from ..packaging.model_source import resolve_model_version

    if model_version is None:
        name, version = labels.get("shipyard.model.name"), labels.get("shipyard.model.version")
        if not name or not version:
            raise DeployError(
                "The image carries no shipyard.model.name/version labels, so the model to compare with is unknown.",
                hint="Pass model_version= (e.g. models:/iris/3) or smoke an image built by `shipyard package`.",
            )
        model_version = f"models:/{name}/{version}"
    return resolve_model_version(model_version)


def _load_reference(source: Any, dst: Path) -> tuple[Any, Any]:
    import mlflow.pyfunc
    from mlflow.models import Model

    from ..packaging.model_source import download_model

    local = download_model(source, dst)
    model = mlflow.pyfunc.load_model(str(local), suppress_warnings=True)
    example = Model.load(str(local)).load_input_example(str(local))
    if example is None:
        raise DeployError(
            f"{source.uri} has no logged input example; smoke needs one to know what a valid request is.",
            hint="Log the model with input_example=X[:5].",
        )
    example = _as_frame(example)
    return model, example


def _as_frame(data: Any) -> Any:
    import numpy as np
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return data.reset_index(drop=True)
    if isinstance(data, dict):
        return pd.DataFrame(data)
    return np.asarray(data)


def _holdout(holdout: Any, example: Any) -> tuple[Any, str]:
    import numpy as np
    import pandas as pd

    if holdout is not None:
        frame = _as_frame(holdout)
        if isinstance(example, pd.DataFrame) and isinstance(frame, pd.DataFrame):
            missing = [c for c in example.columns if c not in frame.columns]
            if missing:
                raise DeployError(
                    f"The holdout sample lacks the model's input columns {missing}.",
                    hint="Pass the features only, with the columns of the model signature.",
                )
            frame = frame[list(example.columns)]
        return frame, f"holdout of {len(frame)} rows"
    # No holdout given: perturb the logged example deterministically to reach the minimum row count.
    rng = np.random.default_rng(0)
    reps = math.ceil(MIN_HOLDOUT_ROWS / max(len(example), 1))
    if isinstance(example, pd.DataFrame):
        frame = pd.concat([example] * reps, ignore_index=True).iloc[:MIN_HOLDOUT_ROWS].copy()
        for col in frame.columns:
            if pd.api.types.is_float_dtype(frame[col]):
                frame[col] = frame[col] * rng.uniform(0.8, 1.2, len(frame))
        return frame, f"{len(frame)} rows perturbed from the input example"
    arr = np.concatenate([example] * reps)[:MIN_HOLDOUT_ROWS]
    if np.issubdtype(arr.dtype, np.floating):
        arr = arr * rng.uniform(0.8, 1.2, arr.shape)
    return arr, f"{len(arr)} rows perturbed from the input example"


def _rows(frame: Any) -> list[Any]:
    if hasattr(frame, "to_dict"):
        return json.loads(frame.to_json(orient="records", double_precision=15))
    return frame.tolist()


def _to_json(predictions: Any) -> list[Any]:
    if hasattr(predictions, "to_dict") and hasattr(predictions, "columns"):
        return json.loads(predictions.to_json(orient="records", double_precision=15))
    if hasattr(predictions, "tolist"):
        return predictions.tolist()
    return list(predictions)


def _same(want: Any, got: Any) -> bool:
    if isinstance(want, float) or isinstance(got, float):
        try:
            return math.isclose(float(want), float(got), rel_tol=FLOAT_RTOL, abs_tol=1e-12)
        except (TypeError, ValueError):
            return False
    if isinstance(want, list | tuple) and isinstance(got, list | tuple):
        return len(want) == len(got) and all(_same(a, b) for a, b in zip(want, got, strict=True))
    if isinstance(want, dict) and isinstance(got, dict):
        return want.keys() == got.keys() and all(_same(want[k], got[k]) for k in want)
    return want == got


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * pct / 100
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _host_port(container: Any) -> int:
    for _ in range(50):
        container.reload()
        bindings = (container.attrs.get("NetworkSettings") or {}).get("Ports") or {}
        binding = bindings.get(f"{CONTAINER_PORT}/tcp")
        if binding:
            return int(binding[0]["HostPort"])
        if container.status == "exited":
            break
        time.sleep(0.05)
    raise DeployError(
        "The container exited or published no port.",
        hint=f"Container log tail:\n{_logs(container)}",
    )


def _wait_ready(container: Any, port: int, timeout: float, started: float) -> float:
    deadline = started + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                conn.close()
                return time.monotonic() - started
            conn.close()
        except OSError:
            pass
        container.reload()
        if container.status in {"exited", "dead"}:
            code = container.attrs.get("State", {}).get("ExitCode")
            raise DeployError(
                f"The container exited with code {code} before it was ready.",
                hint=f"Container log tail:\n{_logs(container)}",
            )
        time.sleep(0.05)
    raise DeployError(
        f"The container was not ready within {timeout:.0f}s.",
        hint=f"Container log tail:\n{_logs(container)}",
    )


def _logs(container: Any, lines: int = 30) -> str:
    if container is None:
        return ""
    try:
        return container.logs(tail=lines).decode("utf-8", "replace").strip()
    except Exception:
        return ""


class _Http:
    """A keep-alive JSON client for one local port."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_S)

    def __enter__(self) -> _Http:
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.close()

    def post_json(self, path: str, body: Any) -> Any:
        data = json.dumps(body, allow_nan=False).encode()
        self.conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
        response = self.conn.getresponse()
        payload = response.read()
        if response.status != 200:
            raise DeployError(
                f"POST {path} answered HTTP {response.status}: {payload[:500].decode('utf-8', 'replace')}",
                hint="The service rejected a request built from the model's own input example; check the signature.",
            )
        return json.loads(payload)


def _record(source: Any, gates: list[GateResult], image: str) -> str:
    """Attach the verdicts to the model version's gate report (tags, report and audit log follow)."""
    from ..gates import attach_results

    attach_results(source.uri, gates, source="smoke")
    return "gates"


__all__ = ["SmokeResult", "smoke"]
