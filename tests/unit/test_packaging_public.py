"""The public names of packaging and deploy stay functions, whatever was imported before."""

from __future__ import annotations

import subprocess
import sys


def test_public_names_are_callables_after_importing_every_submodule() -> None:
    code = """
import importlib, pkgutil, shipyard.packaging, shipyard.deploy, shipyard.monitoring
for pkg in (shipyard.packaging, shipyard.deploy, shipyard.monitoring):
    for info in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"{pkg.__name__}.{info.name}")
from shipyard.packaging import package, build_base_image, containerize, build_bento
from shipyard.deploy import smoke
for f in (package, build_base_image, containerize, build_bento, smoke):
    assert callable(f) and type(f).__name__ == "function", f
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_importing_packaging_and_deploy_stays_cheap() -> None:
    code = (
        "import sys, shipyard.packaging, shipyard.deploy, shipyard.monitoring, shipyard.cli.packaging\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'bentoml', 'docker', 'mlflow', 'pandas'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
