"""The served image never answers 5xx to bad input, whatever a client sends.

One image is built per module from a scikit-learn Pipeline whose signature has
double, int64, string and boolean columns, and run on 127.0.0.1. schemathesis
drives its OpenAPI schema (valid and invalid bodies, a bounded number of
cases); explicit hostile requests, some of them over a raw socket because no
HTTP client sends them, follow. Every answer must be a 4xx in the one error
format within 1 s, the container log must hold no traceback, and the
container must still answer a valid request afterwards.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.docker_support import (
    RegisteredModel,
    ServedImage,
    base_image,  # noqa: F401  (fixture)
    docker_engine,  # noqa: F401  (fixture)
    register_mixed_pipeline_model,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(600)]

VALID_ROW = {"area m2": 80.5, "rooms": 3, "city": "lyon", "has_lift": True}
FUZZ_CASES_PER_RUN = 60  # per operation and generation mode: at most 240 cases
ANSWER_SECONDS = 1.0


@pytest.fixture(scope="module")
def mixed_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RegisteredModel, Path]]:
    import shipyard
    from shipyard._core.workspace import reset_workspace

    project = tmp_path_factory.mktemp("serving-fuzz") / "project"
    project.mkdir()
    workspace = shipyard.init(project_dir=project)
    try:
        yield register_mixed_pipeline_model(workspace, "flat-prices"), project
    finally:
        reset_workspace()


@pytest.fixture(scope="module")
def served(mixed_model: tuple[RegisteredModel, Path], base_image: Any) -> Iterator[ServedImage]:  # noqa: F811
    import shipyard
    from shipyard._core.workspace import reset_workspace
    from shipyard.packaging import package

    model, project = mixed_model
    shipyard.init(project_dir=project)
    try:
        result = package(model.uri, quiet=True)
    finally:
        reset_workspace()
    with ServedImage(result.image.tag) as container:
        yield container


def _assert_error_format(status: int, body: bytes, where: str) -> None:
    assert 400 <= status < 500, f"{where}: HTTP {status} {body[:300]!r}"
    try:
        answer = json.loads(body)
    except ValueError:
        raise AssertionError(f"{where}: HTTP {status} answered a body that is not JSON: {body[:300]!r}") from None
    assert isinstance(answer, dict) and set(answer) == {"error"} and isinstance(answer["error"], str), (
        f"{where}: HTTP {status} not in the error format: {answer!r}"
    )
    assert answer["error"], f"{where}: empty error message"


def test_schema_driven_requests_never_get_a_5xx(served: ServedImage) -> None:
    # schemathesis's Python API with Hypothesis directly: its pytest loader for lazy schemas
    # (`schemathesis.pytest.from_fixture`) does not run under pytest 9.
    schema = schemathesis.openapi.from_url(f"{served.url}/docs.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    # The model's endpoints only: the health and metrics routes take no body.
    operations = [op for op in operations if op.path in ("/predict", "/metadata")]
    assert {op.path for op in operations} == {"/predict", "/metadata"}, [op.path for op in operations]
    answered: dict[int, int] = {}
    for operation in operations:
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

            @settings(
                max_examples=FUZZ_CASES_PER_RUN,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def drive(case: Any) -> None:
                response = case.call(base_url=served.url, timeout=10)
                answered[response.status_code] = answered.get(response.status_code, 0) + 1
                where = f"{case.method} {case.path} ({mode.value}) {case.body!r:.300}"
                assert response.status_code < 500, f"{where}: HTTP {response.status_code} {response.content[:300]!r}"
                if response.status_code >= 400:
                    _assert_error_format(response.status_code, response.content, where)

            drive()
    # Both kinds were reached: served predictions and refusals, so the run exercised the model too.
    assert sum(answered.values()) >= 50, answered
    assert any(code < 300 for code in answered) and any(400 <= code < 500 for code in answered), answered


def _body(rows: Any) -> bytes:
    return json.dumps({"inputs": rows}).encode()


def _row(**changes: Any) -> dict[str, Any]:
    """The valid row with some columns changed; ``area`` names the "area m2" column, ``_DROP`` drops one."""
    row = dict(VALID_ROW)
    for key, value in changes.items():
        column = "area m2" if key == "area" else key
        if value is _DROP:
            del row[column]
        else:
            row[column] = value
    return row


_DROP = object()


def _raw_row(area: str = "80.5", rooms: str = "3", city: str = '"lyon"', lift: str = "true") -> bytes:
    return (
        '{"inputs": [{"area m2": %s, "rooms": %s, "city": %s, "has_lift": %s}]}' % (area, rooms, city, lift)
    ).encode()


# (label, path, body, headers, text the error must contain)
EXPLICIT: list[tuple[str, str, bytes, dict[str, str] | None, str]] = [
    ("5000-digit integer in a double column", "/predict", _raw_row(area="9" * 5000), None, "5000 digits"),
    ("5000-digit negative integer", "/predict", _raw_row(rooms="-" + "9" * 5000), None, "5000 digits"),
    ("400-digit integer in a double column", "/predict", _raw_row(area="9" * 399), None, "out of range for double"),
    ("2**70 in an int64 column", "/predict", _raw_row(rooms=str(2**70)), None, "out of range for long"),
    ("-2**63-1 in an int64 column", "/predict", _raw_row(rooms=str(-(2**63) - 1)), None, "out of range for long"),
    ("1e300 in an int64 column", "/predict", _raw_row(rooms="1e300"), None, "out of range for long"),
    ("fraction in an int64 column", "/predict", _raw_row(rooms="2.5"), None, "must be an integer"),
    ("1e999 becomes infinity", "/predict", _raw_row(area="1e999"), None, "not allowed"),
    ("NaN literal", "/predict", _raw_row(area="NaN"), None, "NaN is not allowed"),
    ("Infinity literal", "/predict", _raw_row(area="-Infinity"), None, "Infinity is not allowed"),
    ("lone surrogate in a string column", "/predict", _raw_row(city='"\\ud800"'), None, "surrogate"),
    ("lone low surrogate in a key", "/predict", b'{"inputs": [{"\\udc00": 1}]}', None, "surrogate"),
    ("surrogate as raw UTF-8 bytes", "/predict", _raw_row().replace(b'"lyon"', b'"\xed\xa0\x80"'), None, "UTF-8"),
    ("invalid UTF-8", "/predict", b'{"inputs": ["\xff\xfe"]}', None, "not UTF-8"),
    ("non-JSON", "/predict", b"this is not json", None, "not valid JSON"),
    ("truncated JSON", "/predict", _raw_row()[:-3], None, "not valid JSON"),
    ("empty body", "/predict", b"", None, "empty"),
    ("top-level list", "/predict", b"[1, 2, 3]", None, "must be a JSON object"),
    ("missing inputs", "/predict", b'{"rows": []}', None, "'rows'"),
    ("inputs not a list", "/predict", b'{"inputs": {"a": 1}}', None, "must be a list"),
    ("empty inputs", "/predict", _body([]), None, "empty"),
    ("row not an object", "/predict", _body([[80.5, 3, "lyon", True]]), None, "must be an object"),
    ("string for a double", "/predict", _body([_row(area="big")]), None, "area m2 must be a number"),
    ("boolean for a double", "/predict", _body([_row(area=True)]), None, "must be a number"),
    ("number for a string", "/predict", _body([_row(city=7)]), None, "city must be a string"),
    ("number for a boolean", "/predict", _body([_row(has_lift=1)]), None, "must be true or false"),
    ("string for a boolean", "/predict", _body([_row(has_lift="yes")]), None, "must be true or false"),
    ("object for an int64", "/predict", _body([_row(rooms={"n": 3})]), None, "must be a number"),
    ("null in a required column", "/predict", _body([_row(rooms=None)]), None, "missing required field 'rooms'"),
    ("missing column", "/predict", _body([_row(has_lift=_DROP)]), None, "missing required field 'has_lift'"),
    ("extra column", "/predict", _body([{**VALID_ROW, "colour": "red"}]), None, "unknown field(s) 'colour'"),
    ("extra top-level field", "/predict", b'{"inputs": [], "debug": true}', None, "unexpected top-level"),
    ("duplicate key", "/predict", _raw_row(rooms='3, "rooms": "x"'), None, "more than once"),
    ("unseen category", "/predict", _body([_row(city="atlantis")]), None, "could not score"),
    ("too many rows", "/predict", _body([VALID_ROW] * 10_001), None, "limit is 10000"),
    ("huge array", "/predict", b'{"inputs": [' + b"1," * 1_000_000 + b"1]}", None, "limit is 10000"),
    ("oversized body", "/predict", b'{"inputs": [' + b"1," * (5 * 1024 * 1024) + b"1]}", None, "limit"),
    ("deep nesting", "/predict", b'{"inputs": ' + b"[" * 200_000 + b"]" * 200_000 + b"}", None, "nested too deeply"),
    ("moderate nesting", "/predict", b'{"inputs": ' + b"[" * 500 + b"]" * 500 + b"}", None, "must be an object"),
    ("form content type", "/predict", b"inputs=1", {"Content-Type": "application/x-www-form-urlencoded"}, "not supp"),
    ("pickle content type", "/predict", b"\x80\x04N.", {"Content-Type": "application/vnd.bentoml+pickle"}, "not supp"),
    ("trailing slash", "/predict/", _body([VALID_ROW]), None, "did you mean /predict"),
    ("double trailing slash", "/predict//", _body([VALID_ROW]), None, "did you mean /predict"),
    ("metadata trailing slash", "/metadata/", b"{}", None, "did you mean /metadata"),
    ("metadata with input", "/metadata", b'{"inputs": []}', None, "takes no input"),
    ("metadata non-JSON", "/metadata", b"not json", None, "not valid JSON"),
    ("unknown endpoint", "/no-such-endpoint", b"{}", None, "no endpoint at /no-such-endpoint"),
]


def _timed(served: ServedImage, method: str, path: str, body: bytes | None, headers: dict[str, str] | None):
    started = time.monotonic()
    status, answer = served.request(method, path, body, headers)
    return status, answer, time.monotonic() - started


def _raw_exchange(port: int, head: bytes, body: bytes, *, timeout: float = 5) -> tuple[int, bytes, float]:
    """Send bytes as they are (no client would send a short body) and read one HTTP response."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        started = time.monotonic()
        sock.sendall(head + body)
        response = http.client.HTTPResponse(sock)
        response.begin()
        answer = response.read()
        return response.status, answer, time.monotonic() - started


