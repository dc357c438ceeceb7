"""Lineage: every tag, label and artifact name shipyard writes (each defined once), and the
:class:`Lineage` record that reads and writes them.

MLflow run and model-version tags are the record of lineage, gates, aliases
and reviews; bento and image labels and Kubernetes labels carry a copy. Every
layer reads and writes them by these names, and only the functions here build
the per-name families (``shipyard.data.<name>.sha256``).

Run tags (written by ``tracking`` and ``flows``)::

    shipyard.managed                    "true" on every run shipyard created
    shipyard.flow                       Metaflow flow name
    shipyard.metaflow.pathspec          Flow/run_id (MLflow → Metaflow)
    mlflow_run_id:<id>                  Metaflow run tag (Metaflow → MLflow)
    shipyard.source.sha256 / .kind      hash and kind of the flow source
    shipyard.notebook                   notebook path, when known
    shipyard.git.commit / .dirty        the project's git state
    shipyard.python, shipyard.env.lock.sha256
    shipyard.step.<step>.<field>        status, task, seconds
    shipyard.data.<name>.<field>        sha256, rows
    shipyard.model.<name>.<field>       uri, flavor, sha256
    shipyard.error.step / .cause        where a failed flow failed

Run and model-version tags (written by ``gates`` and ``registry``)::

    shipyard.gate.<gate>                pass | fail | warn | overridden
    shipyard.gate.verdict / .report     overall verdict, report artifact URI
    shipyard.gate.override.<field>      gates, by, at, reason
    shipyard.alias.<alias>.<field>      by, at, reason, from_version (removed.* on removal)
    shipyard.review.<field>             state, by, at, comment (requested_by, approvals with
                                        separation of duties or several required approvals)
    shipyard.approval.<who>.<field>     by, at, comment, identity_source: one per approver
    shipyard.refusal.<who>.<field>      by, at, rule, comment: the last refused approval of each person
    shipyard.retired[.<field>]          "true"; by, at, reason
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PREFIX = "shipyard."

# -- run lineage ---------------------------------------------------------------
MANAGED = "shipyard.managed"
FLOW = "shipyard.flow"
PATHSPEC = "shipyard.metaflow.pathspec"
MLFLOW_RUN_TAG = "mlflow_run_id"  # Metaflow run tag "mlflow_run_id:<id>"
SOURCE_SHA256 = "shipyard.source.sha256"
SOURCE_KIND = "shipyard.source.kind"
NOTEBOOK = "shipyard.notebook"
GIT_COMMIT = "shipyard.git.commit"
GIT_DIRTY = "shipyard.git.dirty"
PYTHON = "shipyard.python"
ENV_LOCK_SHA256 = "shipyard.env.lock.sha256"
ERROR_STEP = "shipyard.error.step"
ERROR_CAUSE = "shipyard.error.cause"
STEP_PREFIX = "shipyard.step."
DATA_PREFIX = "shipyard.data."
MODEL_PREFIX = "shipyard.model."

# MLflow's own tags that shipyard reads
MLFLOW_USER = "mlflow.user"
MLFLOW_RUN_NAME = "mlflow.runName"
MLFLOW_SOURCE_NAME = "mlflow.source.name"
MLFLOW_SOURCE_TYPE = "mlflow.source.type"
MLFLOW_GIT_COMMIT = "mlflow.source.git.commit"
MLFLOW_GIT_REPO_URL = "mlflow.source.git.repoURL"
# and the one it writes: the run description MLflow's UI shows (Markdown), a summary of gates or drift
MLFLOW_NOTE = "mlflow.note.content"

# -- gates -----------------------------------------------------------------------
GATE_PREFIX = "shipyard.gate."
GATE_VERDICT = "shipyard.gate.verdict"
GATE_REPORT = "shipyard.gate.report"
GATE_OVERRIDE_PREFIX = "shipyard.gate.override."
GATE_META = ("verdict", "report")  # shipyard.gate.<these> are not gate names

# -- registry: aliases, reviews, retirement ----------------------------------------
ALIAS_PREFIX = "shipyard.alias."
REVIEW_PREFIX = "shipyard.review."
REVIEW_STATE = "shipyard.review.state"
REVIEW_FIELDS = ("by", "at", "comment")
REVIEW_REQUESTED_BY = "shipyard.review.requested_by"  # who started the promotion that waits for approval
REVIEW_APPROVALS = "shipyard.review.approvals"  # "<counted>/<required>"
APPROVAL_PREFIX = "shipyard.approval."
APPROVAL_FIELDS = ("by", "at", "comment", "identity_source")
REFUSAL_PREFIX = "shipyard.refusal."
REFUSAL_FIELDS = ("by", "at", "rule", "comment")
RETIRED = "shipyard.retired"
RETIRED_FIELDS = ("by", "at", "reason")

# -- bento and image labels (the lineage, flattened; see Lineage.to_labels) --------
LABEL_MODEL_NAME = "shipyard.model.name"
LABEL_MODEL_VERSION = "shipyard.model.version"
LABEL_MODEL_SHA256 = "shipyard.model.sha256"
LABEL_RUN_ID = "shipyard.mlflow.run_id"
LABEL_DATA_FINGERPRINT = "shipyard.data.fingerprint"
LABEL_BENTO_TAG = "shipyard.bento.tag"
LABEL_SOURCE = "shipyard.source"
LABEL_REFERENCE_FINGERPRINT = "shipyard.reference.fingerprint"  # the reference profile frozen into the bento

# -- base images: the rootfs package set an image was built with (stale ones are rebuilt) --
LABEL_BASE_ROOTFS_LAYOUT = "io.shipyard.rootfs-layout"

# -- containers shipyard starts (so leftovers can be found and removed) -----------
CONTAINER_SMOKE = "shipyard.smoke"
CONTAINER_PROMOTION = "shipyard.promotion"

# -- Kubernetes labels and annotations of the handoff manifests --------------------
K8S_TRACK = "shipyard.io/track"
K8S_MODEL = "shipyard.io/model"
K8S_RUN_ID = "shipyard.io/mlflow-run-id"
K8S_CANARY_WEIGHT = "shipyard.io/canary-weight"
K8S_APP = "shipyard.io/app"  # on every pod of a model: Flagger rewrites app.kubernetes.io/name on its primary pods
K8S_ENVIRONMENT = "shipyard.io/environment"  # the overlay (staging, production) an object was rendered for

# -- artifact paths inside an MLflow run ------------------------------------------
SOURCE_ARTIFACT = "lineage/flow_source.py"
ENV_LOCK_ARTIFACT = "lineage/requirements.lock.txt"
DATASET_ARTIFACT_DIR = "datasets"
GATES_ARTIFACT_DIR = "shipyard/gates"
GATES_CHECKS_ARTIFACT_DIR = "shipyard/gates/checks"  # one folder per check: its own report and data
ATTRIBUTIONS_ARTIFACT = "shipyard/attributions.json"  # on the candidate's run: feature attributions at gate time
ATTRIBUTIONS_PLOT_ARTIFACT = "shipyard/attributions.png"  # their bar plot
REFERENCE_ARTIFACT = "monitoring/reference_profile.json"  # on the model's run: what production is held against
MONITOR_ARTIFACT_DIR = "monitoring"  # on a monitoring run: drift.json, drift.html
# the model card (shipyard.model_card) on the version's run, and what the flow declared for it
MODEL_CARD_ARTIFACT = "shipyard/model_card.md"
MODEL_CARD_HTML_ARTIFACT = "shipyard/model_card.html"
MODEL_CARD_SPEC_ARTIFACT = "shipyard/model_card_spec.json"  # @shipyard.track(card=...) and MODEL_CARD.md
# on the version's run: the signed provenance statement of its image (a DSSE envelope, see deploy.provenance)
PROVENANCE_ARTIFACT = "shipyard/provenance.intoto.jsonl"

# -- monitoring: model-version tags written by `shipyard monitor` (and run tags of its runs) --
REFERENCE_TAG = "shipyard.reference.fingerprint"  # version tag: the reference profile's fingerprint
MONITOR_PREFIX = "shipyard.monitor."
MONITOR_VERDICT = "shipyard.monitor.verdict"  # pass | fail (a drift gate failed)
MONITOR_RUN = "shipyard.monitor.run"  # the MLflow run holding the last drift report
MONITOR_AT = "shipyard.monitor.at"
MONITOR_DRIFTED = "shipyard.monitor.drifted"  # comma-separated drifting columns ("" when none)
MONITOR_OF_VERSION = "shipyard.monitor.of"  # run tag of a monitoring run: "name/version" it watched

# -- the audit log's mirror: registered-model tags naming the last audit line about the model --
AUDIT_SEQ = "shipyard.audit.seq"
AUDIT_HASH = "shipyard.audit.hash"

# -- retraining: run and model-version tags written by `shipyard retrain` on the run it started --
RETRAIN_FROM = "shipyard.retrain.from"  # "name/version" whose recorded flow was run again
RETRAIN_DATA = "shipyard.retrain.data"  # absolute path of the data the flow was given


def dataset_artifact(name: str, kind: str) -> str:
    """Where ``log_dataset`` keeps dataset ``name``'s ``profile`` (JSON) or row ``sample`` (Parquet) on its run."""
    suffix = {"profile": "profile.json", "sample": "sample.parquet"}[kind]
    return f"{DATASET_ARTIFACT_DIR}/{name}.{suffix}"


