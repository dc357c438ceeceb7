"""A real Prometheus (Debian's ``prometheus`` package) on 127.0.0.1 for tests of what model images export.

Scrapes every second and evaluates rules every second, keeps its data in a
temporary folder, and takes scrape targets and rule files while it runs
(``scrape``, ``load_rules``), so one server can serve a whole module or
session::

    with PrometheusServer(tmp_path) as prometheus:
        prometheus.scrape(["127.0.0.1:32771"])
        prometheus.load_rules([bundle / "alerts" / "rules.yaml"])
        prometheus.wait_for(lambda: prometheus.query("up == 1"), 30, "target up")

Missing binary: the test skips, or fails when ``SHIPYARD_REQUIRE_DOCKER`` is
set (CI), as the Docker tests do.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Self, TypeVar

import pytest

from tests.conftest import free_port

PROMETHEUS_BINARY = "/usr/bin/prometheus"
REQUIRE_ENV = "SHIPYARD_REQUIRE_DOCKER"
T = TypeVar("T")


def require_prometheus() -> str:
    """The prometheus binary; skips (or fails, when Docker tests are required) when it is missing."""
    found = PROMETHEUS_BINARY if Path(PROMETHEUS_BINARY).exists() else shutil.which("prometheus")
    if found:
        return found
    reason = f"{PROMETHEUS_BINARY} is missing; `make test` installs Debian's prometheus package"
    if os.environ.get(REQUIRE_ENV):
        pytest.fail(f"{REQUIRE_ENV} is set but {reason}", pytrace=False)
    pytest.skip(reason)


def promtool() -> str:
    """The promtool binary (Debian's prometheus package); skips, or fails when Docker tests are required."""
    found = shutil.which("promtool")
    if found:
        return found
    reason = "promtool is missing; `make test` installs Debian's prometheus package (scripts/setup-system.sh)"
    if os.environ.get(REQUIRE_ENV):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def bentoml_series(service: str, version: str, code: str, per_minute: int, *, seconds_bucket: str,
                   buckets: tuple[str, ...], samples: int, extra_labels: str = "") -> list[dict[str, str]]:
    """``promtool test rules`` input series of BentoML's ``/predict`` request histogram: ``per_minute``
    requests a minute answered ``code``, all in the bucket ``le=seconds_bucket``, for ``samples`` minutes."""
    labels = (
        f'endpoint="/predict",http_response_code="{code}",service_name="{service}",service_version="{version}",'
        f'instance="10.0.0.7:3000"{extra_labels}'
    )
    name = "bentoml_service_request_duration_seconds"
    series = [{"series": f"{name}_count{{{labels}}}", "values": f"0+{per_minute}x{samples}"}]
    for le in (*buckets, "+Inf"):
        inside = le == "+Inf" or float(le) >= float(seconds_bucket)
        series.append(
            {"series": f'{name}_bucket{{{labels},le="{le}"}}', "values": f"0+{per_minute if inside else 0}x{samples}"}
        )
    return series


class PrometheusServer:
    """A Prometheus process with its configuration, rule files and storage in ``root``; stopped on exit."""

    def __init__(self, root: Path, *, ready_seconds: float = 30) -> None:
        self.root = Path(root)
        self.ready_seconds = ready_seconds
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_text(self) -> str:
        path = self.root / "prometheus.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def __enter__(self) -> Self:
        binary = require_prometheus()
        (self.root / "rules").mkdir(parents=True, exist_ok=True)
        self._write_targets([])
        (self.root / "prometheus.yml").write_text(
            json.dumps(  # JSON is YAML; no templating of a config by hand
                {
                    "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(self.root / "rules" / "*.yaml")],
                    "scrape_configs": [
                        {
                            "job_name": "models",
                            "file_sd_configs": [{"files": [str(self.root / "targets.json")], "refresh_interval": "1s"}],
                        }
                    ],
                },
                indent=2,
            )
        )
        # A port picked free can be taken before prometheus binds it: try another one.
        for _attempt in range(3):
            self.port = free_port()
            self._log = (self.root / "prometheus.log").open("ab")
            self._process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={self.root / 'prometheus.yml'}",
                    f"--storage.tsdb.path={self.root / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--web.enable-lifecycle",  # POST /-/reload after load_rules
                    "--log.level=warn",
                ],
                stdout=self._log,
                stderr=subprocess.STDOUT,
            )
            if self._wait_ready():
                return self
            self.stop()
        raise RuntimeError(f"prometheus did not become ready on 127.0.0.1:\n{self.log_text}")

    def _wait_ready(self) -> bool:
        assert self._process is not None
        deadline = time.monotonic() + self.ready_seconds
        while time.monotonic() < deadline and self._process.poll() is None:
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        return True
            except OSError:
                pass
            time.sleep(0.1)
        return False

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL after 10 s) and close its log."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def _write_targets(self, targets: Sequence[str]) -> None:
        # Written whole then renamed: file discovery must never read half a file.
        staging = self.root / ".targets.json"
        staging.write_text(json.dumps([{"targets": list(targets), "labels": {}}] if targets else []))
        staging.replace(self.root / "targets.json")

    def scrape(self, targets: Iterable[str]) -> None:
        """Scrape ``host:port`` targets (``/metrics``) from now on, instead of the ones before."""
        self._write_targets(list(targets))

    def load_rules(self, files: Iterable[Path | str], *, rewrite: Callable[[str], str] | None = None) -> None:
        """Copy rule files in (``rewrite`` edits each copy's text), replacing the ones before, and reload."""
        import yaml

        for old in (self.root / "rules").glob("*.yaml"):
            old.unlink()
        groups: set[str] = set()
        for index, source in enumerate(files):
            text = Path(source).read_text()
            text = rewrite(text) if rewrite else text
            groups |= {g["name"] for g in (yaml.safe_load(text) or {}).get("groups", [])}
            (self.root / "rules" / f"{index:02d}-{Path(source).name}").write_text(text)
        request = urllib.request.Request(f"{self.url}/-/reload", method="POST")
        try:
            urllib.request.urlopen(request, timeout=10).close()
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"prometheus refused the rules: {exc.read().decode()}") from exc
        self.wait_for(lambda: {g["name"] for g in self._api("rules")["groups"]} == groups, 10, f"rule groups {groups}")

    def _api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"prometheus refused /api/v1/{path}{query}: {exc.read().decode()}") from exc
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector of ``expr``: ``[{"metric": {labels}, "value": [ts, "1.5"]}, ...]``."""
        data = self._api("query", query=expr)
        assert data["resultType"] == "vector", f"{expr!r} is a {data['resultType']}, not an instant vector"
        return data["result"]

    def values(self, expr: str, by: str) -> dict[str, float]:
        """``expr``'s samples as ``{value of label by: float}``."""
        return {sample["metric"].get(by, ""): float(sample["value"][1]) for sample in self.query(expr)}

    def alerts(self, state: str | None = None) -> list[dict[str, Any]]:
        """Alerts from /api/v1/alerts (pending and firing), or only those in ``state``."""
        found = self._api("alerts")["alerts"]
        return [a for a in found if state is None or a["state"] == state]

    def targets(self) -> list[dict[str, Any]]:
        return self._api("targets")["activeTargets"]

    def wait_for(self, predicate: Callable[[], T], timeout: float, what: str = "condition") -> T:
        """Poll ``predicate`` every 0.5 s until it returns something truthy, and return that; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            try:
                last = predicate()
            except (OSError, KeyError) as exc:
                last = exc
            else:
                if last:
                    return last
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not true after {timeout:g} s (last: {last!r})")
            if self._process is None or self._process.poll() is not None:
                raise AssertionError(f"prometheus exited while waiting for {what}:\n{self.log_text}")
            time.sleep(0.5)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """A running Prometheus for the module, with no targets and no rules until a test gives them."""
    with PrometheusServer(tmp_path_factory.mktemp("prometheus")) as server:
        yield server