def _valid_prediction(served: ServedImage) -> None:
    status, answer = served.request("POST", "/predict", _body([VALID_ROW]))
    assert status == 200, answer
    predictions = json.loads(answer)["predictions"]
    assert len(predictions) == 1 and isinstance(predictions[0], float)


# Odd but valid: answered with predictions (or the model's own 422), never a 5xx.
ODD_BUT_VALID: list[tuple[str, bytes]] = [
    ("5000-digit float literal", _raw_row(area="1." + "1" * 5000)),
    ("300-digit integer in a double column", _raw_row(area="9" * 300)),
    ("int64 bounds", _body([_row(rooms=2**63 - 1), _row(rooms=-(2**63))])),
    ("integral float in an int64 column", _raw_row(rooms="4.0")),
    ("astral character as a surrogate pair", _raw_row(city='"\\ud83d\\ude00"')),
    ("NUL and control characters", _body([_row(city="\u0000\u001b[31m")])),
    ("charset parameter", _raw_row()),
]


def test_odd_but_valid_requests_are_served(served: ServedImage) -> None:
    failures = []
    for label, body in ODD_BUT_VALID:
        headers = {"Content-Type": "application/json; charset=utf-8"}
        status, answer, seconds = _timed(served, "POST", "/predict", body, headers)
        if status == 200:
            if len(json.loads(answer)["predictions"]) < 1:
                failures.append(f"{label}: {answer[:200]!r}")
        else:
            try:
                _assert_error_format(status, answer, label)
                assert "could not score" in json.loads(answer)["error"], f"{label}: {answer[:300]!r}"
            except AssertionError as exc:
                failures.append(str(exc))
        if seconds >= ANSWER_SECONDS:
            failures.append(f"{label}: answered after {seconds:.2f} s")
    assert not failures, "\n".join(failures)


