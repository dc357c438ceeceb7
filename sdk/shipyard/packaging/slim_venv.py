"""Make an installed venv smaller without changing what it runs: strip native modules, share duplicates.

Run by the image build, in the builder stage: ``python slim_venv.py VENV``.

1. Debug symbols are stripped from the native extension modules, each kept
   only if it still loads (skipped where ``strip`` is missing). About a tenth
   of a scientific stack's size is symbol tables no server reads.
2. Files with identical bytes (numpy and scipy vendor the same Fortran
   runtime) become hard links to one copy; an image layer stores it once.

Q: Why not strip everything, as a plain ``find -exec strip`` would?
A: The libraries wheels vendor next to themselves (``numpy.libs/``,
   ``scipy.libs/``) are patched after linking, and stripping such a file left
   numpy's OpenBLAS unloadable ("ELF load command address/offset not
   page-aligned"). Those folders are left alone, and every module that is
   stripped is loaded again in a fresh process: one that no longer loads gets
   its original bytes back.

This file runs inside the image build with the venv's Python and the
standard library only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

_CHECK = """
import ctypes, sys
for path in sys.argv[1:]:
    try:
        ctypes.CDLL(path)
    except OSError:
        continue
    print(path)
"""


def loadable(paths: list[str]) -> set[str]:
    """The paths among ``paths`` that the dynamic loader accepts, checked in a fresh process."""
    if not paths:
        return set()
    done = subprocess.run([sys.executable, "-c", _CHECK, *paths], capture_output=True, text=True, check=False)
    return set(done.stdout.splitlines())


def candidates(venv: Path) -> list[str]:
    """Extension modules and libraries under ``venv``, except those in a wheel's vendored ``*.libs`` folder."""
    found = []
    for root, _, files in os.walk(venv):
        if any(part.endswith(".libs") for part in Path(root).parts):
            continue
        for name in files:
            path = os.path.join(root, name)
            if (name.endswith(".so") or ".so." in name) and not os.path.islink(path):
                found.append(path)
    return sorted(found)


def strip_venv(venv: Path) -> tuple[int, int, int]:
    """Strip what still loads afterwards; return (modules stripped, modules restored, bytes saved)."""
    paths = sorted(loadable(candidates(venv)))
    if not paths:
        return 0, 0, 0
    before = sum(os.path.getsize(p) for p in paths)
    with tempfile.TemporaryDirectory() as backup:
        saved = {}
        for i, path in enumerate(paths):
            saved[path] = os.path.join(backup, str(i))
            shutil.copy2(path, saved[path])
        subprocess.run(["strip", "--strip-unneeded", *paths], capture_output=True, check=False)
        still = loadable(paths)
        restored = [p for p in paths if p not in still]
        for path in restored:
            shutil.copy2(saved[path], path)
    after = sum(os.path.getsize(p) for p in paths)
    return len(paths) - len(restored), len(restored), before - after


def link_duplicates(venv: Path, min_size: int = 64 * 1024) -> int:
    """Hard-link files of ``venv`` with identical content (of at least ``min_size`` bytes); return bytes saved."""
    import hashlib

    by_size: dict[int, list[str]] = {}
    for root, _, files in os.walk(venv):
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path) and (size := os.path.getsize(path)) >= min_size:
                by_size.setdefault(size, []).append(path)
    saved = 0
    for size, paths in by_size.items():
        if len(paths) < 2:
            continue
        first: dict[str, str] = {}
        for path in sorted(paths):
            with open(path, "rb") as fh:
                digest = hashlib.file_digest(fh, "sha256").hexdigest()
            if digest not in first:
                first[digest] = path
                continue
            if os.stat(path).st_ino == os.stat(first[digest]).st_ino:
                continue
            mode = os.stat(path).st_mode
            os.unlink(path)
            os.link(first[digest], path)
            os.chmod(path, mode | os.stat(first[digest]).st_mode)
            saved += size
    return saved


def main() -> int:
    venv = Path(sys.argv[1])
    if shutil.which("strip") is not None:
        stripped, restored, saved = strip_venv(venv)
        print(f"stripped {stripped} native modules ({saved / 1e6:.1f} MB); {restored} kept as they were")
    print(f"linked duplicate files ({link_duplicates(venv) / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
