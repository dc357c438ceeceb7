"""Typed settings, in one place.

Precedence, highest first: arguments to :func:`shipyard.init` > environment
variables ``SHIPYARD_<NAME>`` > ``shipyard.toml`` > ``[tool.shipyard]`` in
``pyproject.toml`` > defaults below. Unknown keys in a project file or in
``init()`` are errors, so a typo never silently falls back to a default.

The project directory is the nearest folder, from the working directory up,
that holds a ``.shipyard/`` folder, a ``shipyard.toml`` or a ``pyproject.toml``
file; ``SHIPYARD_PROJECT_DIR`` (or ``shipyard --project DIR``) names it instead.
Outside any project, :func:`find_project_dir` raises :class:`NoProject`: a
workspace (with its sqlite store) is only ever created where a project is, or
where :func:`shipyard.init` / ``shipyard init`` is asked to create one.

A ``SHIPYARD_*`` environment variable that is neither a setting nor one of
:data:`OTHER_VARIABLES` gets an :class:`UnknownVariableWarning` naming the
closest known name, so ``SHIPYARD_TRACKNG_URI`` does not silently fall back
to the embedded store.

Q: Why a warning for an unknown variable, when an unknown key in a file is an error?
A: The environment is shared with every other program and shell profile; a
   stale variable from another checkout must not stop a command, but it must
   not go unnoticed either.
"""

from __future__ import annotations

import contextvars
import difflib
import os
import tomllib
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from .errors import ConfigError, NoProject

ENV_PREFIX = "SHIPYARD_"
PROJECT_DIR_ENV = "SHIPYARD_PROJECT_DIR"
WORKSPACE_DIR = ".shipyard"
PROJECT_FILES = ("shipyard.toml", "pyproject.toml")
PROJECT_MARKERS = (WORKSPACE_DIR, *PROJECT_FILES)

# SHIPYARD_* variables that are not settings, and who reads them.
OTHER_VARIABLES: dict[str, str] = {
    PROJECT_DIR_ENV: "the project directory, instead of searching up from the working directory",
    "SHIPYARD_SOURCE_KIND": "set by shipyard for flow steps: how the flow's source was found",
    "SHIPYARD_CELL_SOURCE": "set by shipyard for flow steps: the notebook cell a flow came from",
    "SHIPYARD_NOTEBOOK": "set by shipyard for flow steps: the notebook a flow came from",
    "SHIPYARD_CACHE_DIR": "where the base image build keeps its root filesystem tarballs",
    "SHIPYARD_DOCKERD_LOG": "scripts/docker-up.sh: the Docker daemon's log file",
    "SHIPYARD_DOCKER_TIMEOUT": "scripts/docker-up.sh: seconds to wait for the Docker daemon",
    "SHIPYARD_CAPTURE_DIR": "in a model image: where inference capture writes (a mounted volume)",
    "SHIPYARD_CAPTURE_SALT": "in a model image: the secret that sensitive captured columns are hashed with",
    "SHIPYARD_SERVING_TOKEN_FILE": "in a model image: the file holding the bearer token(s) requests must carry",
    "SHIPYARD_SERVING_TOKEN": "in a model image: the bearer token requests must carry, instead of a file",
    "SHIPYARD_IDENTITY": "who is approving, when identity_source is env and identity_env is left at its default",
    "SHIPYARD_CLI_WORKER": "the `shipyard` command: 0 runs every command in its own process (no preloaded worker)",
    "SHIPYARD_CLI_WORKER_IDLE": "the `shipyard` command: seconds a preloaded worker waits for a command (600)",
    "SHIPYARD_CLI_WORKER_DIR": "the `shipyard` command: the private folder for the preloaded workers' sockets",
}
# The test suite's switches (SHIPYARD_REQUIRE_DOCKER, SHIPYARD_REQUIRE_BROWSER, ...): fail instead of skip.
REQUIRE_PREFIX = "SHIPYARD_REQUIRE_"
# Names the test suite sets for itself (SHIPYARD_TEST_*); never read by shipyard.
TEST_PREFIX = "SHIPYARD_TEST_"


class UnknownVariableWarning(UserWarning):
    """A ``SHIPYARD_*`` environment variable that shipyard does not read."""


