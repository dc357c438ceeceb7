"""Inference capture of a real image: what a kill loses, measured (a clean stop losing nothing is in the e2e test)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from shipyard.monitoring.runtime import FLUSH_SECONDS
from tests.docker_support import ServedImage, docker_cli
from tests.monitoring_support import predict_body

pytestmark = pytest.mark.docker


def test_a_killed_container_loses_at_most_the_rows_of_its_last_second(
    monitored_image: dict[str, Any], tmp_path: Path
) -> None:
    capture = tmp_path / "capture"
    capture.mkdir()
    os.chmod(capture, 0o777)  # the image runs as a non-root user
    rows = monitored_image["holdout"]
    sent: list[float] = []  # when each 10-row request was answered
    env = {"SHIPYARD_CAPTURE": "1", "SHIPYARD_CAPTURE_DIR": "/capture"}
    with ServedImage(monitored_image["image"], env=env, volumes={str(capture): "/capture"}) as served:
        deadline = time.monotonic() + 4.0
        i = 0
        while time.monotonic() < deadline:
            status, body = served.request("POST", "/predict", predict_body(rows.iloc[i % 290 * 10 : i % 290 * 10 + 10]))
            assert status == 200, body
            sent.append(time.time())
            i += 1
        subprocess.run([docker_cli(), "kill", served.name], check=True, capture_output=True)  # SIGKILL
    folder = capture / "retrain-demo" / f"v{monitored_image['version']}"
    stamps = [json.loads(line)["ts"] for f in folder.glob("rows-*.jsonl") for line in f.read_text().splitlines()
              if line.strip()]
    lost_rows = 10 * len(sent) - len(stamps)
    rate = 10 * len(sent) / (sent[-1] - sent[0])  # rows per second served
    lost_seconds = lost_rows / rate  # each worker flushes on its own clock: count what is missing, not when
    print(f"kill after {len(sent)} requests in 4 s: {lost_rows} of {10 * len(sent)} rows not on disk, "
          f"{lost_seconds:.2f} s of traffic at {rate:.0f} rows/s")
    assert stamps, "nothing was captured before the kill"
    assert 0 <= lost_rows and lost_seconds <= FLUSH_SECONDS + 0.5, lost_seconds
