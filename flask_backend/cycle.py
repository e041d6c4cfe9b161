"""The WSGI side of the core's request cycle, as middleware around the Flask app: it feeds the cycle the
request head and the response's progress, performs its steps, and sends a refusal or lets Flask answer."""
from __future__ import annotations

from functools import partial
from typing import Callable

from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.wrappers import Request
from werkzeug.wsgi import ClosingIterator

from drum_compat.flask_backend.steps import BlockingSteps
from drum_compat.shared.app import DrumApp
from drum_compat.shared.cycle import CYCLE_KEY, RequestCycle
from drum_compat.shared.http import NeutralRequest, RequestHeaders, target_path
from drum_compat.shared.request_id import current_request_id
from drum_compat.shared.steps import run_steps


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
    DRUM's routes (the core routes, answers routing errors and stamps every response itself)."""

    def __init__(self, steps: BlockingSteps) -> None:
        self.steps = steps

    def __call__(self, environ: dict, start_response):
        cycle, perform = environ[CYCLE_KEY], partial(self.steps.perform, environ)
        response = run_steps(cycle.respond(), perform)
        start_response(status_line(response.status), list(response.headers.items()))
        return StreamedBody(cycle, perform) if response.chunks is not None else [response.body]


class CycleMiddleware:
    def __init__(self, app, core: DrumApp, steps: BlockingSteps) -> None:
        self.app = app
        self.core = core
        self.steps = steps

    def answer_from_core(self) -> None:
        """Serve the core's answers directly (no extension asked for Flask's dispatch)."""
        self.app = CoreAnswer(self.steps)

    def __call__(self, environ: dict, start_response):
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
