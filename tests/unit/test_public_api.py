"""The public surface is what we mean it to be."""

from __future__ import annotations

import importlib

import pytest

import shipyard


def test_every_exported_name_resolves() -> None:
    for name in shipyard.__all__:
        assert getattr(shipyard, name) is not None, name


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
