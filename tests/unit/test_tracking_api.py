"""Bad input to the tracking API gets a typed error that says what to do."""

from __future__ import annotations

import pytest

import shipyard
from shipyard.tracking._context import as_number, check_name
from shipyard.tracking._models import detect_flavor


def test_logging_outside_a_run_says_how_to_open_one() -> None:
    for call in (
        lambda: shipyard.log_metric("loss", 0.1),
        lambda: shipyard.log_params(lr=0.1),
        lambda: shipyard.flush(),
    ):
        with pytest.raises(shipyard.NoActiveRun, match="no active shipyard run") as info:
            call()
        assert "@shipyard.track" in str(info.value)
    assert shipyard.active_run_id() is None


@pytest.mark.parametrize("value", ["0.5", b"1", None, True, [1.0], {"a": 1}, object()])
def test_non_numeric_metric_values_are_refused(value: object) -> None:
    with pytest.raises(shipyard.InvalidMetric, match="'loss'"):
        as_number("loss", value)


def test_numbers_of_all_kinds_are_accepted() -> None:
    import numpy as np

    assert as_number("m", 3) == 3.0
    assert as_number("m", np.float32(0.5)) == 0.5
    assert as_number("m", np.int64(7)) == 7.0
    assert as_number("m", float("nan")) != as_number("m", float("nan"))  # NaN is a number MLflow stores


@pytest.mark.parametrize("name", ["", "a" * 251, "../escape", "/abs", "bad\nname", 3])
def test_invalid_metric_names_are_refused(name: object) -> None:
    with pytest.raises(shipyard.InvalidMetric, match="not valid"):
        check_name(name)


def test_flavor_detection() -> None:
    from sklearn.linear_model import LogisticRegression

    class Custom:
        def predict(self, x):
            return x

    assert detect_flavor(LogisticRegression()) == "sklearn"
    assert detect_flavor(Custom()) == "pyfunc"


def test_track_refuses_what_it_cannot_decorate() -> None:
    with pytest.raises(shipyard.FlowError, match="decorates a FlowSpec class or a @step"):
        shipyard.track(42)
