"""The core's request cycle driven by hand, without any server or framework (it is sans-I/O), and the promise
that each stack routes a request once: the steps in order, the answers finished, the accounting at the end."""
from __future__ import annotations

import logging

import pytest
from werkzeug.datastructures import Headers
from werkzeug.routing import MapAdapter

from drum_compat.shared.access_log import ACCESS_LOGGER
from drum_compat.shared.app import AppSettings, DrumApp
from drum_compat.shared.cycle import CycleOrderError, CycleState, RequestCycle
from drum_compat.shared.guards.admission import AdmissionLimits
from drum_compat.shared.guards.front_door import FrontDoorSettings
from drum_compat.shared.guards.rate_limit import Decision, RateLimitPolicy
from drum_compat.shared.handlers import is_constant
from drum_compat.shared.http import NeutralRequest
from drum_compat.shared.server_types import SERVER_TYPES
from drum_compat.shared.steps import (BODY_COMPLETE, BODY_CUT_SHORT, STILL_RUNNING, ReadBody, Submit, TakeToken, Wait,
                                      run_steps)
from tests.conftest import Stacks, load_model

CSV = b"x\n1\n"


@pytest.fixture(scope="module")
def core(tmp_path_factory):
    settings = AppSettings(server_type=SERVER_TYPES["uvicorn"], admission=AdmissionLimits(deadline=5.0),
                           front_door=FrontDoorSettings(max_upload_size=64, rate_limit=RateLimitPolicy(per_minute=60, burst=1)))
    return DrumApp.for_model(load_model(tmp_path_factory.mktemp("cycle"), "regression"), settings)


def head(method: str, path: str, length: int | None = None, **headers: str) -> NeutralRequest:
    if length is not None:
        headers["Content-Length"] = str(length)
    return NeutralRequest(method=method, path=path, headers=Headers(headers), remote_addr="10.0.0.1")


def drive(steps, answers: dict):
    """Perform the steps with canned outcomes (a callable outcome is called with the step); the result and the
    names of the steps seen."""
    seen = []

    def perform(step):
        seen.append(type(step).__name__)
        outcome = answers[type(step)]
        return outcome(step) if callable(outcome) else outcome

    return run_steps(steps, perform), seen


def fed(body: bytes):
    def read(step: ReadBody) -> str:
        step.body.feed(body)
        return BODY_COMPLETE
    return read


ALLOWED = Decision(True, 1.0)


def test_the_front_door_steps_come_in_order_and_stop_at_the_first_refusal(core):
    def enter(length: int, answers: dict):
        return drive(RequestCycle(core, head("POST", "/predict/", length), "HTTP/1.1").enter(), answers)

    refused, seen = enter(10, {TakeToken: Decision(False, 0.0)})
    assert (refused.status, seen) == (429, ["TakeToken"])  # the body is never read
    too_large = core.metrics.rejections.labels("body_too_large", "uvicorn")
    counted = too_large._value.get()
    refused, seen = enter(65, {TakeToken: ALLOWED})
    assert (refused.status, seen) == (413, ["TakeToken"])  # declared too large: never read either
    assert too_large._value.get() == counted + 1  # under its documented reason
    refused, seen = enter(10, {TakeToken: OSError("redis down"), ReadBody: BODY_CUT_SHORT})
    assert (refused.status, seen) == (400, ["TakeToken", "ReadBody"])  # fail-open, then the client left
    assert refused.headers["X-Request-ID"] and refused.headers["Content-Length"] == str(len(refused.body))  # finished
    assert enter(10, {TakeToken: ALLOWED, ReadBody: fed(b"x" * 10)}) == (None, ["TakeToken", "ReadBody"])


def test_probes_skip_the_rate_limit_and_never_reach_a_model_thread(core):
    cycle = RequestCycle(core, head("GET", "/ping/"), "HTTP/1.1")
    assert drive(cycle.enter(), {ReadBody: BODY_COMPLETE}) == (None, ["ReadBody"])
    response, seen = drive(cycle.respond(), {})
    assert (response.status, response.body, seen) == (200, b'{"message":"OK"}\n', [])


def test_a_model_route_runs_its_job_through_submit_and_wait(core):
    cycle = RequestCycle(core, head("POST", "/predict/", len(CSV), **{"Content-Type": "text/csv", "X-Request-ID": "abc-1"}),
                         "HTTP/1.1")
    assert drive(cycle.enter(), {TakeToken: ALLOWED, ReadBody: fed(CSV)})[0] is None
    jobs = []
    waits = iter([STILL_RUNNING])  # the first wait runs out before the job is run; the deadline is still far

    def submit(step: Submit):
        jobs.append(step.job)
        return "handle"

    def wait(step: Wait):
        assert step.handle == "handle" and 0 < step.seconds <= 5.0
        return next(waits, None) or jobs[0]()

    response, seen = drive(cycle.respond(), {Submit: submit, Wait: wait})
    assert seen == ["Submit", "Wait", "Wait"]
    assert (response.status, response.body) == (200, b'{"predictions":[2.0]}')
    assert response.headers["X-Request-ID"] == response.headers["X_Request_ID"] == "abc-1"


