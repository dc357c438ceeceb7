"""Notebook 02 runs in a real Jupyter kernel; its report, aliases and audit log are then checked
with tools that do not share code with shipyard: html.parser and the MLflow client."""

from __future__ import annotations

import base64
import json
import os
from html.parser import HTMLParser
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "02_champion_challenger.ipynb"
MODEL = "breast-cancer"


class _Figures(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.svgs = 0
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append(dict(attrs).get("src") or "")
        elif tag == "svg":
            self.svgs += 1

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.fixture
def executed(project: Path, monkeypatch: pytest.MonkeyPatch):
    import nbformat
    from nbclient import NotebookClient

    sdk = str(REPO / "sdk")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [sdk, os.environ.get("PYTHONPATH")])))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    ).execute()
    return nb


def _outputs(nb) -> str:
    text = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                text.append(out["text"])
            elif "data" in out:
                text.append(out["data"].get("text/plain", ""))
                text.append(out["data"].get("text/html", ""))
    return "\n".join(text)


def test_notebook_02_blocks_the_worse_challenger_and_crowns_the_better(executed, project: Path):
    from mlflow.tracking import MlflowClient

    workspace = project / ".shipyard"
    assert (workspace / "mlflow.db").is_file(), "the notebook must write into SHIPYARD_PROJECT_DIR"
    output = _outputs(executed)
    assert "worse by" in output and "more than the tolerance 0.01" in output
    assert "dtype str, expected float64" in output and "null rate" in output
    assert "gap" in output and "exceeds the bound 0.1" in output
    assert "<img" in output  # the reports rendered inline
    for rechecked in ("'breast-cancer/1': 'pass'", "'breast-cancer/2': 'fail'", "'breast-cancer/3': 'pass'"):
        assert rechecked in output  # the re-run from the record agrees with the notebook

    uri = f"sqlite:///{workspace / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    versions = {str(v.version): v for v in client.search_model_versions(f"name = '{MODEL}'")}
    assert len(versions) == 3
    champion = client.get_model_version_by_alias(MODEL, "champion")
    previous = client.get_model_version_by_alias(MODEL, "previous")
    assert str(champion.version) == "3" and str(previous.version) == "1"
    assert champion.tags["shipyard.gate.verdict"] == "pass"
    assert client.get_model_version(MODEL, "2").tags["shipyard.gate.verdict"] == "fail"

    # the better model is the champion: its recorded holdout accuracy beats the first model's
    def recorded(version: str) -> dict:
        local = client.download_artifacts(versions[version].run_id, "shipyard/gates/report.json", str(project))
        return json.loads(Path(local).read_text())

    beaten = recorded("3")["results"][0]["details"]["metrics"]["accuracy"]
    assert beaten["candidate"] > beaten["champion"]

    # the HTML report of the blocked challenger opens in a browser-free parser and holds the figure
    html_path = client.download_artifacts(versions["2"].run_id, "shipyard/gates/report.html", str(project / "html"))
    parser = _Figures()
    parser.feed(Path(html_path).read_text(encoding="utf-8"))
    pngs = [s for s in parser.images if s.startswith("data:image/png;base64,")]
    assert pngs or parser.svgs
    assert base64.b64decode(pngs[0].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    text = " ".join(parser.text)
    assert "champion_challenger" in text and "slice.mean radius" in text and "FAIL" in text

    # one audit line per alias move, in order
    records = [json.loads(line) for line in (workspace / "audit.jsonl").read_text().splitlines() if line.strip()]
    moves = [(r["alias"], r["version"], r["from_version"]) for r in records if r["event"] == "alias.move"]
    assert moves == [
        ("challenger", "1", None),  # register v1
        ("champion", "1", None),  # v1 becomes champion
        ("challenger", None, "1"),  # ... and stops being the challenger
        ("challenger", "2", None),  # register the worse v2
        ("challenger", "3", "2"),  # register the better v3
        ("previous", "1", None),  # swap: the old champion becomes previous
        ("champion", "3", "1"),  # ... v3 becomes champion
        ("challenger", None, "3"),  # ... and stops being the challenger
    ]
    for alias, version, _ in moves:
        if version is not None:
            assert f"shipyard.alias.{alias}.reason" in client.get_model_version(MODEL, version).tags
