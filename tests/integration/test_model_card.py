"""Model cards from real runs, gates and reviews on a real MLflow sqlite store.

One workspace for the module: a flow's run declares part of its card (what
``@shipyard.track(card=...)`` records when the flow starts) and the rest in a
MODEL_CARD.md beside the flow file; its model is registered, gated (one gate
fails and is overridden), approved and given its reference profile. Feature
names, the declared text and the reasons carry markup that must come out as
text.

Q: Why not run the flow with Metaflow?
A: A Metaflow run costs 10-25 s and other tests run flows; the run here is
   made by the function the ``start`` step's hook calls, with the same card.
"""

from __future__ import annotations

import inspect
import json
import textwrap
from html.parser import HTMLParser
from pathlib import Path

import pytest
import shipyard
from shipyard import registry
from shipyard._core import lineage
from shipyard._core.workspace import reset_workspace
from shipyard.gates import check, override, slice_parity, threshold
from shipyard.packaging.reference import reference_for
from shipyard.tracking import _context, _runs
from shipyard.tracking._client import client_for

MODEL = "card-demo"
HOSTILE = '<script>alert("x")</script>'
FEATURE = '<img src=x onerror=alert(1)>'  # a column name as hostile as a column name can be


def rows(n=400, seed=3):
    """The flow's rows: a feature with a hostile name that decides the target, noise, and a group to slice by."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, n)
    group = rng.choice(["north", "south"], n)
    return pd.DataFrame({FEATURE: x, "noise": rng.normal(0.0, 1.0, n), "group": group,
                         "target": (x + rng.normal(0.0, 0.5, n) > 0).astype(int)})


def train(frame):
    """What the flow's start step does."""
    from sklearn.linear_model import LogisticRegression

    features = [FEATURE, "noise"]
    shipyard.log_dataset(frame, name="train")
    model = LogisticRegression().fit(frame[features], frame["target"])
    shipyard.log_model(model, name="model", input_example=frame[features].head(3))


FLOW = (f"from metaflow import FlowSpec, step\n\nimport shipyard\n\nFEATURE = {FEATURE!r}\n\n\n"
        + inspect.getsource(rows) + "\n\n" + inspect.getsource(train) + textwrap.dedent(
    f'''

    @shipyard.track(card={{"intended_use": "Scoring **test** rows only.", "limitations": {HOSTILE!r} + " on drift"}})
    class CardFlow(FlowSpec):
        @step
        def start(self):
            train(rows())
            self.next(self.end)

        @step
        def end(self):
            pass


    if __name__ == "__main__":
        CardFlow()
    '''
))

DECLARED = {"intended_use": "Scoring **test** rows only.", "limitations": HOSTILE + " on drift"}

MODEL_CARD_MD = textwrap.dedent(
    """\
    # Card demo

    ## Intended use

    Overridden by the declared text.

    ## Ethical considerations

    Decisions about people need a human in the loop. <b onclick="x()">bold</b>
    """
)


