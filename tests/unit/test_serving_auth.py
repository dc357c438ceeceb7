"""Bearer-token authentication of model images: the middleware, the token sources, the service and the manifests."""

from __future__ import annotations

import ast
import asyncio
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
import shipyard
from shipyard._core.config import Settings
from shipyard.deploy.handoff import (
    HandoffSpec,
    deployment_settings,
    manifests,
    read_bundle,
    validate_manifest,
    write_bundle,
)
from shipyard.monitoring import auth
from shipyard.monitoring.auth import AuthConfigError, BearerAuthMiddleware, TokenSource, auth_required, tokens_or_exit
from shipyard.monitoring.validation import FieldSpec, InputSchema
from shipyard.packaging.service_source import render_service

TOKEN = "0123456789abcdef0123456789abcdef"
OTHER = "fedcba9876543210fedcba9876543210"


def _call(app: Any, path: str, headers: list[tuple[bytes, bytes]] = (), method: str = "POST") -> tuple[int, dict, dict]:
    """Run one request through ``app``: (status, headers, JSON body)."""
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b'{"inputs": [[1]]}', "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "path": path, "method": method, "headers": list(headers)}
    asyncio.run(app(scope, receive, send))
    start = sent[0]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, json.loads(body)


async def _model(scope: Any, receive: Any, send: Any) -> None:
    """Stands in for the service: answers 200 with the path it was asked for."""
    body = json.dumps({"served": scope["path"]}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def _guarded(tokens: TokenSource | None = None, refused: list | None = None) -> BearerAuthMiddleware:
    on_refused = (lambda status, model: refused.append(status)) if refused is not None else None
    return BearerAuthMiddleware(_model, tokens or TokenSource(tokens=(TOKEN,)), realm="churn", on_refused=on_refused)


def test_the_right_token_is_served_and_others_get_a_401_with_a_challenge() -> None:
    refused: list[int] = []
    app = _guarded(refused=refused)
    assert _call(app, "/predict", [(b"authorization", f"Bearer {TOKEN}".encode())])[0] == 200
    assert _call(app, "/predict", [(b"Authorization", f"bearer  {TOKEN} ".encode())])[0] == 200  # scheme is any case
    cases = [
        ([], "", "needs a token"),
        ([(b"authorization", f"Bearer {OTHER}".encode())], ', error="invalid_token"', "not valid"),
        ([(b"authorization", f"Bearer {TOKEN[:-1]}".encode())], ', error="invalid_token"', "not valid"),
        ([(b"authorization", f"Basic {TOKEN}".encode())], ', error="invalid_request"', "must be `Bearer <token>`"),
        ([(b"authorization", b"Bearer ")], ', error="invalid_request"', "must be `Bearer <token>`"),
        ([(b"authorization", f"Bearer {TOKEN}".encode())] * 2, ', error="invalid_request"', "one Authorization"),
    ]
    for headers, error, message in cases:
        status, answer_headers, body = _call(app, "/predict", headers)
        assert status == 401, headers
        assert answer_headers["www-authenticate"] == f'Bearer realm="churn"{error}'
        assert answer_headers["content-type"] == "application/json"
        assert message in body["error"] and TOKEN not in body["error"]
    assert refused == [401] * len(cases)  # counted as refused requests (reason "unauthorized"), not as errors


def test_probes_and_metrics_stay_open_and_every_other_path_needs_the_token() -> None:
    app = _guarded()
    for path in ("/livez", "/readyz", "/healthz", "/metrics"):
        assert _call(app, path, method="GET")[0] == 200, path
    for path in ("/metadata", "/", "/docs.json", "/predict/", "/metrics/", "/anything"):
        assert _call(app, path, method="GET")[0] == 401, path


def test_a_file_holds_one_token_per_line_and_is_reread_when_it_changes(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "token"
    path.write_text(f"\n{TOKEN}\n  {OTHER}  \n\n")
    tokens = TokenSource(path=path)
    assert tokens.accepts(TOKEN) and tokens.accepts(OTHER) and not tokens.accepts("x" * 32)
    path.write_text(OTHER + "\n")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))  # a new mtime even on a coarse clock
    assert tokens.accepts(TOKEN)  # not reread before the reload interval
    monkeypatch.setattr(tokens, "_next_check", 0.0)
    assert not tokens.accepts(TOKEN) and tokens.accepts(OTHER)


