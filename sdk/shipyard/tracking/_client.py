"""MLflow clients and experiments for a workspace, and MLflow's errors as shipyard's.

The client holds the workspace's URIs; nothing here touches MLflow's
process-wide (fluent) state, so a user's own ``mlflow.*`` calls keep the store
they chose. The few MLflow calls that need that state go through
:func:`shipyard.tracking._mlflow.fluent_store`.

Artifacts go where the experiment's artifact location says: the workspace for
the embedded store, the server's own store (``mlflow-artifacts:/``, proxied)
for a tracking server, or the ``artifact_root`` setting (``s3://bucket/prefix``)
for experiments created while it is set. Clients then read and write an
``s3://`` location themselves, so :func:`check_artifact_store` asks the
bucket once per process before the first run uses it.

Q: Why ask the bucket before anything is written?
A: Without it, a bad S3 configuration shows up as a botocore traceback in the
   middle of ``log_model``, after the training it was meant to keep. One
   ``HeadBucket`` (a few milliseconds) at the first run tells which setting is
   wrong before any work starts.
"""

from __future__ import annotations

import functools
import os
import threading
from typing import TYPE_CHECKING

from .._core.errors import TrackingError, TrackingUnavailable
from .._core.workspace import Workspace, slug

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient


@functools.lru_cache(maxsize=8)
def _client(tracking_uri: str, registry_uri: str) -> MlflowClient:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)


def client_for(ws: Workspace) -> MlflowClient:
    """The MLflow client for ``ws`` (cached per URI pair); it changes no process-wide MLflow state."""
    return _client(ws.tracking_uri, ws.registry_uri)


def experiment_id(ws: Workspace, name: str) -> str:
    """Id of experiment ``name``; a new one keeps its artifacts where :func:`new_artifact_location` says.

    Raises:
        TrackingError: MLflow refused, or the experiment's ``s3://`` store is misconfigured
            (:func:`check_artifact_store`).
    """
    from mlflow.exceptions import MlflowException

    client = client_for(ws)
    try:
        found = client.get_experiment_by_name(name)
        if found is not None:
            check_artifact_store(found.artifact_location)
            return found.experiment_id
        location = new_artifact_location(ws, name)
        check_artifact_store(location)  # before creating it: a bad configuration leaves nothing behind
        try:
            return client.create_experiment(name, artifact_location=location)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":  # lost a race with another step: fine
                raise
            found = client.get_experiment_by_name(name)
            assert found is not None
            return found.experiment_id
    except MlflowException as exc:
        raise tracking_error(ws, exc) from exc


def tracking_error(ws: Workspace, exc: Exception) -> TrackingError:
    """Translate an MLflow error into the shipyard error that says what to do."""
    text = str(exc)
    if "Connection" in text or "Max retries" in text or "refused" in text:
        return TrackingUnavailable(
            f"The MLflow tracking backend at {ws.tracking_uri} cannot be reached: {text.splitlines()[0]}",
            hint="Start the tracking server or unset SHIPYARD_TRACKING_URI to use the embedded store.",
        )
    return TrackingError(f"MLflow refused the request: {text.splitlines()[0]}")


def new_artifact_location(ws: Workspace, experiment: str) -> str | None:
    """Where a new experiment keeps its artifacts: under ``artifact_root`` when set, else in the
    workspace for the embedded store, else (None) where the tracking server puts them.

    The experiment's folder under ``artifact_root`` is its :func:`~shipyard._core.workspace.slug`: runs
    and logged models have folders of their own ids below it, so two names sharing a slug share nothing else.

    Example:
        >>> new_artifact_location(shipyard.init(artifact_root="s3://ml/team-a"), "Churn Model")  # doctest: +SKIP
        's3://ml/team-a/churn-model-ad818e'
    """
    root = ws.settings.artifact_root
    if root:
        return f"{root.rstrip('/')}/{slug(experiment)}"
    return (ws.artifacts_dir / experiment).as_uri() if ws.embedded else None


_S3_ENDPOINT_ENV = "MLFLOW_S3_ENDPOINT_URL"  # what MLflow's S3 artifact repository reads
_S3_CREDENTIALS = "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"
_S3_CREDENTIAL_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE")
_MISSING_BUCKET = ("NoSuchBucket",)
_REFUSED = ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "ExpiredToken", "InvalidToken", "403")
_checked_stores: set[tuple[str | None, ...]] = set()
_checked_guard = threading.Lock()


