"""Provenance: a signed record of what a promotion shipped, and its verification.

At promotion, the bundle stage writes an `in-toto Statement v1
<https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md>`_ whose
predicate is `SLSA provenance v1 <https://slsa.dev/spec/v1.0/provenance>`_:

    subject                 the image: its repository and sha256 digest (the registry's manifest digest
                            when pushed, else the local image id the bundle keeps beside the tag)
    buildDefinition
      externalParameters    what was asked: the model version and the target
      internalParameters    what the promotion decided: the gate verdict and results, overrides, approvals
      resolvedDependencies  the flow source, the git commit, each dataset, the requirements lock, the model
                            files and the base image, each with its digest
    runDetails              the builder (``provenance_builder_id``), shipyard's version, the promotion's key

The statement is the payload of a `DSSE envelope
<https://github.com/secure-systems-lab/dsse/blob/v1.0.0/envelope.md>`_, signed
with the team's Ed25519 key (``provenance_key``), one JSON line in the bundle
(``provenance.intoto.jsonl``) and on the version's MLflow run. Without a key
the envelope has no signature: the statement is still written (a log line
says so), and :func:`verify` fails it; ``provenance_require_signature`` makes
a promotion refuse to start instead.

:func:`verify` checks the signature against a public key, that the subject
digest is the image's, and that the verdict and approvals in the statement are
still the registry's.

Q: Why DSSE over the statement's bytes, and not a signature over canonical JSON?
A: DSSE signs the exact payload bytes (with their type, so a signature over
   one kind of document cannot be replayed as another): nothing has to
   re-serialize JSON identically to check it, and the envelope is the one the
   in-toto attestation framework specifies.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._core import lineage as names
from .._core.errors import ConfigError, DeployError
from .._core.version import __version__
from .handoff import PROVENANCE_FILE as ENVELOPE_FILE

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

    from .._core.workspace import Workspace
    from .handoff import HandoffSpec

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
BUILD_TYPE = "urn:shipyard:promotion:v1"  # what externalParameters and internalParameters mean, see docs/provenance.md
APPROVAL_FIELDS = ("by", "at", "comment")  # the fields of an approval that verification compares

_log = logging.getLogger("shipyard.provenance")


# -- the envelope ------------------------------------------------------------------------------------


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what is signed (the type and the payload, length-prefixed).

    Example:
        >>> pae("t", b"hi")
        b'DSSEv1 1 t 2 hi'
    """
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


@dataclass(frozen=True)
class Envelope:
    """A DSSE envelope: the payload's bytes, its type, and ``(keyid, signature)`` pairs (none when unsigned)."""

    payload: bytes
    payload_type: str = PAYLOAD_TYPE
    signatures: tuple[tuple[str, bytes], ...] = ()

    @property
    def statement(self) -> dict[str, Any]:
        """The payload read as JSON (whether or not its signature holds).

        Raises:
            DeployError: the payload is not a JSON object.
        """
        try:
            value = json.loads(self.payload)
        except ValueError as exc:
            raise DeployError(f"The provenance statement is not JSON ({exc}).") from exc
        if not isinstance(value, dict):
            raise DeployError("The provenance statement is not a JSON object.")
        return value

    def to_json(self) -> str:
        """One JSON line (the ``.intoto.jsonl`` convention), with a newline."""
        doc = {
            "payloadType": self.payload_type,
            "payload": base64.b64encode(self.payload).decode(),
            "signatures": [{"keyid": k, "sig": base64.b64encode(s).decode()} for k, s in self.signatures],
        }
        return json.dumps(doc, separators=(",", ":")) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Envelope:
        """The envelope of :meth:`to_json` (the first line of a ``.jsonl`` file).

        Raises:
            DeployError: the text is no DSSE envelope.
        """
        try:
            doc = json.loads(text.strip().splitlines()[0])
            return cls(
                payload=base64.b64decode(doc["payload"], validate=True),
                payload_type=str(doc["payloadType"]),
                signatures=tuple(
                    (str(s.get("keyid") or ""), base64.b64decode(s["sig"], validate=True)) for s in doc["signatures"]
                ),
            )
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            raise DeployError(
                f"The provenance file is not a DSSE envelope ({type(exc).__name__}: {exc}).",
                hint="Promote the version again to write its statement, or restore the file from the bundle's history.",
            ) from exc


