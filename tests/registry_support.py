"""A real OCI registry (Debian's docker-registry) on 127.0.0.1 for tests that push images."""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port

REGISTRY_BINARY = "/usr/bin/docker-registry"


@dataclass(frozen=True)
class LocalRegistry:
    address: str  # host:port

    def tags(self, repository: str) -> list[str]:
        import json

        with urllib.request.urlopen(f"http://{self.address}/v2/{repository}/tags/list", timeout=5) as response:
            return json.load(response)["tags"] or []


@pytest.fixture(scope="session")
def local_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    if not Path(REGISTRY_BINARY).exists():
        pytest.fail(f"{REGISTRY_BINARY} is missing; `make test` installs Debian's docker-registry package")
    root = tmp_path_factory.mktemp("registry")
    port = free_port()
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {root / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    log = (root / "registry.log").open("wb")
    proc = subprocess.Popen([REGISTRY_BINARY, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://{address}/v2/", timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError(f"docker-registry did not start: {(root / 'registry.log').read_text()}")
            time.sleep(0.1)
    yield LocalRegistry(address)
    proc.terminate()
    proc.wait(timeout=10)
    log.close()
    shutil.rmtree(root / "data", ignore_errors=True)
