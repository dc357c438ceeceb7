"""Base images for model images, built locally with no container registry.

The default base is made from nothing but a Debian mirror::

    debootstrap --variant=minbase bookworm  ──▶  rootfs tarball (cached)
        ──▶  docker import  ──▶  shipyard/rootfs:bookworm-minbase
        ──▶  Dockerfile FROM it: the host's extra CA certificates, uv, a non-root user
        ──▶  shipyard/base:bookworm-py3.11

Python comes from Debian, so its major.minor is the suite's (bookworm: 3.11);
it must equal the Python that trained the model. The setting ``base_image``
selects a registry image instead, for places where a registry is reachable.
An existing image is reused; nothing is rebuilt unless asked, or unless it was
made with an older package set (its ``io.shipyard.rootfs-layout`` label).

Q: Why are native libraries such as ``libgomp1`` in the base image and not
   installed per model?
A: The XGBoost, LightGBM and CatBoost wheels (and scikit-learn's OpenMP
   code) link against the GNU OpenMP runtime, which ``minbase`` leaves out.
   It is a few hundred kB; putting it in the rootfs means a model image never
   needs apt, a Debian mirror or root at build time, and every flavor shares
   the same base layer.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._core import lineage
from .._core.errors import BaseImageMissing, MissingDependency, PackagingError
from .progress import Say, progress  # bento.py still imports progress from here; its home is .progress

SUITE_PYTHON = {"bookworm": "3.11", "trixie": "3.13"}
DEFAULT_SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
ROOTFS_REPOSITORY = "shipyard/rootfs"
BASE_REPOSITORY = "shipyard/base"
BUILDER_REPOSITORY = "shipyard/base-builder"
APP_USER = "shipyard"
APP_UID = 10001
HOST_CA_DIR = Path("/usr/local/share/ca-certificates")
# Packages baked into the rootfs by debootstrap itself, so the Dockerfile needs no apt run.
# libgomp1: the OpenMP runtime that the XGBoost, LightGBM and CatBoost wheels load (see the Q/A above).
ROOTFS_PACKAGES = ("python3", "python3-venv", "ca-certificates", "libgomp1")
# Left out of minbase: Python reads time zones from the tzdata wheel every image installs (python-dateutil,
# hence BentoML, requires it); the system copy would be a second one.
ROOTFS_EXCLUDED = ("tzdata",)
UV_REQUIREMENT = "uv>=0.5,<1"
# Bump when ROOTFS_PACKAGES or the trimming changes, so cached tarballs are not reused.
ROOTFS_LAYOUT = "py-ca-gomp-r6"
# Bump when the Dockerfile of the base images changes; the label names both, so either change rebuilds.
BASE_LAYOUT = f"{ROOTFS_LAYOUT}-b2"
# Trimmed from the root filesystem besides docs: nothing a model service imports or runs. glibc's iconv
# modules (Python has its own codecs) and the parts of the standard library for tests and tooling.
ROOTFS_TRIM = (
    "usr/lib/x86_64-linux-gnu/gconv",
    "usr/lib/aarch64-linux-gnu/gconv",
    "usr/lib/python3.*/test",
    "usr/lib/python3.*/lib2to3",
    "usr/lib/python3.*/pydoc_data",
    "usr/lib/python3.*/idlelib",
    "var/cache/debconf/*-old",
    "var/lib/dpkg/*-old",
)
LAYOUT_LABEL = lineage.LABEL_BASE_ROOTFS_LAYOUT
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
BUILD_TIMEOUT_S = 1800

BUILD_HINT = "Run `shipyard base-image build` once (needs root, Docker and debootstrap), or set `base_image`."


@dataclass(frozen=True)
class BaseImage:
    """A base image that model images are built ``FROM``.

    Attributes:
        name: image reference, e.g. ``shipyard/base:bookworm-py3.11``.
        image_id: Docker image id (``sha256:...``).
        python: Python major.minor inside the image.
        size_bytes: image size as Docker reports it.
        built: True when this call built it, False when an existing image was reused.
        seconds: time spent in this call.
        local: True for the debootstrap-built image, False for a registry image from settings.
    """

    name: str
    image_id: str
    python: str
    size_bytes: int
    built: bool
    seconds: float
    local: bool = True
    builder: str = ""

    @property
    def builder_ref(self) -> str:
        """Image with uv that dependency stages start from (the base itself for registry images)."""
        return self.builder or self.name


def base_image_name(python: str | None = None, suite: str = DEFAULT_SUITE) -> str:
    """Name of the locally built base image for ``suite`` (its Python is the suite's).

    Example:
        >>> base_image_name()
        'shipyard/base:bookworm-py3.11'
    """
    suite_python = _suite_python(suite)
    if python is not None and python != suite_python:
        raise PackagingError(
            f"Debian {suite} provides Python {suite_python}, but the model needs Python {python}.",
            hint=f"Train with Python {suite_python}, or set `base_image` to a registry image with Python {python}.",
        )
    return f"{BASE_REPOSITORY}:{suite}-py{suite_python}"


def cache_dir() -> Path:
    """Folder for the debootstrap rootfs tarballs (``SHIPYARD_CACHE_DIR`` or the XDG cache)."""
    if env := os.environ.get("SHIPYARD_CACHE_DIR"):
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "shipyard"


def resolve_base_image(python: str, *, client: Any = None, configured: str | None = None) -> BaseImage:
    """Return the base image to build a model image from, without building anything.

    Args:
        python: Python major.minor that trained the model.
        client: a ``docker.DockerClient``; default: a new one.
        configured: the ``base_image`` setting; default: read from the workspace.

    Raises:
        BaseImageMissing: the local base image was never built, or the configured one cannot be had.
        DockerUnavailable: no Docker daemon answers.
    """
    from .docker_engine import docker_client

    client = client or docker_client()
    if configured is None:
        from .._core.workspace import current_workspace

        configured = current_workspace().settings.base_image
    if configured:
        image = _get_or_pull(client, configured)
        found = _image_python(client, configured)
        if found != python:
            raise PackagingError(
                f"The configured base image {configured} has Python {found or 'missing'}, "
                f"but the model was trained with Python {python}.",
                hint=f"Choose a base image with Python {python} (setting `base_image`), or unset it to use "
                "the local base image.",
            )
        return BaseImage(configured, image.id, python, _size(image), built=False, seconds=0.0, local=False)
    name = base_image_name(python)
    builder = _builder_name(name)
    image = _get(client, name)
    if image is None or _get(client, builder) is None:
        missing = name if image is None else builder
        raise BaseImageMissing(f"The base image {missing} does not exist in the local Docker engine.", hint=BUILD_HINT)
    if not _current_layout(image):
        raise BaseImageMissing(
            f"The base image {name} was built by an older shipyard, without the native libraries model "
            f"wheels need ({', '.join(ROOTFS_PACKAGES)}).",
            hint="Run `shipyard base-image build --rebuild` once (needs root, Docker and debootstrap).",
        )
    return BaseImage(name, image.id, python, _size(image), built=False, seconds=0.0, builder=builder)


def _builder_name(name: str) -> str:
    return BUILDER_REPOSITORY + name[len(BASE_REPOSITORY) :]


def build_base_image(
    *,
    python: str | None = None,
    suite: str = DEFAULT_SUITE,
    mirror: str = DEFAULT_MIRROR,
    rebuild: bool = False,
    quiet: bool = False,
) -> BaseImage:
    """Build the local Debian + Python base image, or reuse it when it exists.

    Args:
        python: required Python major.minor; default: the running interpreter's.
        suite: Debian suite to bootstrap.
        mirror: Debian mirror that debootstrap and apt use.
        rebuild: build again even if the image exists (the rootfs tarball cache is still used).
        quiet: no progress display.

    Raises:
        PackagingError: the suite's Python differs from ``python``, or a build step failed.
        MissingDependency: debootstrap is not installed.
        DockerUnavailable: no Docker daemon answers.

    Example:
        >>> image = shipyard.build_base_image()     # doctest: +SKIP
        >>> image.name, image.built                 # doctest: +SKIP
        ('shipyard/base:bookworm-py3.11', False)
    """
    from .docker_engine import docker_client

    started = time.monotonic()
    python = python or f"{sys.version_info.major}.{sys.version_info.minor}"
    name = base_image_name(python, suite)
    builder = _builder_name(name)
    client = docker_client(timeout=BUILD_TIMEOUT_S)
    existing = _get(client, name)
    if existing is not None and _get(client, builder) is not None and _current_layout(existing) and not rebuild:
        return BaseImage(
            name, existing.id, python, _size(existing), built=False, seconds=time.monotonic() - started, builder=builder
        )

    with progress(quiet) as say:
        rootfs_ref = f"{ROOTFS_REPOSITORY}:{suite}-minbase-{ROOTFS_LAYOUT}"
        if rebuild or _get(client, rootfs_ref) is None:
            tarball = _rootfs_tarball(suite, mirror, say)
            say(f"importing {tarball.name} as {rootfs_ref}")
            repository, tag = rootfs_ref.split(":")
            client.api.import_image_from_file(str(tarball), repository=repository, tag=tag)
        say(f"building {name} (CA certificates, uv, user {APP_USER})")
        with tempfile.TemporaryDirectory(prefix="shipyard-base-") as ctx:
            context = _base_context(Path(ctx), rootfs_ref, python, suite)
            labels = _base_labels(python, suite)
            image_id = stream_build(client, context, name, say, labels=labels, target="runtime")
            stream_build(client, context, builder, say, labels=labels, target="builder")
    image = client.images.get(image_id)
    return BaseImage(
        name, image.id, python, _size(image), built=True, seconds=time.monotonic() - started, builder=builder
    )


def stream_build(
    client: Any,
    context: Path,
    tag: str,
    say: Say,
    *,
    labels: dict[str, str] | None = None,
    dockerfile: str = "Dockerfile",
    target: str | None = None,
    no_cache: bool = False,
) -> str:
    """Build ``context`` with the classic builder, report each step through ``say``, return the image id.

    Raises:
        PackagingError: a build step failed; the message carries the builder's last lines.
    """
    tail: list[str] = []
    image_id = ""
    try:
        for chunk in client.api.build(
            path=str(context),
            dockerfile=dockerfile,
            tag=tag,
            labels=labels or {},
            target=target,
            nocache=no_cache,
            rm=True,
            forcerm=True,
            decode=True,
            timeout=BUILD_TIMEOUT_S,
        ):
            if "error" in chunk:
                tail.append(str(chunk["error"]).strip())
                raise PackagingError(
                    f"Building image {tag} failed: {chunk['error'].strip()}",
                    hint="Read the build output above; network errors usually mean the package index or "
                    "Debian mirror is unreachable from containers.\n" + "\n".join(tail[-15:]),
                )
            if "stream" in chunk:
                line = str(chunk["stream"]).rstrip()
                if line:
                    tail.append(line)
                    if line.startswith("Step ") and line.split(" : ", 1)[-1].startswith(("FROM", "RUN", "COPY")):
                        say(line if len(line) <= 110 else line[:107] + "...")
            if "aux" in chunk and "ID" in chunk["aux"]:
                image_id = chunk["aux"]["ID"]
    except PackagingError:
        raise
    except Exception as exc:
        from docker.errors import DockerException

        if isinstance(exc, DockerException | OSError):
            raise PackagingError(
                f"Building image {tag} failed: {exc}", hint="Check that the Docker daemon is healthy (`docker info`)."
            ) from exc
        raise
    if not image_id:
        image_id = client.images.get(tag).id
    return image_id


def _rootfs_tarball(suite: str, mirror: str, say: Say) -> Path:
    arch = _dpkg_arch()
    target = cache_dir() / "debootstrap" / f"{suite}-minbase-{arch}-{ROOTFS_LAYOUT}.tar"
    if target.exists():
        say(f"reusing cached rootfs {target}")
        return target
    debootstrap = shutil.which("debootstrap") or (
        "/usr/sbin/debootstrap" if Path("/usr/sbin/debootstrap").exists() else None
    )
    if debootstrap is None:
        raise MissingDependency(
            "debootstrap is not installed; it is needed to build the base image without a registry.",
            hint="Run `sudo scripts/docker-up.sh` (installs docker.io and debootstrap), "
            "or `apt-get install debootstrap`; or set `base_image` to a registry image.",
        )
    if os.geteuid() != 0:
        raise PackagingError(
            "debootstrap must run as root to build the base image.",
            hint="Run `sudo shipyard base-image build` once; the image is reused afterwards.",
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="shipyard-rootfs-", dir=target.parent) as tmp:
        rootfs = Path(tmp) / "rootfs"
        say(f"debootstrap --variant=minbase {suite} (about a minute)")
        cmd = [
            debootstrap,
            "--variant=minbase",
            f"--include={','.join(ROOTFS_PACKAGES)}",
            f"--exclude={','.join(ROOTFS_EXCLUDED)}",
            suite,
            str(rootfs),
            mirror,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise PackagingError(
                f"debootstrap {suite} failed with exit code {proc.returncode}.",
                hint=f"Check that {mirror} is reachable. Last lines:\n{tail}",
            )
        _trim_rootfs(rootfs)
        partial = target.with_suffix(".partial")
        say(f"writing rootfs tarball {target.name}")
        with tarfile.open(partial, "w") as tar:
            tar.add(str(rootfs), arcname=".", filter=_tar_filter)
        partial.replace(target)
    return target


def _trim_rootfs(rootfs: Path) -> None:
    for rel in (
        "var/cache/apt/archives",
        "var/lib/apt/lists",
        "usr/share/doc",
        "usr/share/man",
        "usr/share/info",
        "usr/share/locale",
    ):
        folder = rootfs / rel
        if folder.is_dir():
            for child in folder.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                elif child.name not in {"lock", "partial"}:
                    child.unlink(missing_ok=True)
    for pattern in ROOTFS_TRIM:
        for path in rootfs.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            elif path.is_file():
                path.unlink()
    # debootstrap copies the host's resolver configuration; Docker provides its own.
    (rootfs / "etc/resolv.conf").unlink(missing_ok=True)


def _tar_filter(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    # Sockets and similar special files cannot be archived; proc/sys/dev content is not needed.
    if info.name.startswith(("./proc/", "./sys/", "./dev/")) and not info.isdir():
        return None
    return info


def _base_context(ctx: Path, rootfs_ref: str, python: str, suite: str) -> Path:
    certs = ctx / "ca-certificates"
    certs.mkdir()
    for crt in sorted(HOST_CA_DIR.glob("*.crt")) if HOST_CA_DIR.is_dir() else []:
        shutil.copy2(crt, certs / crt.name)
    (certs / ".keep").write_text("")
    (ctx / "Dockerfile").write_text(
        f"""\
# shipyard base images: Debian {suite} (debootstrap, no registry) + Python {python}.
# Target "runtime": CA certificates and a non-root user; model images run on it.
# Target "builder": the same + uv and binutils; model images install their dependencies
# with it in a build stage (and strip debug symbols from native libraries), so neither
# reaches the final image.
FROM {rootfs_ref} AS common
ENV LANG=C.UTF-8 \\
    SSL_CERT_FILE={CA_BUNDLE} \\
    REQUESTS_CA_BUNDLE={CA_BUNDLE} \\
    PIP_CERT={CA_BUNDLE} \\
    UV_NATIVE_TLS=1 \\
    PIP_DISABLE_PIP_VERSION_CHECK=1 \\
    PYTHONDONTWRITEBYTECODE=1
# Networks with TLS-inspecting proxies need their CA trusted inside the image too.
COPY ca-certificates/ /usr/local/share/ca-certificates/
RUN rm -f /usr/local/share/ca-certificates/.keep \\
 && update-ca-certificates >/dev/null \\
 && useradd --uid {APP_UID} --user-group --create-home --shell /usr/sbin/nologin {APP_USER}

FROM common AS builder
USER root
RUN python3 -m venv /opt/uv \\
 && /opt/uv/bin/pip install --no-cache-dir '{UV_REQUIREMENT}' \\
 && ln -s /opt/uv/bin/uv /usr/local/bin/uv \\
 && uv --version
RUN apt-get update -qq \\
 && apt-get install -y -qq --no-install-recommends binutils >/dev/null \\
 && rm -rf /var/lib/apt/lists/* \\
 && strip --version >/dev/null

FROM common AS runtime
RUN python3 -m compileall -q -j 0 /usr/lib/python3.11 >/dev/null || true
USER {APP_UID}
WORKDIR /home/{APP_USER}
"""
    )
    return ctx


def _base_labels(python: str, suite: str) -> dict[str, str]:
    return {
        "org.opencontainers.image.title": "shipyard base image",
        "org.opencontainers.image.description": f"Debian {suite} minbase + Python {python} + uv, built locally",
        "org.opencontainers.image.base.name": f"debian:{suite} (debootstrap)",
        "io.shipyard.python": python,
        "io.shipyard.suite": suite,
        LAYOUT_LABEL: BASE_LAYOUT,
    }


def _current_layout(image: Any) -> bool:
    """True when ``image`` was built from the rootfs package set of this shipyard version."""
    labels = (image.attrs.get("Config") or {}).get("Labels") or {}
    return labels.get(LAYOUT_LABEL) == BASE_LAYOUT


def _suite_python(suite: str) -> str:
    try:
        return SUITE_PYTHON[suite]
    except KeyError:
        raise PackagingError(
            f"Unknown Debian suite {suite!r} for the base image.", hint=f"Use one of: {', '.join(SUITE_PYTHON)}."
        ) from None


def _dpkg_arch() -> str:
    machine = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def _get(client: Any, ref: str) -> Any:
    from docker.errors import ImageNotFound

    try:
        return client.images.get(ref)
    except ImageNotFound:
        return None


def _get_or_pull(client: Any, ref: str) -> Any:
    from docker.errors import DockerException

    image = _get(client, ref)
    if image is not None:
        return image
    try:
        return client.images.pull(ref)
    except DockerException as exc:
        raise BaseImageMissing(
            f"The configured base image {ref} is not present locally and could not be pulled ({exc}).",
            hint="Make the registry reachable, `docker load` the image, or unset `base_image` and run "
            "`shipyard base-image build` for a local one.",
        ) from exc


def _image_python(client: Any, ref: str) -> str | None:
    """Python major.minor of ``python3`` inside an image (None when it has none)."""
    from docker.errors import DockerException

    probe = "import sys; print('%d.%d' % sys.version_info[:2])"
    try:
        out = client.containers.run(ref, ["python3", "-c", probe], entrypoint=[], remove=True, network_disabled=True)
    except DockerException:
        return None
    return out.decode().strip() or None


def _size(image: Any) -> int:
    return int(image.attrs.get("Size", 0))


__all__ = ["BaseImage", "base_image_name", "build_base_image", "cache_dir", "resolve_base_image", "stream_build"]
