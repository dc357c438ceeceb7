"""Custom gates stored by value: ``shipyard gates check`` in a process that has the packages, not the source.

The gate function lives in a package of the project (with a helper in a
sibling module and a class), imported from a source folder that the CI
process never sees: the folder is gone before the subprocess starts, its cwd
is elsewhere and PYTHONPATH is unset.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import shipyard
from shipyard import registry
from shipyard.gates import custom, load_report, threshold

from tests.conftest import outside_env

MODEL = "iris-by-value"

CHECKS = {
    "__init__.py": "",
    "helpers.py": '''
        import numpy as np


        class Agreement:
            """Share of predictions equal to the label."""

            def __init__(self, floor):
                self.floor = floor

            def rate(self, predicted, labels):
                return float(np.mean(np.asarray(predicted) == np.asarray(labels)))
        ''',
    "rules.py": '''
        from .helpers import Agreement

        FLOOR = 0.9


        def agrees_with_labels(ctx):
            rate = Agreement(FLOOR).rate(ctx.predict(), ctx.y)
            return rate >= FLOOR, f"agreement {rate:.3f} on {len(ctx.y)} rows"
        ''',
}


def _ci_env(project: Path) -> dict[str, str]:
    env = outside_env()
    env.pop("PYTHONPATH", None)
    env["SHIPYARD_PROJECT_DIR"] = str(project)
    return env


def _in_ci(project: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], env=_ci_env(project), cwd=cwd, capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def iris_version(workspace):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    X, y = load_iris(return_X_y=True, as_frame=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.4, random_state=0, stratify=y)
    with shipyard.start_run("by-value") as run:
        model = LogisticRegression(max_iter=500).fit(X_train, y_train)
        shipyard.log_model(model, name="model", input_example=X_train.iloc[:3])
    version = registry.register(MODEL, run.run_id)
    return version, X_test.assign(target=y_test.to_numpy())


def test_gates_check_runs_a_project_gate_where_the_project_source_is_absent(
    iris_version, project, tmp_path, monkeypatch
):
    version, holdout = iris_version
    source = tmp_path / "src"
    package = source / "project_checks"
    package.mkdir(parents=True)
    for name, text in CHECKS.items():
        (package / name).write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(source))
    from project_checks.rules import agrees_with_labels

    report = shipyard.check(str(version), [custom(agrees_with_labels), threshold("accuracy >= 0.8")], holdout)
    assert report.verdict == "pass", report.summary()
    stored = next(s for s in report.specs if s["kind"] == "custom")["fn"]
    assert stored["by_value"] == ["project_checks"]
    assert "def agrees_with_labels(ctx):" in stored["source"]
    assert stored["requires"]["numpy"].startswith("numpy==")

    # CI: the packages are installed, the project's source is not
    shutil.rmtree(source)
    for name in [m for m in sys.modules if m == "project_checks" or m.startswith("project_checks.")]:
        monkeypatch.delitem(sys.modules, name)
    elsewhere = tmp_path / "ci-job"
    elsewhere.mkdir()
    probe = _in_ci(project, elsewhere, "-c", "import sys, project_checks; print(sys.path)")
    assert probe.returncode != 0 and "No module named 'project_checks'" in probe.stderr
    path = _in_ci(project, elsewhere, "-c", "import json, sys; print(json.dumps(sys.path))")
    assert str(project) not in json.loads(path.stdout) and str(source) not in json.loads(path.stdout)

    ci = _in_ci(project, elsewhere, "-m", "shipyard.cli", "gates", "check", str(version), "--json")
    assert ci.returncode == 0, ci.stdout + ci.stderr
    rechecked = json.loads(ci.stdout)
    assert rechecked["verdict"] == "pass"
    by_name = {r["name"]: r for r in rechecked["results"]}
    assert by_name["custom.agrees_with_labels"]["status"] == "pass"
    assert by_name["custom.agrees_with_labels"]["message"] == report["custom.agrees_with_labels"].message


def test_a_gate_that_needs_a_missing_distribution_says_which_module_and_how_to_install_it(
    iris_version, project, tmp_path, monkeypatch
):
    from shipyard.gates import _specs

    version, holdout = iris_version
    site = tmp_path / "site"
    (site / "vendor_rules").mkdir(parents=True)
    (site / "vendor_rules" / "__init__.py").write_text("def always(ctx):\n    return True, 'vendor says yes'\n")
    monkeypatch.syspath_prepend(str(site))
    # as if vendor_rules were installed from the distribution vendor-rules: stored by reference
    monkeypatch.setattr(_specs, "_INSTALLED", {**_specs._installed_top_levels(), "vendor_rules": ["vendor-rules"]})
    from vendor_rules import always

    report = shipyard.check(str(version), [custom(always)], holdout)
    assert report.verdict == "pass"
    stored = report.specs[0]["fn"]
    assert stored["by_value"] == [] and stored["requires"]["vendor_rules"] == "vendor-rules"

    elsewhere = tmp_path / "ci-job"
    elsewhere.mkdir()
    ci = _in_ci(project, elsewhere, "-m", "shipyard.cli", "gates", "check", str(version), "--json")
    assert ci.returncode == 1, ci.stdout + ci.stderr
    result = json.loads(ci.stdout)["results"][0]
    assert result["status"] == "error" and result["blocking"]
    assert "needs module 'vendor_rules'" in result["message"]
    assert "pip install 'vendor-rules'" in result["details"]["hint"]
    # the recorded report is untouched by the re-check
    assert load_report(str(version)).verdict == "pass"
