"""The rest of ``make demo``, after the quickstart notebook: promote, serve, predict, drift, monitor, where to look.

The notebook trained ``breast-cancer``, passed its gates and registered the
version as ``challenger``. This script:

1. promotes that version (gates, bento, image on the local base image, smoke
   and parity tests, handoff bundle with its model card, champion);
2. runs the image on 127.0.0.1 with inference capture on, one worker and a
   one-second monitoring interval, and sends it one prediction;
3. sends it the dataset's rows with one feature shifted by a training standard
   deviation, and waits until the image's own drift gauges cover them;
4. stops the container as an orchestrator does (SIGTERM: the capture is
   flushed) and removes it;
5. runs ``shipyard monitor`` on what the image captured: the drift verdict,
   recorded in MLflow;
6. prints where to look: MLflow UI, bundle, model card, drift report, rollback.

Any failure ends it with the shipyard error that says what went wrong and what
to do, and exit code 1; the container is removed whatever happens.

Usage: python scripts/demo.py [--model breast-cancer] [--feature "mean radius"]

Q: Why is the shifted traffic every row of the dataset, not the holdout alone?
A: The reference profile is the training rows. The holdout's 143 rows sit
   0.1 to 0.22 (normalized Wasserstein) from it on most columns by sampling
   alone, over the 0.1 threshold: shifted or not, two thirds of the columns
   would "drift". With the training rows in the traffic too, only the shifted
   feature crosses the threshold, as production drift in one input looks.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import re
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import shipyard
from shipyard import DeployError, ModelNotFound, MonitoringError, ShipyardError

MODEL = "breast-cancer"
SHIFTED_FEATURE = "mean radius"
CONTAINER_NAME = "shipyard-demo"  # one demo container at a time; a leftover of a killed demo is removed first
CONTAINER_PORT = 3000
CAPTURE_INSIDE = "/capture"
READY_TIMEOUT_S = 90.0
GAUGE_TIMEOUT_S = 60.0
STEPS = 6
_GAUGE = re.compile(r"^shipyard_drift_distance\{(?P<labels>[^}]*)\} (?P<value>\S+)$", re.MULTILINE)
_WINDOW = re.compile(r"^shipyard_drift_window_rows\{[^}]*\} (\S+)$", re.MULTILINE)


def say(step: int, text: str) -> None:
    print(f"\ndemo [{step}/{STEPS}] {text}", flush=True)


def info(text: str) -> None:
    print(f"  {text}", flush=True)


# ---- the steps -----------------------------------------------------------------------------


def candidate(model: str) -> Any:
    """The version the notebook registered (``challenger``); the champion when this script runs again alone."""
    from shipyard.registry import resolve

    try:
        return resolve(f"{model}@challenger")
    except ModelNotFound:
        pass
    try:
        version = resolve(f"{model}@champion")
    except ModelNotFound:
        raise ModelNotFound(
            f"{model} has no challenger or champion version to promote.",
            hint="Run the quickstart notebook first (make demo runs it before this script).",
        ) from None
    info(f"no challenger of {model}: promoting the champion, v{version.version}, again (its stages are reused)")
    return version


def holdout(version: Any) -> tuple[Any, Any, Any]:
    """The notebook's holdout rows (the same split, from the run's seed), their labels and the training rows."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    seed = int(shipyard.get_run(version.run_id).params.get("seed", 7))
    data = load_breast_cancer(as_frame=True)
    X_train, X_test, _, y_test = train_test_split(
        data.data, data.target, test_size=0.25, random_state=seed, stratify=data.target
    )
    return X_test, y_test, X_train


@dataclass
class Served:
    """The demo's container: its Docker object and the port it answers on (127.0.0.1 only)."""

    container: Any
    port: int

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            data = None if body is None else json.dumps(body, allow_nan=False).encode()
            conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def predict(self, frame: Any) -> list[Any]:
        status, payload = self.request("POST", "/predict", {"inputs": frame.to_dict(orient="records")})
        if status != 200:
            raise DeployError(
                f"POST /predict answered HTTP {status}: {payload[:500].decode('utf-8', 'replace')}",
                hint=f"The container log tail:\n{self.logs()}",
            )
        return list(json.loads(payload)["predictions"])

    def metrics(self) -> str:
        status, payload = self.request("GET", "/metrics")
        if status != 200:
            raise DeployError(f"GET /metrics answered HTTP {status}.", hint="Check that monitoring is on in the image.")
        return payload.decode("utf-8", "replace")

    def ready(self) -> bool:
        try:
            return self.request("GET", "/readyz")[0] == 200
        except OSError:
            return False

    def logs(self, lines: int = 30) -> str:
        from shipyard.deploy.container import container_logs

        return container_logs(self.container, lines)


