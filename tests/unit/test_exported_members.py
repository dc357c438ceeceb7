"""The public surface of ``shipyard`` is exactly what we mean it to be (after httpx's test of the same name).

Adding or removing a public name means editing ``EXPECTED`` here: a
deliberate, reviewed change, never a side effect of an import.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import shipyard
from shipyard._core import errors

REPO = Path(__file__).resolve().parents[2]
SDK = Path(shipyard.__file__).parent

EXPECTED = [
    "ApprovalRefused",
    "BaseImageMissing",
    "ConfigError",
    "ContainerFailed",
    "DeployError",
    "DockerUnavailable",
    "FlowError",
    "FlowFailed",
    "FlowRun",
    "GateError",
    "GateFailed",
    "GateReport",
    "InvalidMetric",
    "InvalidRequirement",
    "Lineage",
    "MissingDependency",
    "ModelNotFound",
    "ModelRef",
    "MonitoringError",
    "NoActiveRun",
    "NoProject",
    "OverrideRefused",
    "PackagingError",
    "Promotion",
    "PromotionError",
    "RegistryError",
    "RunResult",
    "ScheduledFlow",
    "Settings",
    "ShipyardError",
    "TrackedRun",
    "TrackingError",
    "TrackingUnavailable",
    "Verification",
    "Workspace",
    "__version__",
    "active_run_id",
    "approve",
    "build_base_image",
    "check",
    "current_workspace",
    "flush",
    "gate",
    "generate_signing_key",
    "get_run",
    "init",
    "log_dataset",
    "log_metric",
    "log_metrics",
    "log_model",
    "log_params",
    "metric_history",
    "model_card",
    "model_versions",
    "monitor",
    "package",
    "panel",
    "promote",
    "reject",
    "retire",
    "retrain",
    "review",
    "rollback",
    "run",
    "run_async",
    "runs",
    "schedule",
    "smoke",
    "start_run",
    "sync",
    "track",
    "verify",
]

# Module-level names of the facade that are plumbing, not API.
PLUMBING = {"TYPE_CHECKING", "annotations", "lazy_attributes"}


def _type_checking_imports() -> dict[str, str]:
    """Name → relative module of every import in the facade's ``if TYPE_CHECKING:`` block."""
    tree = ast.parse(Path(shipyard.__file__).read_text(encoding="utf-8"))
    blocks = [
        node for node in tree.body
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
    ]
    assert len(blocks) == 1, "the facade has one `if TYPE_CHECKING:` block"
    found: dict[str, str] = {}
    for node in blocks[0].body:
        assert isinstance(node, ast.ImportFrom), f"only `from … import …` belongs there, not {ast.dump(node)}"
        module = "." * node.level + (node.module or "")
        for alias in node.names:
            name = alias.asname or alias.name
            assert name not in found, f"{name} is imported twice under TYPE_CHECKING"
            found[name] = module
    return found


def _shipyard_imports(path: Path, package: str) -> set[str]:
    """Absolute names of the shipyard modules that the source file ``path`` (in ``package``) imports."""
    parents = package.split(".")
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            # ``from ..x import y`` in a module of shipyard.cli imports shipyard.x
            base = parents[: len(parents) - node.level + 1] if node.level else []
            found.add(".".join([*base, *([node.module] if node.module else [])]))
    return {name for name in found if name == "shipyard" or name.startswith("shipyard.")}


def _fresh(code: str) -> object:
    """What ``code`` prints as JSON, run in a new interpreter right after ``import shipyard``."""
    script = f"import json, shipyard\n{code}"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_all_is_pinned() -> None:
    assert shipyard.__all__ == EXPECTED


def test_error_names_come_from_the_errors_module_alone() -> None:
    exported_errors = [
        name for name in shipyard.__all__
        if isinstance(getattr(shipyard, name), type) and issubclass(getattr(shipyard, name), BaseException)
    ]
    assert exported_errors == sorted(errors.__all__)
    for name in errors.__all__:
        assert getattr(shipyard, name) is getattr(errors, name), name
    assert set(errors.__all__).isdisjoint(shipyard._LAZY), "an error is eager, never in the lazy map"


def test_the_errors_module_exports_every_error_it_defines() -> None:
    defined = {
        name for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, errors.ShipyardError) and value.__module__ == errors.__name__
    }
    assert defined == set(errors.__all__)


def test_type_checking_mirror_agrees_with_the_lazy_map() -> None:
    assert _type_checking_imports() == shipyard._LAZY


def test_all_is_the_lazy_map_plus_the_errors_plus_the_version() -> None:
    assert sorted(shipyard.__all__) == sorted([*shipyard._LAZY, *errors.__all__, "__version__"])
    assert len(set(shipyard.__all__)) == len(shipyard.__all__)


def test_every_name_resolves_and_dir_covers_it() -> None:
    for name in shipyard.__all__:
        assert getattr(shipyard, name) is not None, name
    assert set(shipyard.__all__) <= set(dir(shipyard))
    assert shipyard._SUBMODULES <= set(dir(shipyard))


def test_lazy_names_are_defined_where_the_map_says() -> None:
    for name, module in shipyard._LAZY.items():
        defining = getattr(shipyard, name).__module__
        assert defining.startswith("shipyard" + module), f"{name}: defined in {defining}, mapped to {module}"


def test_a_fresh_import_binds_only_the_errors_the_version_and_plumbing() -> None:
    public = _fresh("print(json.dumps(sorted(n for n in vars(shipyard) if not n.startswith('_'))))")
    assert public == sorted({*errors.__all__, *PLUMBING})
    assert _fresh("print(json.dumps(shipyard.__version__))") == shipyard.__version__


def test_version_is_the_packages_version() -> None:
    from shipyard._core.version import __version__

    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert shipyard.__version__ == __version__ == project["version"]


def test_the_cli_and_run_use_only_public_modules() -> None:
    # Public: ``shipyard`` itself and its subpackages (``shipyard.gates``), never
    # a module inside one (``shipyard.packaging.base_image``, ``shipyard._core``).
    sources = [(path, "shipyard.cli") for path in sorted((SDK / "cli").glob("*.py"))]
    sources.append((SDK / "_interactive.py", "shipyard"))
    for path, package in sources:
        for module in _shipyard_imports(path, package):
            parts = module.split(".")
            public = len(parts) <= 2 and not any(part.startswith("_") for part in parts)
            assert public or module.startswith("shipyard.cli"), f"{path.relative_to(SDK)} imports {module}"