def sign(statement: Mapping[str, Any], key: Ed25519PrivateKey | None) -> Envelope:
    """The statement as a DSSE envelope, signed with ``key`` (unsigned when it is None).

    Example:
        >>> env = sign({"_type": STATEMENT_TYPE}, None)
        >>> env.signatures, env.statement["_type"] == STATEMENT_TYPE
        ((), True)
    """
    payload = json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()
    if key is None:
        return Envelope(payload)
    return Envelope(payload, signatures=((key_id(key.public_key()), key.sign(pae(PAYLOAD_TYPE, payload))),))


def signature_holds(envelope: Envelope, public_key: Ed25519PublicKey) -> bool:
    """True when one of the envelope's signatures is ``public_key``'s over its payload and type."""
    from cryptography.exceptions import InvalidSignature

    message = pae(envelope.payload_type, envelope.payload)
    for _, sig in envelope.signatures:
        try:
            public_key.verify(sig, message)
        except InvalidSignature:
            continue
        return True
    return False


# -- keys -------------------------------------------------------------------------------------------


def key_id(public_key: Ed25519PublicKey) -> str:
    """The key's fingerprint: ``sha256:`` and the hex SHA-256 of its 32 raw bytes (the envelope's ``keyid``)."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 private key in the PEM file ``path`` (unencrypted PKCS#8, as :func:`generate_signing_key` writes).

    Raises:
        ConfigError: the file is missing or holds no unencrypted Ed25519 private key. The message names the
            file, never its content.
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(
            f"The provenance_key file {path} holds no readable, unencrypted PEM private key ({type(exc).__name__}).",
            hint="Make one with `shipyard keygen PATH` and point provenance_key at it.",
        ) from None  # the parser's message may quote the file
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(
            f"The provenance_key file {path} holds a {type(key).__name__}, not an Ed25519 key.",
            hint="Make an Ed25519 key with `shipyard keygen PATH`.",
        )
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """The Ed25519 public key in the PEM file ``path`` (a private key's file gives its public half).

    Raises:
        ConfigError: the file is missing or holds no Ed25519 key.
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"Cannot read the public key file {path} ({exc.strerror}).",
            hint="Pass the .pub file `shipyard keygen` wrote (--key PATH or the provenance_public_key setting).",
        ) from exc
    if b"PRIVATE KEY" in data:
        return load_private_key(path).public_key()
    try:
        key = load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"The file {path} holds no PEM public key ({type(exc).__name__}).",
            hint="Pass the .pub file `shipyard keygen` wrote.",
        ) from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"The public key in {path} is a {type(key).__name__}, not an Ed25519 key.")
    return key


@dataclass(frozen=True)
class SigningKey:
    """Where :func:`generate_signing_key` wrote a key pair, and the public key's fingerprint."""

    private: Path
    public: Path
    key_id: str


