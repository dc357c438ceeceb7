"""Request validation that runs inside model images (standard library only)."""

from __future__ import annotations

import asyncio
import json
import math
import time
from typing import Any

import numpy as np
import pytest
from shipyard.monitoring.validation import (
    FieldSpec,
    InputSchema,
    RequestProblem,
    RequestValidationMiddleware,
    parse_json,
    validate_payload,
)

SCHEMA = InputSchema(
    fields=(FieldSpec("x", "double"), FieldSpec("n", "long"), FieldSpec("tag", "string", required=False)),
    max_rows=3,
    max_bytes=200,
)


def test_valid_rows_pass_unchanged() -> None:
    rows = [{"x": 1.5, "n": 2}, {"x": 0, "n": 3.0, "tag": "a"}]
    assert validate_payload({"inputs": rows}, SCHEMA) == rows


@pytest.mark.parametrize(
    ("payload", "status", "message"),
    [
        ([1], 422, "must be a JSON object"),
        ({"inputs": [{"x": 1, "n": 1}], "extra": 1}, 422, "unexpected top-level field(s) 'extra'"),
        ({}, 422, "missing top-level field 'inputs'"),
        ({"inputs": "x"}, 422, "'inputs' must be a list"),
        ({"inputs": []}, 422, "empty"),
        ({"inputs": [{"x": 1, "n": 1}] * 4}, 413, "limit is 3"),
        ({"inputs": [{"x": 1}]}, 422, "inputs[0] is missing required field 'n' (long)"),
        ({"inputs": [{"x": 1, "n": 1, "y": 2}]}, 422, "inputs[0] has unknown field(s) 'y'"),
        ({"inputs": [{"x": "1", "n": 1}]}, 422, "inputs[0].x must be a number (double), got a string"),
        ({"inputs": [{"x": True, "n": 1}]}, 422, "got a boolean"),
        ({"inputs": [{"x": 1, "n": 1.5}]}, 422, "must be an integer"),
        ({"inputs": [{"x": math.inf, "n": 1}]}, 422, "NaN and infinity are not allowed"),
        ({"inputs": [{"x": 1, "n": 1, "tag": 3}]}, 422, "tag must be a string"),
        ({"inputs": [[1, 2]]}, 422, "must be an object keyed by column name"),
    ],
)
def test_invalid_payloads_name_the_problem(payload: Any, status: int, message: str) -> None:
    with pytest.raises(RequestProblem) as info:
        validate_payload(payload, SCHEMA)
    assert info.value.status == status
    assert message in info.value.message


def test_tensor_rows_check_width_and_numbers() -> None:
    schema = InputSchema(tensor_width=2)
    assert validate_payload({"inputs": [[1, 2.5]]}, schema) == [[1, 2.5]]
    with pytest.raises(RequestProblem, match="has 3 values; the model expects 2"):
        validate_payload({"inputs": [[1, 2, 3]]}, schema)
    with pytest.raises(RequestProblem, match=r"inputs\[0\]\[1\] must be a number"):
        validate_payload({"inputs": [[1, None]]}, schema)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"", 400, "empty"),
        (b"{", 400, "not valid JSON"),
        (b"\xff", 400, "not UTF-8"),
        (b'{"x": NaN}', 422, "NaN is not allowed"),
        (b'{"x": -Infinity}', 422, "-Infinity is not allowed"),
        (b"[" * 100_000, 400, "nested too deeply"),
        (b"1" * 201, 413, "limit is 200"),
    ],
)
def test_parse_json_rejects_bad_bodies(body: bytes, status: int, message: str) -> None:
    with pytest.raises(RequestProblem) as info:
        parse_json(body, max_bytes=200 if len(body) < 1000 else 10**6)
    assert (info.value.status, message in info.value.message) == (status, True)


