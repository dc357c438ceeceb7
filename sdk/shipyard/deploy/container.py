"""Running a model image on this machine for a test, and always cleaning it up.

Every container shipyard starts carries the label ``shipyard.smoke`` and, when
a promotion starts it, ``shipyard.promotion=<promotion key>``: a promotion
that is killed while its container runs leaves it behind, and the next run of
that promotion removes it (:func:`remove_leftovers`) before it starts anew.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .._core import lineage
from .._core.errors import DeployError

CONTAINER_PORT = 3000
READY_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class RunningModel:
    """A model container that answered ``/readyz``: where to reach it and how long it took."""

    container: Any
    port: int
    ready_seconds: float

    def logs(self, lines: int = 30) -> str:
        return container_logs(self.container, lines)


@contextlib.contextmanager
def running_model(
    client: Any, image: str, *, ready_timeout: float = READY_TIMEOUT_S, labels: Mapping[str, str] | None = None
) -> Iterator[RunningModel]:
    """Run ``image`` on 127.0.0.1 (random port, no capabilities), wait until ready, remove it afterwards.

    Raises:
        DeployError: the container exits, publishes no port or is not ready in time.
    """
    container = None
    started = time.monotonic()
    try:
        container = client.containers.run(
            image,
            detach=True,
            name=f"shipyard-smoke-{uuid.uuid4().hex[:12]}",
            ports={f"{CONTAINER_PORT}/tcp": ("127.0.0.1", None)},
            labels={lineage.CONTAINER_SMOKE: "true", **(labels or {})},
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
        )
        port = _host_port(container)
        yield RunningModel(container, port, _wait_ready(container, port, ready_timeout, started))
    finally:
        if container is not None:
            with contextlib.suppress(Exception):  # already gone: nothing else to clean
                container.remove(force=True)


def remove_leftovers(client: Any, promotion: str) -> int:
    """Remove every container an earlier run of ``promotion`` started and left behind; return how many."""
    leftovers = client.containers.list(all=True, filters={"label": f"{lineage.CONTAINER_PROMOTION}={promotion}"})
    for container in leftovers:
        with contextlib.suppress(Exception):
            container.remove(force=True)
    return len(leftovers)


def container_logs(container: Any, lines: int = 30) -> str:
    if container is None:
        return ""
    try:
        return container.logs(tail=lines).decode("utf-8", "replace").strip()
    except Exception:
        return ""


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
        hint=f"Container log tail:\n{container_logs(container)}",
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
                hint=f"Container log tail:\n{container_logs(container)}",
            )
        time.sleep(0.05)
    raise DeployError(
        f"The container was not ready within {timeout:.0f}s.",
        hint=f"Container log tail:\n{container_logs(container)}",
    )


class JsonClient:
    """A keep-alive JSON client for one local port."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_S)

    def __enter__(self) -> JsonClient:
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
