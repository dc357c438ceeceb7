"""Bearer-token authentication of a model image's endpoints: who may ask the model.

This module runs inside model images (standard library only); packaging
copies it into each bento as ``shipyard_monitoring.auth``. When the service
requires a token (the ``serving_auth`` setting, baked into ``service.py``, or
``SHIPYARD_SERVING_AUTH=1`` when the container starts), every request must
carry ``Authorization: Bearer <token>``, except the probes and the metrics
Prometheus scrapes (:data:`OPEN_PATHS`).

The token is read when the container starts, never when the image is built:
from the file ``SHIPYARD_SERVING_TOKEN_FILE`` names (default
:data:`TOKEN_FILE`, where the handoff bundle mounts its Kubernetes Secret),
or from ``SHIPYARD_SERVING_TOKEN``. A service that requires a token and finds
none stops at start with exit code 78 and one line saying what to mount: it
never serves without one.

Q: Why does the service compare digests, not the tokens themselves?
A: ``hmac.compare_digest`` takes the same time for any two strings of one
   length, but returns at once when the lengths differ. Comparing SHA-256
   digests (always 32 bytes) leaks neither the token's bytes nor its length.

Q: Why can the file hold more than one token?
A: To rotate without a moment where clients are refused: add the new token
   on a line of its own, move the clients to it, then remove the old one.
   The service rereads the file when it changes (checked every
   :data:`RELOAD_SECONDS`), so a Kubernetes Secret update reaches it without
   a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from pathlib import Path
from typing import Any

from .validation import send_error  # one writer of error responses for the service's middlewares

AUTH_ENV = "SHIPYARD_SERVING_AUTH"
TOKEN_ENV = "SHIPYARD_SERVING_TOKEN"
TOKEN_FILE_ENV = "SHIPYARD_SERVING_TOKEN_FILE"
TOKEN_FILE = "/run/secrets/shipyard/token"
"""Where the service reads its token by default: the handoff bundle mounts its Secret's ``token`` key here."""
OPEN_PATHS = frozenset({"/livez", "/readyz", "/healthz", "/metrics"})
"""Paths answered without a token: the orchestrator's probes and Prometheus' scrape. Every other path needs one."""
MIN_TOKEN_CHARS = 16
RELOAD_SECONDS = 5.0
EXIT_NO_TOKEN = 78  # EX_CONFIG, as the model hash check: restarting the container will not help

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_log = logging.getLogger("shipyard_monitoring.auth")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class AuthConfigError(Exception):
    """The service must require a token but cannot: none given, an unreadable file, a token too short.

    Messages name the variable or the file, never a token.
    """


def auth_required(packaged: bool, environ: Mapping[str, str] | None = None) -> bool:
    """Whether the service requires a token: the packaged setting, which ``SHIPYARD_SERVING_AUTH`` may turn on.

    The environment may require a token of an image packaged without one, but
    not waive one the image was packaged to require.

    Raises:
        AuthConfigError: the variable is not a boolean, or it turns off what the image requires.

    Example:
        >>> auth_required(False, {"SHIPYARD_SERVING_AUTH": "1"})
        True
    """
    env = os.environ if environ is None else environ
    raw = env.get(AUTH_ENV, "").strip().lower()
    if not raw:
        return packaged
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        if packaged:
            raise AuthConfigError(
                f"{AUTH_ENV}={env[AUTH_ENV]!r} cannot turn off the token this image was packaged to require "
                f"(serving_auth); unset {AUTH_ENV}, or package the model again without serving_auth"
            )
        return False
    raise AuthConfigError(f"{AUTH_ENV}={env[AUTH_ENV]!r} is not a boolean; use 1 or 0")