def generate_signing_key(path: str | os.PathLike[str], *, overwrite: bool = False) -> SigningKey:
    """Write a new Ed25519 key pair: the private key to ``path`` (PEM, mode 0600) and the public one to ``path.pub``.

    Point the ``provenance_key`` setting at the private key where promotions run, and give the
    ``.pub`` file to whoever verifies (``provenance_public_key``, or ``shipyard verify --key``).

    Raises:
        ConfigError: ``path`` exists and ``overwrite`` is False.

    Example:
        >>> key = shipyard.generate_signing_key("~/.config/shipyard/provenance.pem")   # doctest: +SKIP
        >>> key.key_id                                                                  # doctest: +SKIP
        'sha256:3f1c…'
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
        PublicFormat,
    )

    private = Path(path).expanduser()
    public = private.with_name(private.name + ".pub")
    if not overwrite and (private.exists() or public.exists()):
        raise ConfigError(
            f"{private} or {public} already exists; a new key would make every earlier statement unverifiable "
            "with the file.",
            hint="Choose another path, or pass overwrite=True (--force) to replace the key on purpose.",
        )
    key = Ed25519PrivateKey.generate()
    private.parent.mkdir(parents=True, exist_ok=True)
    # created 0600 from the start, so the key is never readable by others, not even for a moment
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    os.chmod(private, 0o600)
    public.write_bytes(key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    return SigningKey(private, public, key_id(key.public_key()))


def _setting_path(ws: Workspace, value: Path | None) -> Path | None:
    if value is None:
        return None
    path = Path(value).expanduser()
    return path if path.is_absolute() else ws.project_dir / path


def signing_key(ws: Workspace) -> Ed25519PrivateKey | None:
    """The configured signing key, or None when ``provenance_key`` is unset.

    Raises:
        ConfigError: ``provenance_require_signature`` is set without a key, or the key file is unusable.
    """
    path = _setting_path(ws, ws.settings.provenance_key)
    if path is None:
        if ws.settings.provenance_require_signature:
            raise ConfigError(
                "provenance_require_signature is set but no provenance_key names a signing key, so the promotion "
                "could not sign what it ships.",
                hint="Make a key with `shipyard keygen PATH` and set provenance_key = PATH "
                "(or SHIPYARD_PROVENANCE_KEY), or unset provenance_require_signature.",
            )
        return None
    return load_private_key(path)


def verification_key(ws: Workspace, public_key: str | os.PathLike[str] | None = None) -> Ed25519PublicKey:
    """The public key statements are checked with: ``public_key``, else ``provenance_public_key``, else the
    public half of ``provenance_key``.

    Raises:
        ConfigError: none of them is given, or the file is unusable.
    """
    path = (
        Path(public_key).expanduser()
        if public_key is not None
        else _setting_path(ws, ws.settings.provenance_public_key) or _setting_path(ws, ws.settings.provenance_key)
    )
    if path is None:
        raise ConfigError(
            "No public key to check the provenance signature with.",
            hint="Pass --key PATH (the .pub file `shipyard keygen` wrote) or set provenance_public_key.",
        )
    return load_public_key(path)


# -- the statement ----------------------------------------------------------------------------------


def _hex(digest: str) -> str:
    return digest.split(":", 1)[1] if ":" in digest else digest


def _descriptor(name: str, sha256: str, uri: str = "", **annotations: Any) -> dict[str, Any]:
    """An in-toto ResourceDescriptor (empty fields left out)."""
    doc: dict[str, Any] = {"name": name, "digest": {"sha256": _hex(sha256)}}
    if uri:
        doc["uri"] = uri
    kept = {k: v for k, v in annotations.items() if v not in (None, "")}
    if kept:
        doc["annotations"] = kept
    return doc


def base_image_descriptor(image_id: str, settings: Any, python: str) -> dict[str, Any] | None:
    """The base image ``image_id`` was built from, as a resolved dependency, or None when it cannot be told.

    The base is the ``base_image`` setting or the local base image of the image's Python; it is recorded
    only when its layers are the first layers of the image, so a base rebuilt since is never claimed.
    """
    from docker.errors import DockerException

    from .._core.errors import DockerUnavailable
    from ..packaging.base_image import base_image_name
    from ..packaging.docker_engine import docker_client

    name = settings.base_image or base_image_name(python or None)
    try:
        client = docker_client()
        image, base = client.images.get(image_id), client.images.get(name)
    except (DockerException, DockerUnavailable):  # the base is gone: the statement says nothing rather than guess
        return None
    layers = (image.attrs.get("RootFS") or {}).get("Layers") or []
    base_layers = (base.attrs.get("RootFS") or {}).get("Layers") or []
    if not base_layers or layers[: len(base_layers)] != base_layers:
        return None
    digests = [d for d in base.attrs.get("RepoDigests") or [] if "@" in d]
    return _descriptor("base-image", base.id, f"docker-image://{name}", repoDigest=digests[0] if digests else None)


def resolved_dependencies(spec: HandoffSpec, base_image: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The materials of a promotion: flow source, git commit, datasets, requirements lock, model, base image."""
    lin = spec.lineage
    run = f"runs:/{lin.run_id}" if lin.run_id else ""
    deps = []
    if lin.source_sha256:
        deps.append(_descriptor("flow-source", lin.source_sha256, f"{run}/{names.SOURCE_ARTIFACT}" if run else "",
                                source=lin.source, metaflowPathspec=lin.pathspec))
    if lin.git_commit:
        git = {"name": "git-commit", "digest": {"gitCommit": lin.git_commit}}
        if lin.source:
            git["uri"] = f"git+{lin.source}" if "://" in lin.source else lin.source
        deps.append(git)
    deps += [_descriptor(f"data/{name}", sha) for name, sha in lin.data]
    if lin.env_lock_sha256:
        deps.append(_descriptor("requirements-lock", lin.env_lock_sha256,
                                f"{run}/{names.ENV_LOCK_ARTIFACT}" if run else ""))
    if lin.model_sha256:
        deps.append(_descriptor("model", lin.model_sha256, f"models:/{spec.model_name}/{spec.version}"))
    if base_image:
        deps.append(dict(base_image))
    return deps