def test_a_token_file_that_breaks_while_serving_refuses_every_request_with_a_503(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "token"
    path.write_text(TOKEN)
    tokens = TokenSource(path=path)
    path.unlink()
    monkeypatch.setattr(tokens, "_next_check", 0.0)
    status, _, body = _call(_guarded(tokens), "/predict", [(b"authorization", f"Bearer {TOKEN}".encode())])
    assert status == 503 and "token file cannot be read" in body["error"]
    path.write_text(TOKEN)
    monkeypatch.setattr(tokens, "_next_check", 0.0)
    assert _call(_guarded(tokens), "/predict", [(b"authorization", f"Bearer {TOKEN}".encode())])[0] == 200


def test_tokens_are_kept_as_digests_and_compared_without_an_early_exit() -> None:
    tokens = TokenSource(tokens=(TOKEN,))
    assert tokens._digests == (hashlib.sha256(TOKEN.encode()).digest(),)
    assert TOKEN not in repr(vars(tokens))


@pytest.mark.parametrize(
    ("packaged", "env", "expected"),
    [
        (False, {}, False),
        (True, {}, True),
        (False, {"SHIPYARD_SERVING_AUTH": "1"}, True),
        (False, {"SHIPYARD_SERVING_AUTH": "off"}, False),
        (True, {"SHIPYARD_SERVING_AUTH": "yes"}, True),
    ],
)
def test_the_environment_may_require_a_token(packaged: bool, env: dict, expected: bool) -> None:
    assert auth_required(packaged, env) is expected


@pytest.mark.parametrize(
    ("packaged", "env", "message"),
    [
        (True, {"SHIPYARD_SERVING_AUTH": "0"}, "cannot turn off the token this image was packaged to require"),
        (False, {"SHIPYARD_SERVING_AUTH": "maybe"}, "is not a boolean"),
    ],
)
def test_the_environment_may_not_waive_a_packaged_token(packaged: bool, env: dict, message: str) -> None:
    with pytest.raises(AuthConfigError, match=message):
        auth_required(packaged, env)


def test_tokens_come_from_the_variable_or_the_named_file(tmp_path: Path) -> None:
    path = tmp_path / "t"
    path.write_text(TOKEN)
    assert TokenSource.from_environment({"SHIPYARD_SERVING_TOKEN": TOKEN}).accepts(TOKEN)
    assert TokenSource.from_environment({"SHIPYARD_SERVING_TOKEN_FILE": str(path)}).accepts(TOKEN)
    with pytest.raises(AuthConfigError, match="set only one"):
        TokenSource.from_environment({"SHIPYARD_SERVING_TOKEN": TOKEN, "SHIPYARD_SERVING_TOKEN_FILE": str(path)})


@pytest.mark.parametrize(
    ("env", "content", "message"),
    [
        ({}, None, f"{auth.TOKEN_FILE} cannot be read"),  # the default path, absent here
        ({"SHIPYARD_SERVING_TOKEN_FILE": "{path}"}, None, "cannot be read (No such file or directory)"),
        ({"SHIPYARD_SERVING_TOKEN_FILE": "{path}"}, "\n\n", "holds no token"),
        ({"SHIPYARD_SERVING_TOKEN_FILE": "{path}"}, "short-secret", "has 12 characters; use at least 16"),
        ({"SHIPYARD_SERVING_TOKEN_FILE": "{path}"}, f"{TOKEN}\nshort-secret", "token 2 of"),
        ({"SHIPYARD_SERVING_TOKEN": "with a space inside it"}, None, "characters an HTTP header cannot carry"),
        ({"SHIPYARD_SERVING_TOKEN": ""}, None, "is set but empty"),
    ],
)
def test_a_service_that_requires_a_token_and_has_none_refuses_to_start(
    env: dict, content: str | None, message: str, tmp_path: Path, capsys
) -> None:
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    env = {"SHIPYARD_SERVING_AUTH": "1", **{k: v.format(path=path) for k, v in env.items()}}
    if auth.TOKEN_FILE_ENV not in env and Path(auth.TOKEN_FILE).exists():
        pytest.skip(f"{auth.TOKEN_FILE} exists on this machine")
    with pytest.raises(SystemExit) as info:
        tokens_or_exit(False, env)
    assert info.value.code == 78
    err = capsys.readouterr().err
    assert err.startswith("shipyard: refusing to start: ") and message in err
    assert "short-secret" not in err and "with a space" not in err and TOKEN not in err
    assert tokens_or_exit(False, {}) is None


def _render(auth_on: bool) -> str:
    return render_service(
        model_name="churn", model_version="7", service_name="churn", model_sha256="ab" * 32, lineage={},
        schema=InputSchema(fields=(FieldSpec("age", "double"),)), shipyard_version="0.1.0",
        loader={"flavor": "sklearn", "path": "model.pkl", "format": "cloudpickle", "method": "predict"},
        input_format="pandas", auth=auth_on,
    )


def test_the_generated_service_reads_tokens_at_start_and_checks_them_before_validation() -> None:
    off, on = _render(False), _render(True)
    for source in (off, on):
        tree = ast.parse(source)
        assert "TOKENS = tokens_or_exit(AUTH_REQUIRED)" in source
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "attr", "") ==
                 "add_asgi_middleware"]
        assert [c.args[0].id for c in sorted(calls, key=lambda c: c.lineno)] == [
            "BearerAuthMiddleware", "RequestValidationMiddleware"]  # first added runs first
    assert "AUTH_REQUIRED = False" in off and "AUTH_REQUIRED = True" in on
    assert off.replace("AUTH_REQUIRED = False", "AUTH_REQUIRED = True") == on  # the setting is one literal