@contextlib.contextmanager
def serving(image: str, capture: Path) -> Iterator[Served]:
    """Run ``image`` as the demo container (capture on, one worker), wait until ready, remove it afterwards."""
    import docker.errors
    from shipyard.packaging.docker_engine import docker_client

    client = docker_client()
    container = None
    try:
        with contextlib.suppress(docker.errors.NotFound):
            client.containers.get(CONTAINER_NAME).remove(force=True)
            info(f"removed a container {CONTAINER_NAME} an earlier demo left behind")
        try:
            container = client.containers.run(
                image,
                detach=True,
                name=CONTAINER_NAME,
                ports={f"{CONTAINER_PORT}/tcp": ("127.0.0.1", None)},
                environment={
                    "SHIPYARD_CAPTURE": "1",
                    "SHIPYARD_CAPTURE_DIR": CAPTURE_INSIDE,
                    "SHIPYARD_MONITOR_INTERVAL_SECONDS": "1",
                    # one worker: its window holds every row sent, the rows the capture holds too
                    "SHIPYARD_SERVING_WORKERS": "1",
                },
                volumes={str(capture): {"bind": CAPTURE_INSIDE, "mode": "rw"}},
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
            )
        except docker.errors.DockerException as exc:
            raise DeployError(f"Docker could not start {image}: {exc}", hint="Check `docker info` and the image.") from exc
        served = Served(container, _ready_port(container))
        yield served
        container.stop(timeout=30)  # SIGTERM: the service drains its queue and flushes the capture
    finally:
        if container is not None:
            with contextlib.suppress(docker.errors.DockerException):
                container.remove(force=True)
        client.close()


def _ready_port(container: Any) -> int:
    from shipyard import ContainerFailed
    from shipyard.deploy.container import container_logs

    deadline = time.monotonic() + READY_TIMEOUT_S
    port = 0
    while time.monotonic() < deadline:
        container.reload()
        if container.status in {"exited", "dead"}:
            code = (container.attrs.get("State") or {}).get("ExitCode")
            tail = container_logs(container)
            raise ContainerFailed(
                f"The demo container exited with code {code} before it was ready.",
                exit_code=code, log_tail=tail, seconds=READY_TIMEOUT_S - (deadline - time.monotonic()),
                hint=f"Fix what the log says and run the demo again. Log tail:\n{tail}",
            )
        binding = ((container.attrs.get("NetworkSettings") or {}).get("Ports") or {}).get(f"{CONTAINER_PORT}/tcp")
        if binding and not port:
            port = int(binding[0]["HostPort"])
        if port and Served(container, port).ready():
            return port
        time.sleep(0.2)
    raise DeployError(
        f"The demo container was not ready within {READY_TIMEOUT_S:.0f}s.",
        hint=f"Container log tail:\n{container_logs(container)}",
    )


def drift_gauges(served: Served, rows: int) -> dict[str, float]:
    """The image's drift distance per column, once its window holds all ``rows`` rows sent."""
    deadline = time.monotonic() + GAUGE_TIMEOUT_S
    while True:
        text = served.metrics()
        window = _WINDOW.search(text)
        if window and float(window.group(1)) >= rows:
            break
        if time.monotonic() > deadline:
            seen = window.group(1) if window else "no"
            raise MonitoringError(
                f"The image measured drift over {seen} rows after {GAUGE_TIMEOUT_S:.0f}s, not the {rows} sent.",
                hint=f"Check its monitoring settings (monitor_min_rows, monitor_interval_seconds). "
                f"Container log tail:\n{served.logs()}",
            )
        time.sleep(0.5)
    out = {}
    for match in _GAUGE.finditer(text):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
        out[labels.get("column", "?")] = float(match["value"])
    return out


def capture_folder(ws: Any) -> Path:
    """A fresh capture folder for this demo (earlier ones are removed when they can be)."""
    root = ws.root / "demo"
    for old in root.glob("capture-*"):
        shutil.rmtree(old, ignore_errors=True)  # files the image wrote may belong to its user
    folder = root / f"capture-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S')}"
    folder.mkdir(parents=True)
    folder.chmod(0o777)  # the image runs as a non-root user
    return folder


# ---- the story -----------------------------------------------------------------------------


