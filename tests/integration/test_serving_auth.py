"""The session's promoted model image run with a required bearer token, as a Kubernetes Secret would give it.

The image is the one every monitoring test uses (packaged without
``serving_auth``); ``SHIPYARD_SERVING_AUTH=1`` requires the token when the
container starts, and the token is a file mounted read-only where the handoff
bundle mounts its Secret. Nothing is built for this module.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import secrets
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from shipyard.monitoring import auth

from tests.docker_support import ServedImage, docker_cli
from tests.monitoring_support import predict_body

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]


def _request(port: int, method: str, path: str, body: bytes | None = None,
             token: str | None = None) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def _holds(command: list[str], needle: bytes) -> bool:
    """Whether the output of ``command`` (streamed, any size) contains ``needle``."""
    with subprocess.Popen(command, stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        tail = b""
        while chunk := proc.stdout.read(1 << 20):
            if needle in tail + chunk:
                proc.kill()
                return True
            tail = chunk[-len(needle):]
    assert proc.returncode == 0, f"{command} failed"
    return False


def _metric(port: int, pattern: str, seconds: float = 10.0) -> float:
    """The value of the first /metrics sample matching ``pattern``, waiting for the monitor to publish it."""
    deadline = time.monotonic() + seconds
    while True:
        status, _, text = _request(port, "GET", "/metrics")
        assert status == 200
        found = re.search(pattern + r"\s+([0-9.e+]+)", text.decode())
        if found or time.monotonic() > deadline:
            assert found, f"no sample matching {pattern} in /metrics"
            return float(found.group(1))
        time.sleep(0.2)


def _predict_answers(metrics: str) -> dict[str, float]:
    """BentoML's count of ``/predict`` answers by status code (it keeps a 0 for 500 from the start)."""
    counts: dict[str, float] = {}
    for labels, value in re.findall(r"^bentoml_service_request_total\{([^}]*)\}\s+(\S+)$", metrics, re.MULTILINE):
        found = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if found.get("endpoint") == "/predict":
            code = found["http_response_code"]
            counts[code] = counts.get(code, 0.0) + float(value)
    return counts


def test_the_image_requires_the_mounted_token_and_keeps_probes_and_metrics_open(
    monitored_image: dict[str, Any], tmp_path: Path
) -> None:
    token = secrets.token_hex(32)
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "token").write_text(token + "\n")
    os.chmod(secret, 0o755)  # as a Secret volume: a folder and a file the image's user can read
    os.chmod(secret / "token", 0o444)
    body = predict_body(monitored_image["holdout"].head(3))
    env = {"SHIPYARD_SERVING_AUTH": "1"}
    with ServedImage(monitored_image["image"], env=env, volumes={str(secret): "/run/secrets/shipyard:ro"}) as served:
        port = served.port
        status, headers, answer = _request(port, "POST", "/predict", body)
        assert status == 401, answer
        assert headers["www-authenticate"] == 'Bearer realm="retrain-demo"'  # the service's name
        assert "needs a token" in json.loads(answer)["error"]
        status, headers, answer = _request(port, "POST", "/predict", body, token=secrets.token_hex(32))
        assert status == 401 and 'error="invalid_token"' in headers["www-authenticate"], answer
        assert _request(port, "POST", "/metadata", b"{}")[0] == 401

        status, _, answer = _request(port, "POST", "/predict", body, token=token)
        assert status == 200, answer
        assert len(json.loads(answer)["predictions"]) == 3
        assert _request(port, "POST", "/metadata", b"{}", token=token)[0] == 200
        for probe in ("/livez", "/readyz"):
            assert _request(port, "GET", probe)[0] == 200, probe

        # Refused requests are counted as such, and never as the 5xx the error ratio counts.
        assert _metric(port, r'shipyard_request_problems_total\{[^}]*reason="unauthorized"[^}]*\}') >= 3
        answers = _predict_answers(_request(port, "GET", "/metrics")[2].decode())
        assert answers.get("401", 0) >= 2 and answers.get("200", 0) >= 1, answers
        assert sum(n for code, n in answers.items() if code.startswith("5")) == 0, answers

        needle = token.encode()
        assert needle not in subprocess.run([docker_cli(), "inspect", served.name], capture_output=True,
                                            check=True).stdout
        image = json.loads(subprocess.run([docker_cli(), "image", "inspect", monitored_image["image"]],
                                          capture_output=True, check=True).stdout)[0]
        # Packaging and the image build gave the service a throwaway token to import it; none was kept.
        baked = {e.partition("=")[0] for e in image["Config"].get("Env") or []}
        assert not baked & {auth.AUTH_ENV, auth.TOKEN_ENV, auth.TOKEN_FILE_ENV}, baked
        # The image's files and the container's own layer (a mounted folder is not exported).
        assert not _holds([docker_cli(), "export", served.name], needle)
        assert "Authorization" not in served.logs() and token not in served.logs()


def test_the_image_required_to_check_tokens_without_one_refuses_to_start(monitored_image: dict[str, Any]) -> None:
    started = time.monotonic()
    out = subprocess.run(
        [docker_cli(), "run", "--rm", "--env=SHIPYARD_SERVING_AUTH=1", "-p", "127.0.0.1::3000",
         monitored_image["image"]],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert out.returncode == 78, out.stdout[-2000:] + out.stderr[-2000:]
    assert "shipyard: refusing to start: the serving token file /run/secrets/shipyard/token cannot be read" in (
        out.stdout + out.stderr)
    assert time.monotonic() - started < 60
