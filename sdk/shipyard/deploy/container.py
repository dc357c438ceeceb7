"""Running a model image on this machine for a test, and always cleaning it up.

Every container shipyard starts carries the label ``shipyard.smoke`` and, when
a promotion starts it, ``shipyard.promotion=<promotion key>``: a promotion
that is killed while its container runs leaves it behind, and the next run of
that promotion removes it (:func:`remove_leftovers`) before it starts anew.

Given a token, the container requires it (``SHIPYARD_SERVING_AUTH=1``) and
finds it where a Kubernetes Secret would be mounted: the file is copied into
the created container before it starts, so neither the image nor the
container's configuration (``docker inspect``) holds it, and no file on this
machine does.

Waiting for readiness watches three things at once: ``/readyz``, the
container's state, and its log. A container that exits, or whose model server
gives up starting, raises :class:`~shipyard.ContainerFailed` at once, with
the exit code and the last lines of ``docker logs``.

Q: Why read the log, when the container's state says whether it exited?
A: BentoML's server does not exit when its worker cannot start (a model whose
   library is missing from the image, say): it restarts the worker every few
   seconds and the container stays ``running``, answering nothing. The
   worker's failure is visible only in the log, as uvicorn's "Application
   startup failed" line, which BentoML's worker prints before it exits.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from .._core import lineage
from .._core.errors import ContainerFailed, DeployError
from ..monitoring.auth import AUTH_ENV, TOKEN_FILE

CONTAINER_PORT = 3000
READY_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 30.0
LOG_TAIL_LINES = 30
# Lines a model server prints when it gives up starting while its container keeps running.
STARTUP_FAILED_MARKERS = ("Application startup failed", "shipyard: refusing to start")
_LOG_SCAN_LINES = 400
_LOG_SCAN_INTERVAL_S = 0.25


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
    client: Any,
    image: str,
    *,
    ready_timeout: float = READY_TIMEOUT_S,
    labels: Mapping[str, str] | None = None,
    token: str | None = None,
) -> Iterator[RunningModel]:
    """Run ``image`` on 127.0.0.1 (random port, no capabilities), wait until ready, remove it afterwards.

    With ``token``, the service requires it on every request (send it with ``JsonClient(port, token=...)``).

    Raises:
        ContainerFailed: the container exits, or its model server gives up starting, before it is ready.
        DeployError: the container publishes no port or is not ready in time.
    """
    container = None
    started = time.monotonic()
    try:
        container = client.containers.create(
            image,
            name=f"shipyard-smoke-{uuid.uuid4().hex[:12]}",
            ports={f"{CONTAINER_PORT}/tcp": ("127.0.0.1", None)},
            labels={lineage.CONTAINER_SMOKE: "true", **(labels or {})},
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            environment={AUTH_ENV: "1"} if token is not None else {},
        )
        if token is not None:
            container.put_archive("/", _token_archive(token))
        container.start()
        port = _host_port(container, started)
        yield RunningModel(container, port, _wait_ready(container, port, ready_timeout, started))
    finally:
        if container is not None:
            with contextlib.suppress(Exception):  # already gone: nothing else to clean
                container.remove(force=True)


def _token_archive(token: str) -> bytes:
    """A tar of the token file at the path the service reads by default, readable by the image's user."""
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        parts = PurePosixPath(TOKEN_FILE).relative_to("/").parts
        for depth in range(1, len(parts)):
            folder = tarfile.TarInfo("/".join(parts[:depth]))
            folder.type, folder.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(folder)
        data = f"{token}\n".encode()
        entry = tarfile.TarInfo("/".join(parts))
        entry.size, entry.mode = len(data), 0o444
        tar.addfile(entry, io.BytesIO(data))
    return buffer.getvalue()


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


def _host_port(container: Any, started: float) -> int:
    for _ in range(50):
        container.reload()
        bindings = (container.attrs.get("NetworkSettings") or {}).get("Ports") or {}
        binding = bindings.get(f"{CONTAINER_PORT}/tcp")
        if binding:
            return int(binding[0]["HostPort"])
        if failed := _exited(container, started):
            raise failed
        time.sleep(0.05)
    raise DeployError(
        "The container published no port.",
        hint=f"Check that the image serves on port {CONTAINER_PORT}. Container log tail:\n{container_logs(container)}",
    )


