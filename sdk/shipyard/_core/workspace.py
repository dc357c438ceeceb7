"""The workspace: where an embedded shipyard keeps everything, and which servers it talks to.

Layout of ``<project>/.shipyard/``::

    mlflow.db          MLflow sqlite store (tracking + registry), unless a server is configured
    artifacts/         MLflow artifact root
    metaflow/          Metaflow's local datastore and metadata (``.metaflow`` inside)
    bentoml/           BentoML home (bentos and models)
    bundles/<slug>/<version>/   handoff bundles, one folder per model version
    promotions/<slug>/*.json    persisted promotion state, one file per promotion
    spool/             metric batches that could not reach the tracker yet
    live/              a copy of the points of runs in progress, for live charts
    locks/             inter-process locks
    audit.jsonl        append-only audit log of every state change that matters

Which project: :func:`init` takes ``project_dir``, else the one
``SHIPYARD_PROJECT_DIR`` names, else the nearest project at or above the
working directory (see :mod:`.config`), else the working directory itself,
because calling ``init()`` is how a user says "this is my project".
Everything else (``shipyard.log_metric`` before any ``init()``, every CLI
command but ``shipyard init``) uses :func:`current_workspace`, which raises
:class:`~shipyard.NoProject` outside a project instead of creating a
workspace in whatever folder it was started from.

Q: Why may implicit use create ``.shipyard/`` inside a project but not elsewhere?
A: A folder with a ``pyproject.toml`` or ``shipyard.toml`` is a project by the
   user's own choice, so its workspace belongs there; a home directory or
   ``/tmp`` is not, and a sqlite store appearing there is a surprise.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import re
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import Settings, discover_project_dir, find_project_dir, load_settings, named_project_dir
from .errors import ConfigError, TrackingUnavailable


def slug(name: str) -> str:
    """The one rule that turns a model name into a name for folders, locks, bentos, images and Kubernetes.

    Lower-case letters, digits and ``-`` (valid as a BentoML name, an image
    repository and a Kubernetes DNS label). A name that is not already of
    that form gets six hex digits of its hash, so "Iris Model" and
    "iris-model" never share a folder.

    Example:
        >>> slug("breast-cancer"), slug("Iris Model")
        ('breast-cancer', 'iris-model-9c8e6c')
    """
    base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40].strip("-") or "model"
    return base if base == name else f"{base}-{hashlib.sha256(name.encode()).hexdigest()[:6]}"


@dataclass(frozen=True)
class Workspace:
    """Paths and URIs of one shipyard workspace.

    Example:
        >>> ws = shipyard.init()                    # doctest: +SKIP
        >>> ws.tracking_uri                         # doctest: +SKIP
        'sqlite:////home/me/project/.shipyard/mlflow.db'
    """

    project_dir: Path
    settings: Settings = field(repr=False)

    @classmethod
    def locate(cls, project_dir: str | os.PathLike[str] | None = None, **settings: Any) -> Workspace:
        """The workspace :func:`init` would open for these arguments, without creating anything.

        Example:
            >>> ws = shipyard.Workspace.locate()     # doctest: +SKIP
            >>> ws.root.is_dir()                     # doctest: +SKIP
            False
        """
        project = project_root(project_dir)
        return cls(project, load_settings(project, **settings))

    @property
    def exists(self) -> bool:
        """True when the workspace folder has been created (by :meth:`ensure`)."""
        return (self.root / ".gitignore").is_file() and self.artifacts_dir.is_dir()

    @property
    def root(self) -> Path:
        ws = self.settings.workspace
        if ws is None:
            return self.project_dir / ".shipyard"
        return ws if ws.is_absolute() else (self.project_dir / ws).resolve()

    @property
    def embedded(self) -> bool:
        """True when tracking uses the sqlite store inside the workspace."""
        return self.settings.tracking_uri is None

    @property
    def mlflow_ui(self) -> str:
        """Base URL of the MLflow UI that links point to: ``mlflow_ui_url``, else a tracking server's own URL
        (it serves the UI), else "" (the embedded store has no UI to link to)."""
        if self.settings.mlflow_ui_url:
            return self.settings.mlflow_ui_url
        uri = self.tracking_uri
        return uri if not self.embedded and uri.startswith(("http://", "https://")) else ""

    @property
    def tracking_uri(self) -> str:
        return self.settings.tracking_uri or f"sqlite:///{self.root / 'mlflow.db'}"

    @property
    def registry_uri(self) -> str:
        return self.settings.registry_uri or self.tracking_uri

    @property
    def artifacts_dir(self) -> Path:
        return self.root / "artifacts"

    @property
    def metaflow_root(self) -> Path:
        return self.root / "metaflow"

    @property
    def bentoml_home(self) -> Path:
        return self.root / "bentoml"

    @property
    def bundles_dir(self) -> Path:
        return self.root / "bundles"

    @property
    def promotions_dir(self) -> Path:
        return self.root / "promotions"

    @property
    def local_deployments_dir(self) -> Path:
        """What ``shipyard deploy local`` runs on this machine, a folder per model."""
        return self.root / "deploy-local"

    @property
    def spool_dir(self) -> Path:
        return self.root / "spool"

    @property
    def live_dir(self) -> Path:
        return self.root / "live"

    @property
    def locks_dir(self) -> Path:
        return self.root / "locks"

    @property
    def audit_log(self) -> Path:
        return self.root / "audit.jsonl"

    def model_bundles(self, model: str) -> Path:
        """Folder of every handoff bundle of ``model`` (and its ``current`` link)."""
        return self.bundles_dir / slug(model)

    def bundle_dir(self, model: str, version: str) -> Path:
        """The handoff bundle of one model version."""
        return self.model_bundles(model) / str(version)

    def model_promotions(self, model: str) -> Path:
        """Folder of the persisted state of every promotion of ``model``."""
        return self.promotions_dir / slug(model)

    def lock_path(self, kind: str, model: str) -> Path:
        """The inter-process lock of one kind of work on ``model`` (``promote``, ``registry``, ``bento``)."""
        return self.locks_dir / f"{kind}-{slug(model)}.lock"

    @property
    def author(self) -> str:
        return self.settings.author or os_user()

    def ensure(self) -> Workspace:
        """Create the workspace folders (idempotent) and return self."""
        try:
            for path in (
                self.artifacts_dir,
                self.metaflow_root,
                self.bentoml_home,
                self.bundles_dir,
                self.promotions_dir,
                self.spool_dir,
                self.locks_dir,
            ):
                path.mkdir(parents=True, exist_ok=True)
            ignore = self.root / ".gitignore"
            if not ignore.exists():
                ignore.write_text("# shipyard workspace: local state, not source\n*\n")
        except OSError as exc:
            raise ConfigError(
                f"Cannot create the shipyard workspace at {self.root}: {exc.strerror}.",
                hint="Choose a writable folder with shipyard.init(workspace=...) or SHIPYARD_WORKSPACE.",
            ) from exc
        return self

    def child_env(self) -> dict[str, str]:
        """Environment that makes a child process (a Metaflow step) use this same workspace."""
        env = self.settings.explicit_env()
        env["SHIPYARD_PROJECT_DIR"] = str(self.project_dir)
        env["SHIPYARD_WORKSPACE"] = str(self.root)
        env["METAFLOW_DATASTORE_SYSROOT_LOCAL"] = str(self.metaflow_root)
        # MLflow's fluent API (used by mlflow.<flavor>.log_model) must write to the same store.
        env["MLFLOW_TRACKING_URI"] = self.tracking_uri
        env["MLFLOW_REGISTRY_URI"] = self.registry_uri
        # Metaflow refuses to run without a user name and does not accept "root" as one.
        if "METAFLOW_USER" not in os.environ:
            env["METAFLOW_USER"] = self.author if self.author != "root" else "root-user"
        return env

    def check_tracking(self, timeout: float = 3.0) -> None:
        """Raise :class:`TrackingUnavailable` if a configured tracking server does not answer."""
        uri = self.tracking_uri
        if not uri.startswith(("http://", "https://")):
            return
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as response:
                if response.status == 200:
                    return
                reason = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            reason = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            reason = str(getattr(exc, "reason", exc))
        raise TrackingUnavailable(
            f"The MLflow tracking server at {uri} does not answer ({reason}).",
            hint="Start it (e.g. `mlflow server --host 127.0.0.1 --port 5000`), fix SHIPYARD_TRACKING_URI, "
            "or unset it to use the embedded sqlite store.",
        )


def os_user() -> str:
    """The OS login name (the uid when the system knows no name for it)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid-{os.getuid()}"