def test_explicit_bad_requests_get_a_4xx_in_the_error_format_within_a_second(served: ServedImage) -> None:
    failures = []
    for label, path, body, headers, expected in EXPLICIT:
        try:
            status, answer, seconds = _timed(served, "POST", path, body, headers)
        except OSError as exc:
            failures.append(f"{label}: no answer ({exc})")
            continue
        try:
            _assert_error_format(status, answer, label)
            assert expected in json.loads(answer)["error"], f"{label}: {answer[:300]!r} lacks {expected!r}"
            # The limits are about what arrives: a 10 MB body takes its own time on a loaded machine.
            limit = ANSWER_SECONDS + len(body) / 20e6
            assert seconds < limit, f"{label}: answered after {seconds:.2f} s (limit {limit:.2f} s)"
        except AssertionError as exc:
            failures.append(str(exc))
    for method, path in (("GET", "/predict"), ("PUT", "/predict"), ("GET", "/metadata"), ("DELETE", "/")):
        status, answer, seconds = _timed(served, method, path, None, None)
        try:
            _assert_error_format(status, answer, f"{method} {path}")
            assert seconds < ANSWER_SECONDS, f"{method} {path}: answered after {seconds:.2f} s"
        except AssertionError as exc:
            failures.append(str(exc))
    assert not failures, "\n".join(failures)
    _valid_prediction(served)


