"""Request validation for generated model services: bad input is a 4xx that names the problem.

This module runs inside model images. It uses only the standard library so a
service can import it without pulling shipyard's own dependencies; packaging
copies this folder into each bento as ``shipyard_monitoring``.

A request to ``/predict`` is JSON ``{"inputs": [row, ...]}``. For a
column-based signature each row is an object keyed by column name; for a
tensor-based one each row is a list of numbers. :func:`validate_payload`
checks size, syntax, shape, names, types and finiteness and raises
:class:`RequestProblem` with an HTTP status and a message for the client.
:class:`RequestValidationMiddleware` applies it before the framework parses
the body, so malformed input can never reach the model or kill a worker.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

DEFAULT_MAX_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_ROWS = 10_000

NUMERIC_TYPES = frozenset({"double", "float", "long", "integer"})
INTEGER_TYPES = frozenset({"long", "integer"})
TEXT_TYPES = frozenset({"string", "binary", "datetime"})
BOOLEAN_TYPES = frozenset({"boolean"})
KNOWN_TYPES = NUMERIC_TYPES | TEXT_TYPES | BOOLEAN_TYPES


class RequestProblem(Exception):
    """A client error: ``status`` is the HTTP status to answer, ``message`` says what is wrong."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(f"{status}: {message}")


@dataclass(frozen=True)
class FieldSpec:
    """One input column of a model signature.

    Attributes:
        name: column name as the model sees it.
        type: MLflow data type (``double``, ``float``, ``long``, ``integer``, ``boolean``,
            ``string``, ``binary``, ``datetime``).
        required: a row must carry it (MLflow ``required``).
        allow_non_finite: NaN/inf accepted (floating types only; default False).
    """

    name: str
    type: str
    required: bool = True
    allow_non_finite: bool = False


@dataclass(frozen=True)
class InputSchema:
    """What ``/predict`` accepts: named columns, or rows of ``width`` numbers (tensor signatures)."""

    fields: tuple[FieldSpec, ...] = ()
    tensor_width: int | None = None
    tensor_type: str = "double"
    max_rows: int = DEFAULT_MAX_ROWS
    max_bytes: int = DEFAULT_MAX_BYTES

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InputSchema:
        return cls(
            fields=tuple(FieldSpec(**f) for f in data.get("fields", ())),
            tensor_width=data.get("tensor_width"),
            tensor_type=data.get("tensor_type", "double"),
            max_rows=int(data.get("max_rows", DEFAULT_MAX_ROWS)),
            max_bytes=int(data.get("max_bytes", DEFAULT_MAX_BYTES)),
        )