def _call(
    middleware: RequestValidationMiddleware,
    body: bytes,
    *,
    path: str = "/predict",
    chunks: int = 1,
    headers: list[tuple[bytes, bytes]] | None = None,
    method: str = "POST",
) -> tuple[int, dict[str, Any], list[bytes]]:
    seen: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        message = await receive()
        seen.append(message["body"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    middleware.app = app
    size = max(1, len(body) // chunks)
    parts = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
    messages = [{"type": "http.request", "body": p, "more_body": i < len(parts) - 1} for i, p in enumerate(parts)]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "path": path,
        "method": method,
        "headers": headers or [(b"content-type", b"application/json")],
    }
    asyncio.run(middleware(scope, receive, send))
    body_out = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body_out), seen


def test_middleware_passes_valid_bodies_through_unchanged() -> None:
    mw = RequestValidationMiddleware(None, SCHEMA)
    body = json.dumps({"inputs": [{"x": 1.0, "n": 1}]}).encode()
    status, _, seen = _call(mw, body, chunks=3)
    assert status == 200 and seen == [body]


def test_middleware_answers_bad_bodies_itself() -> None:
    mw = RequestValidationMiddleware(None, SCHEMA)
    status, answer, seen = _call(mw, b'{"inputs": [{"x": "a", "n": 1}]}')
    assert status == 422 and "inputs[0].x must be a number" in answer["error"] and seen == []
    status, answer, _ = _call(mw, b"x" * 500, chunks=5)
    assert status == 413 and "limit" in answer["error"]
    status, answer, _ = _call(mw, b"a=1", headers=[(b"content-type", b"text/plain")])
    assert status == 415
    status, answer, _ = _call(mw, b"", method="GET")
    assert status == 405


def test_middleware_ignores_other_paths() -> None:
    mw = RequestValidationMiddleware(None, SCHEMA)
    status, _, seen = _call(mw, b"not json", path="/metadata")
    assert status == 200 and seen == [b"not json"]


def test_middleware_no_input_paths_take_empty_or_empty_object_bodies() -> None:
    mw = RequestValidationMiddleware(None, SCHEMA, no_input_paths=("/metadata",))
    for body in (b"", b"{}", b"  "):
        status, _, seen = _call(mw, body, path="/metadata")
        assert status == 200 and seen == [b"{}"]
    for body, code in ((b"garbage", 400), (b"[1]", 422), (b'{"x": 1}', 422)):
        status, answer, seen = _call(mw, body, path="/metadata")
        assert status == code and seen == [], answer


def test_middleware_accepts_schema_dicts() -> None:
    mw = RequestValidationMiddleware(None, {"fields": [{"name": "x", "type": "double"}], "max_bytes": 100})
    assert mw.schema.fields == (FieldSpec("x", "double"),) and mw.schema.max_bytes == 100


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b'{"x": ' + b"9" * 5000 + b"}", 422, "5000 digits is out of range"),
        (b'{"x": -' + b"9" * 5000 + b"}", 422, "5000 digits is out of range"),
        (b'{"x": 1, "x": 2}', 422, "key 'x' appears more than once"),
        (b'{"x": "\\ud800"}', 400, "lone UTF-16 surrogate (\\ud800)"),
        (b'{"\\udfff": 1}', 400, "lone UTF-16 surrogate (\\udfff)"),
        (b'{"x": ["a", ["\\ud83d"]]}', 400, "lone UTF-16 surrogate"),
    ],
)
def test_parse_json_limits(body: bytes, status: int, message: str) -> None:
    with pytest.raises(RequestProblem) as info:
        parse_json(body)
    assert info.value.status == status and message in info.value.message, info.value


def test_parse_json_keeps_what_is_valid() -> None:
    assert parse_json(b'{"x": "\\ud83d\\ude00"}') == {"x": "\U0001f600"}  # a surrogate pair is one character
    assert parse_json(b'{"x": "\\\\ud800"}') == {"x": "\\ud800"}  # an escaped backslash, not a surrogate
    assert parse_json(b'{"x": 1.' + b"1" * 5000 + b"}") == {"x": 1.1111111111111112}
    assert parse_json(b'{"x": ' + b"9" * 400 + b"}") == {"x": int("9" * 400)}  # its column's type decides


def test_parse_json_limits_numbers_when_the_interpreter_does_not() -> None:
    import sys

    before = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        with pytest.raises(RequestProblem, match="5000 digits is out of range"):
            parse_json(b"[" + b"9" * 5000 + b"]")
        assert parse_json(b"[12]") == [12]
    finally:
        sys.set_int_max_str_digits(before)


RANGES = InputSchema(
    fields=(
        FieldSpec("d", "double", required=False),
        FieldSpec("f", "float", required=False),
        FieldSpec("l", "long", required=False),
        FieldSpec("i", "integer", required=False),
        FieldSpec("b", "boolean", required=False),
        FieldSpec("s", "string", required=False),
        FieldSpec("nan_ok", "double", required=False, allow_non_finite=True),
    )
)


