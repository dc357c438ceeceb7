"""Drawing a run's metric history as a small PNG with matplotlib's Agg canvas (no pyplot).

Q: Why PNG bytes instead of an interactive chart?
A: An ``ipywidgets.Image`` needs no frontend extension beyond ipywidgets, renders
   the same in JupyterLab, VS Code and a saved notebook, and costs one small
   message per update.
"""

from __future__ import annotations

import io
from typing import Any

from ..tracking import MetricHistory

_MAX_PANELS = 4
_MAX_POINTS = 500  # per line: beyond this the line is thinned, which a 4-inch chart cannot show anyway
_COLORS = ("#0969da", "#cf222e", "#1a7f37", "#8250df", "#9a6700", "#57606a")


class MetricsChart:
    """Renders :class:`~shipyard.tracking.MetricHistory` snapshots to PNG, reusing one figure.

    Metrics with several points get a line each, grouped into up to four panels
    by their prefix (``train/…``, ``val/…``); single-point metrics (``accuracy``)
    are written in the title.

    Example:
        >>> png = MetricsChart().render(shipyard.metric_history(run_id))   # doctest: +SKIP
    """

    def __init__(self, width: float = 7.5, height: float = 2.3, dpi: int = 80) -> None:
        self.width, self.height, self.dpi = width, height, dpi
        self._layout: tuple[tuple[str, ...], ...] | None = None
        self._figure: Any = None
        self._lines: dict[str, Any] = {}
        self._axes: list[Any] = []

    def render(self, history: MetricHistory | None, note: str = "") -> bytes:
        """PNG bytes of ``history`` (or of a placeholder saying ``note`` when there is nothing to draw)."""
        series = {n: p for n, p in (history.metrics if history else {}).items() if len(p) > 1}
        layout = _group(series)
        if layout != self._layout:
            self._build(layout)
        fig = self._figure
        for name, line in self._lines.items():
            points = series[name]
            if len(points) > _MAX_POINTS:
                stride = len(points) // _MAX_POINTS + 1
                points = points[::stride] + (points[-1],)
            line.set_data([p.step for p in points], [p.value for p in points])
        for ax in self._axes:
            ax.relim()
            ax.autoscale_view()
        fig.suptitle(_title(history, note), fontsize=9, x=0.01, ha="left")
        if not layout:
            fig.axes[0].set_axis_off()
        buf = io.BytesIO()
        fig.canvas.print_png(buf)
        return buf.getvalue()

    def _build(self, layout: tuple[tuple[str, ...], ...]) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(self.width, self.height), dpi=self.dpi, )
        fig.subplots_adjust(left=0.06, right=0.99, bottom=0.2, top=0.8, wspace=0.18)
        FigureCanvasAgg(fig)
        self._lines, self._axes = {}, []
        axes = fig.subplots(1, max(1, len(layout)), squeeze=False)[0]
        for ax, names in zip(axes, layout, strict=False):
            for i, name in enumerate(names):
                (self._lines[name],) = ax.plot([], [], color=_COLORS[i % len(_COLORS)], lw=1.4, label=name)
            ax.tick_params(labelsize=7)
            ax.locator_params(nbins=4)  # every tick label is a text layout: few ticks keep a redraw cheap
            ax.grid(alpha=0.3)
            # names in the title, coloured like their lines: cheaper to draw than a legend
            ax.set_title("  ".join(names), fontsize=8, loc="left", color=_COLORS[0] if len(names) == 1 else "black")
            self._axes.append(ax)
        self._figure, self._layout = fig, layout


def _group(series: dict[str, Any]) -> tuple[tuple[str, ...], ...]:
    groups: dict[str, list[str]] = {}
    for name in sorted(series):
        groups.setdefault(name.split("/", 1)[0] if "/" in name else "", []).append(name)
    return tuple(tuple(names) for _, names in sorted(groups.items()))[:_MAX_PANELS]


def _title(history: MetricHistory | None, note: str) -> str:
    """Single-point metrics (``accuracy=0.97``) and the note; the run and its status are in the caption."""
    if history is None:
        return note or "no run yet"
    singles = ", ".join(f"{n}={p[-1].value:.4g}" for n, p in sorted(history.metrics.items()) if len(p) == 1)
    if not singles and not history.metrics:
        singles = "no metrics logged yet"
    return "   ".join(p for p in (singles, note) if p)