def parse_json(body: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """Decode a JSON body; reject oversized, non-UTF-8, non-JSON and non-standard constants."""
    if len(body) > max_bytes:
        raise RequestProblem(413, f"request body is {len(body)} bytes; the limit is {max_bytes} bytes")
    if not body.strip():
        raise RequestProblem(400, 'request body is empty; send JSON {"inputs": [...]}')
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestProblem(400, f"request body is not UTF-8 text (byte {exc.start})") from None

    def reject_constant(name: str) -> Any:
        raise RequestProblem(422, f"{name} is not allowed in JSON input; send a finite number")

    try:
        return json.loads(text, parse_constant=reject_constant)
    except json.JSONDecodeError as exc:
        raise RequestProblem(
            400, f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise RequestProblem(400, "request body is nested too deeply") from None


def validate_payload(payload: Any, schema: InputSchema) -> list[Any]:
    """Check a decoded request against the schema and return its rows.

    Raises:
        RequestProblem: the first problem found, with a message that names the row and field.

    Example:
        >>> schema = InputSchema(fields=(FieldSpec("x", "double"),))
        >>> validate_payload({"inputs": [{"x": 1.5}]}, schema)
        [{'x': 1.5}]
    """
    if not isinstance(payload, dict):
        raise RequestProblem(422, f'request body must be a JSON object {{"inputs": [...]}}, got {_kind(payload)}')
    extra = sorted(set(payload) - {"inputs"})
    if extra:
        raise RequestProblem(
            422, f"unexpected top-level field(s) {', '.join(map(repr, extra))}; only 'inputs' is accepted"
        )
    if "inputs" not in payload:
        raise RequestProblem(422, "missing top-level field 'inputs' (a list of rows)")
    rows = payload["inputs"]
    if not isinstance(rows, list):
        raise RequestProblem(422, f"'inputs' must be a list of rows, got {_kind(rows)}")
    if not rows:
        raise RequestProblem(422, "'inputs' is empty; send at least one row")
    if len(rows) > schema.max_rows:
        raise RequestProblem(413, f"'inputs' has {len(rows)} rows; the limit is {schema.max_rows} per request")
    if schema.tensor_width is not None:
        for i, row in enumerate(rows):
            _check_tensor_row(i, row, schema)
    else:
        for i, row in enumerate(rows):
            _check_record(i, row, schema.fields)
    return rows


def _check_record(i: int, row: Any, fields: Iterable[FieldSpec]) -> None:
    if not isinstance(row, dict):
        raise RequestProblem(422, f"inputs[{i}] must be an object keyed by column name, got {_kind(row)}")
    fields = tuple(fields)
    known = {f.name for f in fields}
    extra = [k for k in row if k not in known]
    if extra:
        raise RequestProblem(422, f"inputs[{i}] has unknown field(s) {', '.join(map(repr, extra))}")
    for spec in fields:
        if spec.name not in row or row[spec.name] is None:
            if spec.required:
                raise RequestProblem(422, f"inputs[{i}] is missing required field {spec.name!r} ({spec.type})")
            continue
        _check_value(f"inputs[{i}].{spec.name}", row[spec.name], spec.type, spec.allow_non_finite)


def _check_tensor_row(i: int, row: Any, schema: InputSchema) -> None:
    if not isinstance(row, list):
        raise RequestProblem(422, f"inputs[{i}] must be a list of {schema.tensor_width} numbers, got {_kind(row)}")
    if len(row) != schema.tensor_width:
        raise RequestProblem(422, f"inputs[{i}] has {len(row)} values; the model expects {schema.tensor_width}")
    for j, value in enumerate(row):
        _check_value(f"inputs[{i}][{j}]", value, schema.tensor_type, False)


def _check_value(where: str, value: Any, kind: str, allow_non_finite: bool) -> None:
    if kind in NUMERIC_TYPES:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RequestProblem(422, f"{where} must be a number ({kind}), got {_kind(value)}")
        if kind in INTEGER_TYPES and isinstance(value, float) and not value.is_integer():
            raise RequestProblem(422, f"{where} must be an integer ({kind}), got {value!r}")
        if isinstance(value, float) and not math.isfinite(value) and not allow_non_finite:
            raise RequestProblem(422, f"{where} is {value!r}; NaN and infinity are not allowed")
    elif kind in BOOLEAN_TYPES:
        if not isinstance(value, bool):
            raise RequestProblem(422, f"{where} must be true or false, got {_kind(value)}")
    elif kind in TEXT_TYPES:
        if not isinstance(value, str):
            raise RequestProblem(422, f"{where} must be a string ({kind}), got {_kind(value)}")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class RequestValidationMiddleware:
    """ASGI middleware that validates request bodies of the given paths before the app sees them.

    Invalid requests are answered here with a JSON ``{"error": message}`` and a
    4xx status; valid ones are passed on with their body replayed unchanged.

    Args:
        app: the wrapped ASGI app.
        schema: an :class:`InputSchema` or its ``from_dict`` form.
        paths: request paths whose body must match the schema (e.g. ``("/predict",)``).
        no_input_paths: request paths that take no input; their body must be empty or ``{}``.
    """

    def __init__(
        self,
        app: Any,
        schema: InputSchema | Mapping[str, Any],
        paths: Iterable[str] = ("/predict",),
        no_input_paths: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.schema = schema if isinstance(schema, InputSchema) else InputSchema.from_dict(schema)
        self.paths = frozenset(paths)
        self.no_input_paths = frozenset(no_input_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        if scope.get("path") in self.no_input_paths and scope.get("method") == "POST":
            await self._no_input(scope, receive, send)
            return
        if scope.get("path") not in self.paths:
            await self.app(scope, receive, send)
            return
        if scope.get("method") != "POST":
            await _answer(send, 405, f"{scope.get('method')} is not allowed on {scope.get('path')}; use POST")
            return
        try:
            declared = _content_length(scope)
            if declared is not None and declared > self.schema.max_bytes:
                raise RequestProblem(
                    413, f"request body is {declared} bytes; the limit is {self.schema.max_bytes} bytes"
                )
            body = await _read_body(receive, self.schema.max_bytes)
            content_type = _header(scope, b"content-type") or ""
            if content_type and "json" not in content_type.lower():
                raise RequestProblem(415, f"content type {content_type!r} is not supported; send application/json")
            validate_payload(parse_json(body, self.schema.max_bytes), self.schema)
        except RequestProblem as problem:
            await _answer(send, problem.status, problem.message)
            return

        await self.app(scope, _replay(body, receive), send)

    async def _no_input(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            body = await _read_body(receive, self.schema.max_bytes)
            payload = parse_json(body, self.schema.max_bytes) if body.strip() else {}
            if not isinstance(payload, dict) or payload:
                raise RequestProblem(422, f"{scope.get('path')} takes no input; send an empty body or {{}}")
        except RequestProblem as problem:
            await _answer(send, problem.status, problem.message)
            return
        await self.app(scope, _replay(b"{}", receive), send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields ``body`` once, then defers to the original channel."""
    replayed = False

    async def replay() -> MutableMapping[str, Any]:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _content_length(scope: Scope) -> int | None:
    raw = _header(scope, b"content-length")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise RequestProblem(400, f"invalid Content-Length header {raw!r}") from None


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise RequestProblem(400, "client disconnected before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestProblem(413, f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _answer(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


__all__ = [
    "FieldSpec",
    "InputSchema",
    "RequestProblem",
    "RequestValidationMiddleware",
    "parse_json",
    "validate_payload",
]
