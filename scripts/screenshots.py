"""Pictures of the pages a promoted, monitored model has: its model card and its last drift report.

Both pages are the real ones (the handoff bundle's ``model-card.html``, the
``monitoring/drift.html`` artifact of the version's last ``shipyard monitor``
run), opened in headless chromium. Run it after ``make demo``:

    python scripts/screenshots.py [--model breast-cancer] [--out docs/img]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import shipyard
from shipyard import MissingDependency, ModelNotFound, MonitoringError, ShipyardError

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--no-first-run"]
WIDTH = 1200
MAX_HEIGHT = 1500  # the top of a long page: what a reader needs to recognise it
# Where each picture starts: the model card's first sections are the flow's own text and the long
# reference-profile table; its metrics, gates and attributions are what shipyard adds.
START = {"model-card": "h2:text-is('Metrics')", "drift-report": "body"}


def pages(model: str, tmp: Path) -> dict[str, Path]:
    """``model-card`` and ``drift-report`` HTML files of ``model``'s champion."""
    from shipyard._core import lineage
    from shipyard.production._monitor import DRIFT_HTML
    from shipyard.registry import resolve
    from shipyard.tracking._client import client_for

    ws = shipyard.current_workspace()
    version = resolve(f"{model}@champion")
    card = ws.bundle_dir(model, version.version) / "model-card.html"
    if not card.is_file():
        raise ModelNotFound(
            f"{model} v{version.version} has no model card in its bundle ({card}).",
            hint="Promote it first (make demo).",
        )
    run_id = version.tags.get(lineage.MONITOR_RUN)
    if not run_id:
        raise MonitoringError(
            f"{model} v{version.version} was never monitored, so it has no drift report.",
            hint=f"Run shipyard monitor {model}/{version.version} (make demo does).",
        )
    report = Path(client_for(ws).download_artifacts(run_id, DRIFT_HTML, str(tmp)))
    return {"model-card": card, "drift-report": report}


def shoot(files: dict[str, Path], out: Path) -> list[Path]:
    if not CHROMIUM.exists():
        raise MissingDependency(f"{CHROMIUM} is missing.", hint="apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise MissingDependency("The playwright package is missing.", hint="pip install playwright") from exc

    out.mkdir(parents=True, exist_ok=True)
    written = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": WIDTH, "height": 900}, device_scale_factor=1)
            for name, path in files.items():
                page.goto(path.resolve().as_uri(), wait_until="load")
                page.wait_for_timeout(300)  # fonts and images settle
                top = max(0, int(page.locator(START[name]).first.bounding_box()["y"]) - 16)
                total = int(page.evaluate("document.documentElement.scrollHeight"))
                height = min(total - top, MAX_HEIGHT)
                target = out / f"{name}.png"
                page.screenshot(path=str(target), full_page=True, clip={"x": 0, "y": top, "width": WIDTH, "height": height})
                written.append(target)
        finally:
            browser.close()
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="breast-cancer")
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    args = parser.parse_args()
    try:
        with tempfile.TemporaryDirectory(prefix="shipyard-pages-") as tmp:
            for path in shoot(pages(args.model, Path(tmp)), args.out):
                print(path)
    except ShipyardError as exc:
        print(f"screenshots failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
