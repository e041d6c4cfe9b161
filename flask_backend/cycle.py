"""The WSGI side of the core's request cycle, as middleware around the Flask app: it feeds the cycle the
request head and the response's progress, performs its steps, and sends a refusal or lets Flask answer; without an
extension, the core's own answers, and those it gives again (shared.replay)."""
from __future__ import annotations

import time
from functools import partial
from typing import Callable

from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.wrappers import Request
from werkzeug.wsgi import ClosingIterator

from drum_compat.flask_backend.steps import BlockingSteps
from drum_compat.shared.app import DrumApp
from drum_compat.shared.cycle import CYCLE_KEY, RequestCycle
from drum_compat.shared.http import NeutralRequest, RequestHeaders, target_path
from drum_compat.shared.replay import Remembered, ReplayCache
from drum_compat.shared.request_id import REQUEST_ID_HEADER, current_request_id
from drum_compat.shared.steps import run_steps


CLIENT_REQUEST_ID = "HTTP_" + REQUEST_ID_HEADER.upper().replace("-", "_")
HEAD_FIELDS = ("REQUEST_METHOD", "wsgi.url_scheme", "SERVER_NAME", "SERVER_PORT", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING",
               "RAW_URI", "REQUEST_URI", "SERVER_PROTOCOL", "CONTENT_TYPE")
Wire = tuple[list[tuple[str, str]], str]  # a remembered answer's headers, and the request id they hold
REPLAY_HEAD = "drum_compat.replay_head"  # environ key: the head an answer of the core's may be remembered for


def head_key(environ: dict) -> tuple | None:
    """Everything in a bodiless request's head the core could answer from (its peer only goes into the access line);
    None when a body follows."""
    if environ.get("CONTENT_LENGTH", "") not in ("", "0") or "HTTP_TRANSFER_ENCODING" in environ:
        return None
    return (*(environ.get(field) for field in HEAD_FIELDS), *(item for item in environ.items() if item[0].startswith("HTTP_")))


def head_request(environ: dict) -> NeutralRequest:
    """The request line and headers, as Flask will see them; the body comes later."""
    request = Request(environ, populate_request=False)
    return NeutralRequest(
        method=request.method, path=request.path, headers=RequestHeaders(request.headers.items()),
        query_string=request.query_string, scheme=request.scheme, server=request.server,
        root_path=request.root_path, remote_addr=request.remote_addr,
        raw_path=target_path(raw) if (raw := environ.get("RAW_URI") or environ.get("REQUEST_URI")) else None,
    )


class StreamedBody:
    """A streamed answer as a WSGI iterable: each chunk is made in the model thread when the server asks for it, so
    gunicorn writes (and flushes) it at once; the server's `close` (the end, or a write to a client that left)
    stops the model's iterator."""

    def __init__(self, cycle: RequestCycle, perform: Callable) -> None:
        self.cycle = cycle
        self.perform = perform

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        chunk = run_steps(self.cycle.next_chunk(), self.perform)
        if chunk is None:
            raise StopIteration
        return chunk

    def close(self) -> None:
        run_steps(self.cycle.close_stream(), self.perform)


def status_line(code: int) -> str:
    """As werkzeug's Response writes it for Flask (upper case), so a client sees the reason DRUM sent."""
    return f"{code} {HTTP_STATUS_CODES.get(code, 'unknown').upper()}"


class CoreAnswer:
    """What the WSGI loop serves when no custom_flask.py is loaded: the cycle's own answer, as the FastAPI stack's
    CoreEndpoint sends it, past Flask's request context, second routing and response object, which do nothing for
    DRUM's routes (the core routes, answers routing errors and stamps every response itself). An answer the replay
    cache keeps is remembered for the request head in `environ[REPLAY_HEAD]`."""

    def __init__(self, steps: BlockingSteps, replays: ReplayCache[Wire]) -> None:
        self.steps = steps
        self.replays = replays

    def __call__(self, environ: dict, start_response):
        cycle, perform = environ[CYCLE_KEY], partial(self.steps.perform, environ)
        response = run_steps(cycle.respond(), perform)
        headers = list(response.headers.items())
        start_response(status_line(response.status), headers)
        if response.chunks is not None:
            return StreamedBody(cycle, perform)
        head = environ.get(REPLAY_HEAD)
        if head is not None and self.replays.keeps(cycle, response):  # kept without Connection: each replay asks the core
            kept = [(name, value) for name, value in headers if name.lower() != "connection"]
            self.replays.remember(head, cycle, response, (kept, cycle.request_id))
        return [response.body]


class CycleMiddleware:
    def __init__(self, app, core: DrumApp, steps: BlockingSteps) -> None:
        self.app = app
        self.core = core
        self.steps = steps
        self.replays: ReplayCache[Wire] | None = None  # answers given again: the core's own only, never an extension's

    def answer_from_core(self) -> None:
        """Serve the core's answers directly (no extension asked for Flask's dispatch)."""
        self.replays = ReplayCache(self.core)
        self.app = CoreAnswer(self.steps, self.replays)

    def __call__(self, environ: dict, start_response):
        if self.replays is not None and self.replays.replayable(CLIENT_REQUEST_ID in environ):
            head = environ[REPLAY_HEAD] = head_key(environ)
            remembered = self.replays.get(head) if head is not None else None
            if remembered is not None:
                return self.replay(remembered, environ, start_response)
        cycle = RequestCycle(self.core, head_request(environ), environ.get("SERVER_PROTOCOL", "HTTP/1.1"))
        environ[CYCLE_KEY] = cycle  # for the views (flask_backend.app)

        def observed_start_response(status: str, headers, exc_info=None):
            cycle.response_started(int(status.split(" ", 1)[0]))
            return start_response(status, headers, exc_info)

        token = current_request_id.set(cycle.request_id)
        try:
            refusal = run_steps(cycle.enter(), partial(self.steps.perform, environ))
            if refusal is not None:
                observed_start_response(status_line(refusal.status), list(refusal.headers.items()))
                chunks, close = [refusal.body], None
            else:
                chunks = self.app(environ, observed_start_response)
                close = getattr(chunks, "close", None)
        except BaseException:
            cycle.ended()
            raise
        finally:
            current_request_id.reset(token)

        def counted():
            for chunk in chunks:
                cycle.sent(len(chunk))
                yield chunk

        return ClosingIterator(counted(), [callback for callback in (close, cycle.ended) if callback])

    def replay(self, remembered: Remembered[Wire], environ: dict, start_response) -> list[bytes]:
        def with_its_id(wire: Wire, request_id: str, closes: bool) -> None:
            headers, kept_id = wire
            start_response(status_line(remembered.status), [(name, request_id if value == kept_id else value)
                                                              for name, value in headers] + [("Connection", "close")] * closes)

        self.replays.give_again(remembered, environ.get("REMOTE_ADDR"), time.monotonic(), with_its_id)
        return [remembered.body]
