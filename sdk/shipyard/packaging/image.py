"""Containerize a bento: our own Dockerfile on the local base image, built by the Docker engine.

BentoML's ``containerize`` adds ``build-essential`` and ``git`` to any custom
base image (over 600 MB for an sklearn model). The Dockerfile written here
instead installs the bento's pinned requirements with uv into ``/opt/venv``
on the shipyard base image, in a layer that only changes when the
requirements change, then copies the bento. The result runs as a non-root
user, carries OCI and lineage labels and a health check, and contains no
compiler. A build is refused when anything that looks like a credential
would be copied in.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._core import lineage
from .._core.errors import PackagingError
from .base_image import APP_UID, APP_USER, BaseImage, resolve_base_image, stream_build
from .secrets import scan_environment, scan_files

SERVICE_PORT = 3000
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
BENTO_DIR = "/opt/bento"
VENV = "/opt/venv"
# What the build installed (``uv pip freeze``), written by the build itself and read back for the SBOM.
PACKAGES_FILE = f"{VENV}/shipyard-packages.txt"
IMAGE_REPOSITORY = "shipyard"
# Files of the bento that the image does not need: BentoML's own Dockerfile and docs.
CONTEXT_SKIP = ("env/docker", "README.md")
BASE_ENV = {
    "PATH": f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "BENTOML_HOME": "/tmp/bentoml",
    "BENTOML_DO_NOT_TRACK": "true",
    "PYTHONUNBUFFERED": "1",
    "MPLCONFIGDIR": "/tmp/matplotlib",
}


@dataclass(frozen=True)
class ImageReport:
    """Facts about a built model image.

    Attributes:
        tag: image reference, e.g. ``shipyard/iris:v1-...``.
        image_id: Docker image id.
        size_bytes: image size as Docker reports it.
        layers: ``(size_bytes, created_by)`` per layer, newest first.
        labels: the image's labels (OCI + shipyard lineage).
        user: user the container runs as.
        python_packages: ``(name, version)`` of every Python package the build installed.
        base_image: the base image it was built from.
        seconds: build time.
    """

    tag: str
    image_id: str
    size_bytes: int
    layers: list[tuple[int, str]] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    user: str = ""
    python_packages: tuple[tuple[str, str], ...] = ()
    base_image: str = ""
    seconds: float = 0.0

    @property
    def size_mb(self) -> float:
        return round(self.size_bytes / 1e6, 1)

    def describe(self) -> str:
        """Human-readable summary: size and layer list."""
        lines = [f"{self.tag}  {self.size_mb} MB  user={self.user}  base={self.base_image}"]
        for size, created_by in self.layers:
            lines.append(f"  {size / 1e6:9.1f} MB  {created_by[:110]}")
        return "\n".join(lines)


def containerize(
    bento: Any,
    *,
    tag: str | None = None,
    env: dict[str, str] | None = None,
    base_image: str | None = None,
    no_cache: bool = False,
    extra_index_url: str | None = None,
    say: Callable[[str], None] | None = None,
) -> ImageReport:
    """Build the OCI image of a bento with the local Docker engine.

    Args:
        bento: a :class:`~shipyard.packaging.bento.BentoResult`.
        tag: image reference; default ``shipyard/<bento name>:<bento version>``.
        env: extra environment variables baked into the image (refused if they look like credentials).
        base_image: base image reference; default: the ``base_image`` setting or the local base image.
        no_cache: rebuild every step of this image (the base image is not rebuilt).
        extra_index_url: a package index searched before PyPI, e.g. PyTorch's CPU wheels
            (``https://download.pytorch.org/whl/cpu``), so an image gets no CUDA libraries;
            default: the ``image_extra_index_url`` setting, if the workspace has one.
        say: progress callback.

    Raises:
        DockerUnavailable: no Docker daemon answers.
        BaseImageMissing: the base image does not exist (run ``shipyard base-image build``).
        PackagingError: credentials would be copied in, or the build failed.

    Example:
        >>> bento = build_bento("iris/1")                 # doctest: +SKIP
        >>> print(containerize(bento).describe())         # doctest: +SKIP
    """
    from .docker_engine import docker_client

    say = say or (lambda message: None)
    started = time.monotonic()
    client = docker_client()
    base: BaseImage = resolve_base_image(bento.python, client=client, configured=base_image)
    tag = tag or f"{IMAGE_REPOSITORY}/{bento.name}:{bento.version}"
    bad_names = [name for name in env or {} if not _ENV_NAME.match(name)]
    if bad_names:
        raise PackagingError(
            f"Invalid environment variable name(s) for the image: {', '.join(map(repr, bad_names))}.",
            hint="Use letters, digits and underscores, not starting with a digit.",
        )
    if extra_index_url is None:
        from .._core.workspace import current_workspace

        extra_index_url = current_workspace().settings.image_extra_index_url
    image_env = {**BASE_ENV, **(env or {})}
    findings = scan_environment(env or {}) + scan_environment(_bento_envs(bento.path))
    with tempfile.TemporaryDirectory(prefix="shipyard-image-") as tmp:
        ctx = Path(tmp)
        _copy_bento(bento.path, ctx / "bento")
        findings += scan_files(ctx / "bento")
        if findings:
            listed = "\n".join(f"  - {f}" for f in findings)
            raise PackagingError(
                f"Refusing to build {tag}: {len(findings)} item(s) look like credentials and would be baked "
                f"into the image:\n{listed}",
                hint="Remove them from the model artifacts / environment and pass secrets at run time "
                "(docker run -e, a secrets manager) instead.",
            )
        (ctx / "requirements.txt").write_text("\n".join(bento.requirements) + "\n")
        (ctx / SHARED_FILE).write_text("".join(f"{r}\n" for r in shared_requirements(bento.requirements)))
        (ctx / "warm_imports.py").write_text(warm_imports_script())
        shutil.copyfile(SLIM_VENV_SCRIPT, ctx / "slim_venv.py")
        (ctx / "Dockerfile").write_text(render_dockerfile(base, image_env, extra_index_url=extra_index_url))
        labels = image_labels(bento)
        say(f"building image {tag} from {base.name}")
        image_id = stream_build(client, ctx, tag, say, labels=labels, no_cache=no_cache)
    report = inspect_image(client, image_id, tag=tag, base_image=base.name)
    packages = image_packages(client, image_id)
    return ImageReport(**{**report.__dict__, "python_packages": packages, "seconds": time.monotonic() - started})


def render_dockerfile(base: BaseImage, env: dict[str, str], *, extra_index_url: str | None = None) -> str:
    """The Dockerfile of a model image.

    A ``deps`` stage on the builder image installs the pinned requirements
    with uv, drops what only building against a library needs (tests, stubs,
    headers), strips the native modules and links duplicate files
    (:data:`SLIM_VENV_SCRIPT`), and writes
    bytecode for the modules the server imports at start, loading the
    service as a worker does (:func:`warm_imports_script`), so the container
    is ready fast without shipping bytecode for whole libraries. The final stage
    copies only that venv and the bento (with the bytecode of its service)
    onto the runtime base: no uv, no compiler.

    Q: Why install the requirements in two layers?
    A: The server's own stack (BentoML, MLflow, numpy, pandas; see
       :data:`SHARED_REQUIREMENTS`) is most of every model's dependencies and
       the same for models trained in one environment. Installed first, in a
       layer keyed only on those pins, it is built once and reused by the image
       of every flavor; the model's own libraries go in the layer after it.

    Q: Why ``--extra-index-url`` and not ``--index-url`` for ``extra_index_url``?
    A: An index of CPU wheels (PyTorch's) holds a few packages; uv prefers
       the extra index for the packages it has and takes the rest from PyPI,
       and ``torch==X`` matches its ``X+cpu`` build there.
    """
    if extra_index_url is not None and not re.match(r"^https?://[^\s'\"\\]+$", extra_index_url):
        raise PackagingError(
            f"The package index {extra_index_url!r} is not an http(s) URL.",
            hint="Pass a URL such as https://download.pytorch.org/whl/cpu.",
        )
    index = f"--extra-index-url '{extra_index_url}' " if extra_index_url else ""
    env_lines = " \\\n    ".join(f"{k}={_env_value(v)}" for k, v in env.items())
    url = f"http://127.0.0.1:{SERVICE_PORT}/readyz"
    probe = f"import urllib.request; urllib.request.urlopen('{url}', timeout=2)"
    if base.local:
        builder_setup = ""
        user_setup = ""
    else:
        builder_setup = (
            "RUN python3 -m venv /opt/uv && /opt/uv/bin/pip install --no-cache-dir 'uv>=0.5,<1' "
            "&& ln -sf /opt/uv/bin/uv /usr/local/bin/uv\n"
        )
        user_setup = (
            f"RUN id -u {APP_UID} >/dev/null 2>&1 || useradd --uid {APP_UID} --user-group --create-home "
            f"--shell /usr/sbin/nologin {APP_USER}\n"
        )
    return f"""\
# Model image generated by shipyard: bento on the shipyard base image, non-root, no build toolchain.
FROM {base.builder_ref} AS deps
USER root
{builder_setup}COPY {SHARED_FILE} /opt/shipyard/
RUN uv venv --quiet --python /usr/bin/python3 {VENV} \\
 && uv pip install --quiet --no-cache {index}--python {VENV}/bin/python -r /opt/shipyard/{SHARED_FILE}
COPY requirements.txt warm_imports.py slim_venv.py /opt/shipyard/
RUN uv pip install --quiet --no-cache {index}--python {VENV}/bin/python -r /opt/shipyard/requirements.txt \\
 && find {VENV}/lib -type d -name tests -path '*/site-packages/*' -prune -exec rm -rf {{}} + \\
 && find {VENV}/lib -type f -path '*/site-packages/*' \\( {" -o ".join(f"-name '*.{e}'" for e in BUILD_ONLY_SUFFIXES)} \\) -delete \\
 && {VENV}/bin/python /opt/shipyard/slim_venv.py {VENV} \\
 && uv pip freeze --python {VENV}/bin/python > {PACKAGES_FILE}
COPY bento {BENTO_DIR}
RUN BENTOML_HOME=/tmp/bentoml BENTOML_DO_NOT_TRACK=true PYTHONDONTWRITEBYTECODE= \\
    {VENV}/bin/python /opt/shipyard/warm_imports.py {BENTO_DIR}/src

FROM {base.name}
USER root
{user_setup}COPY --from=deps {VENV} {VENV}
ENV {env_lines}
COPY bento {BENTO_DIR}
RUN {VENV}/bin/python -m compileall -q {BENTO_DIR}/src >/dev/null \\
 && chmod -R a+rX,go-w {BENTO_DIR}
USER {APP_UID}:{APP_UID}
WORKDIR /home/{APP_USER}
EXPOSE {SERVICE_PORT}
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \\
  CMD ["python", "-c", "{probe}"]
ENTRYPOINT ["bentoml", "serve", "{BENTO_DIR}", "--host", "0.0.0.0", "--port", "{SERVICE_PORT}"]
"""


# Requirements every model image has (the server's stack and what every flavor loads with): installed in
# their own layer, which images of models trained in one environment share. A larger set would differ
# between flavors (scipy, scikit-learn) and be shared by fewer.
SHARED_REQUIREMENTS = frozenset({"bentoml", "httptools", "uvloop", "mlflow-skinny", "numpy", "pandas"})
SHARED_FILE = "requirements-shared.txt"


def shared_requirements(requirements: list[str]) -> list[str]:
    """The requirements among ``requirements`` that go in the shared layer (see :func:`render_dockerfile`)."""
    from ..tracking._requirements import requirement_name

    return [r for r in requirements if requirement_name(r) in SHARED_REQUIREMENTS]


# Sources for compiling against a library (type stubs, Cython, C headers): no server reads them.
BUILD_ONLY_SUFFIXES = ("pyi", "pxd", "pyx", "h", "hpp", "c", "cpp")

# Modules of the server stack, imported at build time so their bytecode is in the image. The model's own
# modules are the ones the service imports when it loads the model, which the build does too.
WARM_IMPORTS = [
    "bentoml",
    "bentoml._internal.server.http_app",
    "_bentoml_impl.server.app",
    "_bentoml_impl.server.serving",
    "_bentoml_impl.worker.service",
    "_bentoml_sdk",
    "numpy",
    "pydantic",
    "starlette",
    "uvicorn",
    "uvicorn.loops.uvloop",
    "uvicorn.protocols.http.httptools_impl",
]


# Runs in the image build (see the script's own docstring); shipped as a file, not imported here.
SLIM_VENV_SCRIPT = Path(__file__).with_name("slim_venv.py")


def warm_imports_script() -> str:
    """The build-time script that writes bytecode for what a container imports when it starts.

    It imports the server stack, then loads the service the way a worker does
    (``python warm_imports.py BENTO_SRC``): the model's libraries get bytecode
    for exactly the modules loading and predicting it imports, no more. A
    service that does not load here is reported in the build log; the smoke
    test of the image is what refuses it.
    """
    return "\n".join([
        "import importlib, sys",
        "",
        f"for name in {WARM_IMPORTS!r}:",
        "    try:",
        "        importlib.import_module(name)",
        "    except Exception:",
        "        pass",
        "if len(sys.argv) > 1:",
        "    import os, secrets",
        "",
        "    sys.path.insert(0, sys.argv[1])",
        "    # A service packaged with serving_auth requires a token to be imported; this one dies with the build step.",
        "    os.environ['SHIPYARD_SERVING_TOKEN'] = secrets.token_hex(32)",
        "    try:",
        "        import service",
        "",
        "        service.ModelService.inner()",
        "    except BaseException as exc:  # SystemExit too: the model hash check",
        "        print(f'warning: the service did not load in the image build: {exc!r}', file=sys.stderr)",
        "",
    ])


def image_labels(bento: Any) -> dict[str, str]:
    """OCI labels plus the bento's lineage labels and tag."""
    lin: lineage.Lineage = bento.lineage
    labels = {
        "org.opencontainers.image.title": f"{lin.model_name} model service",
        "org.opencontainers.image.version": f"{lin.model_name}/{lin.model_version}",
        "org.opencontainers.image.source": lin.source,
        "org.opencontainers.image.revision": lin.git_commit,
        "org.opencontainers.image.description": (
            f"BentoML service for models:/{lin.model_name}/{lin.model_version}, packaged by shipyard"
        ),
        **bento.labels,
        lineage.LABEL_BENTO_TAG: bento.tag,
        lineage.PYTHON: bento.python,
    }
    return {k: v for k, v in labels.items() if v}


def image_packages(client: Any, image_id: str) -> tuple[tuple[str, str], ...]:
    """``(name, version)`` of the Python packages the build installed, read from the image's files.

    Q: Why not run the image and ask it?
    A: The build already wrote the list (``uv pip freeze``); a container is
       created only to read that one file out of the image and never started,
       so nothing of the model or its server runs.
    """
    import io
    import tarfile

    container = client.containers.create(image_id, command=["true"], network_disabled=True)
    try:
        stream, _ = container.get_archive(PACKAGES_FILE)
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.extractfile(tar.getmembers()[0])
            text = member.read().decode() if member is not None else ""
    except Exception as exc:
        raise PackagingError(
            f"The image {image_id[:19]} has no package list at {PACKAGES_FILE}: {exc}",
            hint="Rebuild it with shipyard (shipyard package), which writes the list during the build.",
        ) from exc
    finally:
        container.remove(force=True)
    return tuple(sorted(packages_from_lock(text.splitlines())))


def packages_from_lock(lines: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """(name, version) pairs from ``name==version`` lines (comments and blanks skipped)."""
    pairs = []
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pairs.append((name.strip(), version.strip()))
    return tuple(pairs)


def inspect_image(client: Any, image_ref: str, *, tag: str = "", base_image: str = "") -> ImageReport:
    """Size, layers, labels and user of an image."""
    image = client.images.get(image_ref)
    config = image.attrs.get("Config") or {}
    history = client.api.history(image.id)
    layers = [
        (int(h.get("Size", 0)), _created_by(h.get("CreatedBy", "")) or str(h.get("Comment") or "").strip())
        for h in history
        if int(h.get("Size", 0)) > 0
    ]
    return ImageReport(
        tag=tag or (image.tags[0] if image.tags else image.id),
        image_id=image.id,
        size_bytes=int(image.attrs.get("Size", 0)),
        layers=layers,
        labels=dict(config.get("Labels") or {}),
        user=str(config.get("User") or "root"),
        base_image=base_image,
    )


def _env_value(value: str) -> str:
    """Quote a value for a Dockerfile ``ENV`` line: JSON string escapes, ``$`` kept literal."""
    return json.dumps(value).replace("$", "\\$")


def _created_by(text: str) -> str:
    text = text.replace("/bin/sh -c #(nop) ", "").replace("/bin/sh -c ", "RUN ").strip()
    return " ".join(text.split())


def _copy_bento(src: Path, dst: Path) -> None:
    def ignore(folder: str, names: list[str]) -> set[str]:
        rel = Path(folder).relative_to(src)
        return {n for n in names if (rel / n).as_posix() in CONTEXT_SKIP or n == "__pycache__"}

    shutil.copytree(src, dst, ignore=ignore, symlinks=False)


def _bento_envs(bento_path: Path) -> dict[str, str]:
    import yaml

    info = yaml.safe_load((bento_path / "bento.yaml").read_text(encoding="utf-8")) or {}
    return {str(e.get("name")): str(e.get("value") or "") for e in info.get("envs") or []}


__all__ = [
    "ImageReport",
    "containerize",
    "image_labels",
    "image_packages",
    "packages_from_lock",
    "inspect_image",
    "render_dockerfile",
    "warm_imports_script",
]