def build_statement(
    spec: HandoffSpec,
    *,
    builder_id: str,
    target: str = "production",
    invocation_id: str = "",
    approval_required: bool = False,
    base_image: Mapping[str, Any] | None = None,
    finished_on: datetime | None = None,
) -> dict[str, Any]:
    """The in-toto statement (SLSA provenance v1 predicate) of the image a bundle ships.

    Args:
        spec: the bundle's spec: image, lineage, gate report, overrides, approvals.
        builder_id: the SLSA builder id (``provenance_builder_id``).
        target: the promotion target.
        invocation_id: the promotion's key.
        approval_required: whether the promotion needed an approval (``require_approval``).
        base_image: the base image's descriptor (:func:`base_image_descriptor`).

    Example:
        >>> build_statement(spec, builder_id="urn:shipyard:promote")["subject"][0]["digest"]  # doctest: +SKIP
        {'sha256': '5d41…'}
    """
    report = spec.gate_report
    finished = (finished_on or datetime.now(timezone.utc)).isoformat(timespec="seconds").replace("+00:00", "Z")
    return {
        "_type": STATEMENT_TYPE,
        "subject": [
            _descriptor(spec.image_repository, spec.image_digest, reference=spec.image,
                        pushed=spec.local_tag is None, localTag=spec.local_tag),
        ],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "model": {"name": spec.model_name, "version": spec.version},
                    "target": target,
                    "canaryWeight": spec.canary_weight,
                },
                "internalParameters": {
                    "model": {"name": spec.model_name, "version": spec.version, "mlflowRunId": spec.lineage.run_id},
                    "gates": {
                        "verdict": report.get("verdict"),
                        "results": [
                            {k: g.get(k) for k in ("name", "status", "blocking")} for g in report.get("results", [])
                        ],
                    },
                    "overrides": [dict(o) for o in spec.overrides],
                    "approvalRequired": approval_required,
                    "approvals": [dict(a) for a in spec.approvals],
                },
                "resolvedDependencies": resolved_dependencies(spec, base_image),
            },
            "runDetails": {
                "builder": {"id": builder_id, "version": {"shipyard": __version__}},
                "metadata": {"invocationId": invocation_id, "finishedOn": finished},
            },
        },
    }


def attest(
    ws: Workspace, spec: HandoffSpec, *, target: str, invocation_id: str, approval_required: bool
) -> Envelope:
    """The signed statement of a promotion's bundle (unsigned, with a log line, when no key is configured).

    Raises:
        ConfigError: the key is unusable, or a signature is required and no key is configured.
    """
    key = signing_key(ws)
    python = str(spec.image_facts.get("labels", {}).get(names.PYTHON, ""))
    image_id = str(spec.image_facts.get("image_id") or spec.image_digest)
    statement = build_statement(
        spec, builder_id=ws.settings.provenance_builder_id, target=target, invocation_id=invocation_id,
        approval_required=approval_required, base_image=base_image_descriptor(image_id, ws.settings, python),
    )
    if key is None:
        _log.warning(
            "The provenance statement of %s v%s is not signed: no provenance_key is set, and `shipyard verify` "
            "will fail it. Make a key with `shipyard keygen PATH` and set provenance_key.",
            spec.model_name, spec.version,
        )
    return sign(statement, key)


