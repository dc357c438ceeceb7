"""Run a notebook end to end in a real Jupyter kernel and say where to look afterwards.

Usage: python scripts/run_notebook.py NOTEBOOK [--output OUT.ipynb]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--output", type=Path, default=None, help="Where to save the executed notebook.")
    parser.add_argument("--timeout", type=int, default=900, help="Seconds a single cell may take.")
    args = parser.parse_args()

    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(args.notebook, as_version=4)
    out = args.output or Path(".shipyard") / "executed" / args.notebook.name
    out.parent.mkdir(parents=True, exist_ok=True)
    print(f"Running {args.notebook} in a Jupyter kernel ...", flush=True)
    started = time.monotonic()
    client = NotebookClient(
        nb, timeout=args.timeout, kernel_name="python3", resources={"metadata": {"path": str(args.notebook.parent)}}
    )
    try:
        client.execute()
    except CellExecutionError as exc:
        nbformat.write(nb, out)
        print(f"\nA cell failed; the executed notebook is saved at {out}\n{exc}", file=sys.stderr)
        return 1
    nbformat.write(nb, out)
    print(f"Done in {time.monotonic() - started:.0f}s. Executed notebook: {out}")
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            text = output.get("text", "")
            for line in text.splitlines():
                if line.startswith("shipyard>"):
                    print(line[len("shipyard>") :].strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
