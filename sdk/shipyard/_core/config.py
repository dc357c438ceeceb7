"""Typed settings, in one place.

Precedence, highest first: arguments to :func:`shipyard.init` > environment
variables ``SHIPYARD_<NAME>`` > ``shipyard.toml`` > ``[tool.shipyard]`` in
``pyproject.toml`` > defaults below. Unknown keys in a project file or in
``init()`` are errors, so a typo never silently falls back to a default.

The project directory is the nearest ancestor of the working directory that
holds ``.shipyard/``, ``shipyard.toml`` or ``pyproject.toml``
(``SHIPYARD_PROJECT_DIR`` overrides the search).
"""

from __future__ import annotations

import contextvars
import difflib
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from .errors import ConfigError

ENV_PREFIX = "SHIPYARD_"
PROJECT_MARKERS = (".shipyard", "shipyard.toml", "pyproject.toml")


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
    experiment: str | None = Field(None, description="MLflow experiment; default: the flow's name.")
    author: str | None = Field(None, description="Who is acting, for audit records; default: the OS user.")
    flush_interval: float = Field(0.2, gt=0, le=60, description="Seconds between metric batch flushes.")
    flush_timeout: float = Field(
        30.0, gt=0, description="Seconds a step end waits for the tracker before spooling to disk."
    )
    batch_size: int = Field(1000, ge=1, le=1000, description="Metrics per log_batch call (MLflow caps it at 1000).")
    mlflow_ui_url: str | None = Field(None, description="Link to an MLflow UI, shown by the panel.")
    base_image: str | None = Field(
        None, description="Registry base image for model images; default: the locally built base image."
    )
    oci_registry: str | None = Field(None, description="OCI registry that promote() pushes images to.")
    require_approval: bool = Field(False, description="An engineer must approve before champion moves.")
    gitops_repo: Path | None = Field(None, description="Git repository path that handoff bundles are committed to.")
    gitops_path: str = Field("deploy", description="Folder inside gitops_repo for handoff bundles.")
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
        env: dict[str, str] = {}
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if value != field.default and value is not None:
                env[ENV_PREFIX + name.upper()] = str(value).lower() if isinstance(value, bool) else str(value)
        return env


_file_values: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("_file_values", default={})


class _ProjectFileSource(PydanticBaseSettingsSource):
    """Values read from the project's ``shipyard.toml`` / ``pyproject.toml``."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return _file_values.get().get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_file_values.get())


def find_project_dir(start: Path | None = None) -> Path:
    """Return the project directory for ``start`` (default: the working directory)."""
    if env := os.environ.get(ENV_PREFIX + "PROJECT_DIR"):
        return Path(env).expanduser().resolve()
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if any((candidate / marker).exists() for marker in PROJECT_MARKERS):
            return candidate
    return here


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
    """Build :class:`Settings` for ``project_dir`` with the documented precedence."""
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
