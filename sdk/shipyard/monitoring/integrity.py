"""Integrity of model files: one SHA-256 over a folder, checked before a model is loaded.

Runs inside model images (standard library only) and on the host when a bento
is built, so both sides compute the digest the same way: every regular file
under the folder, sorted by relative POSIX path, hashed as
``path NUL size NUL content``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

CHUNK = 1024 * 1024


def directory_sha256(folder: str | os.PathLike[str]) -> str:
    """Return the hex SHA-256 of every file under ``folder`` (names, sizes and bytes).

    Example:
        >>> directory_sha256("model")        # doctest: +SKIP
        '3f1c...'
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"model folder {root} does not exist")
    digest = hashlib.sha256()
    files = sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    for path in files:
        rel = path.relative_to(root).as_posix()
        digest.update(rel.encode() + b"\0" + str(path.stat().st_size).encode() + b"\0")
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(CHUNK), b""):
                digest.update(chunk)
    return digest.hexdigest()


class ModelIntegrityError(RuntimeError):
    """The model files differ from the digest recorded when the bento was built."""


def verify_directory(folder: str | os.PathLike[str], expected: str) -> str:
    """Raise :class:`ModelIntegrityError` unless ``folder`` hashes to ``expected``; return the digest."""
    actual = directory_sha256(folder)
    if actual != expected:
        raise ModelIntegrityError(
            f"model hash mismatch in {folder}: expected sha256 {expected}, found {actual}; "
            "refusing to load a model that differs from the registered version"
        )
    return actual


__all__ = ["ModelIntegrityError", "directory_sha256", "verify_directory"]
