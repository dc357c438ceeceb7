"""Packaging: registered model version → generated BentoML service → bento → lean OCI image.

Owns service generation, the bento build, local base images, containerizing
with the real Docker engine, and the facts reported about an image. Heavy
libraries (BentoML, MLflow, Docker) are imported only when a function runs.

Example:
    >>> import shipyard
    >>> result = shipyard.package("models:/iris/1")     # doctest: +SKIP
    >>> result.image.tag, result.image.size_mb           # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._core.lazy import lazy_attributes

_LAZY: dict[str, str] = {
    "package": ".bento",
    "PackageResult": ".bento",
    "build_bento": ".bento",
    "BentoResult": ".bento",
    "containerize": ".image",
    "ImageReport": ".image",
    "build_base_image": ".base_image",
    "resolve_base_image": ".base_image",
    "BaseImage": ".base_image",
    "load_bento": ".bento",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)


if TYPE_CHECKING:
    from .base_image import BaseImage, build_base_image, resolve_base_image
    from .bento import BentoResult, PackageResult, build_bento, load_bento, package
    from .image import ImageReport, containerize