def data_tag(name: str, field: str) -> str:
    """``shipyard.data.<name>.<field>``, e.g. ``data_tag("train", "sha256")``."""
    return f"{DATA_PREFIX}{name}.{field}"


def model_tag(name: str, field: str) -> str:
    """``shipyard.model.<name>.<field>``, e.g. ``model_tag("model", "uri")``."""
    return f"{MODEL_PREFIX}{name}.{field}"


def step_tag(step: str, field: str) -> str:
    return f"{STEP_PREFIX}{step}.{field}"


def gate_tag(gate: str) -> str:
    return f"{GATE_PREFIX}{gate}"


def alias_tag(alias: str, field: str) -> str:
    """Tag recording an alias move on the version it landed on, e.g. ``shipyard.alias.champion.by``."""
    return f"{ALIAS_PREFIX}{alias}.{field}"


def review_tag(field: str) -> str:
    return f"{REVIEW_PREFIX}{field}"


def approval_tag(who: str, field: str) -> str:
    """``who`` is an approver's key (see ``shipyard.promotion._duties.identity_key``), not the raw identity."""
    return f"{APPROVAL_PREFIX}{who}.{field}"


def refusal_tag(who: str, field: str) -> str:
    return f"{REFUSAL_PREFIX}{who}.{field}"


