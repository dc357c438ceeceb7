"""Request validation for generated model services: bad input is a 4xx that names the problem.

This module runs inside model images. It uses only the standard library so a
service can import it without pulling shipyard's own dependencies; packaging
copies this folder into each bento as ``shipyard_monitoring``.

A request to ``/predict`` is JSON ``{"inputs": [row, ...]}``. For a
column-based signature each row is an object keyed by column name; for a
tensor-based one each row is a list of numbers. :func:`validate_payload`
checks size, syntax, shape, names, types, ranges and finiteness and raises
:class:`RequestProblem` with an HTTP status and a message for the client.
:class:`RequestValidationMiddleware` applies it before the framework parses
the body, so malformed input can never reach the model or kill a worker, and
it gives every error the service answers one format: ``{"error": message}``.

Q: Why an ASGI middleware and not BentoML's own pydantic validation?
A: BentoML answers its validation errors in its own format, logs a traceback
   for each, and only sees the body once it has arrived whole. A 5000-digit
   integer makes Python's int parser raise ``ValueError`` deep inside it (a
   500), a body shorter than its Content-Length waits forever, and a lone
   surrogate fails only when the row is encoded again. The middleware sits in
   front of the router: it reads the body with a deadline, parses it with
   limits of its own, checks every value against the signature, and lets
   through only requests BentoML and the model can take.

Q: Why not answer ``/predict/`` as ``/predict``?
A: A redirect (Starlette's default) makes clients that do not follow it on a
   POST fail in a way that looks like a network problem; a 404 that names the
   right path says what to do.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import operator
import re
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

DEFAULT_MAX_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_ROWS = 10_000
# Integer literals longer than this are refused while parsing: it is Python's own default
# limit (PYTHONINTMAXSTRDIGITS), past which int() raises ValueError deep inside the JSON
# parser, and conversion is quadratic in the length. Shorter ones still have to fit their
# column's type (int64: 19 digits, double: 309), which validation checks.
MAX_INTEGER_DIGITS = 4300
# How long the body may pause between two chunks, and how long it may take in all.
BODY_IDLE_SECONDS = 0.5
BODY_TOTAL_SECONDS = 30.0

NUMERIC_TYPES = frozenset({"double", "float", "long", "integer"})
INTEGER_TYPES = frozenset({"long", "integer"})
TEXT_TYPES = frozenset({"string", "binary", "datetime"})
BOOLEAN_TYPES = frozenset({"boolean"})
KNOWN_TYPES = NUMERIC_TYPES | TEXT_TYPES | BOOLEAN_TYPES
# The values each MLflow numeric type holds: long is int64, integer int32, float float32.
INTEGER_RANGES = {"long": (-(2**63), 2**63 - 1), "integer": (-(2**31), 2**31 - 1)}
FLOAT32_MAX = 3.4028234663852886e38
DOUBLE_MAX = 1.7976931348623157e308

_log = logging.getLogger("shipyard.service")

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


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
    tensor_dtype: str = "float64"  # the numpy dtype the model's tensor takes, e.g. float32 for a PyTorch export
    max_rows: int = DEFAULT_MAX_ROWS
    max_bytes: int = DEFAULT_MAX_BYTES

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InputSchema:
        return cls(
            fields=tuple(FieldSpec(**f) for f in data.get("fields", ())),
            tensor_width=data.get("tensor_width"),
            tensor_type=data.get("tensor_type", "double"),
            tensor_dtype=data.get("tensor_dtype", "float64"),
            max_rows=int(data.get("max_rows", DEFAULT_MAX_ROWS)),
            max_bytes=int(data.get("max_bytes", DEFAULT_MAX_BYTES)),
        )


def parse_json(body: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """Decode a JSON body with limits; reject what the service could not take as sent.

    Rejected: bodies over ``max_bytes``, empty or non-UTF-8 bodies, invalid JSON,
    ``NaN``/``Infinity`` literals, integers of more than ``MAX_INTEGER_DIGITS``
    digits, duplicate keys (parsers disagree on which one wins), lone UTF-16
    surrogates (they cannot be encoded again), and nesting too deep to parse.

    Example:
        >>> parse_json(b'{"inputs": [{"x": 1.5}]}')
        {'inputs': [{'x': 1.5}]}
    """
    if len(body) > max_bytes:
        raise RequestProblem(413, f"request body is {len(body)} bytes; the limit is {max_bytes} bytes")
    if not body.strip():
        raise RequestProblem(400, 'request body is empty; send JSON {"inputs": [...]}')
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestProblem(400, f"request body is not UTF-8 text (byte {exc.start})") from None

    try:
        payload = _loads(text)
    except json.JSONDecodeError as exc:
        raise RequestProblem(
            400, f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise RequestProblem(400, "request body is nested too deeply") from None
    if _SURROGATE_ESCAPE.search(text):
        _reject_lone_surrogates(payload)
    return payload


def _loads(text: str) -> Any:
    # Q: Why parse twice when a number is too long, instead of checking each one as it is read?
    # A: A Python hook per integer makes number-heavy bodies three times slower to parse. The C
    #    parser converts integers itself and raises ValueError past Python's digit limit; only
    #    then is the body parsed again with the hook, to answer which limit was exceeded. When
    #    the interpreter's limit is off or above ours, the hook is always used.
    hooks: dict[str, Any] = {"parse_constant": _reject_constant, "object_pairs_hook": _unique_keys}
    if 0 < sys.get_int_max_str_digits() <= MAX_INTEGER_DIGITS:
        try:
            return json.loads(text, **hooks)
        except json.JSONDecodeError:
            raise
        except ValueError:
            pass
    return json.loads(text, parse_int=_parse_int, **hooks)


def _reject_constant(name: str) -> Any:
    raise RequestProblem(422, f"{name} is not allowed in JSON input; send a finite number")


def _parse_int(literal: str) -> int:
    if len(literal.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise RequestProblem(
            422,
            f"a number of {len(literal.lstrip('-'))} digits is out of range; "
            f"integers may have at most {MAX_INTEGER_DIGITS} digits",
        )
    try:
        return int(literal)
    except ValueError:  # the interpreter's own limit is lower than ours
        raise RequestProblem(422, f"a number of {len(literal)} digits is out of range") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise RequestProblem(422, f"key {key!r} appears more than once in one object; send each key once")
            seen.add(key)
    return obj


def _reject_lone_surrogates(payload: Any) -> None:
    # json.loads joins valid surrogate pairs, so any surrogate left in a string is a lone one.
    stack = [payload]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise RequestProblem(
                    400,
                    f"request body has a lone UTF-16 surrogate (\\u{ord(item[exc.start]):04x}) in a string; "
                    "send valid Unicode text",
                ) from None


def validate_payload(payload: Any, schema: InputSchema) -> list[Any]:
    """Check a decoded request against the schema and return its rows.

    Raises:
        RequestProblem: the first problem found, with a message that names the row and field.

    Example:
        >>> schema = InputSchema(fields=(FieldSpec("x", "double"),))
        >>> validate_payload({"inputs": [{"x": 1.5}]}, schema)
        [{'x': 1.5}]
    """
    rows = _rows_of(payload, schema)
    _check_rows(rows, schema)
    return rows


def validate_columns(payload: Any, schema: InputSchema) -> tuple[dict[str, Sequence[Any]], int]:
    """Check a decoded request like :func:`validate_payload`; return its values column by column and the row count.

    Columns are keyed by field name, values in row order (``None`` for an
    optional field a row left out); a tensor request is one column ``""``
    holding its rows. The checks are the same as :func:`validate_payload`'s
    and so is the first problem reported.

    Q: Why check by column?
    A: Per value, pure-Python checks cost more than the model on a 100-row
       request. A column's values are gathered, typed (``set(map(type, ...))``)
       and range-checked by C-level builtins in one pass each; only a request
       that fails is walked again row by row, to name its first bad value.

    Example:
        >>> schema = InputSchema(fields=(FieldSpec("x", "double"), FieldSpec("n", "long")))
        >>> validate_columns({"inputs": [{"x": 1.5, "n": 2}, {"x": 3, "n": 4}]}, schema)
        ({'x': (1.5, 3), 'n': (2, 4)}, 2)
    """
    rows = _rows_of(payload, schema)
    columns = _columns(rows, schema)
    if columns is None:
        _check_rows(rows, schema)  # raises, naming the first bad row and value
        raise AssertionError("the column checks refused a request the row checks accept")  # pragma: no cover
    return columns, len(rows)


def _rows_of(payload: Any, schema: InputSchema) -> list[Any]:
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
    return rows


def _check_rows(rows: list[Any], schema: InputSchema) -> None:
    if schema.tensor_width is not None:
        for i, row in enumerate(rows):
            _check_tensor_row(i, row, schema)
    else:
        for i, row in enumerate(rows):
            _check_record(i, row, schema.fields)


def _columns(rows: list[Any], schema: InputSchema) -> dict[str, Sequence[Any]] | None:
    """The rows' values by column when every one of them is valid; None when any is not."""
    if schema.tensor_width is not None:
        width = schema.tensor_width
        if not all(type(row) is list and len(row) == width for row in rows):
            return None
        values = [v for row in rows for v in row]
        return {"": rows} if _values_ok(values, schema.tensor_type, False, True) else None
    fields = schema.fields
    names = [f.name for f in fields]
    known = frozenset(names)
    if not all(type(row) is dict and known.issuperset(row) for row in rows):
        return None
    columns: dict[str, Sequence[Any]]
    try:
        # One C-level pass gathers every row's values; a row that leaves out a field raises KeyError.
        get = operator.itemgetter(*names)
        columns = {names[0]: tuple(map(get, rows))} if len(names) == 1 else dict(zip(names, zip(*map(get, rows))))
    except (KeyError, TypeError):  # TypeError: no fields at all
        columns = {name: tuple(row.get(name) for row in rows) for name in names}
    for spec in fields:
        if not _values_ok(columns[spec.name], spec.type, spec.allow_non_finite, spec.required):
            return None
    return columns


