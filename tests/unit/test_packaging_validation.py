"""Request validation that runs inside model images (standard library only)."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

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
