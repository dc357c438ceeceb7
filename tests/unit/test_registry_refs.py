"""Model references: the one grammar, its round trip, and the tag names (no registry needed)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from shipyard._core import lineage
from shipyard._core.errors import ModelNotFound
from shipyard._core.refs import ModelRef
from shipyard.registry import ModelVersionRef

RUN_ID = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("iris/3", ModelRef("iris", "3")),
        ("models:/iris/3", ModelRef("iris", "3")),
        ("iris@champion", ModelRef("iris", alias="champion")),
        ("models:/breast-cancer@previous", ModelRef("breast-cancer", alias="previous")),
        ("  churn.v2/12 ", ModelRef("churn.v2", "12")),
        ("Iris Model/2", ModelRef("Iris Model", "2")),
        (RUN_ID, ModelRef(run_id=RUN_ID)),
    ],
)
def test_parse(text: str, expected: ModelRef) -> None:
    assert ModelRef.parse(text) == expected


@pytest.mark.parametrize("text", ["iris/3", "iris@champion", "Iris Model/2", "churn.v2@previous-1", RUN_ID])
def test_str_and_parse_round_trip(text: str) -> None:
    ref = ModelRef.parse(text)
    assert str(ref) == text
    assert ModelRef.parse(str(ref)) == ref
    assert ModelRef.parse(ref.uri.removeprefix("models:/")) == ref if not ref.is_run else ref.uri == f"runs:/{RUN_ID}"


@pytest.mark.parametrize("text", ["iris", "iris/", "iris/three", "models:/", "iris@", "a/b/c", "", "@x", "iris@3x/1"])
def test_bad_refs_are_model_not_found_with_the_grammar(text: str) -> None:
    with pytest.raises(ModelNotFound) as err:
        ModelRef.parse(text)
    assert "NAME/VERSION" in str(err.value) and "run id" in str(err.value)


def test_of_accepts_what_names_a_model() -> None:
    assert ModelRef.of(ModelVersionRef("iris", "3", "r", "models:/m-1")) == ModelRef("iris", "3")
    assert ModelRef.of(SimpleNamespace(mlflow_run_id=RUN_ID)) == ModelRef(run_id=RUN_ID)  # a RunResult
    assert ModelRef.of(SimpleNamespace(name="model", uri="models:/m-1", flavor="sklearn", run_id=RUN_ID)) == ModelRef(
        run_id=RUN_ID
    )  # a LoggedModel
    assert ModelRef.of(SimpleNamespace(name="iris", version=4)) == ModelRef("iris", "4")  # an MLflow ModelVersion
    with pytest.raises(ModelNotFound, match="Cannot tell which model"):
        ModelRef.of(42)


def test_version_ref_uri_and_str() -> None:
    ref = ModelVersionRef("iris", "3", "r", "models:/m-1", ("champion",))
    assert ref.uri == "models:/iris/3" and str(ref) == "iris/3" and ref.ref == ModelRef("iris", "3")
    assert lineage.alias_tag("champion", "by") == "shipyard.alias.champion.by"