def demo(model: str, feature: str) -> None:
    import pandas as pd

    ws = shipyard.current_workspace()
    started = time.monotonic()

    say(1, f"Promoting the version of {model} the notebook registered: gates, bento, image, smoke test, bundle")
    version = candidate(model)
    promotion = shipyard.promote(f"{model}/{version.version}", reason="make demo: the quickstart's model")
    if promotion.status != "completed" or not promotion.image:
        raise shipyard.PromotionError(
            f"The promotion of {model} v{version.version} ended {promotion.status}, with no image to serve.",
            hint=f"Approve it (shipyard approve {model}/{version.version}) or turn required approvals off, "
            "then run the demo again.",
        )
    info(f"{model} v{promotion.version} is champion; image {promotion.image}")

    X_test, y_test, X_train = holdout(version)
    if feature not in X_test.columns:
        raise MonitoringError(
            f"{model} has no input feature {feature!r}.", hint=f"Pick one of: {', '.join(X_test.columns[:8])} ..."
        )
    capture = capture_folder(ws)

    say(2, f"Serving the image on 127.0.0.1 (inference capture into {capture})")
    with serving(promotion.image, capture) as served:
        info(f"ready at http://127.0.0.1:{served.port} (POST /predict, GET /metrics, /readyz)")
        row = X_test.head(1)
        prediction = served.predict(row)
        info(f"POST /predict with the first holdout row ({len(row.columns)} features) → "
             f"{{\"predictions\": {json.dumps(prediction)}}} (its label: {int(y_test.iloc[0])})")

        std = float(X_train[feature].std())
        traffic = pd.concat([X_train, X_test], ignore_index=True)  # past the image's 200-row minimum
        say(3, f"Sending shifted traffic: the dataset's {len(traffic)} rows with {feature!r} moved up by {std:.3g} "
            "(one training standard deviation)")
        shifted = traffic.assign(**{feature: traffic[feature] + std})
        sent = len(row)
        for start in range(0, len(shifted), 50):
            batch = shifted.iloc[start : start + 50]
            served.predict(batch)
            sent += len(batch)
        gauges = drift_gauges(served, sent)
        seen = sorted(c for c, d in gauges.items() if d >= ws.settings.drift_threshold)
        info(f"{sent} rows served; the image's own drift gauge for {feature!r}: {gauges.get(feature, float('nan')):.3f} "
             f"(threshold {ws.settings.drift_threshold:g}); over it: {', '.join(seen) or 'none'}")
        say(4, "Stopping the container (SIGTERM: the capture is flushed) and removing it")
    info(f"container {CONTAINER_NAME} removed")

    say(5, f"shipyard monitor {model}/{promotion.version} --capture {capture}")
    report = shipyard.monitor(f"{model}/{promotion.version}", capture=capture)
    for line in report.summary().splitlines():
        info(line)
    if feature not in report.result.drifted_columns:
        raise MonitoringError(
            f"shipyard monitor did not find {feature!r} drifting in the shifted traffic ({report.verdict}).",
            hint=f"Read the drift report: {report.html_path}",
        )
    info(f"verdict {report.verdict.upper()}: {feature!r} drifted, as the shifted traffic should make it")

    say(6, f"Done in {time.monotonic() - started:.0f}s. Where to look")
    where(ws, model, promotion, report, version)


def where(ws: Any, model: str, promotion: Any, report: Any, version: Any) -> None:
    from shipyard.production._monitor import DRIFT_HTML
    from shipyard.registry import resolve

    bundle = promotion.bundle_path
    card = bundle / "model-card.html" if bundle else None
    lines = [
        ("MLflow UI", f"mlflow ui --backend-store-uri {ws.tracking_uri}   (then http://127.0.0.1:5000)"),
        ("training run", f"{version.run_id}   (shipyard show {version.run_id})"),
        ("image", f"{promotion.image}   (docker run --rm -p 127.0.0.1:3000:3000 {promotion.image})"),
        ("bundle", str(bundle)),
        ("model card", str(card) if card and card.is_file() else "none in the bundle"),
        ("drift report", f"{report.html_path}   (MLflow run {report.run_id}, artifact {DRIFT_HTML})"),
        ("audit log", f"shipyard audit show {model}   (shipyard audit verify: the hash chain holds)"),
    ]
    rollback = f'shipyard rollback {model} --reason "..."'
    try:
        back = f"champion back to v{resolve(f'{model}@previous').version}"
    except ModelNotFound:
        back = "once a second version is champion: run make demo again"
    lines.append(("roll back", f"{rollback}   ({back})"))
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        print(f"  {key.ljust(width)}  {value}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=MODEL, help="Registered model the notebook trained.")
    parser.add_argument("--feature", default=SHIFTED_FEATURE, help="Input feature the shifted traffic moves.")
    args = parser.parse_args()
    try:
        demo(args.model, args.feature)
    except ShipyardError as exc:
        print(f"\ndemo failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("\ndemo interrupted; its container is removed", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - not one of shipyard's: show where, then end as the others do
        import traceback

        traceback.print_exc()
        error = ShipyardError(f"{type(exc).__name__}: {exc}", hint="The traceback above shows where it failed.")
        print(f"\ndemo failed: {error}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
