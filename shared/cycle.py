"""One request through the core, from its head to its access line, written once for both stacks (h11's
Connection is the model): the backend feeds events and performs the steps the cycle yields, nothing more."""
from __future__ import annotations

import logging
import time
from enum import Enum
from functools import partial
from typing import TYPE_CHECKING

from werkzeug.exceptions import NotFound

from drum_compat.shared.errors import error_response
from drum_compat.shared.access_log import ACCESS_LOGGER, access_line, log_access
from drum_compat.shared.guards.streaming import ModelStream, StreamAborted
from drum_compat.shared.http import NeutralRequest, NeutralResponse, response_from_http_exception
from drum_compat.shared.metrics import UNMATCHED_ROUTE
from drum_compat.shared.proxy import UpstreamStream
from drum_compat.shared.record import RecordPolicy, record_entry, worth_recording
from drum_compat.shared.routes import RouteMatch
from drum_compat.shared.steps import BODY_COMPLETE, BODY_OVER_LIMIT, ReadBody, Steps, run_steps

if TYPE_CHECKING:
    from drum_compat.shared.app import DrumApp

access_logger = logging.getLogger(ACCESS_LOGGER)
logger = logging.getLogger("drum_compat")
# where a backend's outer loop leaves the cycle, in its request's WSGI environ or ASGI scope, for the app's views
CYCLE_KEY = "drum_compat.cycle"
FAILED_AFTER_THE_ANSWER = "Failed after the answer was sent: %s"


def answered(core: "DrumApp", rule: str, peer: str | None, method: str, target: str, protocol: str, status: int,
             size: int, seconds: float, request_id: str) -> None:
    """What every answered request leaves behind: its count and duration in the metrics, and its access line, each
    whatever the other does."""
    try:  # each in a try of its own, not through despite_failure: a replayed probe pays for every call
        core.metrics.answered(rule, method, status, seconds)
    except Exception:
        logger.exception(FAILED_AFTER_THE_ANSWER, "the metrics")
    try:
        log_access(access_logger, access_line(peer, method, target, protocol, status, size, seconds, request_id,
                                              core.settings.server_type.name))
    except Exception:
        logger.exception(FAILED_AFTER_THE_ANSWER, "the access line")


def despite_failure(action, *args) -> None:
    """After the answer is out, nothing is left to tell the client: a failure is logged, and what follows still runs."""
    try:
        action(*args)
    except Exception:
        logger.exception(FAILED_AFTER_THE_ANSWER, getattr(action, "__qualname__", action))


class CycleState(Enum):
    RECEIVING = "receiving"  # from the head until an answer starts: the front door, the handler, the model
    RESPONDING = "responding"  # the answer's head is out, its body going
    ENDED = "ended"  # answered, or nobody left to answer


class CycleOrderError(RuntimeError):
    """An event the cycle cannot take in its state (h11's LocalProtocolError): a backend's bug, refused rather than
    counted or logged wrong."""


