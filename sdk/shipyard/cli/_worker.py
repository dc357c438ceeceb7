"""A preloaded worker that lets the engineer's short commands answer in well under a second.

``shipyard review``, ``approve``, ``rollback``, ``runs`` and the like spend
nearly all their time importing MLflow and its store (2-3 s) and a few tens of
milliseconds reading it. The first such command starts a worker in the
background that does those imports once and then waits on a Unix socket. Each
later command connects and hands over its arguments, environment, working
directory, umask and its three standard streams (the file descriptors
themselves, over ``SCM_RIGHTS``); the worker forks a child that runs the
command exactly where the command's own process would have: it writes straight
to the user's terminal or pipe, reads their stdin, sees their environment, and
its exit status becomes the command's. Ctrl-C and ``kill`` of the command are
passed on to the child.

Q: Why fork a child per command instead of running commands in the worker?
A: A fork starts from the imported modules and nothing else, so no state of
   one command (a cache, an open sqlite connection, a changed ``os.environ``)
   reaches the next, and two commands can run at once. The worker itself never
   runs a command, never opens a store and has one thread, which is what makes
   forking it safe.

Q: When is no worker used?
A: Without ``fork`` and descriptor passing (Windows); with
   ``SHIPYARD_CLI_WORKER=0``; for commands outside :data:`FAST_COMMANDS` (the
   long ones that start flows, builds or servers keep their own process, so a
   Ctrl-C reaches their children as it always did); and when the worker cannot
   start: the command then runs in its own process after a one-line warning
   that names the worker's log.

Q: How does a worker know it is stale?
A: Its socket is named by a hash of what its imports depend on: the
   interpreter, ``sys.path`` and the modification times of its folders (an
   installed or removed package changes them), the modification time of every
   shipyard source file, and the environment variables read at import time
   (``PYTHON*``, ``MLFLOW_*`` except the URIs and credentials read per call,
   the locale). Changed code gets a new worker, which tells the old one for the
   same environment to exit; any worker exits after ``SHIPYARD_CLI_WORKER_IDLE``
   seconds (default 600) without a command.

Q: Who may talk to a worker?
A: Only its own user: the sockets live in a folder only that user can enter
   (``$XDG_RUNTIME_DIR/shipyard``, else ``$TMPDIR/shipyard-<uid>``, or
   ``SHIPYARD_CLI_WORKER_DIR``), the folder is refused when anyone else could
   write to it, and on Linux the worker checks each caller's uid.

This module is imported by every ``shipyard`` command before anything else,
so its client half uses the standard library only.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import struct
import sys
import time
from pathlib import Path
from typing import Any

# The commands a worker runs: short ones, dominated by import time, that start no flows, builds or servers.
FAST_COMMANDS = frozenset({"review", "approve", "reject", "retire", "rollback", "runs", "show", "audit", "card"})

ENABLED_ENV = "SHIPYARD_CLI_WORKER"  # 0/false/no/off: every command in its own process
IDLE_ENV = "SHIPYARD_CLI_WORKER_IDLE"  # seconds a worker waits for a command before it exits
DIR_ENV = "SHIPYARD_CLI_WORKER_DIR"  # where workers keep their sockets and logs
DEFAULT_IDLE_S = 600.0
START_TIMEOUT_S = 60.0  # a first start imports MLflow; on a busy machine that can take a while

# Environment variables read while the worker imports (so a different value needs a different worker)...
_IMPORT_TIME_PREFIXES = ("PYTHON", "MLFLOW_", "LC_")
_IMPORT_TIME_NAMES = frozenset({"LANG", "LANGUAGE"})
# ...except those MLflow reads at each call, which the child gets from the command's own environment.
_CALL_TIME_NAMES = frozenset({
    "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN", "MLFLOW_S3_ENDPOINT_URL", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID",
    "MLFLOW_RUN_ID",
})

# What the fast commands import (".x": shipyard.x); a module missed here is imported by the command itself
# (slower, still right).
PRELOAD = (
    ".cli",
    "mlflow",
    "mlflow.tracking",
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store",
    "mlflow.store.tracking.sqlalchemy_workspace_store",
    "mlflow.store.model_registry.sqlalchemy_workspace_store",
    "mlflow.store.tracking.rest_store",
    "mlflow.utils.search_logged_model_utils",
    "sqlalchemy.dialects.sqlite",
    "alembic.command",
    "alembic.config",
    "pydantic_settings",
    "rich.console",
    "rich.table",
    "._core.config",
    "._core.workspace",
    "._core.audit",
    ".tracking",
    ".tracking._runs",
    ".tracking._history",
    ".registry._registry",
    ".registry._listing",
    ".gates._check",
    ".gates._report",
    ".promotion._promote",
    ".promotion._review",
    ".promotion._card",
    ".deploy.handoff",
    ".monitoring.integrity",
)

_OFF = frozenset({"0", "false", "no", "off"})
_HEADER = struct.Struct("!I")
_MAX_FOLDER = 64  # + "/cli-<16>-<16>.sock" stays under the 104 bytes macOS allows a socket's path


# ------------------------------------------------------------------ client


def command_of(argv: list[str]) -> str | None:
    """The command name in ``argv`` (after the group's own ``--project DIR``), or None for ``--help``/``--version``."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--project":
            i += 2
        elif arg.startswith("--project="):
            i += 1
        elif arg.startswith("-"):
            return None
        else:
            return arg
    return None


def wanted(argv: list[str], environ: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    """Whether this command goes to a worker: a fast command, a platform that can, and not switched off."""
    if not (hasattr(os, "fork") and hasattr(socket, "send_fds") and hasattr(socket, "AF_UNIX")):
        return False
    if environ.get(ENABLED_ENV, "").strip().lower() in _OFF:
        return False
    return command_of(argv) in FAST_COMMANDS


def run(argv: list[str], prog_name: str) -> int | None:
    """Run ``shipyard <argv>`` in a worker's child; its exit code, or None when no worker can take it."""
    try:
        for fd in (0, 1, 2):
            os.fstat(fd)
        os.getcwd()
    except OSError:  # a closed standard stream cannot be handed over; a removed working folder cannot be entered
        return None
    place = Place.here()
    if place is None:
        return None
    conn = place.connect()
    if conn is None:
        started = place.start()
        conn = place.wait_for(started)
        if conn is None:
            _warn(f"the shipyard command worker did not start (its log: {place.log}); running without it. "
                  f"Set {ENABLED_ENV}=0 to stop trying.")
            return None
    with conn:
        return _session(conn, {"argv": argv, "argv0": sys.argv[0], "prog_name": prog_name})


def _session(conn: socket.socket, request: dict[str, Any]) -> int:
    umask = os.umask(0o022)
    os.umask(umask)
    payload = json.dumps({**request, "env": dict(os.environ), "cwd": os.getcwd(), "umask": umask}).encode()
    socket.send_fds(conn, [_HEADER.pack(len(payload))], [0, 1, 2])
    conn.sendall(payload)
    child: int | None = None
    code: int | None = None

    def forward(signum: int, _frame: Any) -> None:
        if child is not None:
            try:
                os.kill(child, signum)
            except ProcessLookupError:
                pass

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(signum, forward)
    # The child's exit status comes first; the end of the stream (the child's last descriptor closed) comes when
    # the child has exited, so everything it wrote is out before this process returns.
    for line in conn.makefile("rb"):
        message = json.loads(line)
        if "pid" in message:
            child = int(message["pid"])
        elif "exit" in message:
            code = int(message["exit"])
    if code is None:
        _warn("the command's process in the shipyard command worker ended without an exit status (killed?).")
        return 1
    return code


def _warn(text: str) -> None:
    try:
        sys.stderr.write(f"warning: {text}\n")
        sys.stderr.flush()
    except OSError:
        pass


class Place:
    """Where the worker for this interpreter, code and environment lives: its socket, lock and log."""

    def __init__(self, folder: Path, family: str, key: str) -> None:
        self.folder = folder
        self.family = family  # the environment's hash: workers of one family replace each other
        self.key = key
        stem = f"cli-{family}-{key}"
        self.socket = folder / f"{stem}.sock"
        self.lock = folder / f"{stem}.lock"
        self.log = folder / f"{stem}.log"

    @classmethod
    def here(cls, environ: dict[str, str] | os._Environ[str] = os.environ) -> Place | None:
        """The place for this process, or None (with a warning) when the folder is not private."""
        folder = private_folder(environ)
        if folder is None:
            return None
        return cls(folder, environment_hash(environ), code_hash())

    def connect(self) -> socket.socket | None:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(str(self.socket))
        except OSError:
            conn.close()
            return None
        return conn

    def start(self) -> Any:
        """Start a worker in its own session (it outlives this command); returns its process."""
        import subprocess

        return subprocess.Popen(
            [sys.executable, "-m", __name__, str(self.folder), self.family, self.key, json.dumps(sys.path)],
            cwd=self.folder,  # not the user's folder: `-m` puts the working directory first on sys.path
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, close_fds=True,
        )

    def wait_for(self, process: Any, timeout: float = START_TIMEOUT_S) -> socket.socket | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            conn = self.connect()
            if conn is not None:
                return conn
            status = process.poll()
            if status not in (None, 0):  # 0: another command started this worker first; its socket comes
                return None
            time.sleep(0.05)
        return None


def private_folder(environ: dict[str, str] | os._Environ[str] = os.environ) -> Path | None:
    """The folder for workers' sockets, made if missing; None (with a warning) when others could write to it."""
    named = environ.get(DIR_ENV, "").strip()
    if named:
        folder = Path(named)
    elif environ.get("XDG_RUNTIME_DIR", "").strip():
        folder = Path(environ["XDG_RUNTIME_DIR"]) / "shipyard"
    else:
        folder = Path(environ.get("TMPDIR", "").strip() or "/tmp") / f"shipyard-{os.getuid()}"
    if len(os.fsencode(folder)) > _MAX_FOLDER:  # a socket's path has a length limit (104-108 bytes)
        if named:
            _warn(f"{DIR_ENV} names a folder too long for a socket's path (at most {_MAX_FOLDER} bytes); running "
                  "without the shipyard command worker.")
            return None
        folder = Path("/tmp") / f"shipyard-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = folder.lstat()
    except OSError as exc:
        _warn(f"the shipyard command worker's folder {folder} cannot be made ({exc}); running without a worker.")
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        _warn(f"{folder} is not a folder that only you can use (it must be yours with mode 700); running "
              f"without the shipyard command worker. Remove it, or set {DIR_ENV} to a private folder.")
        return None
    return folder


def environment_hash(environ: dict[str, str] | os._Environ[str] = os.environ) -> str:
    """Hash of the interpreter and the environment variables its imports read."""
    import hashlib

    seen = sorted(
        (name, value) for name, value in environ.items()
        if (name.startswith(_IMPORT_TIME_PREFIXES) or name in _IMPORT_TIME_NAMES) and name not in _CALL_TIME_NAMES
    )
    return hashlib.sha256(json.dumps([sys.executable, sys.version, seen]).encode()).hexdigest()[:16]


def code_hash(package: Path | None = None, path: list[str] | None = None) -> str:
    """Hash of the code a worker imports: ``sys.path`` with its folders' mtimes, and every shipyard source file's."""
    import hashlib

    digest = hashlib.sha256()
    for entry in sys.path if path is None else path:
        try:
            digest.update(f"{entry}\0{os.stat(entry or '.').st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{entry}\0-\n".encode())
    folders = [package or Path(__file__).resolve().parents[1]]
    while folders:
        with os.scandir(folders.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    if entry.name != "__pycache__":
                        folders.append(Path(entry.path))
                elif entry.name.endswith(".py"):
                    info = entry.stat()
                    digest.update(f"{entry.path}\0{info.st_mtime_ns}\0{info.st_size}\n".encode())
    return digest.hexdigest()[:16]


def workers(folder: Path) -> list[dict[str, Any]]:
    """The live workers in ``folder``: what each says of itself (pid, key, started, commands served)."""
    found = []
    for path in sorted(folder.glob("cli-*.sock")):
        answer = _ask(path, {"status": True})
        if answer is not None:
            found.append({**answer, "socket": str(path)})
    return found


def stop(folder: Path, *, family: str | None = None, keep: str | None = None) -> int:
    """Ask the workers in ``folder`` (of ``family``, except the one keyed ``keep``) to exit; how many were asked."""
    asked = 0
    for path in folder.glob(f"cli-{family or '*'}-*.sock"):
        if keep is not None and path.name.endswith(f"-{keep}.sock"):
            continue
        if _ask(path, {"quit": True}) is not None:
            asked += 1
    return asked


def _ask(path: Path, request: dict[str, Any]) -> dict[str, Any] | None:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(5)
    try:
        conn.connect(str(path))
        payload = json.dumps(request).encode()
        conn.sendall(_HEADER.pack(len(payload)) + payload)
        line = conn.makefile("rb").readline()
        return json.loads(line) if line else None
    except (OSError, ValueError):
        return None
    finally:
        conn.close()


# ------------------------------------------------------------------ worker


def serve(folder: Path, family: str, key: str, idle: float) -> int:
    """The worker's loop; returns in the worker at its end, and in each child with the command's exit code."""
    place = Place(folder, family, key)
    lock = os.open(place.lock, os.O_RDWR | os.O_CREAT, 0o600)
    if not _take(lock, place):
        return 0  # another command started this worker a moment earlier
    log = os.open(place.log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(log, 2)
    os.close(log)
    me = os.getpid()
    started = time.time()
    failed = _preload()
    # fork is safe only from a process with one thread; an import that started one makes this worker refuse
    import threading

    if threading.active_count() != 1:
        print(f"an import started a thread ({threading.enumerate()}); not serving", file=sys.stderr, flush=True)
        return 1
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    served = 0
    children: set[int] = set()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        place.socket.unlink(missing_ok=True)  # a worker that was killed leaves its socket
        listener.bind(str(place.socket))
        os.chmod(place.socket, 0o600)
        listener.listen(32)
        stop(folder, family=family, keep=key)  # older code, same environment: its worker is stale
        _sweep(folder, keep=key)
        print(f"serving on {place.socket} (pid {me}); not preloaded: {failed or 'none'}", file=sys.stderr, flush=True)
        last = time.monotonic()
        listener.settimeout(min(5.0, idle))
        while True:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                _reap(children)
                if not children and time.monotonic() - last >= idle:
                    return 0
                continue
            _reap(children)
            last = time.monotonic()
            request, fds = _receive(conn)
            if request is None or not _same_user(conn):
                _close(conn, fds)
                continue
            if request.get("quit"):
                _reply(conn, {"pid": me})
                _close(conn, fds)
                return 0
            if request.get("status"):
                _reply(conn, {"pid": me, "key": f"{family}-{key}", "started": started, "served": served,
                              "running": len(children)})
                _close(conn, fds)
                continue
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                listener.close()
                os.close(lock)  # the lock stays the worker's: closing a forked copy does not release it
                return _child(conn, fds, request)
            children.add(pid)
            served += 1
            _close(conn, fds)
    finally:
        if os.getpid() == me:  # a child leaves through here too, with the command's code: the socket stays
            listener.close()
            place.socket.unlink(missing_ok=True)  # ours: no other worker of this key runs while we hold the lock
            os.close(lock)  # now, not at the end of the interpreter's teardown: a successor may be waiting


def _take(lock: int, place: Place) -> bool:
    """Hold this key's lock; False when another worker of the key is (or is about to be) serving.

    A worker that was just asked to exit still holds the lock for a moment after its socket is gone, so a
    taken lock is waited on, until it is free (take it) or a socket answers (someone else serves).
    """
    import fcntl

    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            pass
        conn = place.connect()
        if conn is not None:
            conn.close()
            return False
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def _sweep(folder: Path, *, keep: str) -> None:
    """Remove the lock and log files of workers that are gone (a lock nobody holds)."""
    import fcntl

    for lock in folder.glob("cli-*.lock"):
        if lock.name.endswith(f"-{keep}.lock"):
            continue
        try:
            fd = os.open(lock, os.O_RDWR)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            lock.unlink(missing_ok=True)  # while holding it, so no worker starts on this lock meanwhile
            lock.with_suffix(".log").unlink(missing_ok=True)
        except BlockingIOError:
            pass  # its worker is alive
        finally:
            os.close(fd)


def _preload() -> list[str]:
    import importlib
    import warnings

    failed = []
    with warnings.catch_warnings():  # import-time warnings are shown by the commands that meet them, not here
        warnings.simplefilter("ignore")
        for name in PRELOAD:
            try:
                importlib.import_module(name, "shipyard")
            except Exception as exc:  # an optional module: the command imports what it needs itself
                failed.append(f"{name} ({type(exc).__name__})")
    return failed


def _reap(children: set[int]) -> None:
    for pid in list(children):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done:
            children.discard(pid)


def _receive(conn: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    conn.settimeout(10)
    fds: list[int] = []
    try:
        header, fds, _flags, _addr = socket.recv_fds(conn, _HEADER.size, 3)
        while len(header) < _HEADER.size:
            more = conn.recv(_HEADER.size - len(header))
            if not more:
                return None, fds
            header += more
        (size,) = _HEADER.unpack(header)
        body = bytearray()
        while len(body) < size:
            more = conn.recv(min(1 << 16, size - len(body)))
            if not more:
                return None, fds
            body += more
        request = json.loads(body)
    except (OSError, ValueError, struct.error):
        return None, fds
    conn.settimeout(None)
    if not request.get("status") and not request.get("quit") and len(fds) != 3:
        return None, fds
    return request, fds


def _same_user(conn: socket.socket) -> bool:
    if not hasattr(socket, "SO_PEERCRED"):
        return True  # elsewhere the folder's mode 700 keeps other users out
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid == os.getuid()


def _reply(conn: socket.socket, message: dict[str, Any]) -> None:
    conn.sendall(json.dumps(message).encode() + b"\n")


def _close(conn: socket.socket, fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)
    conn.close()


def _child(conn: socket.socket, fds: list[int], request: dict[str, Any]) -> int:
    """Become the command's process: its streams, environment, folder and umask; then run it."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for target, fd in zip((0, 1, 2), fds):
        os.dup2(fd, target)
    for fd in fds:
        if fd > 2:
            os.close(fd)
    os.environ.clear()
    os.environ.update(request["env"])
    try:
        os.chdir(request["cwd"])
    except OSError as exc:
        print(f"error: cannot enter the working folder {request['cwd']}: {exc}", file=sys.stderr, flush=True)
        _reply(conn, {"exit": 2})
        return 2
    os.umask(int(request["umask"]))
    sys.argv = [request.get("argv0") or "shipyard", *request["argv"]]
    # The stream objects were made when the worker started, on other descriptors: follow the new ones.
    sys.stdout.reconfigure(line_buffering=sys.stdout.isatty())
    if "numpy" in sys.modules:  # the stdlib's random reseeds itself after a fork; numpy's global state does not
        sys.modules["numpy"].random.seed()
    try:
        _reply(conn, {"pid": os.getpid()})
    except OSError:  # the command was interrupted before it began
        return 1
    code = _run_command(request["argv"], request.get("prog_name") or "shipyard")
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:
        pass
    try:
        _reply(conn, {"exit": code})
    except OSError:
        pass
    conn.detach()  # its descriptor stays open until this process is gone: then the command's client returns
    return code


def _run_command(argv: list[str], prog_name: str) -> int:
    from shipyard.cli import run_here

    try:
        run_here(argv, prog_name)
    except SystemExit as exc:
        if exc.code is None:
            return 0
        if isinstance(exc.code, int):
            return exc.code
        print(exc.code, file=sys.stderr)
        return 1
    except BaseException:
        import traceback

        traceback.print_exc()
        return 1
    return 0


def _main(args: list[str]) -> int:
    folder, family, key, path = args
    sys.path[:] = json.loads(path)
    try:
        idle = float(os.environ.get(IDLE_ENV) or DEFAULT_IDLE_S)
    except ValueError:
        idle = DEFAULT_IDLE_S
    worker = os.getpid()
    code = serve(Path(folder), family, key, max(idle, 1.0))
    if os.getpid() != worker:
        _end_command(code)
    return code


def _end_command(code: int) -> None:
    """End a command's child as the interpreter ends a process, less the teardown of every preloaded module.

    The interpreter's exit waits for non-daemon threads, then runs atexit handlers (MLflow's among them), then
    frees each module, which for MLflow's thousands takes longer than the command did and writes nothing.
    """
    import atexit
    import threading

    shutdown = getattr(threading, "_shutdown", None)  # what the interpreter itself calls at exit
    if shutdown is not None:
        shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
