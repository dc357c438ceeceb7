"""How the public surface behaves: one error tree, clear messages, no silent attributes.

Which names are public is pinned in ``test_exported_members.py``.
"""

from __future__ import annotations

import importlib

import pytest

import shipyard


def test_errors_form_one_tree() -> None:
    errors = importlib.import_module("shipyard._core.errors")
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, shipyard.ShipyardError), name
        assert getattr(shipyard, name) is cls


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        shipyard.nope  # noqa: B018


def test_error_message_carries_the_hint() -> None:
    err = shipyard.ConfigError("Something broke.", hint="Do this instead.")
    assert str(err) == "Something broke.\n  → Do this instead."
    assert err.hint == "Do this instead."


def test_model_ref_and_lineage_are_the_spine_types() -> None:
    from shipyard._core.lineage import Lineage
    from shipyard._core.refs import ModelRef

    assert shipyard.ModelRef is ModelRef and shipyard.Lineage is Lineage
    assert str(shipyard.ModelRef.parse("models:/iris/3")) == "iris/3"
    assert shipyard.Lineage.from_tags({}, run_id="r1").run_id == "r1"