def _wait_ready(container: Any, port: int, timeout: float, started: float) -> float:
    deadline = started + timeout
    next_scan = 0.0
    while time.monotonic() < deadline:
        if _ready(port):
            return time.monotonic() - started
        container.reload()
        if failed := _exited(container, started):
            raise failed
        if time.monotonic() >= next_scan:
            if failed := _server_gave_up(container, started):
                raise failed
            next_scan = time.monotonic() + _LOG_SCAN_INTERVAL_S
        time.sleep(0.05)
    raise DeployError(
        f"The container was not ready within {timeout:.0f}s.",
        hint=f"Container log tail:\n{container_logs(container)}",
    )


def _ready(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        try:
            conn.request("GET", "/readyz")
            return conn.getresponse().status == 200
        finally:
            conn.close()
    except OSError:
        return False


def _exited(container: Any, started: float) -> ContainerFailed | None:
    if container.status not in {"exited", "dead"}:
        return None
    state = container.attrs.get("State") or {}
    code = state.get("ExitCode")
    oom = " (killed: out of memory)" if state.get("OOMKilled") else ""
    seconds = time.monotonic() - started
    tail = container_logs(container, LOG_TAIL_LINES)
    return ContainerFailed(
        f"The container of {_image(container)} exited with code {code}{oom} {seconds:.1f}s after it started, "
        f"before it was ready{_cause(tail)}.",
        exit_code=code,
        log_tail=tail,
        seconds=seconds,
        hint=_hint(tail),
    )


def _server_gave_up(container: Any, started: float) -> ContainerFailed | None:
    log = container_logs(container, _LOG_SCAN_LINES)
    if not any(marker in log for marker in STARTUP_FAILED_MARKERS):
        return None
    seconds = time.monotonic() - started
    return ContainerFailed(
        f"The model server in the container of {_image(container)} could not start{_cause(log)} "
        f"({seconds:.1f}s after it started; "
        "the container still runs and would retry it forever).",
        exit_code=None,
        log_tail=_last_lines(log, LOG_TAIL_LINES),
        seconds=seconds,
        hint=_hint(log),
    )


def _image(container: Any) -> str:
    return str((container.attrs.get("Config") or {}).get("Image") or "the image")


def _cause(log: str) -> str:
    """``": ModuleNotFoundError: No module named 'x'"``: the last exception line of ``log``, if any."""
    for line in reversed(log.splitlines()):
        found = _EXCEPTION_LINE.search(line)
        if found:
            return f": {found.group(0).strip()[:300]}"
    return ""


def _hint(log: str) -> str:
    if "No module named" in log or "cannot open shared object file" in log:
        advice = "The image lacks a library the model needs: log the model with its requirements and rebuild."
    else:
        advice = "Fix what the log says, then build the image again."
    return f"{advice} Last {LOG_TAIL_LINES} lines of `docker logs`:\n{_last_lines(log, LOG_TAIL_LINES)}"


def _last_lines(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


_EXCEPTION_LINE = re.compile(r"\b[A-Za-z_][\w.]*(?:Error|Exception|Exit)\b: .*$")


class JsonClient:
    """A keep-alive JSON client for one local port."""

    def __init__(self, port: int, *, token: str | None = None) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_S)
        self.headers = {"Content-Type": "application/json"}
        if token is not None:
            self.headers["Authorization"] = f"Bearer {token}"

    def __enter__(self) -> JsonClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.close()

    def post_json(self, path: str, body: Any) -> Any:
        data = json.dumps(body, allow_nan=False).encode()
        self.conn.request("POST", path, body=data, headers=self.headers)
        response = self.conn.getresponse()
        payload = response.read()
        if response.status != 200:
            raise DeployError(
                f"POST {path} answered HTTP {response.status}: {payload[:500].decode('utf-8', 'replace')}",
                hint="The service rejected a request built from the model's own input example; check the signature.",
            )
        return json.loads(payload)
