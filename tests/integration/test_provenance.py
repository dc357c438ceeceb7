"""Signed provenance on the session's promoted image, and ``shipyard verify`` against it.

The world is the monitored image's (``tests/monitoring_support.py``): one
flow, one promotion, one image. Promoting it again with a ``provenance_key``
set reuses every stage up to the bundle, whose statement is then signed: no
image is built here.

Q: How is "the image was rebuilt with another digest" made without a build?
A: Another local image (the base image) is tagged under the model image's
   repository with a new tag, and verified against the promoted statement:
   same name, another digest. The promoted tag itself is never moved, so the
   other tests on this image keep running the image they expect.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import shipyard
from shipyard._core import lineage
from shipyard.deploy import provenance

from tests.monitoring_support import project_env

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def signed(monitored_image: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The monitored image's promotion, promoted again with a signing key configured."""
    keys = tmp_path_factory.mktemp("keys")
    key = shipyard.generate_signing_key(keys / "provenance.pem")
    before = os.environ.get("SHIPYARD_PROVENANCE_KEY")
    os.environ["SHIPYARD_PROVENANCE_KEY"] = str(key.private)
    try:
        with project_env(monitored_image["project"]):
            aliases = _aliases(monitored_image["model"])
            promotion = shipyard.promote(monitored_image["run_id"], model_name=monitored_image["model"],
                                         reason="sign the promoted image")
            _restore(monitored_image["model"], aliases)
    finally:
        if before is None:
            os.environ.pop("SHIPYARD_PROVENANCE_KEY", None)
        else:
            os.environ["SHIPYARD_PROVENANCE_KEY"] = before
    yield {**monitored_image, "promotion": promotion, "key": key}


def _client() -> Any:
    from mlflow import MlflowClient

    ws = shipyard.current_workspace()
    return MlflowClient(ws.tracking_uri, ws.registry_uri)


def _aliases(model: str) -> dict[str, str]:
    return dict(_client().get_registered_model(model).aliases)


def _restore(model: str, aliases: dict[str, str]) -> None:
    """Put the aliases back where the session's earlier tests left them (a retraining may have moved the
    champion on; promoting the first version again would make it champion once more)."""
    client = _client()
    for alias in set(_aliases(model)) - set(aliases):
        client.delete_registered_model_alias(model, alias)
    for alias, version in aliases.items():
        client.set_registered_model_alias(model, alias, version)


def _verify(world: dict[str, Any], target: Any, **options: Any) -> provenance.Verification:
    with project_env(world["project"]):
        return shipyard.verify(target, public_key=world["key"].public, **options)


def test_promoting_again_with_a_key_signs_the_bundle_without_rebuilding(signed: dict[str, Any]) -> None:
    stages = {s.name: s for s in signed["promotion"].stages}
    assert stages["image"].reused and stages["smoke"].reused and not stages["bundle"].reused
    bundle = Path(signed["bundle"])
    envelope = provenance.Envelope.from_json((bundle / provenance.ENVELOPE_FILE).read_text())
    assert [k for k, _ in envelope.signatures] == [signed["key"].key_id]
    statement = envelope.statement
    handoff = json.loads((bundle / "handoff.json").read_text())
    assert statement["subject"][0]["digest"]["sha256"] == handoff["image"]["digest"].split(":")[1]
    deps = {d["name"]: d for d in statement["predicate"]["buildDefinition"]["resolvedDependencies"]}
    lin = handoff["lineage"]
    assert deps["flow-source"]["digest"]["sha256"] == lin["source_sha256"]
    assert deps["requirements-lock"]["digest"]["sha256"] == lin["env_lock_sha256"]
    assert {n: d["digest"]["sha256"] for n, d in deps.items() if n.startswith("data/")} == {
        f"data/{n}": sha for n, sha in lin["data_sha256"].items()
    }
    assert deps["base-image"]["digest"]["sha256"]  # the base image the model image's layers start with
    with project_env(signed["project"]):
        ws = shipyard.current_workspace()
        run_id = shipyard.registry.resolve(f"{signed['model']}/{signed['version']}").run_id
        target = Path(signed["project"]) / "downloaded"
        local = Path(shipyard.tracking._client.client_for(ws).download_artifacts(
            run_id, lineage.PROVENANCE_ARTIFACT, str(target)))
        assert local.read_text() == (bundle / provenance.ENVELOPE_FILE).read_text()
        shutil.rmtree(target)


