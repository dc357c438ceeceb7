"""The live chart's drawing: frames must show every point, and most frames must not redraw the axes."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from shipyard.tracking import MetricHistory, MetricPoint
from shipyard.widgets._chart import MetricsChart, _round_up


def _history(steps: int, status: str = "RUNNING") -> MetricHistory:
    return MetricHistory(
        run_id="r1",
        status=status,
        experiment_id="0",
        metrics={
            "train/loss": tuple(MetricPoint(i, 1.0 / (i + 1), i) for i in range(steps)),
            "val/accuracy": tuple(MetricPoint(i, 1.0 - 0.5 / (i + 1), i) for i in range(steps)),
            "accuracy": (MetricPoint(0, 0.97, 0),),
        },
    )


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_frames_are_pngs_of_a_fixed_size() -> None:
    chart = MetricsChart()
    sizes = {_pixels(chart.render(h)).shape for h in (None, _history(1), _history(50), _history(50, "FINISHED"))}
    assert sizes == {(184, 600, 3)}


def test_most_frames_only_paint_the_lines() -> None:
    chart = MetricsChart()
    frames = [chart.render(_history(steps)) for steps in range(10, 2010, 20)]
    assert chart.full_draws <= 2 * 8, "the axes were redrawn for most frames"
    assert len(set(frames)) == len(frames), "a frame did not change when points were added"


def test_a_painted_frame_equals_a_full_draw_of_the_same_view() -> None:
    chart = MetricsChart()
    chart.render(_history(100))
    chart.render(_history(101))
    assert chart.full_draws == 2, "the second frame should have reused the axes"
    for panel in chart._panels:
        painted = np.array(panel.figure.canvas.buffer_rgba())
        for line in panel.lines.values():  # the same view, drawn from scratch with the lines in it
            line.set_animated(False)
        panel.figure.canvas.draw()
        assert np.array_equal(painted, np.asarray(panel.figure.canvas.buffer_rgba()))


def test_the_last_frame_of_a_run_is_fitted_to_the_data() -> None:
    chart = MetricsChart()
    chart.render(_history(300))
    chart.render(_history(300, "FINISHED"))
    for panel in chart._panels:
        x0, x1 = panel.ax.get_xlim()
        assert x1 < 300 * 1.1, "the finished run's chart still has live headroom"


def test_single_value_metrics_and_notes_are_written_above_the_panels() -> None:
    chart = MetricsChart()
    chart.render(_history(20))
    assert chart._strip_text == "accuracy=0.97"
    chart.render(None, "starting …")
    assert chart._strip_text == "starting …"


@pytest.mark.parametrize(("value", "expected"), [(0, 1.0), (1, 1), (1.2, 2), (2.1, 2.5), (3, 5), (7.5, 10), (180, 200),
                                                  (4100, 5000)])
def test_round_numbers_for_the_headroom(value: float, expected: float) -> None:
    assert _round_up(value) == pytest.approx(expected)