class Settings(BaseSettings):
    """Every setting shipyard reads. Each field is also ``SHIPYARD_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    workspace: Path | None = Field(
        None, description="Workspace directory; default `<project>/.shipyard`."
    )
    tracking_uri: str | None = Field(
        None,
        description="MLflow tracking URI (e.g. http://mlflow:5000); default: sqlite store in the workspace.",
    )
    registry_uri: str | None = Field(None, description="MLflow registry URI; default: the tracking URI.")
    artifact_root: str | None = Field(
        None,
        description="Where new experiments keep their artifacts (e.g. s3://bucket/prefix), written to directly "
        "by each client; default: the workspace (embedded store) or the tracking server's own store.",
        pattern=r"^[a-z][a-z0-9+.-]*://\S+$",
    )
    experiment: str | None = Field(None, description="MLflow experiment; default: the flow's name.")
    author: str | None = Field(None, description="Who is acting, for audit records; default: the OS user.")
    flush_interval: float = Field(0.2, gt=0, le=60, description="Seconds between metric batch flushes.")
    flush_timeout: float = Field(
        30.0, gt=0, description="Seconds a step end waits for the tracker before spooling to disk."
    )
    batch_size: int = Field(1000, ge=1, le=1000, description="Metrics per log_batch call (MLflow caps it at 1000).")
    mlflow_ui_url: str | None = Field(None, description="Link to an MLflow UI, shown by the panel.")
    metaflow_card: bool = Field(
        True,
        description="Give every step of a tracked flow the `shipyard` Metaflow card when the metaflow-shipyard "
        "extension is installed (each card costs Metaflow a drawing process, about a second, per step).",
    )
    base_image: str | None = Field(
        None, description="Registry base image for model images; default: the locally built base image."
    )
    oci_registry: str | None = Field(None, description="OCI registry that promote() pushes images to.")
    image_extra_index_url: str | None = Field(
        None,
        description="Package index searched before PyPI when images install requirements, "
        "e.g. https://download.pytorch.org/whl/cpu for CPU-only PyTorch wheels.",
    )
    serving_workers: Annotated[int, Field(ge=1, le=256)] | Literal["auto"] = Field(
        "auto",
        description="Workers of a model image: a number, or auto for one per CPU the container may use "
        "(its CPU quota counted); SHIPYARD_SERVING_WORKERS overrides it when the container starts.",
    )
    serving_batch_rows: int = Field(
        0,
        ge=0,
        le=100_000,
        description="Adaptive batching in model images: requests waiting while the model predicts are "
        "predicted together, up to this many rows per call; 0 turns it off.",
    )
    serving_batch_wait_ms: float = Field(
        0.0, ge=0, le=100, description="With batching on, how long a request may wait for others to join its batch."
    )
    serving_auth: bool = Field(
        False,
        description="Model images require `Authorization: Bearer <token>` on every endpoint but the probes and "
        "/metrics; the token is read when the container starts (SHIPYARD_SERVING_TOKEN_FILE or "
        "SHIPYARD_SERVING_TOKEN), and handoff bundles mount it from a Kubernetes Secret.",
    )
    monitoring: bool = Field(
        True,
        description="Model images measure their own drift against the reference profile frozen at packaging "
        "and export it at /metrics; SHIPYARD_MONITORING=0 turns it off when the container starts.",
    )
    monitor_window_rows: int = Field(
        10_000, ge=100, le=1_000_000, description="Rows of recent requests that drift is computed over, per worker."
    )
    monitor_min_rows: int = Field(
        200,
        ge=1,
        le=1_000_000,
        description="Rows a worker's window must hold before drift is measured: on fewer, sampling noise alone "
        "reads as drift.",
    )
    monitor_interval_seconds: float = Field(
        10.0, ge=0.5, le=3600, description="Seconds between drift computations inside a model image."
    )
    monitor_queue_rows: int = Field(
        100_000,
        ge=1_000,
        le=10_000_000,
        description="Rows waiting for the drift worker; beyond this, samples are dropped (and counted), "
        "never the request.",
    )
    drift_threshold: float = Field(
        0.1, gt=0, le=1, description="Distance at which a column drifts (normalized Wasserstein, Jensen-Shannon)."
    )
    capture: bool = Field(
        False,
        description="Model images write sampled requests and predictions as JSON lines under "
        "SHIPYARD_CAPTURE_DIR (a mounted volume); SHIPYARD_CAPTURE=1 turns it on when the container starts.",
    )
    capture_sample_rate: float = Field(1.0, gt=0, le=1, description="Share of requests that inference capture keeps.")
    capture_max_mb: float = Field(
        100.0, gt=0, le=100_000, description="Most megabytes inference capture keeps; the oldest file goes first."
    )
    capture_sensitive: list[str] = Field(
        default_factory=list, description="Input columns inference capture never writes as they are."
    )
    capture_sensitive_mode: Literal["hash", "drop"] = Field(
        "hash", description="What capture does with sensitive columns: a salted SHA-256, or leave them out."
    )
    attributions: bool = Field(
        True,
        description="Checks with a holdout compute the candidate's permutation feature importance on it and "
        "store it on the run (shipyard/attributions.json, a bar plot, a section of the gate report).",
    )
    attribution_method: Literal["permutation", "shap"] = Field(
        "permutation", description="permutation (any model), or shap for tree models (needs shipyard[shap])."
    )
    attribution_max_rows: int = Field(
        2000, ge=50, le=1_000_000, description="Holdout rows attributions use at most (a seeded sample)."
    )
    attribution_repeats: int = Field(5, ge=1, le=100, description="Permutations per feature.")
    attribution_seconds: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="Time budget of the attributions of one check: one predict is timed, then repeats and rows "
        "are lowered to fit.",
    )
    require_approval: bool = Field(False, description="An engineer must approve before champion moves.")
    separation_of_duties: bool = Field(
        False,
        description="Four-eyes rule: an approval from the run's author or from whoever started the promotion is "
        "refused, and approvals are recorded under identity_source; implies require_approval.",
    )
    required_approvals: int = Field(
        1, ge=1, le=10, description="Distinct people who must approve before champion moves (implies require_approval "
        "above 1).",
    )
    identity_source: Literal["os", "env", "tracking"] = Field(
        "os",
        description="Who is approving, with separation_of_duties: the OS login, the variable identity_env names, "
        "or the user the MLflow tracking server authenticates.",
    )
    identity_env: str = Field(
        "SHIPYARD_IDENTITY",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="The environment variable holding the identity when identity_source is env.",
    )
    provenance_key: Path | None = Field(
        None,
        description="PEM file of the Ed25519 private key that signs each promotion's provenance statement "
        "(relative paths are from the project directory); unset: statements are written unsigned.",
    )
    provenance_public_key: Path | None = Field(
        None, description="PEM file of the public key `shipyard verify` checks signatures with; default: "
        "the public half of provenance_key."
    )
    provenance_require_signature: bool = Field(
        False, description="Refuse to promote when no provenance_key is set, instead of writing an unsigned statement."
    )
    provenance_builder_id: str = Field(
        "urn:shipyard:promote", min_length=1,
        description="SLSA builder id recorded in provenance statements (e.g. your CI system's URI).",
    )
    gitops_repo: Path | None = Field(None, description="Git repository path that handoff bundles are committed to.")
    gitops_path: str = Field("deploy", description="Folder inside gitops_repo for handoff bundles.")
    gitops_url: str | None = Field(
        None,
        description="URL Argo CD or Flux clone the GitOps repository from; with it, bundles hold an Argo CD "
        "Application and a Flux Kustomization per overlay.",
    )
    gitops_revision: str = Field("main", description="Branch or tag of the GitOps repository the controllers follow.")
    flux_source: str = Field("flux-system", description="Name of the Flux GitRepository holding gitops_url.")
    argocd_project: str = Field("default", description="Argo CD project of the generated Applications.")
    argocd_namespace: str = Field("argocd", description="Namespace Argo CD runs in.")
    delivery: Literal["rolling", "argo-canary", "argo-bluegreen", "flagger"] = Field(
        "rolling",
        description="How traffic moves to a new version: a rolling update, an Argo Rollouts canary or "
        "blue/green, or a Flagger canary, each with an analysis on the image's own metrics.",
    )
    canary_steps: list[Annotated[int, Field(ge=1, le=99)]] = Field(
        default_factory=lambda: [10, 25, 50], description="Canary traffic weights (percent), in order."
    )
    canary_pause: str = Field("2m", description="Pause after each canary weight (a duration: 30s, 2m, 1h).")
    analysis_interval: str = Field("1m", description="How often the rollout's analysis measures.")
    analysis_count: int = Field(3, ge=1, le=100, description="Measurements per analysis run.")
    analysis_failure_limit: int = Field(1, ge=0, le=100, description="Failed measurements before a rollback.")
    analysis_window: str = Field("2m", description="Range the analysis queries compute rates over.")
    analysis_max_error_ratio: float = Field(
        0.01, gt=0, lt=1, description="Largest share of 5xx answers of /predict the analysis accepts."
    )
    analysis_checks: list[Literal["errors", "latency", "drift"]] | None = Field(
        None,
        description="What the analysis checks; default: errors, latency when the model has a latency gate, "
        "drift when its reference profile is known.",
    )
    prometheus_url: str = Field(
        "http://prometheus-operated.monitoring.svc:9090", description="Prometheus the rollout analysis queries."
    )
    kubernetes_version: str = Field(
        "1.30.0", description="Kubernetes version the bundle's core objects are validated against (strict)."
    )
    deploy_namespace: str = Field("default", description="Namespace of the bundle's base objects.")
    staging_namespace: str = Field("staging", description="Namespace of the staging overlay.")
    production_namespace: str = Field("production", description="Namespace of the production overlay.")
    staging_replicas: int = Field(1, ge=0, le=1000, description="Pods of the staging overlay.")
    production_replicas: int = Field(2, ge=0, le=1000, description="Pods of the production overlay.")
    deploy_resources: dict[str, str] = Field(
        default_factory=lambda: {"cpu_request": "250m", "memory_request": "512Mi", "cpu_limit": "1",
                                 "memory_limit": "1Gi"},
        description="Requests and limits of a model pod (cpu_request, memory_request, cpu_limit, memory_limit).",
    )
    staging_resources: dict[str, str] | None = Field(
        None, description="Requests and limits in the staging overlay; default: deploy_resources."
    )
    approval_policy: Literal["one", "none"] = Field("one", description="Approvals required when require_approval is set.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _ProjectFileSource(settings_cls))

    def explicit_env(self) -> dict[str, str]:
        """The settings that differ from defaults, as ``SHIPYARD_*`` variables for child processes."""
        import json

        env: dict[str, str] = {}
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if value == field.get_default(call_default_factory=True) or value is None:
                continue
            if isinstance(value, bool):
                text = str(value).lower()
            elif isinstance(value, list | dict):
                text = json.dumps(value)  # how pydantic-settings reads complex values back
            else:
                text = str(value)
            env[ENV_PREFIX + name.upper()] = text
        return env


_file_values: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("_file_values", default={})


class _ProjectFileSource(PydanticBaseSettingsSource):
    """Values read from the project's ``shipyard.toml`` / ``pyproject.toml``."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return _file_values.get().get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_file_values.get())


