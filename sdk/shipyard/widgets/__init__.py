"""The JupyterLab panel: live metrics, versions with aliases and gates, and one-click promotion.

Built from ipywidgets 8 and matplotlib (no frontend build). The panel reads
only shipyard's public API, so it shows the same after a kernel restart.
Names are imported on first use: ``import shipyard.widgets`` alone loads
neither ipywidgets nor matplotlib.

Example:
    >>> panel = shipyard.panel("breast-cancer")          # doctest: +SKIP
    >>> panel                                              # doctest: +SKIP
    >>> panel.watch(shipyard.run_async(TrainFlow))         # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._hook import follow_in_notebook, live_view_available

_LAZY = {
    "Panel": "._panel",
    "panel": "._panel",
    "MetricsView": "._metrics",
    "MetricsChart": "._chart",
}

__all__ = ["MetricsChart", "MetricsView", "Panel", "follow_in_notebook", "live_view_available", "panel"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'shipyard.widgets' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from ._chart import MetricsChart
    from ._metrics import MetricsView
    from ._panel import Panel, panel
