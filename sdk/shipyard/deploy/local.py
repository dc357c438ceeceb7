"""Running a handoff bundle's production Deployment on this machine, with ``podman kube play``.

What runs is what a cluster would run: the production overlay rendered by
kustomize (:func:`render`), its Deployment (the one an Argo ``Rollout`` refers to
with ``workloadRef``, in Argo modes) and the Service in front of it. Podman
reads the Deployment's YAML itself; shipyard changes only what a single machine
needs (:func:`local_manifest`): one replica, the Service's port published on
``127.0.0.1``, volumes named per deployment, and (with ``serving_auth``) the
serving-token Secret as a folder of this machine holding a token made for it.
A field podman would not honour is refused with a :class:`~shipyard.DeployError`
naming it, never dropped.

One deployment per model: deploying again starts the new pod, waits until it
is ready and only then stops the old one (a failed start leaves the old one
serving). What runs is recorded under ``<workspace>/deploy-local/``.

Q: Why podman, not Docker?
A: ``podman kube play`` reads the Kubernetes objects themselves, so the
   security context (uid, read-only root filesystem, dropped capabilities,
   no privilege escalation), the resources and the image pin are the bundle's,
   not a translation of them that could drift.

Q: Why are the probes handled by shipyard?
A: Podman 4.3 ignores ``readinessProbe`` and turns ``livenessProbe`` into a
   healthcheck that needs ``curl`` in the image and systemd timers on the host,
   and cannot resolve a named port. Readiness is polled here, through the
   published port, until the probe's path answers 200; liveness is not run.
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
import resource
import secrets
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .._core.errors import DeployError
from .._core.workspace import Workspace, slug
from ..monitoring.auth import TOKEN_FILE
from .handoff import TOKEN_VOLUME

READY_TIMEOUT = 180.0  # seconds: pulling a model image and loading the model
_PLAY_TIMEOUT = 600
_ID = re.compile(r"^[0-9a-f]{64}$")

# Fields of the pod template podman honours as Kubernetes means them. Anything else is refused by name.
_POD_FIELDS = {"containers", "securityContext", "volumes", "automountServiceAccountToken", "serviceAccountName",
               "terminationGracePeriodSeconds"}
_POD_SECURITY = {"runAsNonRoot", "runAsUser", "runAsGroup", "seccompProfile"}
_CONTAINER_FIELDS = {"name", "image", "imagePullPolicy", "command", "args", "env", "ports", "resources",
                     "readinessProbe", "livenessProbe", "securityContext", "volumeMounts", "workingDir"}
_CONTAINER_SECURITY = {"runAsNonRoot", "runAsUser", "runAsGroup", "readOnlyRootFilesystem",
                       "allowPrivilegeEscalation", "capabilities", "seccompProfile"}
_LOCAL_REGISTRY_HOSTS = ("localhost", "127.0.0.1", "[::1]")
_TOKEN_NAME = TOKEN_FILE.rpartition("/")[2]  # the file the service reads, in the folder the Secret is mounted on


@dataclass(frozen=True)
class LocalDeployment:
    """One model's deployment on this machine, as recorded.

    Attributes:
        model: registered model name.
        version: the model version the bundle is for.
        bundle: the bundle directory it was rendered from.
        name: the pod's Kubernetes name (``<app>-<version>-<token>``); podman's pod is ``<name>-pod-0``.
        pod_id, container_id: podman's ids of the pod and of the model's container.
        image: the image reference the Deployment pins.
        port: the host port the Service's port is published on (on 127.0.0.1).
        ready_path: the readiness probe's path.
        manifest: the YAML played (kept for ``podman kube down``).
        volumes: podman volumes made for the Deployment's ``emptyDir`` volumes (removed on stop).
        started_at: when it became ready (seconds since the epoch).
        token_file: with ``serving_auth``, the file holding the bearer token requests must carry (kept
            across deployments of the model, so a redeploy or a rollback keeps its clients); else empty.
    """

    model: str
    version: str
    bundle: str
    name: str
    pod_id: str
    container_id: str
    image: str
    port: int
    ready_path: str
    manifest: str
    volumes: tuple[str, ...]
    started_at: float
    token_file: str = ""

    @property
    def url(self) -> str:
        """Where the Service answers: ``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"


