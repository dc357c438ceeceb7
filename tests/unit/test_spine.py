"""The spine: each fact about a model version has one owner, and the rest of the code reuses it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shipyard._core import lineage
from shipyard._core.lineage import Lineage
from shipyard._core.workspace import slug

SDK = Path(__file__).resolve().parents[2] / "sdk" / "shipyard"
TAGS = {
    lineage.PATHSPEC: "TrainFlow/17",
    lineage.SOURCE_SHA256: "5" * 64,
    lineage.GIT_COMMIT: "abc123",
    lineage.ENV_LOCK_SHA256: "e" * 64,
    lineage.data_tag("train", "sha256"): "a" * 64,
    lineage.data_tag("holdout", "sha256"): "b" * 64,
    lineage.data_tag("train", "rows"): "120",
    lineage.model_tag("model", "sha256"): "m" * 64,
    lineage.model_tag("model", "uri"): "models:/m-1",
    lineage.MLFLOW_GIT_REPO_URL: "https://git.example/team/churn.git",
    lineage.GATE_VERDICT: "fail",  # the run's; a version has its own
}


def _sources() -> dict[Path, str]:
    return {p: p.read_text(encoding="utf-8") for p in SDK.rglob("*.py")}


def test_lineage_reads_a_run_and_its_version() -> None:
    lin = Lineage.from_tags(TAGS, {lineage.GATE_VERDICT: "overridden"}, name="churn", version="4", run_id="r1")
    assert (lin.model_name, lin.model_version, lin.run_id, lin.pathspec) == ("churn", "4", "r1", "TrainFlow/17")
    assert lin.data == (("holdout", "b" * 64), ("train", "a" * 64))
    assert lin.gate_verdict == "overridden" and lin.model_sha256 == "m" * 64
    assert lin.source == "https://git.example/team/churn.git"
    assert len(lin.data_fingerprint) == 64 and lin.data_fingerprint not in ("a" * 64, "b" * 64)
    assert Lineage.from_tags({lineage.MLFLOW_GIT_COMMIT: "fff"}).git_commit == "fff"  # MLflow's own tag as fallback


@pytest.mark.parametrize("kind", ["labels", "dict"])
def test_lineage_round_trips_through_labels_and_the_handoff_form(kind: str) -> None:
    lin = Lineage.from_tags(TAGS, name="Iris Model", version="2", run_id="r9")
    back = Lineage.from_labels(lin.to_labels()) if kind == "labels" else Lineage.from_dict(lin.to_dict())
    assert back == lin


def test_lineage_tags_are_what_a_version_carries() -> None:
    lin = Lineage.from_tags(TAGS, run_id="r1")
    again = Lineage.from_tags({}, lin.to_tags(), run_id="r1")  # the version alone, its run deleted
    assert again == lin.__class__(**{**lin.__dict__, "source": ""})


def test_one_slug_rule() -> None:
    assert slug("breast-cancer") == "breast-cancer"
    assert slug("Iris Model") != slug("iris-model") != slug("iris_model")
    for name in ("Iris Model", "iris_model", "ÜBER model!", "a" * 80, "---"):
        s = slug(name)
        assert re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", s) and len(s) <= 50, s
        assert slug(name) == s  # stable


def test_tag_names_are_spelled_only_in_the_lineage_module() -> None:
    spelled = re.compile(r"""["']shipyard\.(?:gate|alias|review|retired|model|data|step|metaflow|source|git|env|"""
                         r"""error|managed|flow|mlflow|bento|smoke|promotion)\b[^"']*["']""")
    offenders = [
        f"{path.relative_to(SDK)}: {match.group(0)}"
        for path, text in _sources().items()
        if path.name != "lineage.py"
        for match in spelled.finditer(text)
    ]
    assert offenders == []


def test_model_references_are_parsed_only_by_model_ref() -> None:
    parser = re.compile(r"re\.compile\([^)]*(models:/|\[\^/@\]|0-9a-f\]\{32\})")
    offenders = [str(p.relative_to(SDK)) for p, text in _sources().items() if parser.search(text)]
    assert offenders == ["_core/refs.py"]


def test_slugs_are_made_only_by_the_slug_rule() -> None:
    rule = re.compile(r"re\.sub\(r?[\"']\[\^a-z0-9")
    offenders = [str(p.relative_to(SDK)) for p, text in _sources().items() if rule.search(text)]
    assert offenders == ["_core/workspace.py"]
