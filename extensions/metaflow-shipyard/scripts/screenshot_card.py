"""Draw docs/img/metaflow-card.png: the shipyard card of a real run, rendered by Chromium.

Runs the test suite's carded flow in a throwaway project, reads the card of its
``end`` step with Metaflow's client and photographs it with Playwright.

    python extensions/metaflow-shipyard/scripts/screenshot_card.py [OUT.png] [--chromium PATH]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
FLOW = HERE.parent / "tests" / "flows" / "carded_flow.py"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default=str(REPO / "docs" / "img" / "metaflow-card.png"))
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp, "project")
        project.mkdir()
        shutil.copy(FLOW, project / FLOW.name)
        os.environ["SHIPYARD_PROJECT_DIR"] = str(project)
        os.environ.setdefault("SHIPYARD_MLFLOW_UI_URL", "http://mlflow.example.com")
        os.chdir(project)
        html = card_html(project)
        page = project / "card.html"
        page.write_text(html, encoding="utf-8")
        photograph(page, Path(args.out), args.chromium)
    print(args.out)
    return 0


def card_html(project: Path) -> str:
    import shipyard

    ws = shipyard.init(project_dir=project)
    result = shipyard.run(project / FLOW.name, model_name="iris")
    os.environ.update(ws.child_env())  # the client reads the workspace's Metaflow datastore
    from metaflow.cards import get_cards
    from shipyard.flows._metaflow import run_in_any_namespace

    return get_cards(run_in_any_namespace(result.pathspec)["end"].task, type="shipyard")[0].get()


def photograph(page: Path, out: Path, chromium: str) -> None:
    from playwright.sync_api import sync_playwright

    out.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            tab = browser.new_page(viewport={"width": 900, "height": 600}, device_scale_factor=1)
            tab.goto(page.as_uri())
            tab.screenshot(path=str(out), full_page=True)
        finally:
            browser.close()


if __name__ == "__main__":
    sys.exit(main())
