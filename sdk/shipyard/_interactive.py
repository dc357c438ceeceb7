"""``shipyard.run`` as users call it: in a Jupyter kernel it shows the run's metrics live.

This sits beside the facade, above the layers: it joins ``flows`` (which
runs the flow) and ``widgets`` (which draws it) without either importing the
other. Outside a kernel it is exactly :func:`shipyard.flows.run`.
"""

from __future__ import annotations

from typing import Any

from .flows import RunResult
from .flows import run as _run_flow
from .flows import run_async
from .widgets import follow_in_notebook  # cheap: declines outside a kernel, draws only inside one


def run(flow: Any, *, show_output: bool = False, live: bool = True, **params: Any) -> RunResult:
    """Run a tracked flow to completion and return what it produced.

    In a notebook the metrics are drawn live below the cell while the flow runs
    (``live=False`` turns that off); the kernel stays responsive.

    Args:
        flow: a ``FlowSpec`` subclass (defined in a notebook cell or a module) or a path to a flow file.
        show_output: stream Metaflow's output while it runs.
        live: in a Jupyter kernel, show a live metrics chart.
        **params: values for the flow's ``Parameter``s.

    Raises:
        FlowFailed: a step raised; carries the step name, the original error and the log tail.
        FlowError: the flow could not be started.

    Example:
        >>> result = shipyard.run(TrainFlow, epochs=20)   # doctest: +SKIP
        >>> result.metrics["accuracy"], result.model_uri   # doctest: +SKIP
    """
    if live:
        result = follow_in_notebook(lambda: run_async(flow, show_output=show_output, **params))
        if result is not None:
            return result
    return _run_flow(flow, show_output=show_output, **params)