def signed_as_configured(ws: Workspace, bundle: Path) -> bool:
    """True when ``bundle`` holds a statement, signed by the configured key when one is configured.

    A promotion asks this before it reuses a written bundle, so a key configured (or changed) after a
    promotion gets its statement signed by promoting again. Never raises: an unusable key is reported
    by the bundle stage that then runs.
    """
    path = bundle / ENVELOPE_FILE
    if not path.is_file():
        return False
    if ws.settings.provenance_key is None:
        return not ws.settings.provenance_require_signature
    try:
        key = signing_key(ws)
        envelope = Envelope.from_json(path.read_text(encoding="utf-8"))
    except (ConfigError, DeployError, OSError):
        return False
    return key is not None and signature_holds(envelope, key.public_key())


def log_envelope(ws: Workspace, run_id: str, envelope: Envelope) -> None:
    """Keep the envelope on the version's run (:data:`~shipyard._core.lineage.PROVENANCE_ARTIFACT`).

    Raises:
        TrackingError: the tracking server refused the artifact.
    """
    from mlflow.exceptions import MlflowException

    from ..tracking._client import client_for, tracking_error

    try:
        client_for(ws).log_text(run_id, envelope.to_json(), names.PROVENANCE_ARTIFACT)
    except MlflowException as exc:
        raise tracking_error(ws, exc) from exc


# -- verification -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verification:
    """What :func:`verify` found.

    Attributes:
        target: the bundle directory or image reference that was checked.
        image: the image reference whose digest was compared.
        model: ``NAME/VERSION`` the statement is about.
        key_id: fingerprint of the public key the signature was checked with.
        differences: one line per check that failed; empty when everything holds.
        statement: the statement as read (trust it only when ``ok``).
    """

    target: str
    image: str
    model: str
    key_id: str
    differences: tuple[str, ...] = ()
    statement: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return not self.differences

    def describe(self) -> str:
        """One line when it holds, else a line per difference."""
        if self.ok:
            return f"verified: {self.image} is {self.model} as promoted (signed by {self.key_id})"
        return "\n".join([f"NOT verified: {self.target}", *(f"  - {d}" for d in self.differences)])


def _internal(statement: Mapping[str, Any]) -> dict[str, Any]:
    return ((statement.get("predicate") or {}).get("buildDefinition") or {}).get("internalParameters") or {}


def registry_approvals(tags: Mapping[str, str]) -> list[dict[str, str]]:
    """The approvals the registry holds for a version now (empty when none, or when it was rejected since).

    Both records a promotion goes on: the version's review (one approval) and the per-person
    approvals counted with separation of duties or several required approvals.
    """
    review = names.review(tags)
    if review.get("state") == "rejected":
        return []
    found = [{k: a.get(k) or "" for k in APPROVAL_FIELDS} for a in names.approvals(tags).values()]
    if review.get("state") == "approved":
        found.append({k: review.get(k) or "" for k in APPROVAL_FIELDS})
    return found