class TokenSource:
    """The tokens the service accepts, read from a file (reread when it changes) or given once.

    Args:
        path: file with one token per line (blank lines ignored); None when ``tokens`` are given.
        tokens: tokens given directly (``SHIPYARD_SERVING_TOKEN``).
        where: how messages name the source (the variable or the file), never the token.

    Raises:
        AuthConfigError: the file cannot be read, holds no token, or a token is unfit.
    """

    def __init__(self, *, path: Path | None = None, tokens: tuple[str, ...] = (), where: str = "") -> None:
        self.path = path
        self.where = where or (str(path) if path is not None else TOKEN_ENV)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._next_check = time.monotonic() + RELOAD_SECONDS
        self._digests = _digests(tokens, self.where) if path is None else self._read()

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> TokenSource:
        """The token source the container's environment names.

        ``SHIPYARD_SERVING_TOKEN`` when set, else the file ``SHIPYARD_SERVING_TOKEN_FILE``
        names, else :data:`TOKEN_FILE`. Setting both variables is an error: which one wins
        would be a guess.

        Raises:
            AuthConfigError: no token can be read, or both variables are set.
        """
        env = os.environ if environ is None else environ
        given, named = env.get(TOKEN_ENV, ""), env.get(TOKEN_FILE_ENV, "").strip()
        if given.strip() and named:
            raise AuthConfigError(f"both {TOKEN_ENV} and {TOKEN_FILE_ENV} are set; set only one")
        if given.strip():
            return cls(tokens=(given,), where=TOKEN_ENV)
        if TOKEN_ENV in env and not named:
            raise AuthConfigError(f"{TOKEN_ENV} is set but empty")
        return cls(path=Path(named or TOKEN_FILE))

    @property
    def available(self) -> bool:
        """False once a reread of the file failed: then every request is refused until it is fixed."""
        return bool(self._current())

    def accepts(self, presented: str) -> bool:
        """Whether ``presented`` is one of the tokens, in time that depends on neither."""
        digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        found = False
        for known in self._current():
            found |= hmac.compare_digest(digest, known)  # no early exit: every token is compared
        return found

    def _current(self) -> tuple[bytes, ...]:
        if self.path is None or time.monotonic() < self._next_check:
            return self._digests
        with self._lock:
            if time.monotonic() >= self._next_check:
                self._next_check = time.monotonic() + RELOAD_SECONDS
                try:
                    if self._stat() != self._stamp:
                        self._digests = self._read()
                        _log.info("shipyard: reread the serving token file %s", self.path)
                except AuthConfigError as exc:
                    if self._digests:
                        _log.error("shipyard: refusing every request until the token file is fixed: %s", exc)
                    self._digests, self._stamp = (), None
        return self._digests

    def _stat(self) -> tuple[int, int, int]:
        assert self.path is not None
        try:
            st = self.path.stat()
        except OSError as exc:
            raise AuthConfigError(_unreadable(self.path, exc)) from None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _read(self) -> tuple[bytes, ...]:
        assert self.path is not None
        stamp = self._stat()
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise AuthConfigError(_unreadable(self.path, exc)) from None
        digests = _digests(tuple(line for line in text.splitlines() if line.strip()), str(self.path))
        self._stamp = stamp
        return digests


def _unreadable(path: Path, exc: BaseException) -> str:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
    return (
        f"the serving token file {path} cannot be read ({reason}); mount the token there "
        f"(the handoff bundle mounts the Secret's `token` key), or name another file with {TOKEN_FILE_ENV}"
    )


def _digests(tokens: tuple[str, ...], where: str) -> tuple[bytes, ...]:
    if not tokens:
        raise AuthConfigError(f"{where} holds no token")
    out = []
    for n, raw in enumerate(tokens, 1):
        token = raw.strip()
        # Said by position, never by content: the message goes to the log.
        which = f"token {n} of {where}" if len(tokens) > 1 else f"the token in {where}"
        if len(token) < MIN_TOKEN_CHARS:
            raise AuthConfigError(
                f"{which} has {len(token)} characters; use at least {MIN_TOKEN_CHARS} "
                "(e.g. `openssl rand -hex 32`)"
            )
        if any(not 0x21 <= ord(c) <= 0x7E for c in token):
            raise AuthConfigError(f"{which} holds spaces or characters an HTTP header cannot carry")
        out.append(hashlib.sha256(token.encode()).digest())
    return tuple(out)