def test_routing_answers_come_from_the_core_without_steps(core):
    cycle = RequestCycle(core, head("GET", "/predict/"), "HTTP/1.1")
    assert cycle.route is None
    response, seen = drive(cycle.respond(), {})
    assert (response.status, response.headers["Allow"], seen) == (405, "POST, OPTIONS", [])


def test_the_end_of_a_cycle_counts_and_logs_it_once_answered(core, caplog):
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    before = core.metrics.in_flight.labels("uvicorn")._value.get()
    answered = RequestCycle(core, head("GET", "/info/"), "HTTP/1.0")
    unanswered = RequestCycle(core, head("GET", "/ping/"), "HTTP/1.1")
    assert core.metrics.in_flight.labels("uvicorn")._value.get() == before + 2
    answered.response_started(200)
    answered.sent(10)
    answered.sent(5)
    answered.ended()
    unanswered.ended()  # the client left before any answer: counted out, but no access line
    assert core.metrics.in_flight.labels("uvicorn")._value.get() == before
    lines = [record.getMessage() for record in caplog.records if record.name == ACCESS_LOGGER]
    assert len(lines) == 1 and '"GET /info/ HTTP/1.0" 200 15 ' in lines[0]


def test_events_out_of_order_are_refused_and_change_nothing(core, caplog):
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    cycle = RequestCycle(core, head("GET", "/info/"), "HTTP/1.1")
    with pytest.raises(CycleOrderError, match="sent while the cycle of request .* is receiving"):
        cycle.sent(10)  # a body before its head
    cycle.response_started(500)
    cycle.response_started(200)  # WSGI's start_response again, with exc_info, before any body: the status is replaced
    cycle.sent(5)
    with pytest.raises(CycleOrderError, match="response_started while .* is responding"):
        cycle.response_started(404)  # a second answer once the first's body is going
    cycle.ended()
    for late in (lambda: cycle.sent(1), cycle.ended, lambda: cycle.response_started(200)):
        with pytest.raises(CycleOrderError, match="is ended"):
            late()
    lines = [record.getMessage() for record in caplog.records if record.name == ACCESS_LOGGER]
    assert cycle.state is CycleState.ENDED and len(lines) == 1 and '"GET /info/ HTTP/1.1" 200 5 ' in lines[0]


@pytest.fixture(scope="module")
def stacks(tmp_path_factory):
    return Stacks(load_model(tmp_path_factory.mktemp("routed"), "regression"))


@pytest.mark.parametrize("method,path,body", [("GET", "/ping/", b""), ("POST", "/predict/", CSV), ("GET", "/nowhere", b"")])
def test_each_stack_routes_a_request_once(stacks, monkeypatch, method, path, body):
    matches = []
    original = MapAdapter.match

    def counted(self, *args, **kwargs):
        matches.append(path)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MapAdapter, "match", counted)
    for send in (stacks.flask, stacks.fastapi):
        matches.clear()
        send(method, path, body, {"Content-Type": "text/csv"})
        # as served without an extension (with a custom_flask.py, Flask matches a path the core does not know again)
        assert len(matches) == 1, send


def test_a_remembered_route_gives_every_request_its_own_view_args(core):
    first = core.resolve(head("GET", "/directAccess/v1/models"))
    first.view_args.pop("path")  # what a Flask url_value_preprocessor may do with its request's values
    second = core.resolve(head("GET", "/directAccess/v1/models"))
    assert second.view_args == {"path": "v1/models"} and second.endpoint == "forward_request"


class Untouchable:
    """Stands for the request and every piece of a handler's state: reading any of it fails."""

    def __init__(self, what: str) -> None:
        object.__setattr__(self, "what", what)

    def __getattribute__(self, name: str):
        raise AssertionError(f"a constant handler read {name} of {object.__getattribute__(self, 'what')}")


def test_a_handler_declared_constant_reads_neither_the_request_nor_any_state(core):
    """What the protocol replays must be an answer nothing could change (fastapi_backend.at_once)."""
    handlers = core.handlers
    constant = sorted(name for name in dir(type(handlers)) if is_constant(handlers, name))
    assert {"ping", "health", "startupz"} <= set(constant) and "livez" not in constant
    expected = {name: getattr(handlers, name)(head("GET", "/ping/")) for name in constant}
    sealed = object.__new__(type(handlers))
    sealed.__dict__.update({attribute: Untouchable(attribute) for attribute in vars(handlers)})
    for name in constant:
        answer = getattr(sealed, name)(Untouchable("the request"))
        assert (answer.status, list(answer.headers.items()), answer.body) == (
            expected[name].status, list(expected[name].headers.items()), expected[name].body)
    assert [route.rule for route in core.routes if route.constant] == ["/", "/ping/", "/health/", "/startupz"]


def test_the_sealed_check_catches_a_handler_that_reads_state(core):
    sealed = object.__new__(type(core.handlers))
    sealed.__dict__.update({attribute: Untouchable(attribute) for attribute in vars(core.handlers)})
    with pytest.raises(AssertionError, match="read retiring of admission"):
        sealed.livez(Untouchable("the request"))
