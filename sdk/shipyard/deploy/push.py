"""Pushing images to an OCI registry and reading back the digest it stored."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._core.errors import DeployError


@dataclass(frozen=True)
class PushedImage:
    """An image as the registry holds it."""

    repository: str  # registry/host:port/name, without tag
    tag: str
    digest: str  # sha256:… of the manifest the registry stored

    @property
    def reference(self) -> str:
        return f"{self.repository}@{self.digest}"


def push_image(image: str, registry: str, *, repository: str, tag: str, client: Any = None) -> PushedImage:
    """Tag ``image`` as ``registry/repository:tag``, push it, and return the stored digest.

    Args:
        image: local image id or reference.
        registry: ``host:port`` of the registry (e.g. ``registry.internal:5000``).
        repository: name inside the registry, e.g. ``shipyard/iris``.
        tag: tag to push, e.g. ``v3``.

    Raises:
        DeployError: the image is missing, or the registry refused or cannot be reached.

    Example:
        >>> push_image("shipyard/iris:v3", "127.0.0.1:5000", repository="shipyard/iris", tag="v3")  # doctest: +SKIP
    """
    import docker.errors

    if client is None:
        from ..packaging.docker_engine import docker_client

        client = docker_client()
    target = f"{registry.rstrip('/')}/{repository}"
    try:
        client.images.get(image).tag(target, tag)
    except docker.errors.ImageNotFound as exc:
        raise DeployError(
            f"Image {image} does not exist locally, so it cannot be pushed.",
            hint="Build it first (shipyard package / promote).",
        ) from exc
    digest = None
    errors = []
    try:
        for line in client.images.push(target, tag=tag, stream=True, decode=True):
            if "error" in line:
                errors.append(line.get("errorDetail", {}).get("message") or line["error"])
            digest = (line.get("aux") or {}).get("Digest", digest)
    except docker.errors.APIError as exc:
        errors.append(str(exc.explanation or exc))
    if errors or not digest:
        detail = "; ".join(errors) or "the registry reported no digest"
        raise DeployError(
            f"Pushing {target}:{tag} to {registry} failed: {detail}.",
            hint=f"Check that the registry at {registry} is running and reachable from the Docker daemon, "
            "and that you are logged in to it (docker login) if it needs credentials.",
        )
    return PushedImage(target, tag, digest)