_NONE = type(None)


def _values_ok(values: Sequence[Any], kind: str, allow_non_finite: bool, required: bool) -> bool:
    """True when every value passes :func:`_check_value` for ``kind`` (and ``None`` only where allowed)."""
    types = set(map(type, values))
    if _NONE in types:
        if required:
            return False
        values = [v for v in values if v is not None]
        types.discard(_NONE)
        if not values:
            return True
    if kind in NUMERIC_TYPES:
        if not types <= {int, float}:
            return False
        floats = values if int not in types else [v for v in values if type(v) is float]
        ints = () if int not in types else (values if float not in types else [v for v in values if type(v) is int])
        if kind in INTEGER_TYPES:
            if floats and not all(map(float.is_integer, floats)):  # NaN and infinity are not integers either
                return False
            low, high = INTEGER_RANGES[kind]
            return low <= min(values) and max(values) <= high
        if not allow_non_finite and floats and not all(map(math.isfinite, floats)):
            return False
        limit = FLOAT32_MAX if kind == "float" else DOUBLE_MAX
        if ints and not (-limit <= min(ints) and max(ints) <= limit):
            return False
        if kind == "float" and floats:
            finite = [v for v in floats if math.isfinite(v)]
            return not finite or (-limit <= min(finite) and max(finite) <= limit)
        return True
    if kind in BOOLEAN_TYPES:
        return types <= {bool}
    if kind in TEXT_TYPES:
        return types <= {str}
    return True