def named_project_dir() -> Path | None:
    """The project directory ``SHIPYARD_PROJECT_DIR`` names (``shipyard --project`` sets it), if any."""
    value = os.environ.get(PROJECT_DIR_ENV, "").strip()
    return Path(value).expanduser().resolve() if value else None


def is_project_dir(folder: Path) -> bool:
    """True when ``folder`` holds a ``.shipyard/`` folder, a ``shipyard.toml`` or a ``pyproject.toml``."""
    return (folder / WORKSPACE_DIR).is_dir() or any((folder / name).is_file() for name in PROJECT_FILES)


def discover_project_dir(start: Path | None = None) -> Path | None:
    """The nearest project directory at or above ``start`` (default: the working directory), or None.

    Example:
        >>> discover_project_dir(Path("notebooks"))    # doctest: +SKIP
        PosixPath('/home/me/churn')
    """
    here = (start or _cwd()).resolve()
    return next((folder for folder in (here, *here.parents) if is_project_dir(folder)), None)


def find_project_dir(start: Path | None = None) -> Path:
    """Return the project directory: the one ``SHIPYARD_PROJECT_DIR`` names, else the nearest one up.

    Raises:
        NoProject: no project holds ``start`` (default: the working directory) and none is named,
            or the named one does not exist.
    """
    named = named_project_dir()
    if named is not None:
        if not named.is_dir():
            raise NoProject(
                f"{PROJECT_DIR_ENV} (or --project) names {named}, which is not a folder.",
                start=str(named),
                hint=f"Create the project with `shipyard init --project {named}`, or fix the path.",
            )
        return named
    here = (start or _cwd()).resolve()
    found = discover_project_dir(here)
    if found is None:
        raise NoProject(
            f"No shipyard project here: neither {here} nor a folder above it holds a .shipyard/ folder, "
            "a shipyard.toml or a pyproject.toml.",
            start=str(here),
            hint="Run `shipyard init` in the project folder (or `shipyard.init()` in Python) to create its "
            f"workspace, pass `--project DIR`, or set {PROJECT_DIR_ENV}.",
        )
    return found