def test_verify_passes_on_the_promoted_bundle_and_image(signed: dict[str, Any]) -> None:
    from click.testing import CliRunner
    from shipyard.cli import cli

    by_bundle = _verify(signed, signed["bundle"])
    assert by_bundle.ok, by_bundle.describe()
    by_image = _verify(signed, signed["image"])  # the statement found from the image's labels
    assert by_image.ok and by_image.model == f"{signed['model']}/{signed['version']}", by_image.describe()
    with project_env(signed["project"]):
        result = CliRunner().invoke(cli, ["verify", str(signed["bundle"]), "--key", str(signed["key"].public)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("verified:")


def test_an_image_rebuilt_under_the_same_name_is_named(signed: dict[str, Any], docker_engine: Any) -> None:
    from shipyard.packaging.base_image import base_image_name

    repository = signed["image"].rpartition(":")[0]
    rebuilt = f"{repository}:rebuilt-{uuid.uuid4().hex[:8]}"
    other = docker_engine.images.get(base_image_name())
    other.tag(rebuilt)
    try:
        found = _verify(signed, rebuilt, statement=Path(signed["bundle"]) / provenance.ENVELOPE_FILE)
    finally:
        docker_engine.images.remove(rebuilt)
    assert [d for d in found.differences if "not the statement's subject" in d], found.describe()
    assert other.id in found.describe() and len(found.differences) == 1, found.describe()


def test_one_changed_byte_of_the_statement_fails_the_signature(signed: dict[str, Any], tmp_path: Path) -> None:
    from click.testing import CliRunner
    from shipyard.cli import cli

    copy = tmp_path / "bundle"
    shutil.copytree(signed["bundle"], copy)
    doc = json.loads((copy / provenance.ENVELOPE_FILE).read_text())
    payload = bytearray(base64.b64decode(doc["payload"]))
    at = payload.index(b'"pass"')  # the gate verdict, flipped by one byte to a value nobody signed
    payload[at + 1 : at + 2] = b"P"
    doc["payload"] = base64.b64encode(bytes(payload)).decode()
    (copy / provenance.ENVELOPE_FILE).write_text(json.dumps(doc) + "\n")
    found = _verify(signed, copy)
    assert any("signature does not hold" in d for d in found.differences), found.describe()
    with project_env(signed["project"]):
        result = CliRunner().invoke(cli, ["verify", str(copy), "--key", str(signed["key"].public)])
    assert result.exit_code == 1
    assert "signature does not hold" in result.output


def test_a_changed_registry_verdict_is_named(signed: dict[str, Any]) -> None:
    with project_env(signed["project"]):
        client = _client()
        version = client.get_model_version(signed["model"], signed["version"])
        verdict = version.tags[lineage.GATE_VERDICT]
        client.set_model_version_tag(signed["model"], signed["version"], lineage.GATE_VERDICT, "fail")
        try:
            found = shipyard.verify(signed["bundle"], public_key=signed["key"].public)
        finally:
            client.set_model_version_tag(signed["model"], signed["version"], lineage.GATE_VERDICT, verdict)
    assert found.differences == (f"gate verdict: the statement says {verdict!r}, the registry now says 'fail'",)


def test_a_version_rejected_after_it_shipped_is_named(signed: dict[str, Any]) -> None:
    review = {lineage.review_tag(f): v for f, v in (("state", "rejected"), ("by", "bob"), ("at", "t"),
                                                      ("comment", "leaks labels"))}
    with project_env(signed["project"]):
        client = _client()
        before = dict(client.get_model_version(signed["model"], signed["version"]).tags)
        for tag, value in review.items():
            client.set_model_version_tag(signed["model"], signed["version"], tag, value)
        try:
            found = shipyard.verify(signed["bundle"], public_key=signed["key"].public)
        finally:
            for tag in review:
                if tag in before:
                    client.set_model_version_tag(signed["model"], signed["version"], tag, before[tag])
                else:
                    client.delete_model_version_tag(signed["model"], signed["version"], tag)
    rejected = "approvals: the registry now records the version as rejected by bob at t ('leaks labels')"
    assert found.differences == (rejected,)


def _secrets(key_file: Path) -> list[bytes]:
    """What of the private key could leak: its PEM body, its raw bytes (hex and base64)."""
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    key = provenance.load_private_key(key_file)
    raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    body = b"".join(key_file.read_bytes().splitlines()[1:-1])
    return [body, raw.hex().encode(), base64.b64encode(raw).rstrip(b"="), base64.urlsafe_b64encode(raw).rstrip(b"=")]


def _leaks(data: bytes, secrets: list[bytes]) -> list[bytes]:
    return [s for s in secrets if s in data]


def test_the_key_is_nowhere_in_the_bundle_the_image_or_mlflow(
    signed: dict[str, Any], docker_engine: Any, tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    secrets = _secrets(signed["key"].private)
    bundle = Path(signed["bundle"])
    for path in [p for p in bundle.rglob("*") if p.is_file()]:
        assert not _leaks(path.read_bytes(), secrets), path
    image = docker_engine.images.get(signed["image"])
    assert not _leaks(json.dumps([image.attrs, docker_engine.api.history(image.id)]).encode(), secrets)
    container = docker_engine.containers.create(image.id, command=["true"], network_disabled=True)
    try:
        tail = b""
        for chunk in container.export(chunk_size=1 << 20):  # the image's files, as one tar stream
            assert not _leaks(tail + chunk, secrets)
            tail = chunk[-128:]
    finally:
        container.remove(force=True)
    with project_env(signed["project"]):
        ws = shipyard.current_workspace()
        client = MlflowClient(ws.tracking_uri, ws.registry_uri)
        version = client.get_model_version(signed["model"], signed["version"])
        run = client.get_run(version.run_id)
        tags = json.dumps([dict(version.tags), dict(run.data.tags), dict(run.data.params)]).encode()
        assert not _leaks(tags, secrets)
        local = Path(client.download_artifacts(version.run_id, "", str(tmp_path)))
        for path in [p for p in local.rglob("*") if p.is_file()]:
            assert not _leaks(path.read_bytes(), secrets), path
        assert not _leaks(ws.audit_log.read_bytes(), secrets)