def test_the_serving_auth_setting_mounts_the_secret_and_keeps_the_security_context(tmp_path: Path) -> None:
    chosen = deployment_settings(Settings(serving_auth=True), "churn")
    assert chosen["auth_secret"] == "churn-serving-token"
    assert deployment_settings(Settings(), "churn")["auth_secret"] is None
    common: dict[str, Any] = {"model_name": "churn", "version": "3", "image_repository": "r/churn",
                              "image_digest": "sha256:" + "ab" * 32, "run_as_user": 10001}
    plain = manifests(HandoffSpec(**common))["deployment.yaml"]
    spec = HandoffSpec(**common, auth_secret=chosen["auth_secret"])
    deployment = manifests(spec)["deployment.yaml"]
    validate_manifest(deployment)
    pod, before = deployment["spec"]["template"]["spec"], plain["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"] == before["securityContext"]
    assert container["securityContext"] == before["containers"][0]["securityContext"]
    assert pod["automountServiceAccountToken"] is False
    assert container["env"] == [{"name": "SHIPYARD_SERVING_AUTH", "value": "1"}]
    assert {"name": "serving-token", "mountPath": "/run/secrets/shipyard", "readOnly": True} in container["volumeMounts"]
    assert {"name": "serving-token", "secret": {"secretName": "churn-serving-token", "defaultMode": 0o444,
                                                "items": [{"key": "token", "path": "token"}]}} in pod["volumes"]
    assert container["readinessProbe"] == before["containers"][0]["readinessProbe"]  # probes stay open

    bundle = write_bundle(spec, tmp_path / "bundle")  # validates every object, as a promotion does
    assert read_bundle(bundle.path).auth_secret == "churn-serving-token"
    assert bundle.handoff["deployment"]["auth_secret"] == "churn-serving-token"
    readme = (bundle.path / "README.md").read_text()
    assert "kubectl create secret generic churn-serving-token --from-file=token=token -n staging" in readme
    assert not any(p.name == "token" or "kind: Secret" in p.read_text() for p in bundle.path.rglob("*") if p.is_file())


def test_a_secret_name_kubernetes_would_refuse_is_a_typed_error(tmp_path: Path) -> None:
    spec = HandoffSpec(model_name="churn", version="3", image_repository="r/churn", image_digest="sha256:" + "ab" * 32,
                       run_as_user=10001, auth_secret="Churn_Token")
    with pytest.raises(shipyard.DeployError, match="not a valid Kubernetes name"):
        manifests(spec)


def test_a_local_run_reads_the_token_from_a_folder_of_this_machine_in_the_secrets_place(tmp_path: Path) -> None:
    from shipyard.deploy import local

    spec = HandoffSpec(model_name="churn", version="3", image_repository="r/churn", image_digest="sha256:" + "ab" * 32,
                       run_as_user=10001, auth_secret="churn-serving-token")
    objects = manifests(spec)
    out = local.local_manifest(objects["deployment.yaml"], objects["service.yaml"], host_port=8123, token="a1b2",
                               token_dir=tmp_path)
    pod = out.deployment["spec"]["template"]["spec"]
    [volume] = [v for v in pod["volumes"] if "hostPath" in v]
    assert volume["hostPath"] == {"path": str(tmp_path), "type": "Directory"} and "secret" not in volume
    [mount] = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["readOnly"] is True and mount["mountPath"] == "/run/secrets/shipyard"
    assert volume["name"] not in out.volumes  # not a podman volume: nothing to remove on stop
    assert {"name": "SHIPYARD_SERVING_AUTH", "value": "1"} in pod["containers"][0]["env"]
    with pytest.raises(shipyard.DeployError, match="no local token folder"):
        local.local_manifest(objects["deployment.yaml"], objects["service.yaml"], host_port=8123, token="a1b2")
    other = objects["deployment.yaml"]
    other["spec"]["template"]["spec"]["volumes"].append({"name": "creds", "secret": {"secretName": "db"}})
    with pytest.raises(shipyard.DeployError, match=r"creds: secret; only emptyDir"):
        local.local_manifest(other, objects["service.yaml"], host_port=8123, token="a1b2", token_dir=tmp_path)


def test_the_local_token_is_made_once_and_kept_for_the_models_next_deployments(tmp_path: Path) -> None:
    from shipyard.deploy import local

    folder = tmp_path / "churn"
    folder.mkdir()
    tokens = local._token_dir(folder)
    token = (tokens / "token").read_text().strip()
    assert len(token) >= 40 and local._token_dir(folder) == tokens
    assert (tokens / "token").read_text().strip() == token
    assert folder.stat().st_mode & 0o777 == 0o700 and (tokens / "token").stat().st_mode & 0o777 == 0o644
