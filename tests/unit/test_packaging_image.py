"""Pure pieces of image building: the Dockerfile, requirements, labels and model hashing."""

from __future__ import annotations

from pathlib import Path

import pytest
from shipyard.monitoring.integrity import ModelIntegrityError, directory_sha256, verify_directory
from shipyard.packaging.base_image import BaseImage, base_image_name
from shipyard.packaging.bento import serving_requirements
from shipyard.packaging.image import render_dockerfile, warm_imports_script

LOCAL = BaseImage(
    "shipyard/base:bookworm-py3.11", "sha256:x", "3.11", 0, False, 0.0, builder="shipyard/base-builder:bookworm-py3.11"
)


def test_dockerfile_installs_in_a_build_stage_and_runs_non_root() -> None:
    text = render_dockerfile(LOCAL, {"BENTOML_HOME": "/tmp/bentoml"})
    stages = [line for line in text.splitlines() if line.startswith("FROM ")]
    assert stages == ["FROM shipyard/base-builder:bookworm-py3.11 AS deps", "FROM shipyard/base:bookworm-py3.11"]
    final = text.split("FROM shipyard/base:bookworm-py3.11", 1)[1]
    assert "uv " not in final and "apt-get" not in text
    assert "COPY --from=deps /opt/venv /opt/venv" in final
    assert final.index("COPY --from=deps") < final.index("COPY bento")  # model-only changes reuse the deps layer
    assert "USER 10001:10001" in final and "HEALTHCHECK" in final and "/readyz" in final


def test_environment_values_are_quoted_for_the_dockerfile() -> None:
    text = render_dockerfile(LOCAL, {"GREETING": 'say "hi" $HOME'})
    assert 'GREETING="say \\"hi\\" \\$HOME"' in text


def test_registry_base_image_gets_uv_and_the_user_added() -> None:
    registry = BaseImage("registry.example.com/python:3.11-slim", "sha256:y", "3.11", 0, False, 0.0, local=False)
    text = render_dockerfile(registry, {})
    assert "FROM registry.example.com/python:3.11-slim AS deps" in text
    assert "pip install --no-cache-dir 'uv" in text and "useradd --uid 10001" in text


def test_serving_requirements_swap_mlflow_for_skinny_and_drop_test_tools(tmp_path: Path) -> None:
    import bentoml

    (tmp_path / "requirements.txt").write_text(
        "mlflow==3.17.2\nscikit-learn==1.9.1\npytest==9.0\n# note\n-e .\ncloudpickle==3.1\nxgboost==3.2.0\n"
    )
    reqs = serving_requirements(tmp_path)
    assert "mlflow-skinny==3.17.2" in reqs and "scikit-learn==1.9.1" in reqs and "cloudpickle==3.1" in reqs
    assert "xgboost-cpu==3.2.0" in reqs and "xgboost==3.2.0" not in reqs
    assert not any(r.startswith(("mlflow==", "pytest", "-e")) for r in reqs)
    assert f"bentoml=={bentoml.__version__}" in reqs


def test_the_build_writes_bytecode_for_the_server_and_for_what_loading_the_service_imports(tmp_path: Path) -> None:
    import subprocess
    import sys

    (tmp_path / "service.py").write_text(
        "import json\n\nclass ModelService:\n    class inner:\n        def __init__(self):\n"
        "            import email.mime.text  # noqa: F401\n"
    )
    script = tmp_path / "warm.py"
    script.write_text(warm_imports_script())
    probe = "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__'); "
    probe += "print('email.mime.text' in sys.modules, 'uvicorn' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe, str(script), str(tmp_path)], capture_output=True, text=True)
    assert done.stdout.split() == ["True", "True"], done.stderr

    (tmp_path / "service.py").write_text("raise SystemExit(78)\n")
    done = subprocess.run([sys.executable, "-c", probe, str(script), str(tmp_path)], capture_output=True, text=True)
    assert "the service did not load in the image build" in done.stderr and done.returncode == 0


def test_base_image_name_follows_the_suite_python() -> None:
    from shipyard import PackagingError

    assert base_image_name("3.11") == "shipyard/base:bookworm-py3.11"
    with pytest.raises(PackagingError, match="base_image"):
        base_image_name("3.12")


def test_directory_hash_covers_names_and_bytes(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"1")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b").write_bytes(b"2")
    digest = directory_sha256(tmp_path)
    assert verify_directory(tmp_path, digest) == digest
    (tmp_path / "sub" / "b").rename(tmp_path / "sub" / "c")
    assert directory_sha256(tmp_path) != digest
    with pytest.raises(ModelIntegrityError, match="model hash mismatch"):
        verify_directory(tmp_path, digest)


def test_a_gpu_framework_the_model_files_never_name_is_not_served(tmp_path: Path) -> None:
    """MLflow's import-based inference records torch whenever loading imported it in passing."""
    import collections
    import pickle

    reqs = "mlflow==3.17.2\nscikit-learn==1.9.1\ntorch==2.15.0\nnvidia-ml-py==13.615.71\nnvidia-cudnn-cu13==9.26\n"
    (tmp_path / "requirements.txt").write_text(reqs)
    (tmp_path / "MLmodel").write_text("flavors:\n  python_function: {}\n  sklearn: {}\n")
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(collections.OrderedDict(a=1), protocol=4))
    left_out: list[str] = []
    served = serving_requirements(tmp_path, left_out=left_out)
    assert "scikit-learn==1.9.1" in served
    assert not any(r.startswith(("torch", "nvidia-")) for r in served)
    assert [item.split(" ", 1)[0] for item in left_out] == [
        "torch==2.15.0", "nvidia-ml-py==13.615.71", "nvidia-cudnn-cu13==9.26"
    ]

    # named by the project code shipped with the model: served, with its runtimes
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "net.py").write_text("import torch.nn as nn\n")
    served = serving_requirements(tmp_path)
    assert {"torch==2.15.0", "nvidia-cudnn-cu13==9.26"} <= set(served)

    # named by the flavor
    (tmp_path / "code" / "net.py").unlink()
    (tmp_path / "MLmodel").write_text("flavors:\n  python_function: {}\n  pytorch: {}\n")
    assert "torch==2.15.0" in serving_requirements(tmp_path)
