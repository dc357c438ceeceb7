"""Names of the lineage tags and artifacts shipyard writes, shared by every layer.

MLflow run tags are the single source of truth for lineage; other layers
(gates, packaging, review) read them by these names.
"""

from __future__ import annotations

PREFIX = "shipyard."

MANAGED = "shipyard.managed"  # "true" on every run shipyard created
FLOW = "shipyard.flow"  # Metaflow flow name
PATHSPEC = "shipyard.metaflow.pathspec"  # Flow/run_id, MLflow → Metaflow
MLFLOW_RUN_TAG = "mlflow_run_id"  # Metaflow run tag "mlflow_run_id:<id>", Metaflow → MLflow
SOURCE_SHA256 = "shipyard.source.sha256"  # hash of the flow source (the notebook cell)
SOURCE_KIND = "shipyard.source.kind"  # "notebook-cell" or "file"
NOTEBOOK = "shipyard.notebook"  # notebook path when known
GIT_COMMIT = "shipyard.git.commit"
GIT_DIRTY = "shipyard.git.dirty"
PYTHON = "shipyard.python"
ENV_LOCK_SHA256 = "shipyard.env.lock.sha256"
STEP_PREFIX = "shipyard.step."  # shipyard.step.<name>.status / .task / .seconds
DATA_PREFIX = "shipyard.data."  # shipyard.data.<name>.sha256 / .rows
MODEL_PREFIX = "shipyard.model."  # shipyard.model.<name>.uri / .flavor / .sha256
GATE_PREFIX = "shipyard.gate."  # shipyard.gate.<name> = pass|fail|warn|overridden

# artifact paths inside an MLflow run
SOURCE_ARTIFACT = "lineage/flow_source.py"
ENV_LOCK_ARTIFACT = "lineage/requirements.lock.txt"
DATASET_ARTIFACT_DIR = "datasets"


def data_tag(name: str, field: str) -> str:
    return f"{DATA_PREFIX}{name}.{field}"


def model_tag(name: str, field: str) -> str:
    return f"{MODEL_PREFIX}{name}.{field}"


def step_tag(step: str, field: str) -> str:
    return f"{STEP_PREFIX}{step}.{field}"
