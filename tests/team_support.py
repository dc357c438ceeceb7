"""The servers of a team setup, real and on 127.0.0.1: PostgreSQL, an S3-compatible store, and an
``mlflow server`` that keeps its runs in the one and its artifacts in the other.

* PostgreSQL is Debian's (``apt-get install postgresql``): a fresh cluster made by ``initdb`` in a temporary
  folder, run as the ``postgres`` user when the tests run as root (PostgreSQL refuses to run as root), with
  password authentication on TCP only.
* The S3-compatible store is moto's server (``moto[server]`` from PyPI): neither Debian nor PyPI has MinIO,
  SeaweedFS or another S3 server that installs on this platform, and moto speaks the S3 REST API that boto3,
  MLflow and Metaflow use.

The servers are session fixtures, shared by every test of a worker, and stopped when the session ends. A
missing binary or package skips the test, or fails it when ``SHIPYARD_REQUIRE_SERVERS`` is set (CI).
Import the fixtures into a test module to use them::

    from tests.team_support import postgres, s3_store, team_server  # noqa: F401
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import free_port

REQUIRE_ENV = "SHIPYARD_REQUIRE_SERVERS"
# Debian installs each major version side by side; take the newest
PG_BIN = max(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), default=Path("/nonexistent"))
S3_KEY = "shipyard-test"  # moto accepts any key pair; these never leave 127.0.0.1
S3_SECRET = "shipyard-test-secret"


def require(ok: bool, reason: str) -> None:
    """Skip (or fail, when servers are required) unless ``ok``."""
    if ok:
        return
    if os.environ.get(REQUIRE_ENV):
        pytest.fail(f"{REQUIRE_ENV} is set but {reason}", pytrace=False)
    pytest.skip(reason)


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited with {proc.returncode}; see {log}:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status < 500:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in {timeout:.0f} s; see {log}")


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@dataclass
class Postgres:
    """A PostgreSQL cluster of its own, listening on 127.0.0.1 only."""

    root: Path
    port: int = field(default_factory=free_port)
    user: str = "shipyard"
    password: str = field(default_factory=lambda: secrets.token_hex(12))

    def url(self, database: str = "postgres", driver: str = "postgresql") -> str:
        return f"{driver}://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def _as_owner(self) -> list[str]:
        # PostgreSQL will not run as root: run its programs as the package's `postgres` user
        return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def start(self) -> None:
        data = self.root / "data"
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(pwfile, "postgres", "postgres")
        pwfile.chmod(0o600)
        subprocess.run(
            [*self._as_owner(), str(PG_BIN / "initdb"), "-D", str(data), "-U", self.user, f"--pwfile={pwfile}",
             "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync"],
            check=True, capture_output=True,
        )
        pwfile.unlink()
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off -c max_connections=100"
        subprocess.run(
            [*self._as_owner(), str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(self.root / "server.log"),
             "-o", options, "-w", "-t", "60", "start"],
            check=True, capture_output=True,
        )

    def create_database(self, name: str) -> str:
        import psycopg

        # CREATE DATABASE cannot run in a transaction
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        subprocess.run(
            [*self._as_owner(), str(PG_BIN / "pg_ctl"), "-D", str(self.root / "data"), "-m", "fast", "-w", "stop"],
            check=False, capture_output=True,
        )
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class S3Store:
    """An S3-compatible server on 127.0.0.1; ``env`` is what a client (boto3, MLflow, Metaflow) needs."""

    root: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": S3_KEY,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET,
            "AWS_DEFAULT_REGION": "us-east-1",
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint,
            "METAFLOW_S3_ENDPOINT_URL": self.endpoint,
        }

    def start(self) -> None:
        log = self.root / "s3.log"
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        _wait_http(self.endpoint + "/moto-api/", self.proc, log, timeout=60)

    def client(self):
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=S3_KEY, aws_secret_access_key=S3_SECRET,
            region_name="us-east-1",
        )

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return f"s3://{name}"

    def stop(self) -> None:
        _stop(self.proc)


@dataclass
class TeamServer:
    """``mlflow server`` with its runs in PostgreSQL and its artifacts in the S3 store (proxied, so clients
    need no S3 credentials), as a team would run it."""

    root: Path
    backend_uri: str
    artifacts: str
    s3: S3Store
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = self.root / "mlflow-server.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", self.backend_uri,
             "--artifacts-destination", self.artifacts, "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", "2"],
            stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, **self.s3.env},
        )
        _wait_http(self.uri + "/health", self.proc, log, timeout=120)

    def stop(self) -> None:
        _stop(self.proc)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    require((PG_BIN / "initdb").exists(), f"PostgreSQL is not installed ({PG_BIN}; apt-get install postgresql)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        require(False, "psycopg is not installed (pip install 'shipyard[team]')")
    server = Postgres(Path(tempfile.mkdtemp(prefix="shipyard-pg-")))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Store]:
    require((Path(sys.executable).parent / "moto_server").exists(), "moto's server is not installed (moto[server])")
    store = S3Store(tmp_path_factory.mktemp("s3"))
    store.start()
    yield store
    store.stop()


@pytest.fixture(scope="session")
def team_server(postgres: Postgres, s3_store: S3Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TeamServer]:
    backend = postgres.create_database("mlflow")
    artifacts = s3_store.create_bucket("team-artifacts") + "/mlflow"
    server = TeamServer(tmp_path_factory.mktemp("team-server"), backend, artifacts, s3_store)
    server.start()
    yield server
    server.stop()
