"""Debian's chromium through Playwright, for tests of pages: the skip-or-fail rule and one way to launch it.

Tests skip only when ``/usr/bin/chromium`` is missing and ``SHIPYARD_REQUIRE_BROWSER``
is unset; CI sets it, so a missing browser fails. Browsers cannot be downloaded
here (``playwright install``), so the PyPI ``playwright`` package drives the
system's chromium.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
REQUIRE_BROWSER = bool(os.environ.get("SHIPYARD_REQUIRE_BROWSER"))  # read at import, before fixtures clear SHIPYARD_*
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def browser_marks(timeout: int) -> list[Any]:
    """A browser test module's ``pytestmark``: marked, bounded, skipped only as the rule above says."""
    marks = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(timeout)]
    if not CHROMIUM.exists() and not REQUIRE_BROWSER:
        marks.append(pytest.mark.skip(reason="/usr/bin/chromium is missing (apt-get install chromium)"))
    return marks


@contextmanager
def chromium_page(profile: Path, *, width: int, height: int, timeout_ms: int) -> Iterator[Any]:
    """A page of headless chromium with a fresh profile in ``profile``; closed on exit."""
    if not CHROMIUM.exists():
        pytest.fail("SHIPYARD_REQUIRE_BROWSER is set but /usr/bin/chromium is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=ARGS,
            viewport={"width": width, "height": height},
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(timeout_ms)
            yield page
        finally:
            context.close()
