"""The ``shipyard`` card as Metaflow keeps it: a real tracked flow on the local datastore, its cards read back
with ``metaflow.cards.get_cards`` and parsed."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import shipyard

FLOW = Path(__file__).parent / "flows" / "carded_flow.py"
UI = "http://mlflow.example.com:5000"
MODEL = "iris-card"


class Node:
    def __init__(self, tag: str, attrs: dict[str, str], parent: Node | None) -> None:
        self.tag, self.attrs, self.parent, self.children, self.texts = tag, attrs, parent, [], []

    @property
    def text(self) -> str:
        return "".join(self.texts + [c.text for c in self.children]).strip()

    def all(self, tag: str | None = None, **attrs: str) -> list[Node]:
        found = []
        for child in self.children:
            if (tag is None or child.tag == tag) and all(child.attrs.get(k.replace("_", "-")) == v
                                                         for k, v in attrs.items()):
                found.append(child)
            found += child.all(tag, **attrs)
        return found

    def one(self, tag: str | None = None, **attrs: str) -> Node:
        found = self.all(tag, **attrs)
        assert len(found) == 1, f"expected one <{tag} {attrs}>, found {len(found)}"
        return found[0]


class Tree(HTMLParser):
    """A page as nested nodes: enough to find elements by tag and attributes, and read their text."""

    VOID = frozenset({"img", "meta", "br", "link", "input", "hr"})

    def __init__(self, page: str) -> None:
        super().__init__()
        self.root = self.node = Node("#root", {}, None)
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs}, self.node)
        self.node.children.append(node)
        if tag not in self.VOID:
            self.node = node

    def handle_endtag(self, tag: str) -> None:
        node = self.node
        while node.parent is not None and node.tag != tag:
            node = node.parent
        if node.parent is not None:
            self.node = node.parent

    def handle_data(self, data: str) -> None:
        self.node.texts.append(data)


def parse(page: str) -> Node:
    return Tree(page).root


@dataclass
class CardedRun:
    result: Any
    cards: dict[str, str]  # step → final card HTML
    data: dict[str, Any]  # step → the last data update Metaflow stored
    runtime_card: str | None  # the card the train step read while it ran
    experiment_id: str
    gate_messages: dict[str, str]


@pytest.fixture(scope="module")
def carded(tmp_path_factory: pytest.TempPathFactory):
    """One run of the carded flow (it watches its own card while training); everything read while it is current."""
    from metaflow.cards import get_cards
    from shipyard._core.workspace import reset_workspace
    from shipyard.flows._metaflow import run_in_any_namespace
    from shipyard.gates import load_report

    project = tmp_path_factory.mktemp("carded") / "project"
    project.mkdir()
    shutil.copy(FLOW, project / FLOW.name)
    with pytest.MonkeyPatch.context() as mp:
        for name in [n for n in os.environ if n.startswith("SHIPYARD_") and not n.startswith("SHIPYARD_REQUIRE_")]:
            mp.delenv(name)
        mp.setenv("SHIPYARD_PROJECT_DIR", str(project))
        mp.setenv("SHIPYARD_MLFLOW_UI_URL", UI)
        mp.chdir(project)
        reset_workspace()
        shipyard.init(project_dir=project)
        result = shipyard.run(project / FLOW.name, watch_card=True, model_name=MODEL)
        run = run_in_any_namespace(result.pathspec)
        found = {step.id: get_cards(step.task, type="shipyard") for step in run}
        assert all(len(cards) == 1 for cards in found.values()), {s: len(c) for s, c in found.items()}
        report = load_report(result.mlflow_run_id)
        carded = CardedRun(
            result=result,
            cards={step: cards[0].get() for step, cards in found.items()},
            data={step: cards[0].get_data() for step, cards in found.items()},
            runtime_card=run["train"].task["runtime_card"].data,
            experiment_id=shipyard.metric_history(result.mlflow_run_id).experiment_id,
            gate_messages={r.name: r.message for r in report.results},
        )
        reset_workspace()
    return carded


def test_the_final_card_shows_charts_gates_versions_and_lineage(carded: CardedRun) -> None:
    from PIL import Image

    page = parse(carded.cards["end"])
    body = page.one("body")
    assert body.attrs["data-final"] == "true"
    assert body.attrs["data-origin"] == "step"  # collected in the step's process and handed to Metaflow
    assert not page.all(id="card-error")
    assert "FINISHED" in page.one("h1").text

    charts = page.one("section", id="metrics").all("img", **{"class": "chart"})
    assert [c.attrs["data-metrics"] for c in charts] == ["train/loss val/accuracy"]
    src = charts[0].attrs["src"]
    assert src.startswith("data:image/png;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
    assert image.format == "PNG" and image.width > 600 and image.height > 150
    rows = {r.attrs["data-metric"]: [td.text for td in r.all("td")] for r in page.all("tr") if "data-metric" in r.attrs}
    assert rows["train/loss"][1:] == ["0.025", "40"] and rows["val/accuracy"][2] == "40"
    assert rows["accuracy"][2] == "1"

    gates = page.one("section", id="gates")
    assert gates.one(id="gate-verdict").text == "pass"  # the failing gate is a warning only
    results = {g.attrs["data-gate"]: g for g in gates.all("tr", **{"class": "gate"})}
    assert {name: g.attrs["data-status"] for name, g in results.items()} == {
        "threshold.val/accuracy": "pass", "threshold.train/loss": "warn"}
    for name, row in results.items():
        assert row.one("td", **{"class": "reason"}).text == carded.gate_messages[name]
    assert "fails train/loss <= 0.001" in carded.gate_messages["threshold.train/loss"]

    version = page.one("section", id="versions").one("tr", **{"class": "version"})
    assert version.attrs["data-version"] == f"{MODEL}/1"
    assert [a.text for a in version.one("td", **{"class": "aliases"}).all("span")] == ["@candidate", "@challenger"]
    assert version.one("a").attrs["href"] == f"{UI}/#/models/{MODEL}/versions/1"

    lineage = page.one("section", id="lineage")
    run_id = carded.result.mlflow_run_id
    assert lineage.one("a", id="mlflow-run").attrs["href"] == f"{UI}/#/experiments/{carded.experiment_id}/runs/{run_id}"
    assert lineage.one("a", id="mlflow-run").text == run_id
    assert lineage.one(id="metaflow-pathspec").text == carded.result.pathspec
    assert f"{carded.result.pathspec}/end/" in lineage.text
    assert lineage.one("span", **{"class": "lineage-version"}).one("a").attrs["href"] == version.one("a").attrs["href"]


def test_each_step_has_its_card_holding_what_was_true_when_it_ended(carded: CardedRun) -> None:
    train = parse(carded.cards["train"])
    # gates are evaluated at the end of train, before its card's data is taken
    assert train.one(id="gate-verdict").text == "pass"
    assert "no version registered from this run yet" in train.one("section", id="versions").text
    start = parse(carded.cards["start"])
    assert "no metrics logged yet" in start.one("section", id="metrics").text
    assert "no gates checked" in start.one("section", id="gates").text
    # the data update Metaflow stored with each final card
    assert carded.data["end"]["reload_token"] == "final"
    assert carded.data["end"]["data"] == {"status": "FINISHED", "points": 81, "verdict": "pass",
                                          "versions": [f"{MODEL}/1"]}


def test_the_card_was_drawn_while_the_step_ran(carded: CardedRun) -> None:
    assert carded.runtime_card is not None, "no card was drawn within 60 s of the train step's first metrics"
    page = parse(carded.runtime_card)
    assert page.one("body").attrs["data-final"] == "false"
    assert "RUNNING" in page.one("h1").text
    rows = {r.attrs["data-metric"]: [td.text for td in r.all("td")] for r in page.all("tr") if "data-metric" in r.attrs}
    assert rows["train/loss"][2] == "20"  # the first burst only: the step had not logged the rest yet
    assert [c.attrs["data-metrics"] for c in page.all("img", **{"class": "chart"})] == ["train/loss val/accuracy"]
    assert "no gates checked" in page.one("section", id="gates").text


PLAIN_FLOW = '''
from metaflow import FlowSpec, step

import shipyard


@shipyard.track
class PlainFlow(FlowSpec):
    @step
    def start(self):
        shipyard.log_metric("loss", 0.5)
        self.decorators = sorted(d.name for d in type(self).start.decorators)
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    PlainFlow()
'''


def test_without_the_extension_a_tracked_flow_runs_with_no_card(workspace, tmp_path: Path, monkeypatch) -> None:
    """Metaflow told to look for extensions elsewhere: no card type, no card decorator, the run as before."""
    from metaflow.cards import get_cards
    from metaflow.plugins.cards.exception import CardNotPresentException
    from shipyard.flows._metaflow import run_in_any_namespace

    flow = workspace.project_dir / "plain_flow.py"
    flow.write_text(PLAIN_FLOW)
    nowhere = tmp_path / "no-extensions"
    nowhere.mkdir()
    monkeypatch.setenv("METAFLOW_EXTENSIONS_SEARCH_DIRS", str(nowhere))  # read by the flow's own processes
    result = shipyard.run(flow)
    assert result.status == "FINISHED"
    assert result.metrics == {"loss": 0.5}
    run = run_in_any_namespace(result.pathspec)
    assert run["start"].task["decorators"].data == []
    with pytest.raises(CardNotPresentException):
        get_cards(run["start"].task, type="shipyard")


def test_metaflow_loads_the_card_type_without_shipyard_mlflow_or_matplotlib() -> None:
    """Every ``import metaflow`` loads the extension's card types: that must stay cheap for flows without shipyard."""
    code = ("import sys, metaflow.plugins as p; "
            "print(json.dumps([[c.type for c in p.CARDS if c.type == 'shipyard'], "
            "sorted(m for m in ('shipyard', 'mlflow', 'matplotlib') if m in sys.modules)]))")
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [["shipyard"], []]
