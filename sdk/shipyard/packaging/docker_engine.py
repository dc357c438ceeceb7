"""The Docker engine as packaging sees it: one client, typed errors when it is absent.

Builds go through the Docker SDK, which talks to the daemon socket and uses the
classic builder; it therefore works where the ``docker`` CLI lacks buildx.
"""

from __future__ import annotations

from typing import Any

from .._core.errors import DockerUnavailable, MissingDependency

START_HINT = (
    "Start Docker: run `sudo scripts/docker-up.sh` (or `make docker`) in the shipyard checkout, "
    "or start your Docker engine and check that `docker info` answers."
)


def docker_client(timeout: int = 600) -> Any:
    """Return a connected ``docker.DockerClient``.

    Raises:
        DockerUnavailable: no daemon answers on the configured socket.
        MissingDependency: the ``docker`` Python package is not installed.

    Example:
        >>> client = docker_client()            # doctest: +SKIP
        >>> client.version()["Version"]         # doctest: +SKIP
        '20.10.24+dfsg1'
    """
    try:
        import docker
        from docker.errors import DockerException
    except ImportError as exc:  # pragma: no cover - docker is a hard dependency
        raise MissingDependency(
            "The docker Python package is not installed.", hint="pip install 'docker>=7.1,<8'"
        ) from exc
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except DockerException as exc:
        raise DockerUnavailable(f"No Docker daemon answers ({_short(exc)}).", hint=START_HINT) from exc
    except OSError as exc:
        raise DockerUnavailable(f"No Docker daemon answers ({exc}).", hint=START_HINT) from exc
    return client


def docker_available() -> bool:
    """True when a Docker daemon answers (never raises)."""
    try:
        docker_client(timeout=5).close()
    except Exception:
        return False
    return True


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1][:300] if text else type(exc).__name__
