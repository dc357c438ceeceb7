"""Deploy: what happens to a model image after it is built.

Owns smoke and parity tests of images (:mod:`.image_smoke`), handoff bundles
(:mod:`.handoff`) and registry pushes (:mod:`.push`). Docker and MLflow are
imported only when a function runs.

Example:
    >>> result = shipyard.smoke("shipyard/iris:v1-5d41402abc4b2a76")   # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._core.lazy import lazy_attributes

_LAZY: dict[str, str] = {"smoke": ".image_smoke", "SmokeResult": ".image_smoke"}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)


if TYPE_CHECKING:
    from .image_smoke import SmokeResult, smoke
