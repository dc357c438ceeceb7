"""Pushing to a real OCI registry on 127.0.0.1 with the real Docker daemon."""

from __future__ import annotations

import io
import tarfile

import pytest

import shipyard
from shipyard.deploy.push import push_image
from tests.conftest import free_port
from tests.docker_support import docker_engine, docker_inspect  # noqa: F401  (fixture)
from tests.registry_support import local_registry  # noqa: F401  (fixture)

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def tiny_image(docker_engine):  # noqa: F811
    """A one-file image made with `docker import`: no registry needed to create it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        data = b"shipyard push test\n"
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    api = docker_engine.api
    api.import_image_from_data(buffer.getvalue(), repository="shipyard-test/tiny", tag="v1")
    yield "shipyard-test/tiny:v1"
    docker_engine.images.remove("shipyard-test/tiny:v1", force=True)


def test_push_records_the_digest_the_registry_stored(docker_engine, tiny_image, local_registry) -> None:  # noqa: F811
    pushed = push_image(tiny_image, local_registry.address, repository="shipyard/tiny", tag="v1")
    assert pushed.digest.startswith("sha256:") and len(pushed.digest) == 71
    assert local_registry.tags("shipyard/tiny") == ["v1"]
    repo_digests = docker_inspect(f"{local_registry.address}/shipyard/tiny:v1", "{{json .RepoDigests}}")
    assert pushed.reference in repo_digests


def test_unreachable_registry_is_a_deploy_error(docker_engine, tiny_image) -> None:  # noqa: F811
    with pytest.raises(shipyard.DeployError, match="failed") as info:
        push_image(tiny_image, f"127.0.0.1:{free_port()}", repository="shipyard/tiny", tag="v1")
    assert "is running and reachable" in str(info.value)


def test_missing_image_is_a_deploy_error(docker_engine, local_registry) -> None:  # noqa: F811
    with pytest.raises(shipyard.DeployError, match="does not exist locally"):
        push_image("shipyard-test/none:v0", local_registry.address, repository="x/none", tag="v0")
