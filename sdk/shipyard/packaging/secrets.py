"""Detection of credentials that would be baked into an image.

Packaging refuses to build when an environment variable or a file in the
build context looks like a credential. Detection is by name (``*_TOKEN``,
``id_rsa``, ``.netrc`` ...) and by content (private-key blocks, cloud access
keys, tokens of well-known services, passwords inside URLs). Public
certificates are not secrets and are allowed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

SECRET_ENV_NAME = re.compile(
    r"(SECRET|TOKEN|PASSW(OR)?D|PASSPHRASE|API[_-]?KEY|ACCESS[_-]?KEY|PRIVATE[_-]?KEY|CREDENTIAL|AUTH|SESSION[_-]?KEY)",
    re.IGNORECASE,
)
# Variables whose names match the pattern above but only ever hold non-secret settings.
SAFE_ENV_NAMES = frozenset({"UV_NATIVE_TLS", "BENTOML_DO_NOT_TRACK"})

SECRET_FILE_NAMES = frozenset(
    {
        ".env",
        ".netrc",
        "_netrc",
        ".pypirc",
        ".npmrc",
        ".git-credentials",
        ".dockercfg",
        "credentials",
        "credentials.json",
        "id_rsa",
        "id_dsa",
        "id_ecdsa",
        "id_ed25519",
        "service-account.json",
        "kubeconfig",
    }
)
SECRET_FILE_SUFFIXES = (".key", ".p12", ".pfx", ".jks", ".keystore", ".ppk")
SECRET_PATH_PARTS = frozenset({".aws", ".ssh", ".gnupg", ".docker", ".kube"})

CONTENT_PATTERNS: tuple[tuple[str, re.Pattern[bytes]], ...] = (
    ("private key", re.compile(rb"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----")),
    ("AWS access key id", re.compile(rb"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("AWS secret access key", re.compile(rb"aws_secret_access_key\s*[=:]\s*\S{20,}", re.IGNORECASE)),
    ("GitHub token", re.compile(rb"\bgh[pousr]_[A-Za-z0-9]{36,}\b")),
    ("Slack token", re.compile(rb"\bxox[abposr]-[A-Za-z0-9-]{10,}\b")),
    ("Google API key", re.compile(rb"\bAIza[0-9A-Za-z_-]{35}\b")),
    ("password in a URL", re.compile(rb"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]{3,}@[^\s/]+", re.IGNORECASE)),
)
MAX_SCAN_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True)
class SecretFinding:
    """Something that looks like a credential: where it is and why it was flagged."""

    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


def scan_environment(env: Mapping[str, str]) -> list[SecretFinding]:
    """Flag variables whose names or values look like credentials.

    Example:
        >>> [str(f) for f in scan_environment({"MODEL": "iris", "HF_TOKEN": "abc"})]
        ['env HF_TOKEN: name looks like a credential']
    """
    findings: list[SecretFinding] = []
    for name, value in env.items():
        if name in SAFE_ENV_NAMES:
            continue
        if SECRET_ENV_NAME.search(name) and str(value).strip():
            findings.append(SecretFinding(f"env {name}", "name looks like a credential"))
            continue
        reason = _content_reason(str(value).encode())
        if reason:
            findings.append(SecretFinding(f"env {name}", f"value looks like a {reason}"))
    return findings


def scan_files(root: Path, paths: Iterable[Path] | None = None) -> list[SecretFinding]:
    """Flag files under ``root`` whose names or contents look like credentials."""
    findings: list[SecretFinding] = []
    candidates = paths if paths is not None else (p for p in root.rglob("*") if p.is_file())
    for path in sorted(candidates):
        rel = path.relative_to(root).as_posix()
        name = path.name.lower()
        if name in SECRET_FILE_NAMES or name.startswith(".env.") or name.endswith(SECRET_FILE_SUFFIXES):
            findings.append(SecretFinding(rel, "file name looks like a credential file"))
            continue
        if SECRET_PATH_PARTS & set(path.relative_to(root).parts[:-1]):
            findings.append(SecretFinding(rel, "inside a credentials folder"))
            continue
        try:
            with path.open("rb") as fh:
                head = fh.read(MAX_SCAN_BYTES)
        except OSError:
            continue
        reason = _content_reason(head)
        if reason:
            findings.append(SecretFinding(rel, f"content looks like a {reason}"))
    return findings


def _content_reason(data: bytes) -> str | None:
    for reason, pattern in CONTENT_PATTERNS:
        if pattern.search(data):
            return reason
    return None


__all__ = ["SecretFinding", "scan_environment", "scan_files"]