def check_artifact_store(location: str | None) -> None:
    """Ask an ``s3://`` artifact location's bucket once per process (and configuration) whether it is usable.

    Other locations (the workspace, a server's ``mlflow-artifacts:/``) are not checked: their failures
    already come back as MLflow errors.

    Raises:
        TrackingUnavailable: the S3 endpoint cannot be reached.
        TrackingError: no or wrong credentials, a missing bucket, or another S3 refusal; each says
            which setting or environment variable to fix.
    """
    if not location or not location.startswith("s3://"):
        return
    from urllib.parse import urlparse

    bucket = urlparse(location).netloc
    # asked again when the configuration changes, e.g. after a fix in a notebook's environment
    key = (bucket, *(os.environ.get(n) for n in (_S3_ENDPOINT_ENV, *_S3_CREDENTIAL_VARIABLES)))
    with _checked_guard:
        if key in _checked_stores:
            return
    try:
        import boto3.session
        from botocore.config import Config
    except ImportError as exc:
        from .._core.errors import MissingDependency

        raise MissingDependency(
            f"The artifact location {location} is in S3, and boto3 is not installed.",
            hint="pip install 'shipyard[team]' (or boto3): MLflow reads and writes S3 through it.",
        ) from exc
    ignore_tls = os.environ.get("MLFLOW_S3_IGNORE_TLS", "").lower() in ("1", "true", "yes")
    try:
        # a session of its own: the default one keeps the first credentials it found for the process's life
        client = boto3.session.Session().client(
            "s3",
            endpoint_url=os.environ.get(_S3_ENDPOINT_ENV) or None,
            verify=False if ignore_tls else None,
            config=Config(connect_timeout=5, read_timeout=15, retries={"max_attempts": 2, "mode": "standard"}),
        )
        client.head_bucket(Bucket=bucket)
    except Exception as exc:
        translated = artifact_store_error(exc, location)
        if translated is None:
            raise
        raise translated from exc
    with _checked_guard:
        _checked_stores.add(key)


def artifact_store_error(exc: BaseException, location: str) -> TrackingError | None:
    """The shipyard error for a boto3/botocore failure on the S3 artifact ``location``; None for other errors.

    Example:
        >>> artifact_store_error(ValueError("no"), "s3://b/p") is None
        True
    """
    module = type(exc).__module__ or ""
    if not module.startswith(("botocore", "boto3")):
        return None
    from urllib.parse import urlparse

    bucket = urlparse(location).netloc
    endpoint = os.environ.get(_S3_ENDPOINT_ENV)
    where = endpoint or f"AWS S3 ({_S3_ENDPOINT_ENV} is not set)"
    name = type(exc).__name__
    text = str(exc).splitlines()[0] if str(exc) else name
    if name in ("NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"):
        return TrackingError(
            f"No S3 credentials were found for the artifact store {location} ({text}).",
            hint=f"Set {_S3_CREDENTIALS} for {where}.",
        )
    if name in ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError", "ReadTimeoutError",
                "ProxyConnectionError", "SSLError", "InvalidEndpointConfigurationError"):
        return TrackingUnavailable(
            f"The S3 endpoint of the artifact store {location} cannot be reached: {text}",
            hint=f"Set {_S3_ENDPOINT_ENV} to the URL of your S3-compatible store (e.g. http://minio:9000), or "
            "fix artifact_root (SHIPYARD_ARTIFACT_ROOT)"
            + (f"; {_S3_ENDPOINT_ENV} is {endpoint} now." if endpoint else "; it is not set, so AWS S3 was asked."),
        )
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if not code:  # boto3's transfer errors (S3UploadFailedError) carry the S3 error only in their text
        code = next((c for c in (*_MISSING_BUCKET, *_REFUSED) if f"({c})" in text), "")
    if code in _MISSING_BUCKET or (status == 404 and getattr(exc, "operation_name", "") == "HeadBucket"):
        return TrackingError(
            f"The bucket {bucket!r} of the artifact store {location} does not exist at {where}.",
            hint=f"Create it (e.g. `aws s3 mb s3://{bucket}`), or fix artifact_root (SHIPYARD_ARTIFACT_ROOT) "
            f"or {_S3_ENDPOINT_ENV}.",
        )
    if code in _REFUSED or status in (401, 403):
        return TrackingError(
            f"{where} refused the credentials for bucket {bucket!r} of the artifact store {location} "
            f"({code or status}).",
            hint=f"Fix {_S3_CREDENTIALS}; the key needs s3:ListBucket on the bucket and s3:GetObject and "
            "s3:PutObject on its objects.",
        )
    return TrackingError(
        f"The S3 artifact store {location} at {where} failed: {text}",
        hint=f"Check artifact_root (SHIPYARD_ARTIFACT_ROOT), {_S3_ENDPOINT_ENV} and {_S3_CREDENTIALS}.",
    )