def _cwd() -> Path:
    try:
        return Path.cwd()
    except FileNotFoundError as exc:
        raise NoProject(
            "The working directory no longer exists, so no project can be found from it.",
            start="",
            hint="cd into the project folder, or pass `--project DIR`.",
        ) from exc


def known_variables() -> list[str]:
    """Every ``SHIPYARD_*`` name shipyard reads: one per setting, then :data:`OTHER_VARIABLES`."""
    return [ENV_PREFIX + name.upper() for name in Settings.model_fields] + list(OTHER_VARIABLES)


def unknown_variables(environ: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """``SHIPYARD_*`` variables in ``environ`` (default: ``os.environ``) that shipyard does not read.

    Returns:
        Each unknown name with the closest known one (``difflib``), or None when nothing is close.
    """
    env = os.environ if environ is None else environ
    known = known_variables()
    found: dict[str, str | None] = {}
    for name in sorted(env):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper in known or upper.startswith((REQUIRE_PREFIX, TEST_PREFIX)):
            continue
        close = difflib.get_close_matches(upper, known, n=1, cutoff=0.6)
        found[name] = close[0] if close else None
    return found


def warn_unknown_variables(environ: Mapping[str, str] | None = None) -> None:
    """Warn (:class:`UnknownVariableWarning`) about each ``SHIPYARD_*`` variable shipyard ignores."""
    for name, close in unknown_variables(environ).items():
        suggestion = f"did you mean {close}?" if close else "settings are SHIPYARD_<NAME>, e.g. SHIPYARD_TRACKING_URI."
        warnings.warn(
            f"The environment variable {name} is not a shipyard setting and is ignored; {suggestion}",
            UnknownVariableWarning,
            stacklevel=2,
        )


def read_project_file(project_dir: Path) -> tuple[dict[str, Any], str | None]:
    """Return the shipyard table of the project and the name of the file it came from."""
    toml_file = project_dir / "shipyard.toml"
    if toml_file.is_file():
        return _load_toml(toml_file), "shipyard.toml"
    pyproject = project_dir / "pyproject.toml"
    if pyproject.is_file():
        table = _load_toml(pyproject).get("tool", {}).get("shipyard")
        if table is not None:
            return table, "pyproject.toml [tool.shipyard]"
    return {}, None


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}", hint="Fix the syntax of that file.") from exc


def _check_keys(values: dict[str, Any], where: str) -> None:
    known = list(Settings.model_fields)
    for key in values:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            suggestion = f"Did you mean '{close[0]}'? " if close else ""
            raise ConfigError(
                f"Unknown setting '{key}' in {where}.",
                hint=f"{suggestion}Known settings: {', '.join(known)}.",
            )


def load_settings(project_dir: Path, **overrides: Any) -> Settings:
    """Build :class:`Settings` for ``project_dir`` with the documented precedence.

    Warns (:class:`UnknownVariableWarning`) about ``SHIPYARD_*`` variables that are no setting.
    """
    warn_unknown_variables()
    file_values, file_name = read_project_file(project_dir)
    if file_name:
        _check_keys(file_values, f"{project_dir / file_name.split()[0]} ({file_name})")
    _check_keys(overrides, "shipyard.init()")
    token = _file_values.set(file_values)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']} (got {err.get('input')!r})"
            for err in exc.errors()
        )
        raise ConfigError(
            f"Invalid shipyard settings: {problems}.",
            hint=f"Fix the value in init(), the SHIPYARD_* environment variable or {file_name or 'pyproject.toml'}.",
        ) from exc
    finally:
        _file_values.reset(token)