def tokens_or_exit(packaged: bool, environ: Mapping[str, str] | None = None) -> TokenSource | None:
    """The tokens the service must require, None when it requires none; or exit 78 with one line saying why.

    A service calls this when it is imported, before it loads the model, so a
    container that must require a token and has none never serves.
    """
    try:
        if not auth_required(packaged, environ):
            return None
        return TokenSource.from_environment(environ)
    except AuthConfigError as exc:
        message = f"shipyard: refusing to start: {exc}"
        print(message, file=sys.stderr, flush=True)
        _log.critical(message)
        raise SystemExit(EXIT_NO_TOKEN) from None


class BearerAuthMiddleware:
    """ASGI middleware: requests outside :data:`OPEN_PATHS` need ``Authorization: Bearer <token>``.

    A request without it, or with a token the service does not accept, gets a
    401 with a ``WWW-Authenticate`` challenge (RFC 6750) and ``{"error": message}``,
    before its body is read. While the token file cannot be read the service
    answers 503 instead: the fault is the server's, and its error ratio shows it.

    Args:
        app: the wrapped ASGI app.
        tokens: the accepted tokens.
        realm: named in the challenge (the service's name).
        open_paths: paths answered without a token.
        on_refused: ``(status, model_refused)``, called for each 401, e.g. to count them.
    """

    def __init__(
        self,
        app: Any,
        tokens: TokenSource,
        realm: str = "model",
        open_paths: frozenset[str] = OPEN_PATHS,
        on_refused: Callable[[int, bool], None] | None = None,
    ) -> None:
        self.app = app
        self.tokens = tokens
        self.realm = realm.replace('"', "'")
        self.open_paths = frozenset(open_paths)
        self.on_refused = on_refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get("type")
        if kind == "lifespan" or (kind == "http" and scope.get("path") in self.open_paths):
            await self.app(scope, receive, send)
            return
        if kind != "http":  # a websocket: the service serves none, and none gets past without a token
            await send({"type": "websocket.close", "code": 1008})
            return
        if not self.tokens.available:
            await send_error(send, 503, "the service cannot check tokens: its token file cannot be read; "
                             "the service log says why")
            return
        problem = self._problem(scope)
        if problem is None:
            await self.app(scope, receive, send)
            return
        error, message = problem
        challenge = f'Bearer realm="{self.realm}"' + (f', error="{error}"' if error else "")
        if self.on_refused is not None:
            try:
                self.on_refused(401, False)
            except Exception:  # counting must never turn a 401 into a 500
                _log.exception("counting a refused request failed")
        # Answered without reading the body: the server discards what of it still arrives.
        await send_error(send, 401, message, headers=[(b"www-authenticate", challenge.encode("latin-1"))])

    def _problem(self, scope: Scope) -> tuple[str, str] | None:
        """None when the request carries an accepted token, else (RFC 6750 error code, message)."""
        values = [v for k, v in scope.get("headers", ()) if k.lower() == b"authorization"]
        if not values:
            return "", "this endpoint needs a token: send the header `Authorization: Bearer <token>`"
        if len(values) > 1:
            return "invalid_request", "send one Authorization header, not several"
        scheme, _, credentials = values[0].decode("latin-1").strip().partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            return "invalid_request", "the Authorization header must be `Bearer <token>`"
        if not self.tokens.accepts(credentials.strip()):
            return "invalid_token", "the bearer token is not valid for this service"
        return None


__all__ = [
    "AUTH_ENV",
    "OPEN_PATHS",
    "TOKEN_ENV",
    "TOKEN_FILE",
    "TOKEN_FILE_ENV",
    "AuthConfigError",
    "BearerAuthMiddleware",
    "TokenSource",
    "auth_required",
    "tokens_or_exit",
]