@pytest.mark.parametrize(
    "row",
    [
        {"l": 2**63 - 1},
        {"l": -(2**63)},
        {"l": 4.0},
        {"i": 2**31 - 1},
        {"d": 10**300},
        {"d": 2**70},
        {"f": 3.4e38},
        {"nan_ok": math.nan},
        {"nan_ok": -math.inf},
        {"b": False, "s": "\x00"},
    ],
)
def test_values_within_their_column_types_pass(row: dict[str, Any]) -> None:
    assert validate_payload({"inputs": [row]}, RANGES) == [row]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"l": 2**63}, "inputs[0].l is out of range for long"),
        ({"l": -(2**63) - 1}, "out of range for long"),
        ({"l": 2**70}, "out of range for long"),
        ({"l": 1e300}, "out of range for long"),
        ({"l": math.nan}, "NaN and infinity are not allowed"),
        ({"i": 2**31}, "out of range for integer"),
        ({"d": 10**400}, "out of range for double"),
        ({"f": 3.5e38}, "out of range for float"),
        ({"f": 10**39}, "out of range for float"),
        ({"b": 1}, "must be true or false"),
        ({"s": ["a"]}, "must be a string"),
    ],
)
def test_values_outside_their_column_types_are_refused(row: dict[str, Any], message: str) -> None:
    with pytest.raises(RequestProblem) as info:
        validate_payload({"inputs": [row]}, RANGES)
    assert info.value.status == 422 and message in info.value.message, info.value.message


def test_out_of_range_messages_stay_short() -> None:
    with pytest.raises(RequestProblem) as info:
        validate_payload({"inputs": [{"d": 10**4000}]}, RANGES)
    assert len(info.value.message) < 200 and "4001 digits" in info.value.message


def _serve(
    middleware: RequestValidationMiddleware,
    receive: Any,
    *,
    path: str = "/predict",
    method: str = "POST",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> tuple[int, dict[str, Any], float]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "path": path, "method": method, "headers": headers or []}
    started = time.monotonic()
    asyncio.run(middleware(scope, receive, send))
    seconds = time.monotonic() - started
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body), seconds


def _stalling(*chunks: bytes) -> Any:
    """A ``receive`` that delivers some chunks and then waits forever, like a body shorter than announced."""
    queue = [{"type": "http.request", "body": c, "more_body": True} for c in chunks]

    async def receive() -> dict[str, Any]:
        if queue:
            return queue.pop(0)
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    return receive


def test_a_body_that_stops_arriving_is_a_400_after_the_idle_time() -> None:
    mw = RequestValidationMiddleware(None, SCHEMA, body_idle_seconds=0.05)
    status, answer, seconds = _serve(mw, _stalling(b'{"inp'), headers=[(b"content-length", b"100")])
    assert status == 400 and seconds < 1
    assert "got 5 bytes of the 100 bytes its Content-Length announced" in answer["error"]


def test_a_body_that_trickles_forever_is_a_408() -> None:
    async def trickle() -> dict[str, Any]:
        await asyncio.sleep(0.01)
        return {"type": "http.request", "body": b" ", "more_body": True}

    mw = RequestValidationMiddleware(None, SCHEMA, body_idle_seconds=0.05, body_total_seconds=0.2)
    status, answer, seconds = _serve(mw, trickle)
    assert status == 408 and "longer than 0.2 s" in answer["error"] and seconds < 1


def test_a_declared_oversized_body_is_refused_before_it_is_read() -> None:
    mw = RequestValidationMiddleware(None, SCHEMA)
    status, answer, _ = _serve(mw, _stalling(), headers=[(b"content-length", b"100000")])
    assert status == 413 and "100000 bytes" in answer["error"]
    status, answer, _ = _serve(mw, _stalling(), headers=[(b"content-length", b"-5")])
    assert status == 400 and "invalid Content-Length" in answer["error"]


@pytest.mark.parametrize(
    ("path", "method", "status", "message"),
    [
        ("/predict/", "POST", 404, "did you mean /predict?"),
        ("/predict//", "POST", 404, "did you mean /predict?"),
        ("/metadata/", "POST", 404, "did you mean /metadata?"),
        ("/readyz/", "GET", 404, "did you mean /readyz?"),
        ("/predict", "PUT", 405, "PUT is not allowed on /predict"),
        ("/metadata", "GET", 405, "GET is not allowed on /metadata"),
    ],
)
def test_paths_and_methods_answered_in_the_error_format(path: str, method: str, status: int, message: str) -> None:
    mw = RequestValidationMiddleware(None, SCHEMA, no_input_paths=("/metadata",))
    got, answer, _ = _serve(mw, _stalling(), path=path, method=method)
    assert (got, set(answer)) == (status, {"error"}) and message in answer["error"], answer


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        (b"application/json; charset=utf-8", 200),
        (b"application/problem+json", 200),
        (b"APPLICATION/JSON", 200),
        (b"application/vnd.bentoml+pickle", 415),
        (b"text/json", 415),
        (b"multipart/form-data; boundary=x", 415),
    ],
)
def test_content_types(content_type: bytes, status: int) -> None:
    mw = RequestValidationMiddleware(None, SCHEMA)
    body = json.dumps({"inputs": [{"x": 1.0, "n": 1}]}).encode()
    assert _call(mw, body, headers=[(b"content-type", content_type)])[0] == status