class RequestCycle:
    """Routed once, at its head; `enter` (the front door), then `respond` (handler, model thread, finish),
    or `handle` plus `stamp` where the framework finishes its own responses (Flask's hooks and views).

    Events in: the head (construction), each step's outcome, `response_started`, `sent`, `ended`, in that order
    (`state`; one out of order raises CycleOrderError).
    Steps out: TakeToken and ReadBody (the front door), Submit and Wait (the model call) or Forward (the proxy), then
    the response; for a streamed answer, Submit and Wait or ReadUpstream per chunk (`next_chunk`) until `close_stream`."""

    def __init__(self, core: "DrumApp", head: NeutralRequest, protocol: str, arrived: float | None = None) -> None:
        self.core = core
        self.request = head
        self.protocol = protocol
        self.arrived = time.monotonic() if arrived is None else arrived  # where deadlines and durations count from
        matched = core.resolve(head)
        self.route: RouteMatch | None = matched if isinstance(matched, RouteMatch) else None
        head.view_args = self.route.view_args if self.route else {}
        self._routing_answer = None if self.route else matched  # 404, 405, a redirect, automatic OPTIONS
        self.body = core.front_door.new_body()
        head.body = self.body  # read only once ReadBody completed it, in the handler
        self.request_id = core.request_id_for(head)
        core.retirement.admit()
        self.state = CycleState.RECEIVING
        self.status = 0  # 0 until a response started: nobody was answered
        self.client_gone = False  # the client disconnected: a stream stops at its next chunk
        self.stamped = False  # the answer has the headers every answer carries (`finish` or `stamp` ran)
        # a streamed answer's chunks, once `handle` returned one: made by the model, or read from an upstream
        self.stream: ModelStream | UpstreamStream | None = None
        self.size = 0
        core.metrics.started()

    def served_by_extension(self, rule: str) -> None:
        """An extension's route takes this request (known to its framework, not to the core's table): the rate limit,
        the metrics' route label and the access line treat it as one of the core's."""
        self.route = RouteMatch(f"extension {rule}", {}, False, rule, extension=True)

    # -- the request side: what raises there, in the core or in a step the backend performed, is DRUM's JSON 500 ----
    def enter(self) -> Steps[NeutralResponse | None]:
        """The front door (steps TakeToken, ReadBody): its refusal, finished and ready to send, or None to go on."""
        try:
            refusal = yield from self.core.front_door.before_app(self.request, self.route, self.body, self.arrived)
        except Exception as exc:
            refusal = error_response(exc)
        return None if refusal is None else self.finish(refusal)

    def handle(self) -> Steps[NeutralResponse]:
        """The route's answer: model routes in a model thread through the admission gate (steps Submit, Wait),
        others inline; unfinished (see `finish`)."""
        route = self.route
        try:
            if route is None:
                return self._routing_answer
            if route.extension:  # its framework answers it; only a path it then did not take gets here
                return response_from_http_exception(NotFound())
            call = partial(self.core.call, route.endpoint, self.request)
            if not route.runs_model:
                response = call()
                if not isinstance(response, NeutralResponse):  # a handler doing its I/O as steps (shared.proxy)
                    response = yield from response
            else:
                response = yield from self.core.gate.model_call(call, self.arrived, self.request_id)
            self.stream = response.chunks
            return response
        except Exception as exc:
            return error_response(exc)

    def respond(self) -> Steps[NeutralResponse]:
        """`handle`, finished: the whole answer, for a backend whose framework adds nothing."""
        return self.finish((yield from self.handle()))

    def answer_at_once(self, received: bytes = b"") -> NeutralResponse:
        """`enter` and `respond` with no I/O, for a request `core.answers_at_once` whose whole body the backend
        holds: the one step left (ReadBody) is done here."""
        def read_received(step) -> str:
            if not isinstance(step, ReadBody):
                raise TypeError(f"not a step of an answer at once: {step!r}")
            return BODY_COMPLETE if step.body.feed(received) else BODY_OVER_LIMIT

        refusal = run_steps(self.enter(), read_received)
        return refusal if refusal is not None else run_steps(self.respond(), read_received)

    def finish(self, response: NeutralResponse) -> NeutralResponse:
        """What Flask and werkzeug do after a view: defaults, the common headers (`stamp`), no body for HEAD
        (Content-Length keeps the GET body's size, as werkzeug does)."""
        response.complete()
        self.stamp(response.headers, response.status)
        if self.request.method == "HEAD":
            response.body = b""
        return response

    def stamp(self, headers, status: int) -> None:
        """Every answer's headers, whoever built it (the core, or the framework: its views, hooks, automatic OPTIONS,
        extensions), and the log line of a refused request; its access line and metrics come at `ended`."""
        self.stamped = True
        self.core.stamp(headers, self.request_id, self.request.method, self.request.headers)
        if status >= 400:
            logger.info("API [%s %s] request time: %.4f sec, request_id: %s", self.request.method, self.request.path,
                        time.monotonic() - self.arrived, self.request_id)

    def next_chunk(self) -> Steps[bytes | None]:
        """The next chunk of a streamed answer, made in the model thread (steps Submit, Wait) or read from the upstream
        (ReadUpstream); None at its end.
        Raises StreamAborted when it cannot be completed: the backend then drops the connection."""
        if self.client_gone:
            return None
        try:
            return (yield from self.stream.next())
        except StreamAborted as aborted:
            logger.warning("Streamed answer to %s %s aborted: %s", self.request.method, self.request.path, aborted)
            raise

    def client_left(self) -> None:
        self.client_gone = True

    def close_stream(self) -> Steps[None]:
        """The backend stops reading the stream (its end, a failure, the client left): the model's iterator is
        closed in a model thread, which frees the slot, or the upstream connection released."""
        if self.stream is not None:
            yield from self.stream.close()

    # -- the sending side ----------------------------------------------------------------------------
    def _refuse(self, event: str) -> None:
        raise CycleOrderError(f"{event} while the cycle of request {self.request_id} is {self.state.value}")

    def response_started(self, status: int) -> None:
        """Again before any byte of the body (WSGI's start_response with exc_info), the status is replaced."""
        if self.state is not CycleState.RECEIVING and not (self.state is CycleState.RESPONDING and self.size == 0):
            self._refuse("response_started")
        self.state = CycleState.RESPONDING
        self.status = status

    def sent(self, size: int) -> None:
        if self.state is not CycleState.RESPONDING:
            self._refuse("sent")
        self.size += size

    def ended(self) -> None:
        """The response is out, or nobody is left to answer: the recording if sampled, the body goes, then the
        metrics and the access line, each whatever the others do."""
        if self.state is CycleState.ENDED:
            self._refuse("ended")
        self.state = CycleState.ENDED
        seconds = time.monotonic() - self.arrived
        recorder = self.core.recorder
        if self.status and recorder is not None and worth_recording(self.request, self.route):
            despite_failure(lambda: recorder.keep() and recorder.write(self._recorded(recorder.policy, seconds)))
        despite_failure(self.body.close)
        despite_failure(self.core.metrics.finished)
        if self.status:
            answered(self.core, self.route.rule if self.route else UNMATCHED_ROUTE, self.request.remote_addr,
                     self.request.method, self.target, self.protocol, self.status, self.size, seconds, self.request_id)

    @property
    def target(self) -> str:
        """The request target as the access line shows it."""
        request = self.request
        query = f"?{request.query_string.decode('latin-1')}" if request.query_string else ""
        return f"{request.root_path}{request.path}{query}"

    def _recorded(self, policy: RecordPolicy, seconds: float) -> dict:
        body = self.body.read() if self.body.complete and self.body.size <= policy.max_body else None
        return record_entry(policy, self.request, body, self.body.size, self.status, seconds, self.request_id,
                            self.core.settings.server_type.name)