def _missing(recorded: Sequence[Mapping[str, Any]], now: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The recorded approvals the registry no longer holds (approvals given since do not count against it)."""
    held = {tuple(str(a.get(k) or "") for k in APPROVAL_FIELDS) for a in now}
    return [a for a in recorded if tuple(str(a.get(k) or "") for k in APPROVAL_FIELDS) not in held]


def _image_digests(image_ref: str) -> tuple[str, ...] | None:
    """The image's id and repository digests in the local engine (``sha256:…`` each), or None when absent."""
    from docker.errors import DockerException, ImageNotFound

    from ..packaging.docker_engine import docker_client

    client = docker_client()
    try:
        image = client.images.get(image_ref)
    except ImageNotFound:
        return None
    except DockerException as exc:
        raise DeployError(
            f"Docker could not inspect {image_ref}: {exc}", hint="Check the image reference and the Docker daemon."
        ) from exc
    repo_digests = [d.rpartition("@")[2] for d in image.attrs.get("RepoDigests") or []]
    return (image.id, *repo_digests)


def _locate(target: str | os.PathLike[str], ws: Workspace, statement: Path | None) -> tuple[Envelope, str, str]:
    """The envelope, the image reference and ``NAME/VERSION`` that ``target`` names.

    Raises:
        DeployError: no statement can be found for it.
    """
    from .handoff import read_bundle

    folder = Path(target).expanduser()
    if (folder / "handoff.json").is_file():
        spec = read_bundle(folder)
        path = statement or folder / ENVELOPE_FILE
        return _read_envelope(path), spec.image, f"{spec.model_name}/{spec.version}"
    from docker.errors import DockerException

    from ..packaging.docker_engine import docker_client

    image_ref = str(target)
    try:
        labels = docker_client().images.get(image_ref).attrs.get("Config", {}).get("Labels") or {}
    except DockerException as exc:
        if statement is None:
            raise DeployError(
                f"{image_ref} is neither a handoff bundle directory nor an image in the local Docker engine.",
                hint="Pass a bundle directory (with handoff.json), or pull the image first.",
            ) from exc
        labels = {}
    model, version = labels.get(names.LABEL_MODEL_NAME, ""), labels.get(names.LABEL_MODEL_VERSION, "")
    if statement is not None:
        envelope = _read_envelope(statement)
        if not model:
            params = _internal(envelope.statement).get("model") or {}
            model, version = str(params.get("name", "")), str(params.get("version", ""))
        return envelope, image_ref, f"{model}/{version}"
    if not model or not version:
        raise DeployError(
            f"The image {image_ref} has no shipyard model labels, so its statement cannot be found.",
            hint="Pass the statement with --statement FILE (provenance.intoto.jsonl of its bundle).",
        )
    bundle = ws.bundle_dir(model, version) / ENVELOPE_FILE
    if bundle.is_file():
        return _read_envelope(bundle), image_ref, f"{model}/{version}"
    return Envelope.from_json(_artifact_text(ws, model, version)), image_ref, f"{model}/{version}"


def _read_envelope(path: Path) -> Envelope:
    try:
        return Envelope.from_json(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise DeployError(
            f"No provenance statement at {path} ({exc.strerror}).",
            hint="Promote the version again (with provenance_key set) to write and sign its statement.",
        ) from exc


def _artifact_text(ws: Workspace, model: str, version: str) -> str:
    import tempfile

    from mlflow.exceptions import MlflowException

    from .. import registry
    from .._core.refs import ModelRef
    from ..tracking._client import client_for

    run_id = registry.resolve(ModelRef(name=model, version=version), workspace=ws).run_id
    try:
        with tempfile.TemporaryDirectory() as tmp:
            local = client_for(ws).download_artifacts(run_id, names.PROVENANCE_ARTIFACT, tmp)
            return Path(local).read_text(encoding="utf-8")
    except (MlflowException, OSError) as exc:
        raise DeployError(
            f"{model}/{version} has no provenance statement in its bundle or on its run {run_id}.",
            hint="Promote the version again (with provenance_key set) to write and sign its statement.",
        ) from exc


def verify(
    target: str | os.PathLike[str],
    *,
    public_key: str | os.PathLike[str] | None = None,
    statement: str | os.PathLike[str] | None = None,
    workspace: Workspace | None = None,
) -> Verification:
    """Check a promoted image against its signed provenance statement and the registry.

    Checks, each a line of ``differences`` when it fails: the envelope is signed by ``public_key``
    over exactly its statement; the statement's subject digest is the image's (its local image id or
    one of its repository digests); the gate verdict and the approvals in the statement are the
    registry's now.

    Args:
        target: a handoff bundle directory, or an image reference in the local Docker engine (its
            statement is found from its model labels: the bundle, else the version's MLflow run).
        public_key: PEM file of the public key; default: ``provenance_public_key``, else the public half
            of ``provenance_key``.
        statement: the envelope file to use instead of the bundle's or the run's.

    Raises:
        ConfigError: no public key is configured or given.
        DeployError: no statement can be found for ``target``.
        DockerUnavailable: no Docker daemon answers.

    Example:
        >>> v = shipyard.verify("shipyard/iris:v3-5d41402abc4b2a76")   # doctest: +SKIP
        >>> v.ok, v.differences                                         # doctest: +SKIP
        (True, ())
    """
    from .. import registry
    from .._core.errors import ModelNotFound
    from .._core.refs import ModelRef
    from .._core.workspace import current_workspace

    ws = workspace or current_workspace()
    key = verification_key(ws, public_key)
    envelope, image_ref, model = _locate(target, ws, Path(statement).expanduser() if statement else None)
    differences: list[str] = []
    if envelope.payload_type != PAYLOAD_TYPE:
        differences.append(f"the envelope's payloadType is {envelope.payload_type!r}, not {PAYLOAD_TYPE!r}")
    if not envelope.signatures:
        differences.append("the statement is not signed (it was written without a provenance_key)")
    elif not signature_holds(envelope, key):
        ids = ", ".join(k or "(none)" for k, _ in envelope.signatures)
        differences.append(
            f"the signature does not hold for key {key_id(key)} (signed by {ids}): the statement was changed "
            "after signing, or signed with another key"
        )
    try:
        doc = envelope.statement
    except DeployError as exc:
        return Verification(str(target), image_ref, model, key_id(key), (*differences, exc.message))
    if doc.get("_type") != STATEMENT_TYPE or doc.get("predicateType") != PREDICATE_TYPE:
        differences.append(
            f"the statement is {doc.get('_type')!r} / {doc.get('predicateType')!r}, not an in-toto v1 statement "
            "with a SLSA provenance v1 predicate"
        )
    subjects = [s for s in doc.get("subject") or [] if isinstance(s, dict)]
    claimed = ["sha256:" + str((s.get("digest") or {}).get("sha256", "")) for s in subjects]
    actual = _image_digests(image_ref)
    if actual is None:
        differences.append(f"the image {image_ref} is not in the local Docker engine, so its digest cannot be compared")
    elif not set(claimed) & set(actual):
        differences.append(
            f"the image {image_ref} is {actual[0]}, not the statement's subject {', '.join(claimed) or '(none)'}"
        )
    internal = _internal(doc)
    params = internal.get("model") or {}
    name, version = str(params.get("name", "")), str(params.get("version", ""))
    try:
        tags = registry.resolve(ModelRef(name=name, version=version), workspace=ws).tags
    except ModelNotFound:
        differences.append(f"the registry has no version {name}/{version}, which the statement is about")
        return Verification(str(target), image_ref, model, key_id(key), tuple(differences), doc)
    recorded_verdict = (internal.get("gates") or {}).get("verdict")
    verdict_now = tags.get(names.GATE_VERDICT)
    if recorded_verdict != verdict_now:
        differences.append(
            f"gate verdict: the statement says {recorded_verdict!r}, the registry now says {verdict_now!r}"
        )
    recorded = [a for a in internal.get("approvals") or [] if isinstance(a, dict)]
    if names.review(tags).get("state") == "rejected":
        review = names.review(tags)
        differences.append(f"approvals: the registry now records the version as rejected by {review.get('by')} "
                           f"at {review.get('at')} ({review.get('comment')!r})")
    elif missing := _missing(recorded, registry_approvals(tags)):
        differences.append(f"approvals: the statement records {_who(missing)}, which the registry no longer holds")
    elif internal.get("approvalRequired") and not recorded:
        differences.append("approvals: the promotion required an approval, and the statement records none")
    return Verification(str(target), image_ref, f"{name}/{version}", key_id(key), tuple(differences), doc)


def _who(approvals: Sequence[Mapping[str, Any]]) -> str:
    if not approvals:
        return "no approval"
    return "; ".join(f"{a.get('by')} at {a.get('at')} ({a.get('comment')!r})" for a in approvals)


__all__ = [
    "ENVELOPE_FILE",
    "Envelope",
    "SigningKey",
    "Verification",
    "attest",
    "build_statement",
    "generate_signing_key",
    "key_id",
    "pae",
    "sign",
    "verify",
]
