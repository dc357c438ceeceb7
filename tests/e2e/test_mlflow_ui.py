"""What shipyard records, read back in MLflow's own UI: ``mlflow server`` on 127.0.0.1, Debian's chromium.

One workspace per module tracks to a real ``mlflow server`` (sqlite store,
proxied artifacts). The retrain flow runs on the real Metaflow runtime with
its gates; the run is registered and made champion through shipyard's
registry (no image build), and ``shipyard.monitor`` records a monitoring run
on shifted rows. The tests then open MLflow's pages and read them as a person
would: the run page shows the lineage and gate tags and the gate summary, the
model page shows the version with its ``champion`` alias, and the monitoring
run is listed in its experiment.

They skip only when ``/usr/bin/chromium`` is missing and
``SHIPYARD_REQUIRE_BROWSER`` is unset; CI sets it, so a missing browser fails.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import shipyard
from shipyard import registry
from shipyard._core import lineage
from shipyard._core.workspace import reset_workspace
from shipyard.gates import load_report

from tests.browser_support import browser_marks, chromium_page
from tests.integration.conftest import MlflowServer
from tests.monitoring_support import FLOW, SHIFTED_NUMERIC, flow_module

MODEL = "retrain-demo"
UI_TIMEOUT_MS = 30_000

pytestmark = browser_marks(timeout=300)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A flow run tracked to ``mlflow server``, gated, registered as champion, and monitored once."""
    base = tmp_path_factory.mktemp("mlflow-ui")
    server = MlflowServer(base)
    server.start()
    project = base / "project"
    project.mkdir()
    mp = pytest.MonkeyPatch()
    mp.setenv("SHIPYARD_PROJECT_DIR", str(project))
    mp.setenv("SHIPYARD_TRACKING_URI", server.uri)
    mp.setenv("SHIPYARD_AUTHOR", "ada")
    reset_workspace()
    try:
        ws = shipyard.init(project_dir=project, tracking_uri=server.uri)
        result = shipyard.run(FLOW)
        assert result.tags[lineage.GATE_VERDICT] == "pass", result.tags
        version = registry.register(MODEL, result.mlflow_run_id)
        registry.swap_champion(MODEL, version.version, reason="first model, checked in the MLflow UI")
        shifted = flow_module().make_rows(n=600, seed=21, shift=8.0).drop(columns=["target"])
        report = shipyard.monitor(MODEL, data=shifted)
        assert report.verdict == "fail" and SHIFTED_NUMERIC in report.result.drifted_columns, report
        from shipyard.tracking._client import client_for

        client = client_for(ws)
        run = client.get_run(result.mlflow_run_id)
        monitoring = client.get_run(report.run_id)
        gates = load_report(result.mlflow_run_id, workspace=ws)
        yield {
            "server": server,
            "base": base,
            "run": run,
            "version": registry.resolve(f"{MODEL}@champion", workspace=ws),
            "report": report,
            "monitoring": monitoring,
            "gates": gates,
        }
    finally:
        reset_workspace()
        mp.undo()
        server.stop()


