"""Monitoring: what a generated model service checks and measures while it serves.

Owns request validation (:mod:`.validation`) and model-file integrity checks
(:mod:`.integrity`). Everything here runs inside model images and depends on
the Python standard library only; packaging copies this package into each
bento, where the service imports it as ``shipyard_monitoring``.
"""

from __future__ import annotations

from .integrity import ModelIntegrityError, directory_sha256, verify_directory
from .validation import (
    FieldSpec,
    InputSchema,
    RequestProblem,
    RequestValidationMiddleware,
    parse_json,
    validate_payload,
)

__all__ = [
    "FieldSpec",
    "InputSchema",
    "ModelIntegrityError",
    "RequestProblem",
    "RequestValidationMiddleware",
    "directory_sha256",
    "parse_json",
    "validate_payload",
    "verify_directory",
]
