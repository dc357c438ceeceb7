"""Credential detection that guards image builds."""

from __future__ import annotations

from pathlib import Path

import pytest
from shipyard.packaging.secrets import scan_environment, scan_files


@pytest.mark.parametrize(
    "name",
    ["API_TOKEN", "HF_TOKEN", "DB_PASSWORD", "AWS_SECRET_ACCESS_KEY", "OPENAI_API_KEY", "GOOGLE_CREDENTIALS", "passwd"],
)
def test_secret_looking_variable_names_are_flagged(name: str) -> None:
    findings = scan_environment({name: "value"})
    assert [f.where for f in findings] == [f"env {name}"]


def test_plain_settings_and_empty_secret_names_pass() -> None:
    assert scan_environment({"MODEL_NAME": "iris", "UV_NATIVE_TLS": "1", "API_TOKEN": "", "WORKERS": "2"}) == []


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("AKIAABCDEFGHIJKLMNOP", "AWS access key id"),
        ("ghp_" + "a" * 36, "GitHub token"),
        ("https://user:hunter2@pypi.example.com/simple", "password in a URL"),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIB", "private key"),
    ],
)
def test_secret_looking_values_are_flagged_under_any_name(value: str, reason: str) -> None:
    (finding,) = scan_environment({"INDEX": value})
    assert reason in finding.reason


def test_credential_files_are_flagged_by_name_folder_and_content(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "MLmodel").write_text("flavors: {}\n")
    (tmp_path / "model" / "model.pkl").write_bytes(b"\x80\x04binary")
    (tmp_path / ".env").write_text("X=1\n")
    (tmp_path / "id_ed25519").write_text("key\n")
    (tmp_path / ".aws").mkdir()
    (tmp_path / ".aws" / "config").write_text("[default]\n")
    (tmp_path / "notes.txt").write_text("aws_secret_access_key = abcdefghijklmnopqrstuvwxyz\n")
    (tmp_path / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n")
    flagged = {f.where for f in scan_files(tmp_path)}
    assert flagged == {".env", "id_ed25519", ".aws/config", "notes.txt"}
