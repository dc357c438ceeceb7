"""Integrity of model files: the one model digest, checked before a model is loaded.

The digest of a model is that of its directory as registered, which is what a
download of its URI (``models:/NAME/VERSION``) gives. Every regular file under
the directory counts, except

* ``registered_model_meta`` at the top, which MLflow's client writes into a
  folder it downloads through a ``models:/`` URI (it is not in the store), and
* ``__pycache__`` folders, the bytecode Python writes next to code it imports
  from the model; MLflow never logs them.

Files are taken in the byte order of their relative POSIX paths, and each
adds ``path NUL hex-sha256(content) LF`` to one SHA-256. In a shell, for
names without newlines, that is::

    cd model && find . -type f ! -path '*/__pycache__/*' ! -path ./registered_model_meta \\
      | sed 's|^\\./||' | LC_ALL=C sort \\
      | while IFS= read -r f; do printf '%s\\0%s\\n' "$f" "$(sha256sum < "$f" | cut -c1-64)"; done \\
      | sha256sum

The same value is the model version's tag, what ``shipyard review`` shows, the
bento and image label ``shipyard.model.sha256``, what the service checks
before it loads the model, and the ``lineage.model_sha256`` of ``handoff.json``.

Q: Why a manifest of per-file hashes rather than one stream of all bytes?
A: Anyone can check it with ``sha256sum`` and a sort, and a mismatch can be
   narrowed to one file by comparing the manifests.

Q: Why is this module standard-library only?
A: It runs inside model images, copied next to the service as
   ``shipyard_monitoring.integrity``, where shipyard itself is not installed;
   the host imports the same file, so both sides hash the same way.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

CHUNK = 1024 * 1024

# Written by MLflow's client into a folder it downloads through a ``models:/`` URI;
# not part of the stored model.
DOWNLOAD_ONLY_FILES = frozenset({"registered_model_meta"})
BYTECODE_DIR = "__pycache__"


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of one file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def model_files(folder: str | os.PathLike[str]) -> list[str]:
    """The relative POSIX paths that the digest covers, in the order it takes them."""
    root = os.fspath(folder)
    found: list[str] = []
    for here, dirs, files in os.walk(root):  # does not follow links to folders
        dirs[:] = [d for d in dirs if d != BYTECODE_DIR]
        rel = os.path.relpath(here, root)
        parts = () if rel == os.curdir else tuple(Path(rel).parts)
        for name in files:
            if not parts and name in DOWNLOAD_ONLY_FILES:
                continue
            if os.path.isfile(os.path.join(here, name)):  # regular files and links to them, not sockets
                found.append("/".join((*parts, name)))
    return sorted(found, key=os.fsencode)


def directory_sha256(folder: str | os.PathLike[str]) -> str:
    """Return the model digest of ``folder`` (see the module docstring for what it covers).

    Raises:
        FileNotFoundError: ``folder`` is not a directory.

    Example:
        >>> directory_sha256("model")        # doctest: +SKIP
        '3f1c...'
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"model folder {root} does not exist")
    digest = hashlib.sha256()
    for rel in model_files(root):
        digest.update(os.fsencode(rel) + b"\0")
        digest.update(file_sha256(root / rel).encode() + b"\n")
    return digest.hexdigest()


class ModelIntegrityError(RuntimeError):
    """The model files differ from the digest recorded when the model was registered."""


def verify_directory(folder: str | os.PathLike[str], expected: str) -> str:
    """Raise :class:`ModelIntegrityError` unless ``folder`` hashes to ``expected``; return the digest."""
    actual = directory_sha256(folder)
    if actual != expected:
        raise ModelIntegrityError(
            f"model hash mismatch in {folder}: expected sha256 {expected}, found {actual}; "
            "refusing to load a model that differs from the registered version"
        )
    return actual


EXIT_MODEL_MISMATCH = 78  # EX_CONFIG: the container is misconfigured, restarting it will not help


def verify_or_exit(folder: str | os.PathLike[str], expected: str) -> None:
    """:func:`verify_directory`, or stop the process with exit code 78 and one line saying why.

    A service calls this before it loads anything, so an image whose model
    files were changed never starts, and its exit code tells an orchestrator
    not to retry.
    """
    import logging
    import sys

    try:
        verify_directory(folder, expected)
    except (ModelIntegrityError, FileNotFoundError) as exc:
        message = f"shipyard: refusing to start: {exc}"
        print(message, file=sys.stderr, flush=True)
        logging.getLogger("shipyard.service").critical(message)
        raise SystemExit(EXIT_MODEL_MISMATCH) from None


__all__ = ["DOWNLOAD_ONLY_FILES", "EXIT_MODEL_MISMATCH", "ModelIntegrityError", "directory_sha256", "file_sha256",
           "model_files", "verify_directory", "verify_or_exit"]