@pytest.fixture(scope="module")
def browser_page(recorded: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless chromium with a fresh profile."""
    with chromium_page(tmp_path_factory.mktemp("chromium-profile"), width=1600, height=1200,
                       timeout_ms=UI_TIMEOUT_MS) as pg:
        yield pg


@contextmanager
def _evidence(page: Any, recorded: dict[str, Any], name: str) -> Iterator[None]:
    """On a failure, leave a screenshot and the page's text in the module's tmp dir."""
    try:
        yield
    except BaseException:
        shot = recorded["base"] / f"{name}.png"
        page.screenshot(path=str(shot), full_page=True)
        (recorded["base"] / f"{name}.txt").write_text(page.inner_text("body"))
        print(f"screenshot of the failing page: {shot}")
        raise


@pytest.fixture
def page(browser_page: Any) -> Any:
    return browser_page


def _open(page: Any, url: str, expect: str) -> None:
    """Go to ``url`` and wait until the SPA has drawn ``expect`` (it fetches after the first paint)."""
    page.goto(url)
    page.get_by_text(expect, exact=False).first.wait_for(state="visible")


# MLflow draws a tag as a chip: a key span and a ": value" span, each titled with its whole text
_CHIPS_JS = """() => Object.fromEntries([...document.querySelectorAll('[data-component-type=tag][role=status]')]
  .map(chip => [...chip.querySelectorAll('span[title]')].map(s => s.getAttribute('title')))
  .filter(titles => titles.length >= 1).map(([key, value]) => [key, value ?? '']))"""


def _tag_chips(page: Any) -> dict[str, str]:
    return page.evaluate(_CHIPS_JS)


def test_run_page_shows_lineage_gate_tags_and_the_gate_summary(page: Any, recorded: dict[str, Any]) -> None:
    run = recorded["run"]
    tags = run.data.tags
    url = f"{recorded['server'].uri}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    with _evidence(page, recorded, "run"):
        _open(page, url, lineage.PATHSPEC)
        shown = _tag_chips(page)
        for key in (lineage.PATHSPEC, lineage.SOURCE_SHA256, lineage.FLOW, lineage.data_tag("train", "sha256"),
                    lineage.ENV_LOCK_SHA256, lineage.GATE_VERDICT, lineage.gate_tag("threshold.accuracy"),
                    lineage.gate_tag("champion_challenger")):
            assert shown.get(key) == tags[key], f"{key}: the page shows {shown.get(key)!r}, MLflow has {tags[key]!r}"
        assert shown[lineage.FLOW] == "RetrainFlow" and shown[lineage.GATE_VERDICT] == "pass"
        # the description renders shipyard's gate summary as a table, reasons included
        table = page.locator("table", has_text="champion_challenger").first
        table.wait_for(state="visible")
        cells = [tr.locator("td").all_inner_texts() for tr in table.locator("tbody tr").all()]
        rows = {row[0]: row[1:] for row in cells}
        recorded_gates = {r.name: [r.status, r.message] for r in recorded["gates"].results}
        assert rows == recorded_gates
        assert rows["threshold.accuracy"][0] == tags[lineage.gate_tag("threshold.accuracy")] == "pass"
        assert page.get_by_text("Verdict: PASS").first.is_visible()


def test_model_page_shows_the_version_as_champion(page: Any, recorded: dict[str, Any]) -> None:
    version = recorded["version"]
    with _evidence(page, recorded, "model"):
        _open(page, f"{recorded['server'].uri}/#/models/{MODEL}", "champion")
        table = page.get_by_test_id("model-version-table")
        row = table.get_by_role("row").filter(has_text=f"Version {version.version}")
        assert row.count() == 1
        # the alias chip reads "@ champion" (its text sits in nested spans)
        aliases = {t.replace("\u00a0", " ").strip() for t in row.locator("span").all_inner_texts() if t.startswith("@")}
        assert aliases == {"@ champion"}, aliases
        assert "Gates when registered: pass" in row.inner_text()


def test_version_page_shows_lineage_gates_and_the_monitor_verdict(page: Any, recorded: dict[str, Any]) -> None:
    version = recorded["version"]
    with _evidence(page, recorded, "version"):
        _open(page, f"{recorded['server'].uri}/#/models/{MODEL}/versions/{version.version}", lineage.PATHSPEC)
        assert page.get_by_text(re.compile(r"^@\s+champion$")).first.is_visible()
        # the version page lists tags in a table, values whole
        table = page.locator("table", has_text=lineage.PATHSPEC).first
        shown = {}
        for tr in table.locator("tbody tr").all():
            cells = [c.strip() for c in tr.locator("td").all_inner_texts()]
            if len(cells) >= 2 and cells[0]:
                shown[cells[0]] = cells[1]
        for key in (lineage.PATHSPEC, lineage.SOURCE_SHA256, lineage.GATE_VERDICT,
                    lineage.gate_tag("champion_challenger"), lineage.alias_tag("champion", "reason"),
                    lineage.MONITOR_VERDICT, lineage.MONITOR_RUN):
            assert shown.get(key) == version.tags[key], f"{key}: the page shows {shown.get(key)!r}"
        assert shown[lineage.MONITOR_RUN] == recorded["monitoring"].info.run_id
        assert shown[lineage.alias_tag("champion", "reason")] == "first model, checked in the MLflow UI"


def test_monitoring_run_is_listed_and_readable(page: Any, recorded: dict[str, Any]) -> None:
    run, report = recorded["monitoring"], recorded["report"]
    with _evidence(page, recorded, "monitoring"):
        _open(page, f"{recorded['server'].uri}/#/experiments/{run.info.experiment_id}/runs", run.info.run_name)
        page.get_by_text(run.info.run_name).first.click()
        page.wait_for_url(f"**/runs/{run.info.run_id}**")
        page.get_by_text(lineage.MONITOR_OF_VERSION).first.wait_for(state="visible")
        shown = _tag_chips(page)
        assert shown[lineage.MONITOR_OF_VERSION] == f"{MODEL}/{recorded['version'].version}"
        assert shown[lineage.MONITOR_VERDICT] == report.verdict
        assert SHIFTED_NUMERIC in shown[lineage.MONITOR_DRIFTED]
        assert page.get_by_text(f"{MODEL}/{recorded['version'].version}: {report.verdict.upper()}").first.is_visible()