_lock = threading.Lock()
_default: Workspace | None = None


def init(project_dir: str | os.PathLike[str] | None = None, **settings: Any) -> Workspace:
    """Open (and create if needed) the shipyard workspace and make it the default.

    Args:
        project_dir: project folder (created if missing); default: the one ``SHIPYARD_PROJECT_DIR``
            names, else the nearest project at or above the working directory, else the working
            directory, which then becomes a project (its ``.shipyard/`` marks it).
        **settings: any :class:`~shipyard._core.config.Settings` field, e.g. ``tracking_uri``.

    Raises:
        ConfigError: unknown setting, bad value, or an unwritable workspace.
        TrackingUnavailable: a configured tracking server does not answer.

    Example:
        >>> import shipyard
        >>> ws = shipyard.init(experiment="churn")   # doctest: +SKIP
    """
    global _default
    ws = Workspace.locate(project_dir, **settings).ensure()
    ws.check_tracking()
    with _lock:
        _default = ws
    return ws


def project_root(project_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder :func:`init` makes the workspace of (see its ``project_dir``); nothing is created."""
    if project_dir:
        return Path(project_dir).expanduser().resolve()
    return named_project_dir() or discover_project_dir() or Path.cwd().resolve()


def current_workspace() -> Workspace:
    """Return the default workspace, discovering it on first use (without a server check).

    Raises:
        NoProject: before any :func:`init`, outside a project and with none named.
    """
    global _default
    with _lock:
        if _default is None:
            project = find_project_dir()
            _default = Workspace(project, load_settings(project)).ensure()
        return _default


def reset_workspace() -> None:
    """Forget the default workspace, so the next use discovers it again (tests, notebooks)."""
    global _default
    with _lock:
        _default = None
