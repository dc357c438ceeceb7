"""Facts about the environment a run executes in: Python, installed packages, git."""

from __future__ import annotations

import functools
import platform
import subprocess
from importlib import metadata
from pathlib import Path


@functools.lru_cache(maxsize=1)
def installed_packages() -> dict[str, str]:
    """Normalized distribution name → version of everything importable here."""
    packages: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata.get("Name")
        if name:
            packages[name.lower().replace("_", "-")] = dist.version
    return packages


def environment_lock() -> str:
    """A pip-style lock (``name==version`` per line, sorted) of the running environment."""
    lines = [f"# python {platform.python_version()}"]
    lines += [f"{name}=={version}" for name, version in sorted(installed_packages().items())]
    return "\n".join(lines) + "\n"


def pinned(*names: str) -> list[str]:
    """``name==version`` for each installed distribution among ``names`` (others are skipped)."""
    packages = installed_packages()
    return [f"{name}=={packages[name]}" for name in names if name in packages]


def python_version() -> str:
    return platform.python_version()


def git_state(path: Path) -> tuple[str, bool] | None:
    """(commit, dirty) of the git work tree containing ``path``, or None outside one."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return commit, bool(status.strip())
