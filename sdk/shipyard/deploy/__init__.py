"""Deploy: what happens to a model image after it is built.

Owns smoke and parity tests of images (:mod:`.smoke`); handoff bundles,
registry pushes and deployment targets join here. Docker and MLflow are
imported only when a function runs.

Example:
    >>> result = shipyard.smoke("shipyard/iris:v1-5d41402abc4b2a76")   # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY: dict[str, str] = {"smoke": ".image_smoke", "SmokeResult": ".image_smoke", "GateVerdict": ".image_smoke"}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'shipyard.deploy' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:
    from .image_smoke import GateVerdict, SmokeResult, smoke
