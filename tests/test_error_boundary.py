"""One error boundary in the core (issue 25): a fault in any step of a request (the front door, reading the body, the
admission gate, the model call) is DRUM's JSON 500 with the headers every answer carries, the same on every path
(Flask lean and full, FastAPI lean and full, the protocol's answer at once); a fault after the answer (the recorder,
the metrics, the access log) changes nothing the client gets, and whatever else is left behind is still written."""
from __future__ import annotations

import asyncio
import json
import logging

import httpx
import pytest
from werkzeug.test import Client

from drum_compat.fastapi_backend.app import LeanDispatch, create_fastapi_app
from drum_compat.flask_backend.app import create_flask_app
from drum_compat.shared.app import AppSettings, DrumApp
from drum_compat.shared.cycle import ACCESS_LOGGER
from drum_compat.shared.guards.body import RequestBody
from drum_compat.shared.record import RecordPolicy
from drum_compat.shared.server_types import SERVER_TYPES
from tests.conftest import load_model
from tests.test_at_once import exchange, request_bytes

PREDICTION = ("POST", "/predict/", b"x\n1\n2\n", {"Content-Type": "text/csv"})
PROBE = ("GET", "/ping/", b"", {})
APP_PATHS = ("flask-lean", "flask-full", "fastapi-lean", "fastapi-full")


class Injected(RuntimeError):
    pass


def fail(*_args, **_kwargs):
    raise Injected("injected")


class FailingBody(RequestBody):
    def feed(self, chunk: bytes) -> bool:
        raise Injected("injected")


class FailingRecorder:
    policy = RecordPolicy()

    def keep(self) -> bool:
        return True

    def write(self, entry: dict) -> None:
        raise Injected("injected")


def inject(core: DrumApp, fault: str) -> None:
    match fault:
        case "front door":
            core.front_door.before_app = fail
        case "body":
            core.front_door.new_body = lambda: FailingBody(1 << 20)
        case "admission":
            core.gate.model_call = fail
        case "model call":
            core.handlers.predict = fail
        case "recorder":
            core.recorder = FailingRecorder()
        case "metrics":  # once the request is counted: the fault is in what the metrics do after
            counted = core.metrics.answered
            core.metrics.answered = lambda *args: (counted(*args), fail())
        case "access log":
            logging.getLogger(ACCESS_LOGGER).addFilter(fail)


class Outcome:
    """What one request left behind: its answer, its access lines and the requests the metrics counted."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, {name.lower(): value for name, value in headers.items()}, body
        self.access_lines = 0
        self.counted = 0


def send(path: str, core: DrumApp, request) -> Outcome:
    method, target, body, headers = request
    if path.startswith("flask"):
        app = create_flask_app(core)
        if path == "flask-lean":
            app.wsgi_app.answer_from_core()
        response = Client(app).open(target, method=method, data=body, headers=headers)
        outcome = Outcome(response.status_code, dict(response.headers), response.get_data())
        response.close()  # the server's close: the cycle ends there
        return outcome
    app = create_fastapi_app(core)
    if path in ("fastapi-lean", "at once"):
        app = LeanDispatch(app)
    if path == "at once":
        written, in_callback, _ = asyncio.run(exchange(app, request_bytes(method, target, headers), at_once=True))
        assert in_callback
        head, _, answer = written.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        return Outcome(int(status_line.split()[1]), dict(line.split(": ", 1) for line in lines), answer)

    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://model") as client:
            return await client.request(method, target, content=body, headers=headers)

    response = asyncio.run(call())
    return Outcome(response.status_code, dict(response.headers), response.content)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return load_model(tmp_path_factory.mktemp("boundary"), "regression")


@pytest.fixture
def access_lines():
    """The access lines written while a test runs."""
    lines: list[str] = []
    logger = logging.getLogger(ACCESS_LOGGER)
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(level)
    for added in [found for found in logger.filters if found is fail]:
        logger.removeFilter(added)


def outcome_with_fault(model, path: str, fault: str | None, request, access_lines: list[str]) -> Outcome:
    stack = "gunicorn" if path.startswith("flask") else "uvicorn"
    core = DrumApp.for_model(model, AppSettings(server_type=SERVER_TYPES[stack]))
    counted = []
    answered = core.metrics.answered
    core.metrics.answered = lambda *args: (counted.append(args), answered(*args))
    if fault is not None:
        inject(core, fault)
    before = len(access_lines)
    outcome = send(path, core, request)
    outcome.access_lines, outcome.counted = len(access_lines) - before, len(counted)
    return outcome


def assert_drum_internal_error(outcome: Outcome) -> None:
    assert outcome.status == 500
    assert json.loads(outcome.body) == {"message": "ERROR: injected"}
    assert outcome.headers["content-type"] == "application/json"
    assert outcome.headers["x-request-id"] and outcome.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("fault", ["front door", "body", "admission", "model call"])
@pytest.mark.parametrize("path", APP_PATHS)
def test_a_fault_in_any_step_is_drums_json_500_on_every_path_logged_and_counted_once(model, path, fault, access_lines):
    # before (admission): gunicorn's own 500 page (Flask lean), Starlette's text/plain 500 (FastAPI full), uvicorn's
    # bodiless 500 (FastAPI lean), none logged or counted; the front door's fault escaped to the server on Flask
    outcome = outcome_with_fault(model, path, fault, PREDICTION, access_lines)
    assert_drum_internal_error(outcome)
    assert (outcome.access_lines, outcome.counted) == (1, 1)


@pytest.mark.parametrize("fault", ["front door", "body"])
def test_a_fault_before_an_answer_at_once_is_the_same_500(model, fault, access_lines):
    outcome = outcome_with_fault(model, "at once", fault, PROBE, access_lines)
    assert_drum_internal_error(outcome)
    assert (outcome.access_lines, outcome.counted) == (1, 1)


@pytest.mark.parametrize("fault", ["recorder", "metrics", "access log"])
@pytest.mark.parametrize("path", [*APP_PATHS, "at once"])
def test_a_fault_after_the_answer_changes_nothing_the_client_gets_nor_the_rest_left_behind(model, path, fault,
                                                                                          access_lines):
    request = PROBE if path == "at once" else PREDICTION
    clean = outcome_with_fault(model, path, None, request, access_lines)
    faulty = outcome_with_fault(model, path, fault, request, access_lines)
    assert (faulty.status, faulty.body) == (clean.status, clean.body) and clean.status == 200
    assert faulty.access_lines == (0 if fault == "access log" else 1)
    assert faulty.counted == 1  # counted before the metrics' own fault, which is logged
