"""Packaging and smoke tests against the real Docker engine, MLflow store and BentoML.

Models are trained and registered with plain MLflow APIs in a workspace shared
by this module (creating a sqlite store per test would dominate the run
time); each test opens that workspace itself.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.docker_support import (
    RegisteredModel,
    ServedImage,
    base_image,  # noqa: F401  (fixture)
    docker_cli,
    docker_engine,  # noqa: F401  (fixture)
    docker_inspect,
    register_sklearn_model,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(900)]

RUN_TAGS = {
    "shipyard.metaflow.pathspec": "TrainFlow/42",
    "shipyard.source.sha256": "c0ffee" * 10 + "abcd",
    "shipyard.data.train.sha256": "da7a" * 16,
    "shipyard.git.commit": "0123456789abcdef0123456789abcdef01234567",
}


@pytest.fixture(scope="module")
def shared_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("packaging") / "project"


@pytest.fixture
def ws(shared_project: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    import shipyard

    shared_project.mkdir(exist_ok=True)
    monkeypatch.setenv("SHIPYARD_PROJECT_DIR", str(shared_project))
    return shipyard.init(project_dir=shared_project)


@pytest.fixture(scope="module")
def iris_model(shared_project: Path) -> RegisteredModel:
    import shipyard
    from shipyard._core.workspace import reset_workspace

    shared_project.mkdir(exist_ok=True)
    workspace = shipyard.init(project_dir=shared_project)
    try:
        model = register_sklearn_model(workspace, "iris", run_tags=RUN_TAGS)
        from mlflow.tracking import MlflowClient

        MlflowClient(workspace.tracking_uri, workspace.registry_uri).set_model_version_tag(
            "iris", model.version, "shipyard.gate.verdict", "pass"
        )
        return model
    finally:
        reset_workspace()


@pytest.fixture(scope="module")
def iris_package(shared_project: Path, iris_model: RegisteredModel, base_image: Any) -> Any:  # noqa: F811
    import shipyard
    from shipyard._core.workspace import reset_workspace
    from shipyard.packaging import package

    shipyard.init(project_dir=shared_project)
    try:
        return package(iris_model.uri, quiet=True)
    finally:
        reset_workspace()


def test_image_is_non_root_and_carries_lineage_labels(iris_package: Any, iris_model: RegisteredModel) -> None:
    image = iris_package.image
    # docker inspect runs as its own process, not through shipyard.
    assert docker_inspect(image.tag, "{{.Config.User}}") == "10001:10001"
    labels = json.loads(docker_inspect(image.tag, "{{json .Config.Labels}}"))
    assert labels["shipyard.model.name"] == "iris"
    assert labels["shipyard.model.version"] == iris_model.version
    assert labels["shipyard.mlflow.run_id"] == iris_model.run_id
    assert labels["shipyard.metaflow.pathspec"] == "TrainFlow/42"
    assert labels["shipyard.source.sha256"] == RUN_TAGS["shipyard.source.sha256"]
    assert labels["shipyard.data.fingerprint"] == RUN_TAGS["shipyard.data.train.sha256"]
    assert labels["shipyard.gate.verdict"] == "pass"
    assert labels["shipyard.bento.tag"] == iris_package.bento.tag
    assert labels["org.opencontainers.image.revision"] == RUN_TAGS["shipyard.git.commit"]
    assert labels["org.opencontainers.image.version"] == f"iris/{iris_model.version}"
    assert labels["org.opencontainers.image.source"]
    assert len(labels["shipyard.model.sha256"]) == 64
    healthcheck = json.loads(docker_inspect(image.tag, "{{json .Config.Healthcheck}}"))
    assert "/readyz" in " ".join(healthcheck["Test"])
    assert image.size_mb <= 500, image.describe()
    assert image.layers and all(isinstance(size, int) for size, _ in image.layers)


def test_image_has_no_build_toolchain(iris_package: Any) -> None:
    probe = "for t in gcc cc c++ make ld uv pip git; do command -v $t; done; ls /usr/lib/gcc 2>/dev/null; true"
    out = subprocess.run(
        [docker_cli(), "run", "--rm", "--entrypoint", "sh", iris_package.image.tag, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "", f"toolchain found in the image: {out.stdout}"


def test_bento_is_in_the_workspace_bentoml_home(ws: Any, iris_package: Any) -> None:
    bento = iris_package.bento
    env = {**os.environ, "BENTOML_HOME": str(ws.bentoml_home), "BENTOML_DO_NOT_TRACK": "true"}
    bentoml = str(Path(sys.executable).with_name("bentoml"))
    listed = subprocess.run([bentoml, "list", "-o", "json"], env=env, capture_output=True, text=True, check=True)
    assert bento.tag in listed.stdout
    got = subprocess.run([bentoml, "get", bento.tag, "-o", "json"], env=env, capture_output=True, text=True, check=True)
    info = json.loads(got.stdout)
    assert info["labels"]["shipyard.model.name"] == "iris"
    source = bento.service_source.read_text()
    compile(source, "service.py", "exec")
    assert "class InputRow(pydantic.BaseModel)" in source
    assert 'sepal_length_cm: float = pydantic.Field(alias="sepal length (cm)", allow_inf_nan=False)' in source
    assert f'MODEL_SHA256 = "{bento.model_sha256}"' in source


def test_same_model_version_gives_same_bento(ws: Any, iris_package: Any, iris_model: RegisteredModel) -> None:
    from shipyard.packaging import build_bento
    from shipyard.packaging.bento import bento_content_sha256

    first = iris_package.bento
    digest = bento_content_sha256(first.path)
    again = build_bento(iris_model.uri)
    assert again.tag == first.tag and again.reused
    shutil.rmtree(first.path)  # force a real second build of the same model version
    rebuilt = build_bento(iris_model.uri)
    assert not rebuilt.reused
    assert rebuilt.tag == first.tag
    assert bento_content_sha256(rebuilt.path) == digest


def test_container_serves_with_parity_and_records_gates(
    ws: Any, iris_package: Any, iris_model: RegisteredModel
) -> None:
    from mlflow.tracking import MlflowClient
    from shipyard.deploy import smoke

    holdout = iris_model.features.sample(n=120, random_state=7)
    result = smoke(iris_package.image.tag, holdout=holdout)
    assert result.holdout_rows == 120
    assert result.rows >= 120
    assert result.mismatches == 0, result.first_mismatch
    assert result.passed, result.summary()
    assert {g.name: g.status for g in result.gates} == {"parity": "pass", "latency": "pass"}
    assert result.latency_p95_ms > 0
    assert result.metadata["lineage"]["shipyard.metaflow.pathspec"] == "TrainFlow/42"
    assert result.metadata["model"]["version"] == iris_model.version
    # Attached through shipyard.gates.attach_results: the report and the version tags carry the verdicts.
    assert result.recorded_via == "gates"
    tags = MlflowClient(ws.tracking_uri, ws.registry_uri).get_model_version("iris", iris_model.version).tags
    assert tags["shipyard.gate.parity"] == "pass"
    assert tags["shipyard.gate.latency"] == "pass"
    assert not subprocess.run(
        [docker_cli(), "ps", "-aq", "--filter", "label=shipyard.smoke", "--filter", f"ancestor={iris_package.image.tag}"],
        capture_output=True, text=True,
    ).stdout.strip(), "smoke left a container behind"


def test_served_predictions_equal_in_process_ones_for_all_rows(iris_package: Any, iris_model: RegisteredModel) -> None:
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(iris_model.uri)
    expected = model.predict(iris_model.features).tolist()
    rows = json.loads(iris_model.features.to_json(orient="records", double_precision=15))
    with ServedImage(iris_package.image.tag, ready_seconds=60) as served:
        status, body = served.request("POST", "/predict", json.dumps({"inputs": rows}).encode())
    assert status == 200, body
    assert json.loads(body)["predictions"] == expected
    assert len(expected) == 150


BAD_REQUESTS: list[tuple[str, bytes, dict[str, str] | None, str]] = [
    ("non-JSON", b"this is not json", None, "not valid JSON"),
    ("empty body", b"", None, "empty"),
    ("top-level list", b"[1, 2, 3]", None, "must be a JSON object"),
    ("missing inputs", b'{"rows": []}', None, "'rows'"),
    ("inputs not a list", b'{"inputs": {"a": 1}}', None, "must be a list"),
    ("empty inputs", b'{"inputs": []}', None, "empty"),
    ("row not an object", b'{"inputs": [[5.1, 3.5, 1.4, 0.2]]}', None, "must be an object"),
    (
        "wrong type",
        b'{"inputs": [{"sepal length (cm)": "big", "sepal width (cm)": 3.5, "petal length (cm)": 1.4, "petal width (cm)": 0.2}]}',
        None,
        "sepal length (cm) must be a number",
    ),
    (
        "boolean for number",
        b'{"inputs": [{"sepal length (cm)": true, "sepal width (cm)": 3.5, "petal length (cm)": 1.4, "petal width (cm)": 0.2}]}',
        None,
        "must be a number",
    ),
    (
        "missing field",
        b'{"inputs": [{"sepal length (cm)": 5.1, "sepal width (cm)": 3.5, "petal length (cm)": 1.4}]}',
        None,
        "missing required field 'petal width (cm)'",
    ),
    (
        "extra field",
        b'{"inputs": [{"sepal length (cm)": 5.1, "sepal width (cm)": 3.5, "petal length (cm)": 1.4, "petal width (cm)": 0.2, "colour": 1}]}',
        None,
        "unknown field(s) 'colour'",
    ),
    (
        "NaN",
        b'{"inputs": [{"sepal length (cm)": NaN, "sepal width (cm)": 3.5, "petal length (cm)": 1.4, "petal width (cm)": 0.2}]}',
        None,
        "NaN is not allowed",
    ),
    (
        "Infinity",
        b'{"inputs": [{"sepal length (cm)": Infinity, "sepal width (cm)": 3.5, "petal length (cm)": 1.4, "petal width (cm)": 0.2}]}',
        None,
        "Infinity is not allowed",
    ),
    (
        "huge number becomes inf",
        b'{"inputs": [{"sepal length (cm)": 1e999, "sepal width (cm)": 3.5, "petal length (cm)": 1.4, "petal width (cm)": 0.2}]}',
        None,
        "not allowed",
    ),
    ("oversized body", b'{"inputs": [' + b"1," * (5 * 1024 * 1024) + b"1]}", None, "limit"),
    ("invalid UTF-8", b'{"inputs": ["\xff\xfe"]}', None, "not UTF-8"),
    ("wrong content type", b"inputs=1", {"Content-Type": "application/x-www-form-urlencoded"}, "not supported"),
]


def test_bad_requests_get_4xx_naming_the_problem(iris_package: Any) -> None:
    good = json.dumps(
        {
            "inputs": [
                {"sepal length (cm)": 5.1, "sepal width (cm)": 3.5, "petal length (cm)": 1.4, "petal width (cm)": 0.2}
            ]
        }
    ).encode()
    failures = []
    with ServedImage(iris_package.image.tag, ready_seconds=60) as served:
        for label, body, headers, expected in BAD_REQUESTS:
            status, answer = served.request("POST", "/predict", body, headers)
            text = answer.decode("utf-8", "replace")
            if not (400 <= status < 500) or expected not in text:
                failures.append(f"{label}: HTTP {status} {text[:200]}")
        for method, path, body in (
            ("GET", "/predict", None),
            ("POST", "/metadata", b"not json"),
            ("POST", "/metadata", b'{"inputs": []}'),
            ("POST", "/no-such-endpoint", b"{}"),
        ):
            status, answer = served.request(method, path, body)
            if not 400 <= status < 500:
                failures.append(f"{method} {path}: HTTP {status} {answer[:200]!r}")
        # The worker survived the battery and still answers correctly.
        status, answer = served.request("POST", "/predict", good)
        assert status == 200 and json.loads(answer)["predictions"] == [0]
        assert "Traceback" not in served.logs()
    assert not failures, "\n".join(failures)


def test_tampered_model_refuses_to_start(ws: Any, iris_package: Any, tmp_path: Path) -> None:
    from shipyard.packaging import containerize

    bento = iris_package.bento
    tampered = tmp_path / "bento"
    shutil.copytree(bento.path, tampered)
    model_file = next(p for p in (tampered / "src" / "model").iterdir() if p.name.startswith("model."))
    model_file.write_bytes(model_file.read_bytes() + b"\0")
    report = containerize(replace(bento, path=tampered), tag="shipyard-test/iris-tampered:latest")
    name = f"shipyard-test-{uuid.uuid4().hex[:10]}"
    try:
        subprocess.run([docker_cli(), "run", "--name", name, report.tag], capture_output=True, timeout=120)
        code = docker_inspect(name, "{{.State.ExitCode}}")
        logs = subprocess.run([docker_cli(), "logs", name], capture_output=True, text=True)
    finally:
        subprocess.run([docker_cli(), "rm", "-f", name], capture_output=True)
        subprocess.run([docker_cli(), "rmi", "-f", report.tag], capture_output=True)
    assert code == "78"
    text = logs.stdout + logs.stderr
    assert "refusing to start: model hash mismatch" in text
    assert bento.model_sha256 in text


def test_base_image_is_built_locally_without_a_registry(base_image: Any, iris_package: Any) -> None:  # noqa: F811
    assert base_image.local
    # Never pulled: a locally built image has no registry digest.
    assert docker_inspect(base_image.name, "{{json .RepoDigests}}") == "[]"
    assert docker_inspect(iris_package.image.tag, "{{json .RepoDigests}}") == "[]"
    history = subprocess.run(
        [docker_cli(), "history", "--no-trunc", "--format", "{{.Comment}}", iris_package.image.tag],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "Imported from -" in history  # the bottom layer is the debootstrap rootfs, docker-imported
    assert iris_package.image.base_image == base_image.name
    python = subprocess.run(
        [
            docker_cli(),
            "run",
            "--rm",
            "--entrypoint",
            "python3",
            base_image.name,
            "-c",
            "import sys; print(sys.version_info[:2])",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert python == f"({sys.version_info.major}, {sys.version_info.minor})"


def test_host_ca_certificates_are_trusted_in_the_base_image(base_image: Any) -> None:  # noqa: F811
    host = sorted(p.name for p in Path("/usr/local/share/ca-certificates").glob("*.crt"))
    if not host:
        pytest.skip("the host has no extra CA certificates to carry over")
    listed = subprocess.run(
        [
            docker_cli(),
            "run",
            "--rm",
            "--entrypoint",
            "sh",
            base_image.name,
            "-c",
            "ls /usr/local/share/ca-certificates; echo $SSL_CERT_FILE $UV_NATIVE_TLS",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for name in host:
        assert name in listed
    assert "/etc/ssl/certs/ca-certificates.crt 1" in listed


def test_warm_repackage_reuses_the_dependency_layer(ws: Any, iris_package: Any) -> None:
    from shipyard.packaging import package

    changed = register_sklearn_model(ws, "iris", run_tags=RUN_TAGS, max_iter=200)
    started = time.monotonic()
    result = package(changed.uri, quiet=True)
    seconds = time.monotonic() - started
    # "COPY dir:<content digest> in /opt/venv": the same digest means the same dependency layer.
    old_layers = {created for _, created in iris_package.image.layers if created.endswith("in /opt/venv")}
    new_layers = {created for _, created in result.image.layers if created.endswith("in /opt/venv")}
    assert old_layers == new_layers and old_layers, "the dependency layer was rebuilt for a model-only change"
    assert result.image.tag != iris_package.image.tag
    assert seconds < 60, f"warm re-package took {seconds:.1f}s"


def test_unknown_model_version_is_model_not_found(ws: Any, iris_model: RegisteredModel) -> None:
    from shipyard import ModelNotFound
    from shipyard.packaging import package

    with pytest.raises(ModelNotFound, match="does not exist"):
        package("models:/iris/999", image=False)
    with pytest.raises(ModelNotFound):
        package("no-such-model@champion", image=False)


def test_model_without_signature_or_example_is_refused(ws: Any) -> None:
    from shipyard import PackagingError
    from shipyard.packaging import build_bento

    bare = register_sklearn_model(ws, "bare", signature=False, input_example=False)
    with pytest.raises(PackagingError, match="neither a signature nor an input example"):
        build_bento(bare.uri)


def test_credentials_are_refused(ws: Any, iris_package: Any) -> None:
    from shipyard import PackagingError
    from shipyard.packaging import containerize

    with pytest.raises(PackagingError, match="API_TOKEN"):
        containerize(iris_package.bento, env={"API_TOKEN": "s3cr3t"})


def test_extra_environment_is_baked_verbatim(ws: Any, iris_package: Any) -> None:
    from shipyard.packaging import containerize

    value = 'say "hi" to $HOME'
    report = containerize(iris_package.bento, env={"GREETING": value}, tag="shipyard-test/iris-env:latest")
    try:
        env = json.loads(docker_inspect(report.tag, "{{json .Config.Env}}"))
    finally:
        subprocess.run([docker_cli(), "rmi", "-f", report.tag], capture_output=True)
    assert f"GREETING={value}" in env


def test_credentials_file_in_model_is_refused(iris_package: Any, tmp_path: Path) -> None:
    from shipyard import PackagingError
    from shipyard.packaging import containerize

    leaky = tmp_path / "bento"
    shutil.copytree(iris_package.bento.path, leaky)
    (leaky / "src" / "model" / ".netrc").write_text("machine pypi.org login me password hunter2\n")
    with pytest.raises(PackagingError, match=r"src/model/\.netrc"):
        containerize(replace(iris_package.bento, path=leaky))


def test_docker_not_running_is_docker_unavailable(
    ws: Any, iris_package: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from shipyard import DockerUnavailable
    from shipyard.packaging import containerize

    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    with pytest.raises(DockerUnavailable, match="docker-up.sh"):
        containerize(iris_package.bento)


def test_missing_base_image_names_the_command(ws: Any, iris_package: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from shipyard import BaseImageMissing
    from shipyard.packaging import base_image as base_module
    from shipyard.packaging import containerize

    monkeypatch.setattr(base_module, "BASE_REPOSITORY", "shipyard-test/never-built")
    with pytest.raises(BaseImageMissing, match="shipyard base-image build"):
        containerize(iris_package.bento)


def test_cli_commands(ws: Any, iris_package: Any, iris_model: RegisteredModel) -> None:
    import click
    from click.testing import CliRunner
    from shipyard.cli.packaging import register

    @click.group()
    def cli() -> None:
        pass

    register(cli)
    runner = CliRunner()
    built = runner.invoke(cli, ["base-image", "build", "--quiet"])
    assert built.exit_code == 0, built.output
    assert "exists, reused" in built.output
    packaged = runner.invoke(cli, ["package", iris_model.uri, "--no-image", "--quiet"])
    assert packaged.exit_code == 0, packaged.output
    assert iris_package.bento.tag in packaged.output
    smoked = runner.invoke(cli, ["smoke", iris_package.image.tag, "--no-record"])
    assert smoked.exit_code == 0, smoked.output
    assert "gate parity: pass" in smoked.output


def test_a_built_bento_reads_back_whole_without_a_rebuild(iris_package: Any) -> None:
    from shipyard.packaging import load_bento

    built = iris_package.bento
    again = load_bento(built.path)
    assert (again.tag, again.path, again.python) == (built.tag, built.path, built.python)
    assert again.lineage == built.lineage and again.labels == built.labels
    assert again.requirements == built.requirements
    assert again.model_sha256 == built.model_sha256
