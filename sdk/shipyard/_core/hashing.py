"""Content hashes used for lineage and for verifying artifacts before they are loaded.

Q: Why does the model digest come from :mod:`shipyard.monitoring.integrity`?
A: The served image checks the model files before it loads them, with a copy
   of that standard-library-only module; the host uses the very same code for
   the version tag, the review, the image label and the handoff, so there is
   one definition of "the model's SHA-256" and it cannot drift.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..monitoring.integrity import DOWNLOAD_ONLY_FILES, directory_sha256, file_sha256


def sha256_file(path: Path) -> str:
    return file_sha256(path)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def model_sha256(root: Path) -> str:
    """The model digest of a model directory (what is hashed: :mod:`shipyard.monitoring.integrity`).

    The same files give the same digest wherever the directory lives.

    Example:
        >>> model_sha256(Path("model"))     # doctest: +SKIP
        '3f1c...'
    """
    return directory_sha256(root)


__all__ = ["DOWNLOAD_ONLY_FILES", "model_sha256", "sha256_file", "sha256_text"]