def test_valid_requests_reach_the_app_as_plain_json() -> None:
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append((dict(scope["headers"]), (await receive())["body"]))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    mw = RequestValidationMiddleware(app, SCHEMA)
    body = b'{"inputs": [{"x": 1.0, "n": 1}]}'
    headers = [(b"content-type", b"application/problem+json"), (b"transfer-encoding", b"chunked")]
    messages = [
        {"type": "http.request", "body": body[:7], "more_body": True},
        {"type": "http.request", "body": body[7:]},
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    status, _, _ = _serve(mw, receive, headers=headers)
    assert status == 200
    [(got_headers, got_body)] = seen
    assert got_body == body
    assert got_headers[b"content-type"] == b"application/json"
    assert got_headers[b"content-length"] == str(len(body)).encode()


ENDPOINTS = "the service answers POST /metadata and POST /predict"


@pytest.mark.parametrize(
    ("status", "content_type", "body", "expected"),
    [
        (404, b"text/plain", b"Not Found", f"no endpoint at /elsewhere; {ENDPOINTS}"),
        (405, b"text/plain", b"Method Not Allowed", f"GET is not allowed on /elsewhere; {ENDPOINTS}"),
        (400, b"application/json", b'[{"error": "bad thing"}]', "bad thing"),
        (400, b"application/json", b'{"error": "1 validation error", "detail": [{"loc": 1}]}', "1 validation error"),
        (422, b"application/json", b'{"detail": "nope"}', "nope"),
        (500, b"text/plain", b"", "Internal Server Error"),
    ],
)
def test_error_responses_of_the_app_get_the_one_format(
    status: int, content_type: bytes, body: bytes, expected: str
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-type", content_type), (b"x-request-id", b"7")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body[:3], "more_body": True})
        await send({"type": "http.response.body", "body": body[3:]})

    mw = RequestValidationMiddleware(app, SCHEMA, no_input_paths=("/metadata",))
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "path": "/elsewhere", "method": "GET", "headers": []}
    asyncio.run(mw(scope, _stalling(), send))
    start, *bodies = sent
    answer = json.loads(b"".join(m["body"] for m in bodies))
    assert start["status"] == status and answer == {"error": expected}
    headers = dict(start["headers"])
    assert headers[b"content-type"] == b"application/json" and headers[b"x-request-id"] == b"7"
    assert headers[b"content-length"] == str(len(json.dumps(answer))).encode()


def test_successful_responses_of_the_app_pass_untouched() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/html")]})
        await send({"type": "http.response.body", "body": b"<html>", "more_body": True})
        await send({"type": "http.response.body", "body": b"</html>"})

    mw = RequestValidationMiddleware(app, SCHEMA)
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(mw({"type": "http", "path": "/", "method": "GET", "headers": []}, _stalling(), send))
    assert [m.get("body") for m in sent] == [None, b"<html>", b"</html>"] and sent[0]["status"] == 200


def test_with_a_predict_function_valid_requests_are_answered_from_their_columns() -> None:
    calls: list[tuple[Any, int]] = []

    async def predict(columns: Any, rows: int) -> Any:
        calls.append((columns, rows))
        if columns["x"][0] < 0:
            raise ValueError("Found unknown categories ['z']")
        if columns["x"][0] == 0:
            raise RuntimeError("a bug in the model")
        return [np.datetime64("2026-01-02"), np.float32(columns["x"][1]) * 2]

    mw = RequestValidationMiddleware(None, SCHEMA, predict=predict, client_error=lambda e: isinstance(e, ValueError))
    body = json.dumps({"inputs": [{"x": 1.5, "n": 1}, {"x": 2, "n": 2}]}).encode()
    status, answer, seen = _call(mw, body, chunks=2)
    assert status == 200 and answer == {"predictions": ["2026-01-02", 4.0]}
    assert seen == []  # the wrapped app never parses the body again
    assert calls[0] == ({"x": (1.5, 2), "n": (1, 2), "tag": (None, None)}, 2)  # a left-out optional is None

    status, answer, _ = _call(mw, json.dumps({"inputs": [{"x": -1, "n": 1}]}).encode())
    assert status == 422 and answer["error"].startswith("the model could not score the input: ValueError")
    status, answer, _ = _call(mw, json.dumps({"inputs": [{"x": 0, "n": 1}]}).encode())
    assert status == 500 and "service log" in answer["error"]  # the server's fault, in the one format
    status, answer, _ = _call(mw, b'{"inputs": [{"x": "a", "n": 1}]}')
    assert status == 422 and len(calls) == 3  # refused before the model
