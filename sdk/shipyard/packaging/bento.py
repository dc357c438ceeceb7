"""``package()``: a registered model version becomes a bento (and, by default, an image).

The bento is built with BentoML's Python API in a child process whose
``BENTOML_HOME`` is the workspace's BentoML home, so ``bentoml list`` there
shows it and several workspaces never share BentoML's process-global state.
Its version is a digest of everything that goes into it (model files,
generated service, requirements, labels): packaging the same model version
twice yields the same bento, and the second time it is reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .._core import audit, lineage
from .._core.errors import PackagingError
from .._core.lineage import Lineage
from .._core.workspace import slug
from ..monitoring.integrity import directory_sha256
from ..monitoring.validation import InputSchema
from ..registry import ModelVersionRef
from .model_files import input_schema_from_signature, read_mlmodel, signature_inputs, training_python
from .service_source import render_service

BENTO_BUILD_TIMEOUT_S = 300
# Packages MLflow records as model requirements that a serving image never needs.
DROPPED_REQUIREMENTS = frozenset({"pytest", "ipykernel", "jupyter", "notebook", "jupyterlab", "bentoml"})
# Same code, smaller wheels for serving: MLflow without its server and UI; XGBoost without CUDA/NCCL.
SERVING_SUBSTITUTES = {"mlflow": "mlflow-skinny", "xgboost": "xgboost-cpu"}
# The first version each substitute was published in; an older pin keeps the original distribution.
SUBSTITUTE_SINCE = {"mlflow-skinny": (1, 0), "xgboost-cpu": (2, 1)}
# uvicorn, which runs BentoML's workers, parses HTTP with httptools and runs its event loop on uvloop when
# they are installed (else h11 and asyncio, several times slower per request); images pin the host's versions.
SERVER_SPEEDUPS = ("httptools", "uvloop")
MONITORING_FILES = (
    "__init__.py", "validation.py", "integrity.py", "serving.py", "drift.py", "runtime.py", "auth.py"
)
REFERENCE_FILE = "reference_profile.json"
"""The reference profile (:mod:`.reference`) at the root of each bento, beside ``service.py``."""
# Frameworks that bring GPU runtimes (gigabytes of CUDA libraries) -> the modules a model that uses them
# names. MLflow's import-based requirement inference records them whenever loading the model imported
# them in passing (scikit-learn's loaders import torch when it is installed); they are served only when
# the model's files name them (see :func:`modules_named_by`).
GPU_FRAMEWORKS = {
    "torch": ("torch",),
    "torchvision": ("torchvision",),
    "tensorflow": ("tensorflow", "keras"),
    "keras": ("keras", "tensorflow"),
    "jax": ("jax", "flax"),
    "jaxlib": ("jax", "jaxlib", "flax"),
    "triton": ("triton", "torch"),
}
# distributions of GPU runtime libraries, kept only beside a GPU framework that is kept
GPU_RUNTIME_PREFIXES = ("nvidia-", "cuda-")


@dataclass(frozen=True)
class BentoResult:
    """A bento built (or reused) for one model version.

    Attributes:
        tag: bento tag ``name:version``.
        path: folder of the bento in the workspace's BentoML home.
        lineage: the model version it serves and where that came from; ``lineage.model_sha256``
            is the digest of the model files the service checks before loading them.
        python: Python major.minor the model was trained with.
        requirements: pinned Python requirements of the service.
        input_schema: what ``/predict`` accepts (None for a bento read back with :func:`load_bento`).
        reused: True when an identical bento already existed.
        seconds: time spent.
    """

    tag: str
    path: Path
    lineage: Lineage
    python: str
    requirements: list[str]
    input_schema: InputSchema | None = None
    reused: bool = True
    seconds: float = 0.0

    @property
    def labels(self) -> dict[str, str]:
        """Lineage labels on the bento and its image."""
        return self.lineage.to_labels()

    @property
    def model_sha256(self) -> str:
        return self.lineage.model_sha256

    @property
    def name(self) -> str:
        return self.tag.split(":", 1)[0]

    @property
    def version(self) -> str:
        return self.tag.split(":", 1)[1]

    @property
    def service_source(self) -> Path:
        return self.path / "src" / "service.py"


@dataclass(frozen=True)
class PackageResult:
    """What :func:`package` produced: the bento and, unless skipped, the image."""

    bento: BentoResult
    image: Any = None  # ImageReport
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    def __repr__(self) -> str:
        image = f", image={self.image.tag!r}" if self.image is not None else ""
        return f"PackageResult(bento={self.bento.tag!r}{image}, seconds={self.seconds:.1f})"


def package(
    model_version: Any,
    *,
    image: bool = True,
    env: dict[str, str] | None = None,
    no_cache: bool = False,
    quiet: bool = False,
) -> PackageResult:
    """Package a registered model version as a bento and a non-root OCI image.

    Args:
        model_version: ``models:/NAME/VERSION``, ``NAME/VERSION``, ``NAME@alias`` or an MLflow ``ModelVersion``.
        image: also build the image with the local Docker engine.
        env: extra environment variables for the image (refused if they look like credentials).
        no_cache: rebuild every image step instead of reusing Docker's layer cache.
        quiet: no progress display.

    Raises:
        ModelNotFound: the model version does not exist.
        PackagingError: no signature and no input example, a credential in the build, a failed build.
        DockerUnavailable: no Docker daemon answers (only when ``image``).
        BaseImageMissing: the base image was never built (only when ``image``).

    Example:
        >>> result = shipyard.package("models:/iris/1")     # doctest: +SKIP
        >>> result.bento.tag, result.image.size_mb          # doctest: +SKIP
        ('iris:v1-5d41402abc4b2a76', 412.3)
    """
    from .progress import progress

    started = time.monotonic()
    timings: dict[str, float] = {}
    report = None
    with progress(quiet) as say:
        bento = build_bento(model_version, say=say)
        timings["bento"] = bento.seconds
        if image:
            from .image import containerize

            report = containerize(bento, env=env, no_cache=no_cache, say=say)
            timings["image"] = report.seconds
    audit.append(
        "package",
        model=bento.lineage.model_name,
        version=bento.lineage.model_version,
        bento=bento.tag,
        image=report.tag if report is not None else None,
        image_id=report.image_id if report is not None else None,
    )
    return PackageResult(bento=bento, image=report, seconds=time.monotonic() - started, timings=timings)


def build_bento(model_version: Any, *, say: Callable[[str], None] | None = None) -> BentoResult:
    """Generate the service for a model version and build its bento (or reuse an identical one).

    Args:
        model_version: ``models:/NAME/VERSION``, ``NAME/VERSION``, ``NAME@alias`` or an MLflow ``ModelVersion``.
        say: progress callback.

    Raises:
        ModelNotFound: the model version does not exist.
        PackagingError: no signature and no input example, or the bento build failed.

    Example:
        >>> build_bento("iris/1").service_source.read_text()   # doctest: +SKIP
    """
    from .. import registry, tracking
    from .._core.version import __version__
    from .._core.workspace import current_workspace

    say = say or (lambda message: None)
    started = time.monotonic()
    ws = current_workspace()
    source = registry.resolve(model_version, workspace=ws)
    say(f"downloading {source.uri}")
    service_name = slug(source.name)
    ws.root.joinpath("build").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"bento-{service_name}-", dir=ws.root / "build") as tmp:
        ctx = Path(tmp) / "ctx"
        ctx.mkdir()
        model_dir = tracking.download_model(source.uri, ctx / "model.dl", workspace=ws)
        shutil.move(str(model_dir), str(ctx / "model"))
        model_dir = ctx / "model"
        mlmodel = read_mlmodel(model_dir)
        schema = input_schema(source, model_dir, mlmodel)
        python = training_python(mlmodel) or f"{sys.version_info.major}.{sys.version_info.minor}"
        served = _served_lineage(registry.lineage_of(source, workspace=ws), model_dir, source.uri)
        from . import predict_path, reference

        say("checking the predict path against mlflow.pyfunc")
        path = predict_path.choose(model_dir, mlmodel, schema)
        say(path.describe())
        for note in path.notes:
            say(f"  {note}")
        left_out: list[str] = []
        requirements = serving_requirements(
            model_dir, left_out=left_out, mlflow=path.needs_mlflow, pandas=path.needs_pandas
        )
        for item in left_out:
            say(f"not installed in the image: {item}")
        say("freezing the reference profile that production is held against")
        profile = reference.build_reference(ws, source, model_dir, schema)
        say(f"  reference: {profile['source']}, {profile['rows']} rows, fingerprint {profile['fingerprint'][:12]}")
        (ctx / REFERENCE_FILE).write_text(json.dumps(profile, indent=1, sort_keys=True), encoding="utf-8")
        labels = {**served.to_labels(), lineage.LABEL_REFERENCE_FINGERPRINT: profile["fingerprint"]}
        settings = ws.settings
        (ctx / "service.py").write_text(
            render_service(
                model_name=source.name,
                model_version=source.version,
                service_name=service_name,
                model_sha256=served.model_sha256,
                lineage=labels,
                schema=schema,
                shipyard_version=__version__,
                loader=path.loader,
                input_format=path.input_format,
                workers=ws.settings.serving_workers,
                batch_rows=ws.settings.serving_batch_rows,
                batch_wait_ms=ws.settings.serving_batch_wait_ms,
                monitor={
                    "enabled": settings.monitoring,
                    "window_rows": settings.monitor_window_rows,
                    "min_rows": min(settings.monitor_min_rows, settings.monitor_window_rows),
                    "interval_seconds": settings.monitor_interval_seconds,
                    "queue_rows": settings.monitor_queue_rows,
                    "threshold": settings.drift_threshold,
                    "capture": settings.capture,
                    "capture_sample_rate": settings.capture_sample_rate,
                    "capture_max_mb": settings.capture_max_mb,
                    "capture_sensitive": list(settings.capture_sensitive),
                    "capture_sensitive_mode": settings.capture_sensitive_mode,
                },
                auth=settings.serving_auth,
            ),
            encoding="utf-8",
        )
        monitoring = ctx / "shipyard_monitoring"
        monitoring.mkdir()
        here = Path(__file__).resolve().parent.parent / "monitoring"
        for name in MONITORING_FILES:
            shutil.copyfile(here / name, monitoring / name)

        content = hashlib.sha256()
        content.update(directory_sha256(ctx).encode())
        content.update(json.dumps(labels, sort_keys=True).encode())
        content.update(python.encode())
        version = f"v{source.version}-{content.hexdigest()[:16]}"
        tag = f"{service_name}:{version}"
        bento_path = ws.bentoml_home / "bentos" / service_name / version
        from filelock import FileLock

        ws.locks_dir.mkdir(parents=True, exist_ok=True)
        with FileLock(str(ws.lock_path("bento", source.name))):  # one build per bento at a time
            reused = (bento_path / "bento.yaml").is_file()
            if reused:
                say(f"bento {tag} exists with the same content, reused")
            else:
                say(f"building bento {tag} with BentoML")
                _run_bento_build(ctx, tag, labels, python, requirements, ws.bentoml_home)
        reference.log_reference(ws, source, profile)
    if not (bento_path / "bento.yaml").is_file():
        raise PackagingError(f"BentoML reported success but {bento_path} holds no bento.yaml.")
    return BentoResult(
        tag=tag,
        path=bento_path,
        lineage=served,
        python=python,
        requirements=requirements,
        input_schema=schema,
        reused=reused,
        seconds=time.monotonic() - started,
    )


def _served_lineage(recorded: Lineage, model_dir: Path, uri: str) -> Lineage:
    """The version's lineage with the digest of the files as served, which the service checks before loading.

    It is the digest recorded when the model was logged (the same definition,
    :mod:`shipyard.monitoring.integrity`); files that hash differently are not
    the registered model, and no bento is built from them.
    """
    actual = directory_sha256(model_dir)
    if recorded.model_sha256 and recorded.model_sha256 != actual:
        raise PackagingError(
            f"The files of {uri} hash to sha256 {actual}, but the version records {recorded.model_sha256}: "
            "they are not the model that was registered.",
            hint="Check the artifact store for changed or missing files, or log and register the model again.",
        )
    return replace(recorded, model_sha256=actual)


def bento_content_sha256(bento_path: Path) -> str:
    """Digest of what a bento serves: its ``src`` folder and its Python requirements.

    ``bento.yaml`` is left out because BentoML stamps it with the build time.
    """
    digest = hashlib.sha256(directory_sha256(bento_path / "src").encode())
    req = bento_path / "env" / "python" / "requirements.txt"
    if req.is_file():
        digest.update(req.read_bytes())
    return digest.hexdigest()


def load_bento(path: Path) -> BentoResult:
    """Read a bento built earlier back from its folder (no rebuild, no model download).

    Raises:
        PackagingError: ``path`` holds no bento built by shipyard.

    Example:
        >>> load_bento(Path(".shipyard/bentoml/bentos/iris/v1-5d41402abc4b2a76")).tag   # doctest: +SKIP
        'iris:v1-5d41402abc4b2a76'
    """
    import yaml

    info_file = path / "bento.yaml"
    if not info_file.is_file():
        raise PackagingError(
            f"{path} holds no bento (no bento.yaml).", hint="Build it again with shipyard.package(...)."
        )
    info = yaml.safe_load(info_file.read_text(encoding="utf-8")) or {}
    labels = {str(k): str(v) for k, v in (info.get("labels") or {}).items()}
    if lineage.LABEL_MODEL_NAME not in labels:
        raise PackagingError(f"The bento in {path} was not built by shipyard (no lineage labels).")
    requirements = path / "env" / "python" / "requirements.txt"
    return BentoResult(
        tag=f"{info['name']}:{info['version']}",
        path=path,
        lineage=Lineage.from_labels(labels),
        python=str((info.get("image") or info.get("docker") or {}).get("python_version") or ""),
        # BentoML writes its own pin into the file as well
        requirements=_requirement_list([
            line.strip() for line in requirements.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith(("#", "-"))
        ]),
    )


def serving_requirements(
    model_dir: Path, *, left_out: list[str] | None = None, mlflow: bool = True, pandas: bool = True
) -> list[str]:
    """Pinned requirements of the service: the model's own plus BentoML, with lean substitutes.

    MLflow's full package (tracking server, UI) is not needed to load a model;
    its ``mlflow-skinny`` twin at the same version is, and only when the
    service loads the model with ``mlflow.pyfunc`` (``mlflow``; see
    :mod:`.predict_path`). ``pandas=False`` leaves pandas out for a model that
    was checked to predict without it. XGBoost's default wheel
    pulls CUDA's NCCL (hundreds of MB); ``xgboost-cpu`` is the same version
    without it (see ``SERVING_SUBSTITUTES``). A GPU framework (``GPU_FRAMEWORKS``)
    the model's files do not name is left out, with the CUDA runtimes that
    come with it, and appended to ``left_out`` with the reason.
    """
    import bentoml

    from ..tracking._environment import installed_packages
    from ..tracking._requirements import requirement_name

    lines: list[str] = []
    req_file = model_dir / "requirements.txt"
    raw = req_file.read_text(encoding="utf-8").splitlines() if req_file.is_file() else []
    entries = []
    for line in raw:
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            entries.append((requirement_name(line), line))
    gpu = [name for name, _ in entries if name in GPU_FRAMEWORKS]
    named = modules_named_by(model_dir) if gpu else set()
    kept = {name for name in gpu if not named.isdisjoint(GPU_FRAMEWORKS[name])}
    dropped = left_out if left_out is not None else []
    for name, line in entries:
        if name in DROPPED_REQUIREMENTS:
            continue
        if (name in ("mlflow", "mlflow-skinny") and not mlflow) or (name == "pandas" and not pandas):
            dropped.append(f"{line} (the service predicts without it)")
            continue
        if name in GPU_FRAMEWORKS and name not in kept:
            dropped.append(f"{line} (no file of the model names {'/'.join(GPU_FRAMEWORKS[name])})")
            continue
        if name.startswith(GPU_RUNTIME_PREFIXES) and not kept:
            dropped.append(f"{line} (a GPU runtime, and no GPU framework is served)")
            continue
        if name in SERVING_SUBSTITUTES and _substitute_exists(SERVING_SUBSTITUTES[name], line):
            line = SERVING_SUBSTITUTES[name] + line[len(name) :]
        lines.append(line)
    if mlflow and "mlflow-skinny" not in {requirement_name(x) for x in lines}:
        import mlflow

        lines.append(f"mlflow-skinny=={mlflow.__version__}")
    lines.append(f"bentoml=={bentoml.__version__}")
    installed = installed_packages()  # one not on this host is left out: the image serves as this host does
    lines += [f"{name}=={installed[name]}" for name in SERVER_SPEEDUPS if name in installed]
    return _requirement_list(lines)


def modules_named_by(model_dir: Path) -> set[str]:
    """Top-level modules the model's files name, read without running any of them.

    Pickles (``pickle``, ``cloudpickle``, ``joblib``) are read opcode by opcode
    (the classes they would import, and the module names ``cloudpickle`` passes
    as strings), skops files by the modules their schema lists, the project
    code shipped with the model by its imports, and the flavors of its
    ``MLmodel`` (``pytorch`` → ``torch``).
    """
    import ast
    import pickletools
    import zipfile

    found: set[str] = set()
    mlmodel = read_mlmodel(model_dir) if (model_dir / "MLmodel").is_file() else {}
    flavor_modules = {"pytorch": "torch", "tensorflow": "tensorflow", "keras": "keras"}
    found |= {flavor_modules.get(f, f) for f in (mlmodel.get("flavors") or {})}
    for path in model_dir.rglob("*"):
        if not path.is_file():
            continue
        if path.suffix == ".py":
            try:
                tree = ast.parse(path.read_text(encoding="utf-8"))
            except (SyntaxError, UnicodeDecodeError, ValueError):
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    found |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    found.add(node.module.split(".")[0])
            continue
        with path.open("rb") as fh:
            head = fh.read(4)
        if head[:1] == b"\x80":
            found |= _pickle_modules(path, pickletools)
        elif head == b"PK\x03\x04" and path.suffix == ".skops":
            try:
                with zipfile.ZipFile(path) as zf:
                    schema = json.loads(zf.read("schema.json"))
            except (KeyError, ValueError, zipfile.BadZipFile):
                continue
            found |= _schema_modules(schema)
    return found


def _pickle_modules(path: Path, pickletools: Any) -> set[str]:
    found: set[str] = set()
    strings: list[str] = []
    try:
        with path.open("rb") as fh:
            for opcode, arg, _ in pickletools.genops(fh):
                if opcode.name in ("GLOBAL", "INST"):
                    found.add(str(arg).split(" ", 1)[0].split(".")[0])
                elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                    found.add(strings[-2].split(".")[0])
                elif isinstance(arg, str) and opcode.name.endswith("UNICODE") and len(arg) < 200:
                    strings.append(arg)
                    if arg.isidentifier():
                        found.add(arg)  # cloudpickle's subimport("torch") passes the module as a string
    except Exception:  # not a pickle after all, or a truncated one: it names nothing we can read
        return found
    return found


def _schema_modules(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        module = node.get("__module__")
        if isinstance(module, str):
            found.add(module.split(".")[0])
        for value in node.values():
            found |= _schema_modules(value)
    elif isinstance(node, list):
        for value in node:
            found |= _schema_modules(value)
    return found


def _substitute_exists(substitute: str, line: str) -> bool:
    """True when ``line`` pins one exact version that ``substitute`` is published in too.

    Q: Why not ask the package index?
    A: The build may run where only a mirror is reachable, or none at all until
       the image build; both substitutes are released in lockstep with their
       originals since their first version, so the version alone decides.
    """
    match = re.search(r"==\s*([0-9]+)\.([0-9]+)", line)
    return bool(match) and (int(match.group(1)), int(match.group(2))) >= SUBSTITUTE_SINCE[substitute]


def _requirement_list(lines: list[str]) -> list[str]:
    """Requirements as a bento holds them: each once, sorted without regard to case."""
    return sorted(set(lines), key=str.lower)


def input_schema(source: ModelVersionRef, model_dir: Path, mlmodel: dict[str, Any] | None = None) -> InputSchema:
    """What the served model of ``source`` (its files in ``model_dir``) takes: its signature, else its input example's.

    Raises:
        PackagingError: the model has neither.
    """
    mlmodel = mlmodel if mlmodel is not None else read_mlmodel(model_dir)
    inputs = signature_inputs(mlmodel)
    if inputs is None:
        if not mlmodel.get("saved_input_example_info"):
            raise PackagingError(
                f"{source.uri} has neither a signature nor an input example, so its input schema is unknown.",
                hint="Log the model again with `signature=infer_signature(X, y)` or `input_example=X[:5]`.",
            )
        from mlflow.models import Model, infer_signature

        example = Model.load(str(model_dir)).load_input_example(str(model_dir))
        inputs = infer_signature(example).inputs.to_dict()
    return input_schema_from_signature(inputs)


_BUILD_SCRIPT = """
import json, sys
import bentoml
spec = json.loads(sys.argv[1])
bento = bentoml.bentos.build(
    "service:ModelService",
    version=spec["version"],
    labels=spec["labels"],
    include=["service.py", "reference_profile.json", "shipyard_monitoring/*.py", "model/**"],  # REFERENCE_FILE
    python={"packages": spec["requirements"], "lock_packages": False},
    docker={"python_version": spec["python"]},
    build_ctx=spec["ctx"],
)
print(json.dumps({"tag": str(bento.tag), "path": bento.path}))
"""


def _run_bento_build(
    ctx: Path,
    tag: str,
    labels: dict[str, str],
    python: str,
    requirements: list[str],
    bentoml_home: Path,
) -> None:
    from ..monitoring import auth

    env = {**os.environ, "BENTOML_HOME": str(bentoml_home), "BENTOML_DO_NOT_TRACK": "true"}
    for name in (auth.AUTH_ENV, auth.TOKEN_FILE_ENV):
        env.pop(name, None)
    # BentoML imports the service to build the bento, and a service packaged with serving_auth refuses to be
    # imported without a token: this one lives as long as the build process, and the bento never holds it.
    env[auth.TOKEN_ENV] = secrets.token_hex(32)
    spec = {
        "version": tag.split(":", 1)[1],
        "labels": labels,
        "python": python,
        "requirements": requirements,
        "ctx": str(ctx),
    }
    proc = subprocess.run(
        [sys.executable, "-c", _BUILD_SCRIPT, json.dumps(spec)],
        cwd=ctx,
        env=env,
        capture_output=True,
        text=True,
        timeout=BENTO_BUILD_TIMEOUT_S,
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-20:])
        raise PackagingError(
            f"BentoML could not build the bento {tag}.",
            hint=f"The generated service is in the bento build log below; fix the model or report it.\n{tail}",
        )


__all__ = [
    "BentoResult",
    "PackageResult",
    "bento_content_sha256",
    "build_bento",
    "load_bento",
    "package",
    "serving_requirements",
]