@dataclass(frozen=True)
class LocalManifest:
    """What :func:`local_manifest` makes of a Deployment and its Service."""

    deployment: dict[str, Any]
    name: str
    port: int
    ready_path: str
    image: str
    volumes: tuple[str, ...]
    notes: tuple[str, ...]


# ----------------------------------------------------------------------------------------------------------- render


def render(bundle: Path) -> list[dict[str, Any]]:
    """The objects of a bundle's production overlay, as ``kubectl apply -k overlays/production`` would apply.

    A bundle written before overlays existed is rendered from its ``k8s/`` folder.

    Raises:
        DeployError: the bundle has neither, or kustomize refused it.

    Example:
        >>> [o["kind"] for o in render(ws.bundle_dir("iris", "3"))]     # doctest: +SKIP
        ['ServiceAccount', 'Service', 'Deployment', ...]
    """
    from .kustomize import build

    for folder in (bundle / "overlays" / "production", bundle / "k8s"):
        if (folder / "kustomization.yaml").is_file():
            return build(folder)
    raise DeployError(
        f"{bundle} has no overlays/production/kustomization.yaml, so there is nothing to deploy.",
        hint="Promote the version again with shipyard.promote() to write its bundle.",
    )


def select(objects: Sequence[Mapping[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The Deployment that serves production traffic and the Service in front of it.

    In Argo Rollouts modes the ``Rollout`` names the Deployment with ``workloadRef``; that Deployment is run
    (progressive delivery needs a cluster; a single machine runs the stable pod).

    Raises:
        DeployError: no Deployment, no Service selecting it, or more than one candidate.

    Example:
        >>> deployment, service = select(render(bundle))     # doctest: +SKIP
    """
    deployments = {o["metadata"]["name"]: dict(o) for o in objects if o.get("kind") == "Deployment"}
    services = [dict(o) for o in objects if o.get("kind") == "Service"]
    referenced = [
        o["spec"]["workloadRef"]["name"]
        for o in objects
        if o.get("kind") == "Rollout" and (o.get("spec") or {}).get("workloadRef", {}).get("kind") == "Deployment"
    ]
    if referenced:
        names = [n for n in referenced if n in deployments]
    elif len(deployments) == 1:
        names = list(deployments)
    else:
        # several Deployments (a canary beside the stable one): production's is the one named like its Service
        names = [n for n in deployments if any(s["metadata"]["name"] == n for s in services)]
    if len(names) != 1:
        kinds = sorted({str(o.get("kind")) for o in objects})
        raise DeployError(
            f"Cannot tell which Deployment to run: found {sorted(deployments) or 'none'} among {kinds}.",
            hint="A bundle's production overlay has one Deployment (referred to by a Rollout in Argo modes).",
        )
    deployment = deployments[names[0]]
    pod_labels = deployment["spec"]["template"]["metadata"].get("labels") or {}
    selecting = [
        s for s in services
        if (s.get("spec") or {}).get("selector")
        and all(pod_labels.get(k) == v for k, v in s["spec"]["selector"].items())
    ]
    selecting += _flagger_services(objects, names[0], pod_labels) if not selecting else []
    if not selecting:
        raise DeployError(
            f"No Service selects the pods of Deployment {names[0]}.",
            hint="The bundle's base/service.yaml selects app.kubernetes.io/name; check the overlay's patches.",
        )
    # the stable Service (named like the app) before preview/canary ones Argo adds
    selecting.sort(key=lambda s: s["metadata"]["name"] != names[0])
    return deployment, selecting[0]


def _flagger_services(objects: Sequence[Mapping[str, Any]], deployment: str,
                      pod_labels: Mapping[str, str]) -> list[dict[str, Any]]:
    """The Service a Flagger ``Canary`` makes for ``deployment`` (a bundle in flagger mode has none of its own)."""
    for canary in objects:
        spec = canary.get("spec") or {}
        if canary.get("kind") == "Canary" and (spec.get("targetRef") or {}).get("name") == deployment:
            service = spec.get("service") or {}
            port = {"name": service.get("portName", "http"), "port": service["port"],
                    "targetPort": service.get("targetPort", service["port"])}
            selector = {"app.kubernetes.io/name": pod_labels.get("app.kubernetes.io/name", deployment)}
            return [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": deployment},
                     "spec": {"selector": selector, "ports": [port]}}]
    return []


# ------------------------------------------------------------------------------------------------ translate (pure)


def unsupported_fields(deployment: Mapping[str, Any]) -> list[str]:
    """Paths of the fields of ``deployment`` that a local run would not honour (empty when it runs as written).

    Example:
        >>> unsupported_fields({"spec": {"template": {"spec": {"containers": [{"name": "m", "image": "i"}],
        ...                                                    "initContainers": []}}}})
        ['spec.template.spec.initContainers']
    """
    found: list[str] = []
    pod = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
    base = "spec.template.spec"
    found += [f"{base}.{k}" for k in pod if k not in _POD_FIELDS]
    found += [f"{base}.securityContext.{k}" for k in pod.get("securityContext") or {} if k not in _POD_SECURITY]
    containers = pod.get("containers") or []
    if len(containers) != 1:
        found.append(f"{base}.containers (exactly one container is supported, found {len(containers)})")
    for i, container in enumerate(containers):
        at = f"{base}.containers[{i}]"
        found += [f"{at}.{k}" for k in container if k not in _CONTAINER_FIELDS]
        security = container.get("securityContext") or {}
        found += [f"{at}.securityContext.{k}" for k in security if k not in _CONTAINER_SECURITY]
        found += [f"{at}.securityContext.capabilities.{k}" for k in security.get("capabilities") or {} if k != "drop"]
        for j, env in enumerate(container.get("env") or []):
            if set(env) - {"name", "value"}:
                found.append(f"{at}.env[{j}] ({env.get('name')}: only literal values)")
        for probe in ("readinessProbe", "livenessProbe"):
            if probe in container and "httpGet" not in container[probe]:
                found.append(f"{at}.{probe} (only httpGet probes)")
        for j, mount in enumerate(container.get("volumeMounts") or []):
            found += [f"{at}.volumeMounts[{j}].{k}" for k in mount if k not in ("name", "mountPath", "readOnly")]
    for security in [pod.get("securityContext") or {}] + [c.get("securityContext") or {} for c in containers]:
        seccomp = security.get("seccompProfile")
        if seccomp and seccomp.get("type") != "RuntimeDefault":
            found.append(f"{base}...seccompProfile.type={seccomp.get('type')} (only RuntimeDefault)")
    for i, volume in enumerate(pod.get("volumes") or []):
        kinds = set(volume) - {"name"}
        if _is_token_volume(volume):
            continue  # the serving token: a folder of this machine takes the Secret's place (local_manifest)
        if kinds != {"emptyDir"}:
            found.append(f"{base}.volumes[{i}] ({volume.get('name')}: {', '.join(sorted(kinds))}; only emptyDir)")
    return found


def local_manifest(deployment: Mapping[str, Any], service: Mapping[str, Any], *, host_port: int,
                   token: str, token_dir: Path | None = None) -> LocalManifest:
    """The Deployment podman plays on this machine, made from the bundle's ``deployment`` and ``service``.

    Changed, and nothing else: one replica; the container port the Service targets published on
    ``127.0.0.1:host_port``; the Deployment named ``<name>-<version label>-<token>`` (a new one can start
    beside the old one); each ``emptyDir`` a podman volume of that name (podman keeps volumes by name, so
    two deployments would otherwise share one); the liveness probe left out (see the module's docstring);
    the serving-token Secret volume a ``hostPath`` of ``token_dir`` (read-only, as the Secret is).

    Raises:
        DeployError: a field would not be honoured (:func:`unsupported_fields`, all of them named), or the
            Service targets no port of the container.

    Example:
        >>> local = local_manifest(deployment, service, host_port=8080, token="3f2a")   # doctest: +SKIP
        >>> local.deployment["spec"]["replicas"], local.port                           # doctest: +SKIP
        (1, 8080)
    """
    name = deployment.get("metadata", {}).get("name", "?")
    unsupported = unsupported_fields(deployment)
    if unsupported:
        raise DeployError(
            f"Deployment {name} cannot run on this machine as written; not supported here: "
            + "; ".join(unsupported) + ".",
            hint="Deploy this bundle to a Kubernetes cluster (kubectl apply -k overlays/production), or remove "
            "those fields from the overlay.",
        )
    out = copy.deepcopy(dict(deployment))
    pod = out["spec"]["template"]["spec"]
    container = pod["containers"][0]
    version = out["metadata"].get("labels", {}).get("app.kubernetes.io/version", "")
    local_name = "-".join(p for p in (name, version, token) if p)[:63].strip("-")
    out["metadata"] = {k: v for k, v in out["metadata"].items() if k in ("labels", "annotations")}
    out["metadata"]["name"] = local_name
    notes = []
    if out["spec"].get("replicas", 1) != 1:
        notes.append(f"runs 1 replica (the Deployment says {out['spec']['replicas']})")
    out["spec"]["replicas"] = 1

    target = _target_port(service, container)
    for port in container.get("ports") or []:
        port.pop("hostPort", None)
        port.pop("hostIP", None)
        if port.get("containerPort") == target:
            port.update(hostPort=host_port, hostIP="127.0.0.1")
    if not any(p.get("containerPort") == target for p in container.get("ports") or []):
        container.setdefault("ports", []).append(
            {"containerPort": target, "hostPort": host_port, "hostIP": "127.0.0.1", "protocol": "TCP"}
        )

    ready_path = "/"
    if "readinessProbe" in container:
        get = container.pop("readinessProbe")["httpGet"]
        ready_path = get.get("path", "/")
        if _port_number(get.get("port"), container) != target:
            raise DeployError(
                f"Deployment {name}'s readiness probe checks port {get.get('port')}, not the port the Service "
                f"targets ({target}); only the Service's port is published here.",
                hint="Probe the serving port, as the bundle generator does.",
            )
    else:
        notes.append("no readiness probe: ready when / answers 200")
    if container.pop("livenessProbe", None) is not None:
        notes.append("liveness probe not run locally")

    renamed = {v["name"]: f"{local_name}-{v['name']}"[:63] for v in pod.get("volumes") or []}
    made = []
    for volume in pod.get("volumes") or []:
        is_token = _is_token_volume(volume)
        volume["name"] = renamed[volume["name"]]
        if is_token:
            if token_dir is None:
                raise DeployError(f"Deployment {name} mounts the serving token, and no local token folder was given.")
            volume.pop("secret")
            volume["hostPath"] = {"path": str(token_dir), "type": "Directory"}
            notes.append(f"the serving token is read from {token_dir / _TOKEN_NAME}, not from a Kubernetes Secret")
            continue
        made.append(volume["name"])
        # podman 4.3 makes an emptyDir a volume on disk: no size cap, no tmpfs; the files still go with the pod
        if set(volume["emptyDir"] or {}) & {"sizeLimit", "medium"}:
            notes.append(f"emptyDir {volume['name']}: sizeLimit/medium not enforced locally")
            volume["emptyDir"] = {}
    for mount in container.get("volumeMounts") or []:
        mount["name"] = renamed.get(mount["name"], mount["name"])
    return LocalManifest(out, local_name, host_port, ready_path, container["image"], tuple(made), tuple(notes))


def _port_number(port: Any, container: Mapping[str, Any]) -> int:
    if isinstance(port, int):
        return port
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    if str(port).isdigit():
        return int(port)
    raise DeployError(
        f"Port {port!r} is not a port of container {container.get('name')}.",
        hint="Name the port in the container's ports, as the bundle generator does.",
    )


def _target_port(service: Mapping[str, Any], container: Mapping[str, Any]) -> int:
    ports = (service.get("spec") or {}).get("ports") or []
    if not ports:
        raise DeployError(f"Service {service.get('metadata', {}).get('name')} has no ports.")
    http = next((p for p in ports if p.get("name") == "http"), ports[0])
    return _port_number(http.get("targetPort", http.get("port")), container)


# ------------------------------------------------------------------------------------------------------- run, stop


def deploy(workspace: Workspace, bundle: Path, *, port: int | None = None,
           ready_timeout: float = READY_TIMEOUT) -> tuple[LocalDeployment, tuple[str, ...]]:
    """Run ``bundle``'s production Deployment on this machine; replace the model's running one once it is ready.

    Args:
        workspace: where the deployment is recorded.
        bundle: a handoff bundle directory (``ws.bundle_dir(model, version)``).
        port: host port for the Service (on 127.0.0.1); default: a free one, so the new pod starts beside a
            running one. Given the running one's port, that one is stopped first and started again if the new
            one fails (what :func:`replay` does, so a rollback keeps the URL).
        ready_timeout: seconds to wait for the readiness probe.

    Returns:
        The recorded deployment, and notes on what differs from a cluster (one replica, ...).

    Raises:
        DeployError: unsupported fields, podman missing or failing, or the pod did not become ready (the old
            deployment, if any, keeps running).

    Example:
        >>> running, notes = deploy(ws, ws.bundle_dir("iris", "3"))      # doctest: +SKIP
        >>> running.url                                                 # doctest: +SKIP
        'http://127.0.0.1:41327'
    """
    from filelock import FileLock

    handoff = _handoff(bundle)
    model, version = handoff["model"]["name"], str(handoff["model"]["version"])
    deployment, service = select(render(bundle))
    workspace.locks_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(workspace.lock_path("deploy-local", model))):  # one replacement of a model at a time
        return _replace(workspace, bundle, model, version, deployment, service, port, ready_timeout)


def _replace(workspace: Workspace, bundle: Path, model: str, version: str, deployment: dict[str, Any],
             service: dict[str, Any], port: int | None, ready_timeout: float,
             ) -> tuple[LocalDeployment, tuple[str, ...]]:
    import yaml

    old = running(workspace, model)
    stale = recorded(workspace, model) if old is None else None  # stopped (a reboot): cleaned up on success
    if port is None or (old is not None and port != old.port):
        host_port = port or _free_port()
        stop_old_first = False
    else:
        host_port = port
        # the old pod holds the port: stop it, and play it again if the new one fails
        stop_old_first = old is not None
    folder = _model_dir(workspace, model)
    folder.mkdir(parents=True, exist_ok=True)
    token_dir = _token_dir(folder) if _mounts_token(deployment) else None
    local = local_manifest(deployment, service, host_port=host_port, token=secrets.token_hex(3), token_dir=token_dir)
    manifest = folder / f"{local.name}.yaml"
    manifest.write_text(yaml.safe_dump(local.deployment, sort_keys=False))
    if stop_old_first and old is not None:
        _down(old, keep_manifest=True)
    try:
        pod_id, container_id = _play(manifest, local.image)
        new = LocalDeployment(model, version, str(bundle), local.name, pod_id, container_id, local.image,
                              local.port, local.ready_path, str(manifest), local.volumes, 0.0,
                              str(token_dir / _TOKEN_NAME) if token_dir else "")
        try:
            _wait_ready(new, ready_timeout)
        except BaseException:
            _down(new)
            raise
    except BaseException as exc:
        manifest.unlink(missing_ok=True)
        if stop_old_first and old is not None:
            _restart(workspace, old, ready_timeout, cause=exc)
        raise
    new = LocalDeployment(**{**asdict(new), "started_at": time.time()})
    _write(workspace, new)
    for previous in (old, stale):
        if previous is not None:
            _down(previous)
    return new, local.notes


def _mounts_token(deployment: Mapping[str, Any]) -> bool:
    return any(_is_token_volume(v) for v in deployment["spec"]["template"]["spec"].get("volumes") or [])


def _is_token_volume(volume: Mapping[str, Any]) -> bool:
    """The serving-token Secret volume the bundle generator adds (``serving_auth``), and no other Secret."""
    return volume.get("name") == TOKEN_VOLUME and set(volume) - {"name"} == {"secret"}


def _token_dir(folder: Path) -> Path:
    """The model's local serving-token folder, with a token made once (what a cluster's Secret would hold).

    The model's folder is the user's alone (700); the token folder and file inside are readable by all
    (755, 644) because the container's non-root user reads them through the mount, as it reads the
    Secret's 0444 files in a cluster.
    """
    folder.chmod(0o700)
    tokens = folder / TOKEN_VOLUME
    tokens.mkdir(exist_ok=True)
    tokens.chmod(0o755)
    path = tokens / _TOKEN_NAME
    if not path.is_file() or not path.read_text(encoding="utf-8").strip():
        path.write_text(secrets.token_urlsafe(32) + "\n", encoding="utf-8")
    path.chmod(0o644)
    return tokens


def _restart(workspace: Workspace, old: LocalDeployment, ready_timeout: float, *, cause: BaseException) -> None:
    """Play the deployment that gave up its port again, after the one meant to replace it failed."""
    try:
        pod_id, container_id = _play(Path(old.manifest), old.image)
        again = LocalDeployment(**{**asdict(old), "pod_id": pod_id, "container_id": container_id})
        _write(workspace, again)
        _wait_ready(again, ready_timeout)
    except DeployError as failed:
        raise DeployError(
            f"{cause} Then the deployment it was to replace ({old.model} v{old.version}) did not start again: "
            f"{failed}",
            hint=f"Start a version that works with shipyard deploy local {old.model}/{old.version}.",
        ) from cause


def replay(workspace: Workspace, model: str, bundle: Path) -> LocalDeployment | None:
    """Run ``bundle`` in place of ``model``'s local deployment, on the same port, if one is running.

    For ``shipyard rollback``: the previous version's bundle takes over the port the current one serves on.
    Does nothing (returns ``None``) when the model is not deployed locally.

    Raises:
        DeployError: as :func:`deploy` (the running deployment is then played again).

    Example:
        >>> replay(ws, "iris", ws.bundle_dir("iris", "2"))     # doctest: +SKIP
    """
    old = running(workspace, model)
    if old is None:
        return None
    return deploy(workspace, bundle, port=old.port)[0]


def recorded(workspace: Workspace, model: str) -> LocalDeployment | None:
    """What was last deployed locally for ``model`` (running or not), or ``None``."""
    path = _record_path(workspace, model)
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return LocalDeployment(**{**data, "volumes": tuple(data.get("volumes") or ())})


def running(workspace: Workspace, model: str) -> LocalDeployment | None:
    """``model``'s local deployment when its container is running, else ``None``.

    Example:
        >>> running(ws, "iris").url     # doctest: +SKIP
        'http://127.0.0.1:41327'
    """
    record = recorded(workspace, model)
    if record is None or not shutil.which("podman"):
        return None
    return record if _state(record.container_id) == "running" else None


def status(workspace: Workspace, model: str) -> tuple[LocalDeployment, str] | None:
    """The recorded deployment of ``model`` and its container's state (``running``, ``exited``, ``gone``)."""
    record = recorded(workspace, model)
    if record is None:
        return None
    return record, (_state(record.container_id) if shutil.which("podman") else "gone")


def stop(workspace: Workspace, model: str) -> LocalDeployment | None:
    """Stop and remove ``model``'s local deployment (pod and volumes); ``None`` when there was none.

    Example:
        >>> stop(ws, "iris")     # doctest: +SKIP
    """
    record = recorded(workspace, model)
    if record is None:
        return None
    _down(record)
    _record_path(workspace, model).unlink(missing_ok=True)
    return record


# --------------------------------------------------------------------------------------------------------- podman


def podman() -> str:
    """The ``podman`` on ``PATH``.

    Raises:
        DeployError: podman is not installed.
    """
    found = shutil.which("podman")
    if found is None:
        raise DeployError(
            "podman is not installed; shipyard runs a bundle's Kubernetes YAML locally with `podman kube play`.",
            hint="Install podman 4.3 or later (Debian/Ubuntu: apt-get install podman catatonit).",
        )
    return found


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run([podman(), *args], check=False, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise DeployError(f"podman {args[0]} did not finish in {timeout:.0f} s.") from exc


def _play(manifest: Path, image: str) -> tuple[str, str]:
    args = ["kube", "play", "--quiet"]
    registry = image.split("/", 1)[0] if "/" in image else ""
    if registry.split(":", 1)[0] in _LOCAL_REGISTRY_HOSTS or registry.startswith("[::1]"):
        # a registry on this machine answers plain HTTP (Docker treats 127.0.0.0/8 as insecure the same way)
        args.append("--tls-verify=false")
    elif "@" not in image:
        _copy_from_docker(image)
    out = _run(*args, str(manifest), timeout=_PLAY_TIMEOUT)
    pod_id, container_id = _played_ids(out.stdout)
    if out.returncode != 0 or not (pod_id and container_id):
        _run("kube", "down", str(manifest))
        raise _play_error(manifest, out.stderr.strip() or out.stdout.strip())
    return pod_id, container_id


def _played_ids(stdout: str) -> tuple[str, str]:
    """Pod and container ids from ``podman kube play`` output (``Pod:``/``Container:`` headers, ids below)."""
    ids: dict[str, str] = {}
    heading = ""
    for line in stdout.splitlines():
        text = line.strip()
        if text.endswith(":"):
            heading = text[:-1]
        elif _ID.match(text) and heading in ("Pod", "Container") and heading not in ids:
            ids[heading] = text
    return ids.get("Pod", ""), ids.get("Container", "")


def _play_error(manifest: Path, message: str) -> DeployError:
    if "error setting rlimit" in message:
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
        with contextlib.suppress(OSError, ValueError):
            # podman lowers its own process limit to kernel.pid_max, and the container inherits that ceiling
            nproc = min(nproc, int(Path("/proc/sys/kernel/pid_max").read_text()))
        return DeployError(
            f"podman could not set the container's resource limits here (no CAP_SYS_RESOURCE): {message}",
            hint="Set limits this machine allows in /etc/containers/containers.conf (or a file named by "
            f'CONTAINERS_CONF): [containers] default_ulimits = ["nofile={nofile}:{nofile}", '
            f'"nproc={nproc}:{nproc}"]',
        )
    return DeployError(
        f"podman kube play {manifest.name} failed: {message}",
        hint="Check that the image can be pulled (podman pull <image>) and that the port is free.",
    )


def _copy_from_docker(image: str) -> None:
    """Give podman a tag that exists only in the local Docker engine (a bundle whose image was not pushed)."""
    if _run("image", "exists", image).returncode == 0:
        return
    pulled = _run("pull", "--quiet", f"docker-daemon:{image}", timeout=_PLAY_TIMEOUT)
    if pulled.returncode != 0:
        raise DeployError(
            f"The image {image} was not pushed to a registry and podman cannot read it from Docker: "
            f"{pulled.stderr.strip()}",
            hint="Push the image (promote with an OCI registry configured), or `docker save IMAGE | podman load`.",
        )
    # docker-daemon: names it docker.io/<name>; the Deployment says <name>, which podman looks up under localhost/
    _run("tag", pulled.stdout.strip().splitlines()[-1], image)


def _state(container_id: str) -> str:
    out = _run("container", "inspect", "--format", "{{.State.Status}}", container_id)
    return out.stdout.strip() if out.returncode == 0 else "gone"


def _state_and_restarts(container_id: str) -> tuple[str, int]:
    out = _run("container", "inspect", "--format", "{{.State.Status}} {{.RestartCount}}", container_id)
    state, _, restarts = out.stdout.strip().partition(" ")
    return (state, int(restarts)) if out.returncode == 0 and restarts.isdigit() else ("gone", 0)


def _wait_ready(deployment: LocalDeployment, timeout: float) -> None:
    url = deployment.url + deployment.ready_path
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
                last = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except OSError as exc:
            last = str(getattr(exc, "reason", exc))
        state, restarts = _state_and_restarts(deployment.container_id)
        # the pod restarts a crashing server (restartPolicy Always): one restart is already a failed start
        if state not in ("running", "created", "configured", "initialized") or restarts:
            raise DeployError(
                f"The server of {deployment.model} v{deployment.version} stopped before it was ready "
                f"(container {state}, {restarts} restart(s)); its last lines: "
                f"{_logs(deployment.container_id)}",
                hint="Fix what the server's last lines say; a deployment of the model that was running still runs.",
            )
        time.sleep(0.5)
    raise DeployError(
        f"{deployment.model} v{deployment.version} was not ready at {url} after {timeout:.0f} s ({last}): "
        f"{_logs(deployment.container_id)}",
        hint="A deployment of the model that was running still runs; give a slow model a longer ready timeout "
        "(shipyard deploy local --timeout SECONDS).",
    )


def _logs(container_id: str, lines: int = 20) -> str:
    out = _run("logs", "--tail", str(lines), container_id)
    return (out.stdout + out.stderr).strip()[-4000:] or "(no output)"


def _down(deployment: LocalDeployment, *, keep_manifest: bool = False) -> None:
    """Stop and remove the pod and its volumes (``podman kube down`` keeps volumes)."""
    manifest = Path(deployment.manifest)
    _run("pod", "rm", "--force", "--ignore", deployment.pod_id)
    for volume in deployment.volumes:
        _run("volume", "rm", "--force", volume)
    if not keep_manifest:
        manifest.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------------------- paths


def _root(workspace: Workspace) -> Path:
    return workspace.local_deployments_dir


def _model_dir(workspace: Workspace, model: str) -> Path:
    return _root(workspace) / slug(model)


def _record_path(workspace: Workspace, model: str) -> Path:
    return _model_dir(workspace, model) / "deployment.json"


def _write(workspace: Workspace, deployment: LocalDeployment) -> None:
    path = _record_path(workspace, deployment.model)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(deployment), indent=2) + "\n")
    tmp.replace(path)


def _handoff(bundle: Path) -> dict[str, Any]:
    try:
        return json.loads((bundle / "handoff.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DeployError(
            f"{bundle} holds no readable handoff bundle ({type(exc).__name__}: {exc}).",
            hint="Promote the version again with shipyard.promote() to write its bundle.",
        ) from exc


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


__all__ = ["LocalDeployment", "LocalManifest", "deploy", "local_manifest", "podman", "recorded", "render",
           "replay", "running", "select", "status", "stop", "unsupported_fields"]

