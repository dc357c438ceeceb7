"""Provenance statements, DSSE signing and key handling on small real objects (no Docker, no MLflow)."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest
from shipyard import ConfigError, DeployError
from shipyard._core.lineage import Lineage
from shipyard._core.workspace import Workspace
from shipyard.deploy import provenance
from shipyard.deploy.handoff import HandoffSpec, read_bundle, write_bundle

DIGEST = "sha256:" + "a" * 64


def _spec(**overrides) -> HandoffSpec:
    lin = Lineage(model_name="iris", model_version="3", run_id="r1", source_sha256="b" * 64,
                  data=(("train", "c" * 64), ("valid", "f" * 64)), env_lock_sha256="d" * 64,
                  model_sha256="e" * 64, git_commit="0123abc", source="https://git.example/iris")
    values = {
        "model_name": "iris", "version": "3", "image_repository": "shipyard/iris", "image_digest": DIGEST,
        "run_as_user": 10001, "local_tag": "v3-5d41402abc4b2a76", "lineage": lin,
        "gate_report": {"verdict": "pass", "results": [{"name": "accuracy", "status": "pass", "blocking": True}]},
        "approvals": ({"by": "ann", "at": "2026-12-01T10:00:00+00:00", "comment": "looks right"},),
    }
    return HandoffSpec(**{**values, **overrides})


@pytest.fixture(scope="module")
def key_files(tmp_path_factory: pytest.TempPathFactory) -> provenance.SigningKey:
    return provenance.generate_signing_key(tmp_path_factory.mktemp("keys") / "signing.pem")


def test_pae_is_dsse_v1s_encoding() -> None:
    # the example of the DSSE protocol document
    assert provenance.pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_the_statement_names_the_image_its_materials_and_the_decisions() -> None:
    base = provenance._descriptor("base-image", "sha256:" + "9" * 64, "docker-image://shipyard/base:bookworm-py3.11")
    doc = provenance.build_statement(_spec(), builder_id="https://ci.example/runner", target="production",
                                     invocation_id="iris/v3", approval_required=True, base_image=base)
    assert doc["_type"] == "https://in-toto.io/Statement/v1"
    assert doc["predicateType"] == "https://slsa.dev/provenance/v1"
    assert doc["subject"] == [{"name": "shipyard/iris", "digest": {"sha256": "a" * 64},
                               "annotations": {"reference": "shipyard/iris:v3-5d41402abc4b2a76", "pushed": False,
                                               "localTag": "v3-5d41402abc4b2a76"}}]
    build = doc["predicate"]["buildDefinition"]
    deps = {d["name"]: d["digest"] for d in build["resolvedDependencies"]}
    assert deps == {
        "flow-source": {"sha256": "b" * 64}, "git-commit": {"gitCommit": "0123abc"},
        "data/train": {"sha256": "c" * 64}, "data/valid": {"sha256": "f" * 64},
        "requirements-lock": {"sha256": "d" * 64}, "model": {"sha256": "e" * 64}, "base-image": {"sha256": "9" * 64},
    }
    internal = build["internalParameters"]
    assert internal["gates"]["verdict"] == "pass" and internal["approvalRequired"] is True
    assert internal["approvals"] == [dict(_spec().approvals[0])]
    assert internal["model"] == {"name": "iris", "version": "3", "mlflowRunId": "r1"}
    assert doc["predicate"]["runDetails"]["builder"]["id"] == "https://ci.example/runner"
    assert doc["predicate"]["runDetails"]["metadata"]["invocationId"] == "iris/v3"


def test_a_signed_envelope_round_trips_and_any_changed_byte_breaks_it(key_files) -> None:
    key = provenance.load_private_key(key_files.private)
    public = provenance.load_public_key(key_files.public)
    envelope = provenance.sign(provenance.build_statement(_spec(), builder_id="urn:x"), key)
    line = envelope.to_json()
    assert line.endswith("\n") and line.count("\n") == 1
    read = provenance.Envelope.from_json(line)
    assert read == envelope and provenance.signature_holds(read, public)
    assert read.signatures[0][0] == key_files.key_id == provenance.key_id(public)
    for at in (0, len(read.payload) // 2, len(read.payload) - 1):
        changed = bytearray(read.payload)
        changed[at] ^= 0x01
        assert not provenance.signature_holds(provenance.Envelope(bytes(changed), signatures=read.signatures), public)
    retyped = provenance.Envelope(read.payload, "application/json", read.signatures)
    assert not provenance.signature_holds(retyped, public)  # the type is signed too
    other = provenance.generate_signing_key(key_files.private.parent / "other.pem")
    assert not provenance.signature_holds(read, provenance.load_public_key(other.public))


def test_an_unsigned_envelope_has_no_signature() -> None:
    envelope = provenance.sign({"_type": provenance.STATEMENT_TYPE}, None)
    assert json.loads(envelope.to_json())["signatures"] == []
    assert envelope.statement == {"_type": provenance.STATEMENT_TYPE}


def test_keygen_writes_a_private_file_only_its_owner_reads_and_never_replaces_it(key_files) -> None:
    assert stat.S_IMODE(key_files.private.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in key_files.private.read_bytes()
    assert b"PRIVATE" not in key_files.public.read_bytes()
    with pytest.raises(ConfigError, match="already exists"):
        provenance.generate_signing_key(key_files.private)


def test_a_bad_key_file_is_a_config_error_that_never_quotes_it(tmp_path: Path) -> None:
    path = tmp_path / "broken.pem"
    path.write_text("-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ConfigError) as caught:
        provenance.load_private_key(path)
    assert "c2VjcmV0" not in str(caught.value) and caught.value.__cause__ is None
    with pytest.raises(ConfigError, match="no readable"):
        provenance.load_private_key(tmp_path / "missing.pem")


def test_signing_settings(tmp_path: Path, key_files) -> None:
    assert provenance.signing_key(Workspace.locate(tmp_path)) is None
    with pytest.raises(ConfigError, match="provenance_require_signature"):
        provenance.signing_key(Workspace.locate(tmp_path, provenance_require_signature=True))
    ws = Workspace.locate(tmp_path, provenance_key=key_files.private)
    assert provenance.key_id(provenance.verification_key(ws)) == key_files.key_id  # the private key's public half
    with pytest.raises(ConfigError, match="No public key"):
        provenance.verification_key(Workspace.locate(tmp_path))


def test_the_bundle_holds_the_envelope_and_reads_it_back(tmp_path: Path, key_files) -> None:
    key = provenance.load_private_key(key_files.private)
    envelope = provenance.sign(provenance.build_statement(_spec(), builder_id="urn:x"), key)
    bundle = write_bundle(_spec(provenance=envelope.to_json()), tmp_path / "iris" / "3")
    assert provenance.ENVELOPE_FILE in bundle.files
    assert "shipyard verify" in (bundle.path / "README.md").read_text()
    assert read_bundle(bundle.path).provenance == envelope.to_json()  # so a rollback's rewrite keeps it
    ws = Workspace.locate(tmp_path, provenance_key=key_files.private)
    assert provenance.signed_as_configured(ws, bundle.path)
    other = provenance.generate_signing_key(tmp_path / "rotated.pem")
    assert not provenance.signed_as_configured(Workspace.locate(tmp_path, provenance_key=other.private), bundle.path)


def test_a_damaged_envelope_is_a_deploy_error() -> None:
    with pytest.raises(DeployError, match="not a DSSE envelope"):
        provenance.Envelope.from_json('{"payload": "%%%", "payloadType": "x", "signatures": []}')
    not_json = provenance.Envelope(base64.b64decode(base64.b64encode(b"{oops")))
    with pytest.raises(DeployError, match="not JSON"):
        _ = not_json.statement


def test_registry_approvals_are_the_review_and_the_counted_approvals_unless_rejected() -> None:
    from shipyard._core.lineage import approval_tag

    approved = {"shipyard.review.state": "approved", "shipyard.review.by": "ann", "shipyard.review.at": "t",
                "shipyard.review.comment": "ok", approval_tag("bob", "by"): "bob", approval_tag("bob", "at"): "t2",
                approval_tag("bob", "comment"): "fine", approval_tag("bob", "identity_source"): "os"}
    now = provenance.registry_approvals(approved)
    assert sorted(a["by"] for a in now) == ["ann", "bob"]
    assert provenance.registry_approvals({**approved, "shipyard.review.state": "rejected"}) == []
    recorded = [{"by": "bob", "at": "t2", "comment": "fine", "identity_source": "os"}]
    assert provenance._missing(recorded, now) == []
    assert provenance._missing([{**recorded[0], "comment": "fine!"}], now) == [{**recorded[0], "comment": "fine!"}]
