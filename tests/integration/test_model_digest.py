"""One model digest, read back by readers that share no code with shipyard.

A model is logged by a tracked run and promoted without a registry. The
digest is then computed here with ``hashlib`` over the files in the artifact
store (found with a plain ``MlflowClient``), over the files copied out of the
image (``docker cp``) and with the shell recipe the integrity module documents;
each must equal the run tag and the version tag (read with ``MlflowClient``),
the image label (``docker image inspect``), ``shipyard review`` (the installed
script) and ``handoff.json``. The bundle's image reference must resolve with
``docker image inspect`` to the image the bundle records.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

import shipyard
from shipyard._core.workspace import reset_workspace
from tests.docker_support import base_image, docker_cli, docker_engine, docker_inspect  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(900)]

MODEL = "digest-check"
LABEL = "shipyard.model.sha256"
SKIPPED_AT_TOP = {"registered_model_meta"}


def reference_digest(root: Path) -> str:
    """The documented definition, written out again with nothing but hashlib."""
    rels = []
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if not path.is_file() or "__pycache__" in rel.parts or rel.as_posix() in SKIPPED_AT_TOP:
            continue
        rels.append(rel.as_posix())
    digest = hashlib.sha256()
    for rel in sorted(rels, key=lambda r: r.encode("utf-8", "surrogateescape")):
        content = hashlib.sha256((root / rel).read_bytes()).hexdigest()
        digest.update(rel.encode("utf-8", "surrogateescape") + b"\0" + content.encode() + b"\n")
    return digest.hexdigest()


def shell_recipe_digest(model_dir: Path) -> str:
    """The shell recipe in shipyard.monitoring.integrity's docstring, run by bash in ``model_dir``'s parent."""
    from shipyard.monitoring import integrity

    doc = integrity.__doc__ or ""
    recipe = doc.split("that is::", 1)[1].split("\n\n")[1]
    script = " ".join(line.strip().rstrip("\\") for line in recipe.splitlines())
    assert script.startswith("cd model && "), script
    work = model_dir.parent / "recipe"
    shutil.copytree(model_dir, work / "model")
    out = subprocess.run(["bash", "-c", script], cwd=work, capture_output=True, text=True, check=True)
    return out.stdout.split()[0]


def test_the_definition_on_awkward_trees(tmp_path: Path) -> None:
    """Names that sort differently by part and by byte, nesting, non-ASCII, bytecode and MLflow's download file."""
    from shipyard._core.hashing import model_sha256
    from shipyard.monitoring.integrity import directory_sha256

    root = tmp_path / "model"
    for rel, data in {
        "MLmodel": b"flavors: {}\n",
        "a-b": b"1",
        "a/b": b"2",
        "a.txt": b"",
        "code/pkg/mod.py": b"x = 1\n",
        "données/é.bin": bytes(range(256)),
        "sub/registered_model_meta": b"nested: counted",
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    expected = reference_digest(root)
    assert directory_sha256(root) == model_sha256(root) == expected == shell_recipe_digest(root)

    (root / "registered_model_meta").write_text("model_name: x\n")
    (root / "code" / "pkg" / "__pycache__").mkdir()
    (root / "code" / "pkg" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"\0bytecode")
    assert directory_sha256(root) == expected  # neither is part of the registered model
    (root / "a" / "b").write_bytes(b"3")
    assert directory_sha256(root) != expected
    (root / "a" / "b").write_bytes(b"2")
    (root / "a" / "c").write_bytes(b"")
    assert directory_sha256(root) != expected  # an empty file added counts


def _train_and_check(ws: Any) -> str:
    """A tracked run: a Pipeline with a string category column and a NaN-tolerant imputer, and its gate."""
    import numpy as np
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    from shipyard.gates import threshold

    rng = np.random.default_rng(7)
    n = 400
    X = pd.DataFrame({
        "city": rng.choice(["Zürich", "Lyon", "Porto"], n),
        "rooms": rng.integers(1, 7, n).astype("int64"),
        "area": rng.normal(80, 20, n),
    })
    X.loc[::17, "area"] = np.nan
    y = 1000 * X["rooms"] + X["area"].fillna(80) * 30 + X["city"].map({"Zürich": 900, "Lyon": 100, "Porto": 0})
    model = Pipeline([
        ("prep", ColumnTransformer([
            ("city", OneHotEncoder(handle_unknown="ignore"), ["city"]),
            ("num", make_pipeline(SimpleImputer()), ["rooms", "area"]),
        ])),
        ("ridge", Ridge()),
    ]).fit(X, y)
    rmse = float(np.sqrt(np.mean((model.predict(X) - y) ** 2)))
    with shipyard.start_run("digest-e2e", workspace=ws) as run:
        shipyard.log_metric("rmse", rmse)
        shipyard.log_model(model, name="model", input_example=X.head(5))
    shipyard.check(run.run_id, gates=[threshold("rmse <= 100000")], workspace=ws)
    return run.run_id


def _store_folder(client: Any, name: str, version: str) -> Path:
    """Where the artifact store keeps the registered files, found with MLflow's client alone."""
    source = client.get_model_version(name, version).source
    if source.startswith("models:/"):
        location = client.get_logged_model(source[len("models:/"):]).artifact_location
    else:
        location = source
    parsed = urllib.parse.urlparse(location)
    assert parsed.scheme in ("", "file"), location
    folder = Path(urllib.parse.unquote(parsed.path))
    assert (folder / "MLmodel").is_file(), folder
    return folder


def _files_in_image(reference: str, dst: Path) -> Path:
    created = subprocess.run([docker_cli(), "create", reference], capture_output=True, text=True, check=True)
    container = created.stdout.strip()
    try:
        subprocess.run([docker_cli(), "cp", f"{container}:/opt/bento/src/model", str(dst)], check=True,
                       capture_output=True)
    finally:
        subprocess.run([docker_cli(), "rm", "-f", container], capture_output=True)
    return dst


@pytest.fixture(scope="module")
def promoted(tmp_path_factory: pytest.TempPathFactory, base_image: Any) -> Any:  # noqa: F811
    """One promotion without a registry, shared by this module (an image build dominates its cost)."""
    project = tmp_path_factory.mktemp("digest") / "project"
    project.mkdir()
    reset_workspace()
    try:
        ws = shipyard.init(project_dir=project)
        assert ws.settings.oci_registry is None
        run_id = _train_and_check(ws)
        promotion = shipyard.promote(run_id, model_name=MODEL, workspace=ws)
    finally:
        reset_workspace()
    assert promotion.status == "completed", promotion
    return ws, run_id, promotion


def test_one_digest_everywhere_and_a_bundle_reference_docker_resolves(promoted: Any, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    ws, run_id, promotion = promoted
    client = MlflowClient(tracking_uri=ws.tracking_uri, registry_uri=ws.registry_uri)

    store = _store_folder(client, MODEL, promotion.version)
    expected = reference_digest(store)
    assert shell_recipe_digest(_copy(store, tmp_path / "store" / "model")) == expected

    run_tags = client.get_run(run_id).data.tags
    assert run_tags["shipyard.model.model.sha256"] == expected
    version_tags = client.get_model_version(MODEL, promotion.version).tags
    assert version_tags[LABEL] == expected

    handoff = json.loads((promotion.bundle_path / "handoff.json").read_text())
    assert handoff["lineage"]["model_sha256"] == expected
    reference = handoff["image"]["reference"]
    assert reference == promotion.image
    deployment = (promotion.bundle_path / "base" / "deployment.yaml").read_text()
    assert f"image: {reference}" in deployment

    # the pinned reference resolves, to the image the bundle records, which carries the same digest
    assert docker_inspect(reference, "{{.Id}}") == handoff["image"]["image_id"] == promotion.image_digest
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", promotion.image_digest)
    assert docker_inspect(reference, "{{index .Config.Labels \"%s\"}}" % LABEL) == expected
    assert f"kind load docker-image {reference}" in (promotion.bundle_path / "README.md").read_text()

    # the files inside the image hash the same, and the service checks against that value
    assert reference_digest(_files_in_image(reference, tmp_path / "image-model")) == expected
    service = subprocess.run(
        [docker_cli(), "run", "--rm", "--entrypoint", "sh", reference, "-c", "cat /opt/bento/src/service.py"],
        capture_output=True, text=True, check=True,
    ).stdout
    assert f'MODEL_SHA256 = "{expected}"' in service

    review = subprocess.run(
        [str(Path(sys.executable).with_name("shipyard")), "review", f"{MODEL}/{promotion.version}", "--json"],
        capture_output=True, text=True, timeout=180,
        env={**os.environ, "SHIPYARD_PROJECT_DIR": str(ws.project_dir)},
    )
    assert review.returncode == 0, review.stderr
    shown = json.loads(review.stdout)
    assert shown["lineage"]["model_sha256"] == expected
    assert shown["image"]["reference"] == reference


def test_packaging_refuses_files_that_differ_from_the_recorded_digest(promoted: Any) -> None:
    """Runs last: it changes a file in the shared store."""
    from mlflow.tracking import MlflowClient

    from shipyard.packaging import build_bento

    ws, _, promotion = promoted
    shipyard.init(project_dir=ws.project_dir)
    client = MlflowClient(tracking_uri=ws.tracking_uri, registry_uri=ws.registry_uri)
    store = _store_folder(client, MODEL, promotion.version)
    (store / "requirements.txt").write_text((store / "requirements.txt").read_text() + "\n# changed\n")
    with pytest.raises(shipyard.PackagingError, match="not the model that was registered") as info:
        build_bento(f"{MODEL}/{promotion.version}")
    assert client.get_model_version(MODEL, promotion.version).tags[LABEL] in str(info.value)
    assert info.value.hint


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