def _check_record(i: int, row: Any, fields: Iterable[FieldSpec]) -> None:
    if not isinstance(row, dict):
        raise RequestProblem(422, f"inputs[{i}] must be an object keyed by column name, got {_kind(row)}")
    fields = tuple(fields)
    known = {f.name for f in fields}
    extra = [k for k in row if k not in known]
    if extra:
        raise RequestProblem(422, f"inputs[{i}] has unknown field(s) {', '.join(map(repr, extra[:10]))}")
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
        if isinstance(value, float) and not math.isfinite(value):
            if allow_non_finite and kind not in INTEGER_TYPES:
                return
            raise RequestProblem(422, f"{where} is {value!r}; NaN and infinity are not allowed")
        if kind in INTEGER_TYPES:
            if isinstance(value, float) and not value.is_integer():
                raise RequestProblem(422, f"{where} must be an integer ({kind}), got {value!r}")
            low, high = INTEGER_RANGES[kind]
            if not low <= value <= high:
                raise RequestProblem(
                    422, f"{where} is out of range for {kind}: {_short(value)} is not within [{low}, {high}]"
                )
        else:
            try:
                magnitude = abs(float(value))
            except OverflowError:
                magnitude = math.inf
            limit = FLOAT32_MAX if kind == "float" else DOUBLE_MAX
            if magnitude > limit:
                raise RequestProblem(422, f"{where} is out of range for {kind}: {_short(value)} exceeds {limit:g}")
    elif kind in BOOLEAN_TYPES:
        if not isinstance(value, bool):
            raise RequestProblem(422, f"{where} must be true or false, got {_kind(value)}")
    elif kind in TEXT_TYPES:
        if not isinstance(value, str):
            raise RequestProblem(422, f"{where} must be a string ({kind}), got {_kind(value)}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:18]}…{text[-18:]} ({len(text)} digits)"


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {_short(value)}"
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
    """ASGI middleware: validates request bodies of the given paths and gives every error one format.

    Invalid requests are answered here with ``{"error": message}`` and a 4xx
    status; valid ones are passed on with their body replayed unchanged. Error
    responses of the wrapped app (unknown paths, wrong methods, its own errors)
    are rewritten to the same format, keeping their status.

    Args:
        app: the wrapped ASGI app.
        schema: an :class:`InputSchema` or its ``from_dict`` form.
        paths: request paths whose body must match the schema (e.g. ``("/predict",)``).
        no_input_paths: request paths that take no input; their body must be empty or ``{}``.
        body_idle_seconds: longest pause while the body arrives; then the request is a 400.
        body_total_seconds: longest time the whole body may take; then the request is a 408.
        predict: ``async (columns, rows) -> predictions``; when given, requests to ``paths`` are
            answered here with ``{"predictions": [...]}`` from the validated columns (see
            :func:`validate_columns`), and the wrapped app never parses them again.
        client_error: tells whether an exception of ``predict`` means the model cannot score this
            input (a category it never saw): a 422 naming the error, where anything else is a 500.
        on_refused: ``(status, model_refused)``, called for each request answered with a 4xx here
            (``model_refused``: valid rows the model could not score), e.g. to count them by reason.
    """

    def __init__(
        self,
        app: Any,
        schema: InputSchema | Mapping[str, Any],
        paths: Iterable[str] = ("/predict",),
        no_input_paths: Iterable[str] = (),
        body_idle_seconds: float = BODY_IDLE_SECONDS,
        body_total_seconds: float = BODY_TOTAL_SECONDS,
        predict: Callable[[Mapping[str, Sequence[Any]], int], Awaitable[Any]] | None = None,
        client_error: Callable[[BaseException], bool] = lambda exc: isinstance(exc, ValueError | TypeError),
        on_refused: Callable[[int, bool], None] | None = None,
    ) -> None:
        self.app = app
        self.on_refused = on_refused
        self.predict = predict
        self.client_error = client_error
        self.schema = schema if isinstance(schema, InputSchema) else InputSchema.from_dict(schema)
        self.paths = frozenset(paths)
        self.no_input_paths = frozenset(no_input_paths)
        self.body_idle_seconds = body_idle_seconds
        self.body_total_seconds = body_total_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        path, method = str(scope.get("path", "")), str(scope.get("method", ""))
        if path != "/" and path.endswith("/"):
            self._refused(404)
            await send_error(send, 404, f"no endpoint at {path}; did you mean {path.rstrip('/') or '/'}?")
            return
        if path not in self.paths and path not in self.no_input_paths:
            await self.app(scope, receive, _uniform_errors(send, path, method, self._endpoints()))
            return
        if method != "POST":
            self._refused(405)
            await send_error(send, 405, f"{method} is not allowed on {path}; use POST")
            return
        try:
            body = await self._read_body(scope, receive)
            if path in self.paths:
                _check_content_type(scope)
                columns, rows = validate_columns(parse_json(body, self.schema.max_bytes), self.schema)
                if self.predict is not None:
                    await self._answer_prediction(send, columns, rows)
                    return
            else:
                payload = parse_json(body, self.schema.max_bytes) if body.strip() else {}
                if not isinstance(payload, dict) or payload:
                    raise RequestProblem(422, f"{path} takes no input; send an empty body or {{}}")
                body = b"{}"
        except RequestProblem as problem:
            # Answered without closing the connection: the server discards whatever of the body
            # still arrives, so a client that sends it all before reading gets this answer,
            # not a broken pipe.
            self._refused(problem.status)
            await send_error(send, problem.status, problem.message)
            return
        except (ValueError, RecursionError, MemoryError) as exc:
            # Only the body reaches this code, so a failure here is the input's, not the server's.
            self._refused(400)
            await send_error(send, 400, f"request body could not be read: {type(exc).__name__}: {str(exc)[:200]}")
            return
        inner = dict(scope)
        inner["headers"] = [
            (k, v) for k, v in scope.get("headers", ()) if k.lower() not in (b"content-type", b"content-length")
        ] + [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await self.app(inner, _replay(body, receive), _uniform_errors(send, path, method, self._endpoints()))

    async def _answer_prediction(self, send: Send, columns: Mapping[str, Sequence[Any]], rows: int) -> None:
        assert self.predict is not None
        try:
            predictions = await self.predict(columns, rows)
        except Exception as exc:
            if not self.client_error(exc):
                _log.exception("predict failed")
                await send_error(send, 500, "the model failed on this input; the service log has the details")
                return
            # Rows that passed validation but that the model cannot score (a category it never saw, a
            # value its own checks refuse) are the client's to fix: a 422 that says why, logged on one line.
            reason = f"{type(exc).__name__}: {str(exc).strip()[:500]}"
            _log.warning("predict refused the input: %s", reason.splitlines()[0])
            self._refused(422, model_refused=True)
            await send_error(send, 422, f"the model could not score the input: {reason}")
            return
        await _send_json(send, 200, {"predictions": predictions})

    def _refused(self, status: int, *, model_refused: bool = False) -> None:
        if self.on_refused is not None:
            try:
                self.on_refused(status, model_refused)
            except Exception:  # counting must never turn a 4xx into a 500
                _log.exception("counting a refused request failed")

    def _endpoints(self) -> str:
        return " and ".join(f"POST {p}" for p in sorted(self.paths | self.no_input_paths)) or "no endpoints"

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        """The whole body, or a :class:`RequestProblem` once it is too large or stops arriving."""
        limit = self.schema.max_bytes
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            raise RequestProblem(413, f"request body is {declared} bytes; the limit is {limit} bytes")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_total_seconds
        chunks: list[bytes] = []
        size = 0
        while True:
            wait = min(self.body_idle_seconds, deadline - loop.time())
            try:
                # asyncio.timeout, not wait_for: wait_for wraps every chunk's receive in a task of its own.
                async with asyncio.timeout(max(wait, 0.0)):
                    message = await receive()
            except TimeoutError:
                if loop.time() >= deadline:
                    raise RequestProblem(
                        408, f"request body took longer than {self.body_total_seconds:g} s to arrive"
                    ) from None
                expected = f" of the {declared} bytes its Content-Length announced" if declared is not None else ""
                raise RequestProblem(
                    400,
                    f"request body stopped arriving: got {size} bytes{expected}, then nothing for "
                    f"{self.body_idle_seconds:g} s; send the whole body with a matching Content-Length",
                ) from None
            if message["type"] == "http.disconnect":
                raise RequestProblem(400, "client disconnected before sending the whole body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise RequestProblem(413, f"request body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _json_value(value: Any) -> Any:
    """A JSON value for what a model may predict beyond plain numbers: timestamps, numpy scalars, decimals."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "tolist"):  # numpy arrays and scalars alike
        return value.tolist()
    return str(value)


def _check_content_type(scope: Scope) -> None:
    content_type = _header(scope, b"content-type")
    if not content_type:
        return
    media = content_type.split(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise RequestProblem(415, f"content type {content_type[:100]!r} is not supported; send application/json")


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


def _uniform_errors(send: Send, path: str, method: str, endpoints: str) -> Send:
    """A ``send`` that rewrites the wrapped app's error responses to ``{"error": message}``, same status."""
    held: dict[str, Any] = {}
    parts: list[bytes] = []

    async def uniform(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            if message.get("status", 200) >= 400:
                held["start"] = message
                return
        elif message["type"] == "http.response.body" and "start" in held:
            parts.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            start = held.pop("start")
            status = int(start["status"])
            text = _error_text(status, b"".join(parts), path, method, endpoints)
            replaced = (b"content-type", b"content-length")
            keep = [(k, v) for k, v in start.get("headers", ()) if k.lower() not in replaced]
            await send_error(send, status, text, headers=keep)
            return
        await send(message)

    return uniform


def _error_text(status: int, body: bytes, path: str, method: str, endpoints: str) -> str:
    if status == 404:
        return f"no endpoint at {path}; the service answers {endpoints}"
    if status == 405:
        return f"{method} is not allowed on {path}; the service answers {endpoints}"
    try:
        data = json.loads(body)
    except ValueError:
        data = body.decode("utf-8", "replace").strip()
    if isinstance(data, list) and len(data) == 1:
        data = data[0]
    if isinstance(data, dict):
        data = data.get("error") or data.get("detail") or ""
    text = data if isinstance(data, str) and data else ""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "error"
    return text[:500] or phrase


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _content_length(scope: Scope) -> int | None:
    raw = _header(scope, b"content-length")
    if raw is None:
        return None
    if not raw.strip().isdigit() or len(raw) > 20:
        raise RequestProblem(400, f"invalid Content-Length header {raw[:40]!r}")
    return int(raw)


async def send_error(
    send: Send, status: int, message: str, *, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """Send ``{"error": message}`` with ``status``; ``headers`` are kept from a response it replaces (or added:
    the bearer-token check's ``WWW-Authenticate``)."""
    await _send_json(send, status, {"error": message}, headers=headers)


async def _send_json(
    send: Send, status: int, payload: Any, *, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """Send ``payload`` as a JSON response with ``status`` (the only place this module writes a response)."""
    body = json.dumps(payload, default=_json_value).encode()
    out = [*(headers or []), (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body})


__all__ = [
    "send_error",
    "FieldSpec",
    "InputSchema",
    "RequestProblem",
    "RequestValidationMiddleware",
    "parse_json",
    "validate_columns",
    "validate_payload",
]
