"""Content hashes used for lineage and for verifying artifacts before they are loaded."""

from __future__ import annotations

import hashlib
from pathlib import Path

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# Written by MLflow's client into a folder it downloads through a ``models:/`` URI;
# not part of the stored model.
DOWNLOAD_ONLY_FILES = frozenset({"registered_model_meta"})


def sha256_tree(root: Path) -> str:
    """Hash of a directory: every file's relative path and content, in sorted order.

    The same files give the same hash wherever the directory lives.
    """
    digest = hashlib.sha256()
    files = (p for p in root.rglob("*") if p.is_file() and p.relative_to(root).as_posix() not in DOWNLOAD_ONLY_FILES)
    for path in sorted(files):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        digest.update(sha256_file(path).encode())
        digest.update(b"\n")
    return digest.hexdigest()
