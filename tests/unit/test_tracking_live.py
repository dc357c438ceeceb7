"""Unit tests of the live log: the copy of a run's points that live charts read instead of polling MLflow."""

from __future__ import annotations

import math
import os
from pathlib import Path

from shipyard.tracking._live import LiveLog, LiveTail, remove
from shipyard.tracking._points import MetricPoint

from .test_tracking_buffer import RUN_ID, FakeClient, fill, make_buffer, points  # noqa: F401 - fixture


def test_a_tail_reads_only_what_was_added_since_its_last_read(tmp_path: Path) -> None:
    log = LiveLog(tmp_path / RUN_ID)
    tail = LiveTail.for_run(tmp_path, RUN_ID)
    assert tail is None, "no folder yet: the run logs nowhere on this machine"
    log.write([("loss", 0, 0.5, 1000), ("val/acc", 0, 0.25, 1000)])
    tail = LiveTail.for_run(tmp_path, RUN_ID)
    assert tail is not None
    assert tail.read() == {"loss": [MetricPoint(0, 0.5, 1000)], "val/acc": [MetricPoint(0, 0.25, 1000)]}
    assert tail.read() == {}
    log.write([("loss", 1, 0.4, 1001)])
    assert tail.read() == {"loss": [MetricPoint(1, 0.4, 1001)]}
    log.close()


def test_values_round_trip_exactly_including_nan_and_infinities(tmp_path: Path) -> None:
    values = [0.1 + 0.2, 1e-300, -0.0, math.inf, -math.inf, math.nan, 123456789.123456789]
    log = LiveLog(tmp_path / RUN_ID)
    log.write([("m", i, v, 1000 + i) for i, v in enumerate(values)])
    read = LiveTail(tmp_path / RUN_ID).read()["m"]
    assert [p.step for p in read] == list(range(len(values)))
    for got, want in zip(read, values, strict=True):
        assert (math.isnan(got.value) and math.isnan(want)) or got.value == want


def test_a_line_still_being_written_is_kept_until_its_newline(tmp_path: Path) -> None:
    directory = tmp_path / RUN_ID
    directory.mkdir()
    path = directory / "1-abc.tsv"
    path.write_bytes(b"loss\t0\t0.5\t1000\nloss\t1\t0.")
    tail = LiveTail(directory)
    assert tail.read() == {"loss": [MetricPoint(0, 0.5, 1000)]}
    with open(path, "ab") as fh:
        fh.write(b"25\t1001\n")
    assert tail.read() == {"loss": [MetricPoint(1, 0.25, 1001)]}


def test_every_logging_process_has_its_own_file_and_the_tail_reads_them_all(tmp_path: Path) -> None:
    first, second = LiveLog(tmp_path / RUN_ID), LiveLog(tmp_path / RUN_ID)
    first.write([("loss", 0, 1.0, 1000)])
    second.write([("loss", 5, 2.0, 2000)])
    assert len(os.listdir(tmp_path / RUN_ID)) == 2
    added = LiveTail(tmp_path / RUN_ID).read()
    assert sorted(added["loss"], key=lambda p: p.step) == [MetricPoint(0, 1.0, 1000), MetricPoint(5, 2.0, 2000)]


def test_a_removed_log_reads_as_none_so_views_turn_to_mlflow(tmp_path: Path) -> None:
    log = LiveLog(tmp_path / RUN_ID)
    log.write([("loss", 0, 1.0, 1000)])
    tail = LiveTail(tmp_path / RUN_ID)
    assert tail.read()
    remove(tmp_path, RUN_ID)
    assert tail.read() is None
    log.write([("loss", 1, 2.0, 1001)])  # a writer whose folder is gone does not raise
    log.close()


def test_a_log_that_cannot_be_written_never_stops_the_writer(tmp_path: Path) -> None:
    blocker = tmp_path / "live"
    blocker.write_text("a file where the folder should be")
    log = LiveLog(blocker / RUN_ID)
    log.write([("loss", 0, 1.0, 1000)])
    assert log.broken


def test_the_buffer_copies_sent_and_spooled_points_to_the_live_log(make_buffer, tmp_path: Path) -> None:  # noqa: F811
    live_dir = tmp_path / "live"
    sent = make_buffer(FakeClient())
    sent.live = LiveLog(live_dir / RUN_ID)
    fill(sent, points(5))
    sent.flush()
    failing = make_buffer(FakeClient(fail_with=ConnectionError))
    failing.live = LiveLog(live_dir / RUN_ID)
    fill(failing, points(3, key="val"))
    assert failing.flush(timeout=0.2).spooled_batches == 1
    added = LiveTail(live_dir / RUN_ID).read()
    assert [(p.step, p.value) for p in added["loss"]] == [(i, i / 10) for i in range(5)]
    assert [(p.step, p.value) for p in added["val"]] == [(i, i / 10) for i in range(3)]
