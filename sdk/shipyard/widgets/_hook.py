"""The hook that lets ``shipyard.run`` show a live metrics view while a flow runs in a notebook.

Cheap and optional: outside a Jupyter kernel, or without ipywidgets, the hook
declines (returns None) without importing anything heavy, and the caller runs
the flow as it would anyway.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


def live_view_available() -> bool:
    """True in a Jupyter kernel that can display widgets (ipywidgets is installed).

    Example:
        >>> live_view_available()          # in a plain Python process
        False
    """
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    if shell is None or getattr(shell, "kernel", None) is None:
        return False
    import importlib.util

    return importlib.util.find_spec("ipywidgets") is not None


def follow_in_notebook(start: Callable[[], Any], *, interval: float = 1.0) -> Any | None:
    """Start a flow with ``start()`` and show its metrics live until it ends; None outside a notebook.

    Args:
        start: starts the flow and returns its :class:`~shipyard.FlowRun`
            (e.g. ``lambda: shipyard.run_async(Flow, **params)``); not called when the hook declines.
        interval: seconds between redraws while the flow runs.

    Returns:
        The flow's :class:`~shipyard.RunResult`, or None when no live view can be shown
        (not in a Jupyter kernel) — then ``start`` was not called.

    Raises:
        FlowFailed: as ``shipyard.run`` does; the chart keeps what was logged before the failure.

    Example:
        >>> result = follow_in_notebook(lambda: shipyard.run_async(TrainFlow))   # doctest: +SKIP
    """
    if not live_view_available():
        return None
    from IPython.display import display

    from ._metrics import MetricsView

    view = MetricsView(interval=interval)
    display(view)
    flow_run = start()
    view.watch(flow_run)
    try:
        return flow_run.result()
    finally:
        view.wait(timeout=max(5.0, 5 * interval))