def retired_tag(field: str) -> str:
    return f"{RETIRED}.{field}"


def _family(tags: Mapping[str, str], prefix: str, field: str) -> dict[str, str]:
    suffix = f".{field}"
    return {
        key[len(prefix) : -len(suffix)]: value
        for key, value in tags.items()
        if key.startswith(prefix) and key.endswith(suffix) and len(key) > len(prefix) + len(suffix)
    }


def logged_models(tags: Mapping[str, str]) -> dict[str, str]:
    """Model name → URI of every model logged on a run, from its tags."""
    return _family(tags, MODEL_PREFIX, "uri")


def data_fingerprints(tags: Mapping[str, str]) -> dict[str, str]:
    """Dataset name → SHA-256 of every dataset logged on a run, from its tags."""
    return _family(tags, DATA_PREFIX, "sha256")


def gate_statuses(tags: Mapping[str, str]) -> dict[str, str]:
    """Gate name → status recorded in ``tags`` (the verdict, report and override tags left out)."""
    return {
        key[len(GATE_PREFIX) :]: value
        for key, value in tags.items()
        if key.startswith(GATE_PREFIX)
        and not key.startswith(GATE_OVERRIDE_PREFIX)
        and key[len(GATE_PREFIX) :] not in GATE_META
    }


def gate_override(tags: Mapping[str, str]) -> dict[str, str] | None:
    """The recorded override (``gates``, ``by``, ``at``, ``reason``), or None."""
    found = {k[len(GATE_OVERRIDE_PREFIX) :]: v for k, v in tags.items() if k.startswith(GATE_OVERRIDE_PREFIX)}
    return found or None


