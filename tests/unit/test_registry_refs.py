"""Model version references and alias tag names (no registry needed)."""

from __future__ import annotations

import pytest

from shipyard._core.errors import ModelNotFound
from shipyard.registry import ModelVersionRef, alias_tag, parse_ref


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("iris/3", ("iris", "3", None)),
        ("models:/iris/3", ("iris", "3", None)),
        ("iris@champion", ("iris", None, "champion")),
        ("models:/breast-cancer@previous", ("breast-cancer", None, "previous")),
        ("  churn.v2/12 ", ("churn.v2", "12", None)),
    ],
)
def test_parse_ref(ref: str, expected: tuple) -> None:
    assert parse_ref(ref) == expected


@pytest.mark.parametrize("ref", ["iris", "iris/", "iris/three", "models:/", "iris@", "a/b/c"])
def test_bad_refs_are_model_not_found_with_a_hint(ref: str) -> None:
    with pytest.raises(ModelNotFound) as err:
        parse_ref(ref)
    assert "NAME/VERSION" in str(err.value)


def test_ref_uri_and_str() -> None:
    ref = ModelVersionRef("iris", "3", "r", "models:/m-1", ("champion",))
    assert ref.uri == "models:/iris/3" and str(ref) == "iris/3"
    assert alias_tag("champion", "by") == "shipyard.alias.champion.by"