class _Parsed(HTMLParser):
    """Every start tag with its attributes, and the text, of an HTML page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    project = tmp_path_factory.mktemp("card-project")
    mp.setenv("SHIPYARD_PROJECT_DIR", str(project))
    mp.setenv("SHIPYARD_AUTHOR", "ada")
    mp.chdir(project)
    reset_workspace()
    ws = shipyard.init(project_dir=project)
    (project / "card_flow.py").write_text(FLOW)
    (project / "MODEL_CARD.md").write_text(MODEL_CARD_MD)
    run_id = _runs.create_flow_run(ws, flow_name="CardFlow", pathspec="CardFlow/1", source_file=project / "card_flow.py",
                                   experiment=None, params={}, card=DECLARED)
    active = _context.attach(ws, run_id)
    try:
        train(rows())
    finally:
        active.close()
        _context.detach(active)
    _runs.finish_run(ws, run_id, "FINISHED")
    version = registry.register(MODEL, run_id)
    holdout = rows(n=300, seed=11)  # the same rule, other rows
    check(str(version), [threshold("accuracy >= 0.6"), threshold("accuracy >= 0.999", name="near_perfect"),
                         slice_parity("group", "accuracy", max_gap=0.5)], holdout)
    override(str(version), gates=["near_perfect"], reason=f"good enough for a pilot {HOSTILE}")
    shipyard.approve(str(version), "parity and latency look right")
    reference_for(MODEL, version.version)  # what packaging freezes: the card summarises it
    yield {"ws": ws, "version": version, "project": project, "run_id": run_id}
    reset_workspace()
    mp.undo()


@pytest.fixture(autouse=True)
def _in_world(_isolated_settings, world, monkeypatch):
    monkeypatch.setenv("SHIPYARD_PROJECT_DIR", str(world["project"]))
    monkeypatch.setenv("SHIPYARD_AUTHOR", "ada")
    reset_workspace()
    shipyard.init(project_dir=world["project"])


def test_the_html_parses_holds_every_section_and_embeds_its_figures(world) -> None:
    card = shipyard.model_card(f"{MODEL}/{world['version'].version}")
    page = _Parsed(card.html)
    headings = [t for t in page.text if t.strip()]
    for section in ("Intended use", "Limitations", "Ethical considerations", "Training data", "Metrics", "Gates",
                    "Overrides", "Attributions", "Approvals", "Image"):
        assert section in headings, section
    images = [attrs["src"] for tag, attrs in page.tags if tag == "img"]
    assert len(images) >= 2 and all(src.startswith("data:image/png;base64,") for src in images)  # metrics, slices
    assert not any(tag in {"link", "script"} or "src" in attrs and not str(attrs["src"]).startswith("data:")
                   for tag, attrs in page.tags), "the page needs no other file"
    text = "".join(page.text)
    assert "no attributions recorded" in text.lower() or "importance" in text
    assert world["version"].run_id in text and "north" in text and "south" in text
    train_sha = lineage.data_fingerprints(client_for(world["ws"]).get_run(world["run_id"]).data.tags)["train"]
    assert train_sha in text and FEATURE in text  # the fingerprint, and the feature in the profile summary
    assert "## Training data" in card.markdown and "| accuracy |" in card.markdown


def test_an_override_and_an_approval_are_shown_with_their_reasons(world) -> None:
    card = shipyard.model_card(f"{MODEL}@challenger")
    assert [o["gates"] for o in card.overrides] == [["near_perfect"]]
    assert card.overrides[0]["by"] == "ada" and card.overrides[0]["reason"].startswith("good enough for a pilot")
    assert [(a["state"], a["by"], a["comment"]) for a in card.approvals] == [
        ("approved", "ada", "parity and latency look right")]
    assert card.gates["verdict"] == "overridden"
    text = "".join(_Parsed(card.html).text)
    assert "good enough for a pilot" in text and "parity and latency look right" in text
    assert "parity and latency look right" in card.markdown and "good enough for a pilot" in card.markdown


def test_declared_sections_and_the_model_card_file_are_used_as_written(world) -> None:
    card = shipyard.model_card(f"{MODEL}/{world['version'].version}")
    by_title = {s.title: s for s in card.sections}
    assert list(by_title)[:2] == ["Intended use", "Limitations"]
    assert by_title["Intended use"].text == "Scoring **test** rows only." and by_title["Intended use"].source == "declared"
    ethics = by_title["Ethical considerations"]
    assert ethics.source == "MODEL_CARD.md" and ethics.text.startswith("Decisions about people need a human")
    assert "Card demo" not in by_title  # the file's own title line is not a section
    assert "<strong>test</strong>" in card.html  # the declared Markdown is rendered
    assert "## Ethical considerations\n\nDecisions about people" in card.markdown


def test_hostile_names_descriptions_and_reasons_are_escaped(world) -> None:
    card = shipyard.model_card(f"{MODEL}/{world['version'].version}")
    page = _Parsed(card.html)
    assert not any(tag == "script" for tag, _ in page.tags)
    assert not any(any(k.startswith("on") for k in attrs) for _, attrs in page.tags), "no event handler attribute"
    assert HOSTILE not in card.html and FEATURE not in card.html
    assert "<b onclick" not in card.html and "&lt;b onclick" in card.html, "raw HTML in MODEL_CARD.md is text"
    text = "".join(page.text)
    assert HOSTILE in text and FEATURE in text  # shown, as text
    assert "<script>" not in card.markdown.replace(HOSTILE + " on drift", "")  # only the declared text, as written


def test_a_bundle_keeps_the_card_through_a_rewrite(world, tmp_path: Path) -> None:
    from dataclasses import replace

    from shipyard.deploy.handoff import HandoffSpec, read_bundle, write_bundle
    from shipyard.promotion import _card

    version = world["version"]
    spec = HandoffSpec(model_name=MODEL, version=version.version, image_repository="registry.local/shipyard/card",
                       image_digest="sha256:" + "ab" * 32, run_as_user=10001,
                       lineage=registry.lineage_of(version), python_packages=(("numpy", "2.4.6"),))
    directory = tmp_path / MODEL / version.version
    card = _card.build(world["ws"], version, spec, bundle_dir=directory)
    bundle = write_bundle(replace(spec, model_card=card.files()), directory)
    assert {"model-card.md", "model-card.html"} <= set(bundle.files)
    assert "model-card.html" in (directory / "README.md").read_text()
    assert 'href="sbom.cdx.json"' in (directory / "model-card.html").read_text()
    assert "sha256:" + "ab" * 32 in (directory / "model-card.md").read_text()
    write_bundle(read_bundle(directory), directory)  # what a rollback does
    assert (directory / "model-card.html").read_text() == card.html


def test_a_card_that_is_not_text_by_section_is_refused_where_the_flow_is_declared() -> None:
    with pytest.raises(shipyard.FlowError, match="section name -> Markdown text"):
        shipyard.track(card={"intended_use": ["a", "list"]})
    assert callable(shipyard.track(card=DECLARED))


def test_the_cli_prints_markdown_and_writes_one_html_page(world, tmp_path: Path) -> None:
    from click.testing import CliRunner
    from shipyard.cli import cli

    ref = f"{MODEL}/{world['version'].version}"
    printed = CliRunner().invoke(cli, ["card", ref])
    assert printed.exit_code == 0, printed.output
    assert printed.output.startswith(f"# Model card: {MODEL} version")
    out = tmp_path / "card.html"
    written = CliRunner().invoke(cli, ["card", ref, "--html", str(out)])
    assert written.exit_code == 0, written.output
    assert out.read_text().startswith("<!DOCTYPE html>")
    missing = CliRunner().invoke(cli, ["card", f"{MODEL}/99"])
    assert missing.exit_code == 2 and "error:" in missing.output


def test_the_panel_shows_the_selected_versions_card(world) -> None:
    panel = shipyard.panel(MODEL)
    try:
        panel._report_button.value = True
        panel._card_button.value = True
        assert panel.details == "card" and panel._report_button.value is False
        shown = panel._details_html.value
        assert f"Model card: {MODEL} version {world['version'].version}" in shown
        assert "good enough for a pilot" in shown and HOSTILE not in shown
        panel._card_button.value = False
        assert panel.details == "" and panel._details_html.value == ""
    finally:
        panel.close()


def test_a_promotion_writes_the_card_into_the_bundle_and_onto_the_run(monitored_image, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from tests.monitoring_support import project_env

    bundle = Path(monitored_image["bundle"])
    html_text = (bundle / "model-card.html").read_text()
    assert "<h2>Image</h2>" in html_text and json.loads((bundle / "handoff.json").read_text())["image"]["digest"] in html_text
    assert (bundle / "model-card.md").read_text().startswith("# Model card:")
    with project_env(monitored_image["project"]):
        ws = shipyard.current_workspace()
        client = MlflowClient(ws.tracking_uri, ws.registry_uri)
        run_id = registry.resolve(f"{monitored_image['model']}/{monitored_image['version']}").run_id
        target = tmp_path / "download"
        target.mkdir()
        local = Path(client.download_artifacts(run_id, lineage.MODEL_CARD_HTML_ARTIFACT, str(target)))
        assert local.read_text() == html_text
        markdown = Path(client.download_artifacts(run_id, lineage.MODEL_CARD_ARTIFACT, str(target)))
        assert markdown.read_text() == (bundle / "model-card.md").read_text()
