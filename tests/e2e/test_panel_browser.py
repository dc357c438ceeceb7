"""The panel in a real browser: JupyterLab on 127.0.0.1, Debian's chromium driven by Playwright.

One JupyterLab server and one browser per module. The quickstart notebook is
run from the page ("Run All Cells"); while its background run trains, the test
reads the page's DOM: the metrics chart must be redrawn during the run, the
versions table must list the registered version with its alias, and the gate
chips must show the verdicts MLflow recorded. The second test clicks Promote,
confirms, and waits for every stage and the alias move (needs Docker).

These tests skip only when ``/usr/bin/chromium`` is missing and
``SHIPYARD_REQUIRE_BROWSER`` is unset; CI sets it, so a missing browser fails.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser_support import browser_marks, chromium_page
from tests.conftest import REPO, free_port, outside_env
from tests.docker_support import base_image, docker_engine  # noqa: F401  (fixtures)

SCREENSHOT = REPO / "docs" / "img" / "panel.png"
MODEL = "breast-cancer"
RUN_ALL_TIMEOUT = 240.0

pytestmark = browser_marks(timeout=480)

_STATE_JS = """() => {
  const img = document.querySelector('img.shipyard-metrics-chart');
  const status = document.querySelector('.shipyard-metrics-caption [data-status]');
  const outputs = [...document.querySelectorAll('.jp-OutputArea-output')].map(e => e.innerText);
  return {
    src: img ? img.getAttribute('src') : null,
    status: status ? status.dataset.status : null,
    done: outputs.some(t => t.includes('longer run: accuracy')),
    failed: outputs.filter(t => t.includes('Traceback') || t.includes('Error:')).slice(0, 3),
  };
}"""


def _settings_dir(base: Path) -> Path:
    """User settings that keep JupyterLab quiet and every cell in the DOM."""
    settings = base / "lab-settings"
    for plugin, values in {
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
            "fetchNews": "false",
            "checkForUpdates": False,
        },
    }.items():
        path = settings / plugin
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    return settings


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A JupyterLab server on 127.0.0.1 with a token, serving a copy of the notebooks."""
    base = tmp_path_factory.mktemp("panel-lab")
    root, project = base / "notebooks", base / "project"
    shutil.copytree(REPO / "notebooks", root)
    project.mkdir()
    port, token = free_port(), secrets.token_hex(16)
    env = outside_env()
    env.update(
        SHIPYARD_PROJECT_DIR=str(project),
        JUPYTER_CONFIG_DIR=str(base / "jupyter-config"),
        JUPYTER_RUNTIME_DIR=str(base / "jupyter-runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(_settings_dir(base)),
        JUPYTERLAB_WORKSPACES_DIR=str(base / "lab-workspaces"),
    )
    log = (base / "jupyterlab.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True", "--ServerApp.allow_root=True",
        ],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(root),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if server.poll() is not None:
                pytest.fail(f"JupyterLab exited: {(base / 'jupyterlab.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("JupyterLab did not answer within 90 s")
            time.sleep(0.5)
        yield {"url": url, "token": token, "root": root, "project": project, "log": base / "jupyterlab.log"}
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
        log.close()


@pytest.fixture(scope="module")
def page(lab: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Chromium (Debian's, headless, fresh profile) with the quickstart notebook open."""
    with chromium_page(tmp_path_factory.mktemp("chromium-profile"), width=1280, height=1000, timeout_ms=60_000) as pg:
        pg.goto(f"{lab['url']}/lab/tree/01_quickstart.ipynb?token={lab['token']}")
        pg.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
        pg.wait_for_function(
            "() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
            " const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;"
            " return !!k && k.status === 'idle'; }",
            timeout=90_000,
        )
        yield pg


@pytest.fixture(scope="module")
def ran_all(page: Any, lab: dict[str, Any]) -> dict[str, Any]:
    """Run every cell from the page; record what the metrics chart showed while the background run trained."""
    # not awaited: the command's promise settles only when the last cell has run
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    running_srcs: list[str] = []
    timeline: list[tuple[float, Any, Any]] = []  # (seconds, status, src) at every change, for failure messages
    t0 = time.monotonic()
    deadline = time.monotonic() + RUN_ALL_TIMEOUT
    state: dict[str, Any] = {}
    while time.monotonic() < deadline:
        state = page.evaluate(_STATE_JS)
        if state["failed"]:
            pytest.fail(f"a notebook cell failed in the browser: {state['failed']}")
        if not timeline or timeline[-1][1:] != (state["status"], (state["src"] or "")[-8:]):
            timeline.append((round(time.monotonic() - t0, 1), state["status"], (state["src"] or "")[-8:]))
        if state["status"] == "running" and state["src"] and (not running_srcs or running_srcs[-1] != state["src"]):
            running_srcs.append(state["src"])
        if state["done"]:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"the notebook did not finish within {RUN_ALL_TIMEOUT:.0f} s (last state {state})")
    page.wait_for_selector(".shipyard-metrics-caption [data-status='finished']", timeout=30_000)
    return {"running_srcs": running_srcs, "timeline": timeline, "final": page.evaluate(_STATE_JS)}


def _client(project: Path) -> Any:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{project / '.shipyard' / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_panel_shows_live_metrics_versions_and_gates(ran_all: dict[str, Any], page: Any, lab: dict[str, Any]) -> None:
    # the chart was rendered and redrawn while the background run was training
    assert len(ran_all["running_srcs"]) >= 2, ran_all["timeline"]
    assert ran_all["final"]["src"] and ran_all["final"]["src"] not in ran_all["running_srcs"][:1]
    natural = page.evaluate("() => document.querySelector('img.shipyard-metrics-chart').naturalWidth")
    assert natural > 100, "the metrics chart <img> did not decode to an image"

    # the versions table lists the registered version with its alias, as MLflow has it
    client = _client(lab["project"])
    mv = client.get_model_version_by_alias(MODEL, "challenger")
    row = page.locator(f"tr.shipyard-version[data-version='{mv.version}']")
    assert row.count() == 1
    assert row.get_attribute("data-aliases") == "challenger"
    assert "@challenger" in row.inner_text()

    # the gate chips show the verdicts MLflow recorded on the version
    recorded = {
        k.removeprefix("shipyard.gate."): v
        for k, v in mv.tags.items()
        if k.startswith("shipyard.gate.") and k not in {"shipyard.gate.verdict", "shipyard.gate.report"}
    }
    assert recorded == {"threshold.accuracy": "pass", "champion_challenger": "pass"}
    chips = row.locator(".shipyard-chip")
    shown = {chips.nth(i).get_attribute("data-gate"): chips.nth(i).get_attribute("data-status") for i in range(chips.count())}
    assert shown == recorded

    # reasons and the HTML report are one click away
    page.locator(".shipyard-report-button").click()
    page.wait_for_selector(".shipyard-report .shipyard-gate-report", timeout=30_000)
    assert "PASS" in page.locator(".shipyard-report h3").inner_text()
    page.locator(".shipyard-gates-button").click()
    page.wait_for_selector(".shipyard-gate-details li", timeout=30_000)
    assert "threshold 0.9" in page.locator(".shipyard-gate-details").inner_text()

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    panel = page.locator(".shipyard-panel").first
    panel.scroll_into_view_if_needed()
    panel.screenshot(path=str(SCREENSHOT))
    assert SCREENSHOT.stat().st_size > 10_000


@pytest.mark.docker
def test_promote_button_runs_every_stage_and_moves_the_alias(
    ran_all: dict[str, Any], page: Any, lab: dict[str, Any], base_image: Any  # noqa: F811
) -> None:
    client = _client(lab["project"])
    version = client.get_model_version_by_alias(MODEL, "challenger").version
    page.locator(".shipyard-promote").click()
    confirm = page.locator(".shipyard-confirm-box")
    confirm.wait_for(state="visible", timeout=10_000)
    assert f"v{version}" in confirm.inner_text()
    page.locator(".shipyard-confirm").click()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        error = page.locator(".shipyard-promotion-error")
        if error.count():
            pytest.fail(f"the promotion failed in the panel: {error.inner_text()}")
        if page.locator("li.shipyard-stage[data-stage='aliases'][data-state='done']").count():
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"promotion did not finish in 300 s: {page.locator('.shipyard-progress').inner_text()}")
    stages = page.locator("li.shipyard-stage")
    states = {stages.nth(i).get_attribute("data-stage"): stages.nth(i).get_attribute("data-state") for i in range(stages.count())}
    order = list(states)
    assert order[0] == "gates" and order[-1] == "aliases" and {"register", "image", "smoke", "bundle"} <= set(order)
    assert set(states.values()) <= {"done", "reused"}, states
    page.wait_for_selector(f"tr.shipyard-version[data-version='{version}'][data-aliases='champion']", timeout=30_000)
    assert "is now champion" in page.locator(".shipyard-message").inner_text()
    assert client.get_model_version_by_alias(MODEL, "champion").version == version