@pytest.mark.parametrize(
    ("label", "declared", "sent"),
    [
        ("body shorter than its Content-Length", 200, _body([VALID_ROW])[:40]),
        ("headers only, body never sent", 500, b""),
        ("whole row, but Content-Length one byte more", len(_body([VALID_ROW])) + 1, _body([VALID_ROW])),
    ],
)
def test_short_body_is_a_400_within_a_second(served: ServedImage, label: str, declared: int, sent: bytes) -> None:
    head = (
        f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {declared}\r\n\r\n"
    ).encode()
    status, answer, seconds = _raw_exchange(served.port, head, sent)
    _assert_error_format(status, answer, label)
    assert status == 400 and "stopped arriving" in json.loads(answer)["error"], answer
    assert seconds < ANSWER_SECONDS, f"{label}: answered after {seconds:.2f} s"
    _valid_prediction(served)


def test_raw_lone_surrogate_and_chunked_body_over_a_socket(served: ServedImage) -> None:
    body = _raw_row(city='"\\ud83d"')  # the first half of an emoji, its second half missing
    head = (
        f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    status, answer, seconds = _raw_exchange(served.port, head, body)
    _assert_error_format(status, answer, "raw lone surrogate")
    assert "surrogate" in json.loads(answer)["error"] and seconds < ANSWER_SECONDS
    # A valid body in chunked transfer encoding is served: validation reads the body, whatever its framing.
    good = _body([VALID_ROW, _row(city="turin", has_lift=False)])
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (good[:30], good[30:])) + b"0\r\n\r\n"
    head = (
        b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    status, answer, _ = _raw_exchange(served.port, head, chunked)
    assert status == 200 and len(json.loads(answer)["predictions"]) == 2, answer


def test_after_everything_the_container_serves_and_logged_no_traceback(served: ServedImage) -> None:
    # Runs last in this module (pytest keeps file order): the log covers the fuzzing and every explicit case.
    assert served.running(), served.logs()
    _valid_prediction(served)
    status, answer = served.request("POST", "/metadata", b"{}")
    assert status == 200 and json.loads(answer)["model"]["name"] == "flat-prices"
    logs = served.logs()
    assert "Traceback" not in logs, logs[-4000:]
    assert "Exception on /" not in logs, logs[-4000:]