def approvals(tags: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """Approver key → ``{"by", "at", "comment", "identity_source"}`` of every recorded approval."""
    return {who: {f: tags.get(approval_tag(who, f), "") for f in APPROVAL_FIELDS}
            for who in _family(tags, APPROVAL_PREFIX, "by")}


def refusals(tags: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """Person key → ``{"by", "at", "rule", "comment"}`` of the last refused approval of each person."""
    return {who: {f: tags.get(refusal_tag(who, f), "") for f in REFUSAL_FIELDS}
            for who in _family(tags, REFUSAL_PREFIX, "by")}


def review(tags: Mapping[str, str]) -> dict[str, str]:
    """The review record on a version (``state``, ``by``, ``at``, ``comment``); empty when none."""
    return {k[len(REVIEW_PREFIX) :]: v for k, v in tags.items() if k.startswith(REVIEW_PREFIX)}


@dataclass(frozen=True)
class Lineage:
    """Where a model version came from, read from and written to tags and labels in one place.

    Every layer that shows or stamps lineage (the registry, bento and image
    labels, the generated service, the handoff bundle, ``shipyard review``,
    the MLflow plugin) builds it here and reads it back with the inverse.

    Attributes:
        model_name: registered model name ("" for an unregistered run).
        model_version: registered version ("" for an unregistered run).
        run_id: the MLflow run that produced the model.
        pathspec: the Metaflow run (``Flow/run_id``).
        source_sha256: SHA-256 of the flow source (the notebook cell or file).
        data: ``(dataset name, SHA-256)`` of every dataset the run logged, sorted by name.
        git_commit: the project's git commit when the run started.
        env_lock_sha256: SHA-256 of the run's environment lock.
        model_sha256: SHA-256 of the model files.
        gate_verdict: the recorded gate verdict (``pass``, ``fail``, ``overridden``; "" when never checked).
        source: where the flow source lives (git remote, else the notebook or file path).

    Example:
        >>> lin = Lineage.from_tags({PATHSPEC: "TrainFlow/12", data_tag("train", "sha256"): "ab12"}, run_id="r1")
        >>> lin.pathspec, lin.data_fingerprint
        ('TrainFlow/12', 'ab12')
        >>> Lineage.from_labels(lin.to_labels()) == lin
        True
    """

    model_name: str = ""
    model_version: str = ""
    run_id: str = ""
    pathspec: str = ""
    source_sha256: str = ""
    data: tuple[tuple[str, str], ...] = ()
    git_commit: str = ""
    env_lock_sha256: str = ""
    model_sha256: str = ""
    gate_verdict: str = ""
    source: str = ""

    @property
    def data_fingerprint(self) -> str:
        """One digest for all datasets: the dataset's own when there is one, else a hash of the sorted list."""
        if not self.data:
            return ""
        if len(self.data) == 1:
            return self.data[0][1]
        joined = "\n".join(sorted(f"{data_tag(name, 'sha256')}={sha}" for name, sha in self.data))
        return hashlib.sha256(joined.encode()).hexdigest()

    @classmethod
    def from_tags(
        cls,
        run_tags: Mapping[str, str],
        version_tags: Mapping[str, str] | None = None,
        *,
        model: str = "model",
        name: str = "",
        version: str = "",
        run_id: str = "",
    ) -> Lineage:
        """Lineage of a run (and, given its tags, of the registered version made from it).

        Args:
            run_tags: the MLflow run's tags.
            version_tags: the model version's tags, which hold its own gate verdict.
            model: the name the model was logged under on the run.
        """
        own = version_tags if version_tags is not None else run_tags
        # the run is the record; a version registered by shipyard carries a copy for when its run is gone
        tags = {**own, **run_tags}
        return cls(
            model_name=name,
            model_version=str(version or ""),
            run_id=run_id,
            pathspec=tags.get(PATHSPEC, ""),
            source_sha256=tags.get(SOURCE_SHA256, ""),
            data=tuple(sorted(data_fingerprints(tags).items())),
            git_commit=tags.get(GIT_COMMIT) or tags.get(MLFLOW_GIT_COMMIT, ""),
            env_lock_sha256=tags.get(ENV_LOCK_SHA256, ""),
            model_sha256=own.get(LABEL_MODEL_SHA256)
            or own.get(model_tag(model, "sha256"))
            or run_tags.get(model_tag(model, "sha256"), ""),
            gate_verdict=own.get(GATE_VERDICT, ""),
            source=tags.get(MLFLOW_GIT_REPO_URL) or tags.get(MLFLOW_SOURCE_NAME, ""),
        )

    def to_tags(self) -> dict[str, str]:
        """The lineage as the tags a registered version carries (empty values left out).

        The model digest goes under ``shipyard.model.sha256``: a version holds one
        model, whatever name it was logged under on its run.
        """
        values = {
            PATHSPEC: self.pathspec,
            SOURCE_SHA256: self.source_sha256,
            GIT_COMMIT: self.git_commit,
            ENV_LOCK_SHA256: self.env_lock_sha256,
            LABEL_MODEL_SHA256: self.model_sha256,
            GATE_VERDICT: self.gate_verdict,
            **{data_tag(name, "sha256"): sha for name, sha in self.data},
        }
        return {k: v for k, v in values.items() if v}

    def to_labels(self) -> dict[str, str]:
        """Flat ``shipyard.*`` labels for the bento, the image and the generated service (empty values left out)."""
        values = {
            LABEL_MODEL_NAME: self.model_name,
            LABEL_MODEL_VERSION: self.model_version,
            LABEL_RUN_ID: self.run_id,
            PATHSPEC: self.pathspec,
            SOURCE_SHA256: self.source_sha256,
            LABEL_DATA_FINGERPRINT: self.data_fingerprint,
            GIT_COMMIT: self.git_commit,
            ENV_LOCK_SHA256: self.env_lock_sha256,
            LABEL_MODEL_SHA256: self.model_sha256,
            GATE_VERDICT: self.gate_verdict,
            LABEL_SOURCE: self.source,
            **{data_tag(name, "sha256"): sha for name, sha in self.data},
        }
        return {k: v for k, v in values.items() if v}

    @classmethod
    def from_labels(cls, labels: Mapping[str, str]) -> Lineage:
        """The inverse of :meth:`to_labels` (other labels are ignored)."""
        return cls(
            model_name=labels.get(LABEL_MODEL_NAME, ""),
            model_version=labels.get(LABEL_MODEL_VERSION, ""),
            run_id=labels.get(LABEL_RUN_ID, ""),
            pathspec=labels.get(PATHSPEC, ""),
            source_sha256=labels.get(SOURCE_SHA256, ""),
            data=tuple(sorted(data_fingerprints(labels).items())),
            git_commit=labels.get(GIT_COMMIT, ""),
            env_lock_sha256=labels.get(ENV_LOCK_SHA256, ""),
            model_sha256=labels.get(LABEL_MODEL_SHA256, ""),
            gate_verdict=labels.get(GATE_VERDICT, ""),
            source=labels.get(LABEL_SOURCE, ""),
        )

    def to_dict(self) -> dict[str, Any]:
        """The lineage as ``handoff.json`` and ``shipyard review`` show it."""
        return {
            "model": self.model_name,
            "version": self.model_version,
            "mlflow_run_id": self.run_id,
            "metaflow_pathspec": self.pathspec,
            "source_sha256": self.source_sha256,
            "data_sha256": dict(self.data),
            "data_fingerprint": self.data_fingerprint,
            "git_commit": self.git_commit,
            "env_lock_sha256": self.env_lock_sha256,
            "model_sha256": self.model_sha256,
            "gate_verdict": self.gate_verdict,
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Lineage:
        """The inverse of :meth:`to_dict`."""
        return cls(
            model_name=str(data.get("model") or ""),
            model_version=str(data.get("version") or ""),
            run_id=str(data.get("mlflow_run_id") or ""),
            pathspec=str(data.get("metaflow_pathspec") or ""),
            source_sha256=str(data.get("source_sha256") or ""),
            data=tuple(sorted((str(k), str(v)) for k, v in (data.get("data_sha256") or {}).items())),
            git_commit=str(data.get("git_commit") or ""),
            env_lock_sha256=str(data.get("env_lock_sha256") or ""),
            model_sha256=str(data.get("model_sha256") or ""),
            gate_verdict=str(data.get("gate_verdict") or ""),
            source=str(data.get("source") or ""),
        )
