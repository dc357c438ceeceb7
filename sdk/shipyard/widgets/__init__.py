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

from typing import TYPE_CHECKING

from .._core.lazy import lazy_attributes
from ._hook import follow_in_notebook, live_view_available  # cheap: imports neither ipywidgets nor matplotlib

_LAZY: dict[str, str] = {
    "Panel": "._panel",
    "panel": "._panel",
    "MetricsView": "._metrics",
    "MetricsChart": "._chart",
}

__all__ = sorted([*_LAZY, "follow_in_notebook", "live_view_available"])


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)


if TYPE_CHECKING:
    from ._chart import MetricsChart
    from ._metrics import MetricsView
    from ._panel import Panel, panel
