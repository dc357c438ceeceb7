"""Monitoring: what a generated model service checks and measures while it serves.

Owns request validation (:mod:`.validation`), model-file integrity checks
(:mod:`.integrity`), bearer-token authentication (:mod:`.auth`), the
predict path (:mod:`.serving`: loading a model by its flavor, building its
input from validated columns, workers, batching),
the drift math and reference profiles (:mod:`.drift`, numpy only) and what an
image measures while it serves (:mod:`.runtime`: the drift monitor, its
Prometheus metrics, inference capture).
Everything here runs inside model images: packaging copies this package into
each bento, where the service imports it as ``shipyard_monitoring``. At
import it needs the Python standard library only; numpy, pandas and the
model's libraries are imported by :mod:`.serving` when a model needs them.
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
