"""Unit tests of the metric buffer, its disk spool and the replay of spooled batches.

The MLflow client is replaced by a fake that records every ``log_batch`` call
and can be told to fail, transiently or for good. Points are the buffer's own
records, ``(key, step, value, timestamp)`` (:data:`shipyard.tracking._points.Point`).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from shipyard import TrackingError
from shipyard.tracking._buffer import MetricBuffer, Spool, replay
from shipyard.tracking._points import Point

RUN_ID = "0123456789abcdef0123456789abcdef"


class Refused(Exception):
    """What MLflow raises for data it will never accept."""

    error_code = "INVALID_PARAMETER_VALUE"


class FakeClient:
    """Records each log_batch call as (metrics, params, tags) tuples, metrics as Points; fails while told to."""

    def __init__(self, fail_with: type[Exception] | None = None) -> None:
        self.fail_with = fail_with
        self.calls: list[tuple[list[tuple], list[tuple], list[tuple]]] = []
        self.attempts = 0
        self._lock = threading.Lock()

    def log_batch(self, run_id, metrics=(), params=(), tags=(), synchronous=True):
        with self._lock:
            self.attempts += 1
            assert run_id == RUN_ID
            if self.fail_with is not None:
                raise self.fail_with("tracker says no")
            self.calls.append(
                (
                    [(m.key, m.step, m.value, m.timestamp) for m in metrics],
                    [(p.key, p.value) for p in params],
                    [(t.key, t.value) for t in tags],
                )
            )

    @property
    def sent_points(self) -> list[tuple]:
        return [point for metrics, _, _ in self.calls for point in metrics]


def points(n: int, key: str = "loss") -> list[Point]:
    return [(key, i, float(i) / 10, 1_700_000_000_000 + i) for i in range(n)]


def on_disk(spool: Spool) -> list[tuple]:
    return [point for path in spool.pending() for point in Spool.read(path)[0]]


@pytest.fixture
def make_buffer(tmp_path: Path):
    buffers: list[MetricBuffer] = []

    def make(client: FakeClient, *, batch_size: int = 1000, flush_interval: float = 60.0) -> MetricBuffer:
        buffer = MetricBuffer(
            lambda: client, RUN_ID, tmp_path / "spool", flush_interval=flush_interval, batch_size=batch_size
        )
        buffers.append(buffer)
        return buffer

    yield make
    for buffer in buffers:  # stop every writer thread, whatever the test left behind
        buffer._closed = True
        buffer._wake.set()
        buffer._thread.join(timeout=5)


def fill(buffer: MetricBuffer, pts: list[Point]) -> None:
    for key, step, value, ts in pts:
        buffer.put(key, step, value, ts)


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def test_flush_sends_batches_no_larger_than_batch_size_in_order(make_buffer):
    client = FakeClient()
    buffer = make_buffer(client, batch_size=3)
    pts = points(10)
    fill(buffer, pts)
    buffer.put_params({"lr": "0.1"})
    buffer.put_tags({"stage": "train"})

    result = buffer.flush(timeout=5)

    assert result.sent == 10 and result.spooled_batches == 0
    assert [len(metrics) for metrics, _, _ in client.calls] == [3, 3, 3, 1]
    assert client.sent_points == pts
    assert [p for _, params, _ in client.calls for p in params] == [("lr", "0.1")]
    assert [t for _, _, tags in client.calls for t in tags] == [("stage", "train")]
    assert buffer.pending == 0
    assert buffer.spool.pending() == []


def test_background_writer_sends_without_flush(make_buffer):
    client = FakeClient()
    buffer = make_buffer(client, batch_size=4, flush_interval=0.01)
    pts = points(9)
    fill(buffer, pts)

    wait_until(lambda: len(client.sent_points) == 9)

    assert client.sent_points == pts
    assert all(len(metrics) <= 4 for metrics, _, _ in client.calls)


def test_failing_client_spools_every_point_to_disk(make_buffer):
    client = FakeClient(fail_with=ConnectionError)
    buffer = make_buffer(client, batch_size=4, flush_interval=0.01)
    pts = points(10)
    fill(buffer, pts)
    buffer.put_params({"depth": "4"})

    # the background writer fails, then moves the batch and the rest of the queue to disk
    wait_until(lambda: buffer.pending == 0 and len(on_disk(buffer.spool)) == 10)

    assert client.calls == []
    assert client.attempts >= 1
    assert isinstance(buffer.last_error, ConnectionError)
    assert on_disk(buffer.spool) == pts
    assert all(len(Spool.read(path)[0]) <= 4 for path in buffer.spool.pending())
    params = [p for path in buffer.spool.pending() for p in Spool.read(path)[1]]
    assert params == [("depth", "4")]
    # no half-written files are left next to the batches
    assert [p.name for p in buffer.spool.directory.iterdir() if p.name.startswith(".")] == []


def test_replay_sends_each_spooled_batch_once_in_order_and_deletes_it(tmp_path: Path):
    spool = Spool(tmp_path / "spool" / RUN_ID)
    batches = [points(3, "a"), points(2, "b"), points(4, "c")]
    for batch in batches:
        spool.write(batch, [], [])
    spool.write([], [("seed", "7")], [("note", "x")])
    assert len(spool.pending()) == 4

    client = FakeClient()
    sent = replay(client, RUN_ID, spool)

    assert sent == 4
    assert [metrics for metrics, _, _ in client.calls] == [*batches, []]
    assert client.calls[-1][1:] == ([("seed", "7")], [("note", "x")])
    assert spool.pending() == []
    assert list(spool.directory.iterdir()) == []
    # a second replay finds nothing and sends nothing again
    assert replay(client, RUN_ID, spool) == 0
    assert len(client.calls) == 4


def test_replay_stops_at_the_first_failure_and_keeps_the_rest(tmp_path: Path):
    spool = Spool(tmp_path / "spool" / RUN_ID)
    for batch in (points(2, "a"), points(2, "b")):
        spool.write(batch, [], [])

    with pytest.raises(ConnectionError):
        replay(FakeClient(fail_with=ConnectionError), RUN_ID, spool)

    assert on_disk(spool) == points(2, "a") + points(2, "b")


def test_recovered_tracker_gets_spooled_then_queued_points_exactly_once(make_buffer):
    client = FakeClient(fail_with=ConnectionError)
    buffer = make_buffer(client, batch_size=4)
    first = points(6, "loss")
    fill(buffer, first)
    result = buffer.flush(timeout=0)  # tracker down: everything goes to disk
    assert result.sent == 0 and result.spooled_batches == 2
    assert on_disk(buffer.spool) == first

    client.fail_with = None  # the tracker is back
    later = points(3, "acc")
    fill(buffer, later)
    result = buffer.flush(timeout=5)

    assert client.sent_points == first + later  # oldest first, nothing twice
    assert result.sent == 3  # the queued points; the spooled ones went by replay
    assert buffer.spool.pending() == []
    assert buffer.flush(timeout=5).sent == 0
    assert client.sent_points == first + later


def test_flush_with_a_refusing_tracker_raises_and_keeps_the_data(make_buffer):
    client = FakeClient(fail_with=Refused)
    buffer = make_buffer(client, batch_size=5)
    pts = points(7)
    fill(buffer, pts)

    started = time.monotonic()
    with pytest.raises(TrackingError) as raised:
        buffer.flush(timeout=30)

    assert time.monotonic() - started < 5  # a permanent refusal is not retried until the timeout
    assert isinstance(raised.value.__cause__, Refused)
    assert RUN_ID in str(raised.value)
    assert client.calls == []
    assert on_disk(buffer.spool) == pts


def test_flush_timeout_leaves_everything_on_disk(make_buffer):
    client = FakeClient(fail_with=TimeoutError)
    buffer = make_buffer(client, batch_size=4)
    pts = points(10)
    fill(buffer, pts)
    buffer.put_tags({"phase": "eval"})

    started = time.monotonic()
    result = buffer.flush(timeout=0.5)
    elapsed = time.monotonic() - started

    assert 0.2 <= elapsed < 5
    assert client.attempts >= 2  # it retried before giving up
    assert result.sent == 0
    assert result.spooled_batches == len(buffer.spool.pending()) == 3
    assert buffer.pending == 0
    assert on_disk(buffer.spool) == pts
    tags = [t for path in buffer.spool.pending() for t in Spool.read(path)[2]]
    assert tags == [("phase", "eval")]


def test_spool_round_trips_values_exactly(tmp_path: Path):
    spool = Spool(tmp_path / "run")
    pts = [("val/acc", 0, 0.1 + 0.2, 1_700_000_000_123), ("loss", 2**40, float("nan"), 1)]
    path = spool.write(pts, [("k", "v with spaces")], [("t", "ü")])

    read_points, params, tags = Spool.read(path)

    assert read_points[0] == pts[0]
    assert read_points[1][:2] == ("loss", 2**40)
    assert read_points[1][2] != read_points[1][2]  # NaN survives
    assert read_points[1][3] == 1
    assert params == [("k", "v with spaces")]
    assert tags == [("t", "ü")]


def test_a_spool_file_keeps_its_json_keys_so_older_batches_replay(tmp_path: Path):
    """The on-disk format is not the tuple order: a batch spooled by an earlier version reads the same."""
    spool = Spool(tmp_path / "spool" / RUN_ID)
    spool.directory.mkdir(parents=True)
    older = spool.directory / "00000000000000000001-1-000001.jsonl"
    older.write_text(
        json.dumps({"param": "lr", "value": "0.1"}) + "\n"
        + json.dumps({"tag": "stage", "value": "train"}) + "\n"
        + json.dumps({"metric": "loss", "value": 0.5, "ts": 1_700_000_000_000, "step": 7}) + "\n",
        encoding="utf-8",
    )
    written = spool.write([("loss", 8, 0.25, 1_700_000_000_001)], [], [])
    assert [json.loads(line) for line in written.read_text(encoding="utf-8").splitlines()] == [
        {"metric": "loss", "value": 0.25, "ts": 1_700_000_000_001, "step": 8}
    ]

    client = FakeClient()
    assert replay(client, RUN_ID, spool) == 2
    assert client.sent_points == [("loss", 7, 0.5, 1_700_000_000_000), ("loss", 8, 0.25, 1_700_000_000_001)]
    assert client.calls[0][1:] == ([("lr", "0.1")], [("stage", "train")])
