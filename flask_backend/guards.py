"""The front door as WSGI middleware around the Flask app: rate limit, body limit (the body is read
here, bounded, and handed on spooled), then metrics and the access line once the response is closed."""
from __future__ import annotations

import time
from http import HTTPStatus

from werkzeug.datastructures import Headers
from werkzeug.wrappers import Request
from werkzeug.wsgi import ClosingIterator

from drum_compat.compat.rate_store import STORE_ERRORS
from drum_compat.shared.guards.body import CHUNK, RequestBody
from drum_compat.shared.guards.front_door import (ARRIVED_KEY, BODY_COMPLETE, BODY_CUT_SHORT, BODY_KEY, BODY_TOO_LARGE, FrontDoor,
                                                   ReadBody, TakeToken)
from drum_compat.shared.http import NeutralRequest
from drum_compat.shared.request_id import REQUEST_ID_HEADER
from drum_compat.shared.steps import run_steps



def head_request(environ: dict) -> NeutralRequest:
    """The request line and headers, as Flask will see them; the body comes later."""
    request = Request(environ, populate_request=False)
    return NeutralRequest(
        method=request.method, path=request.path, headers=Headers(list(request.headers.items())),
        query_string=request.query_string, scheme=request.scheme, server=request.server,
        root_path=request.root_path, remote_addr=request.remote_addr,
    )


class BodyCutShort(Exception):
    """The server's reader failed mid-body (a chunked body whose client went away)."""


def read_body(environ: dict, body: RequestBody) -> bool:
    """Read wsgi.input into `body`; False as soon as it crosses the limit (the rest stays unread)."""
    environ[BODY_KEY] = body
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH", "")
    remaining = int(length) if length.isdigit() else None
    if remaining is None and not environ.get("wsgi.input_terminated"):
        return True  # no length and no terminated stream: WSGI says there is no body to read
    while remaining is None or remaining > 0:
        try:
            chunk = stream.read(CHUNK if remaining is None else min(CHUNK, remaining))
        except OSError as exc:  # gunicorn's NoMoreData, a reset connection
            raise BodyCutShort() from exc
        if not chunk:
            break
        if remaining is not None:
            remaining -= len(chunk)
        if not body.feed(chunk):
            return False
    environ["wsgi.input"] = body.file
    environ["CONTENT_LENGTH"] = str(body.size)
    environ.pop("HTTP_TRANSFER_ENCODING", None)  # the body is now plain bytes of that length
    environ["wsgi.input_terminated"] = True
    return True


class GuardMiddleware:
    def __init__(self, app, front_door: FrontDoor, buckets) -> None:
        self.app = app
        self.door = front_door
        self.buckets = buckets  # LocalBuckets or RedisBuckets (sync client), used when the limit is on

    def _perform(self, environ: dict, step: TakeToken | ReadBody):
        if isinstance(step, TakeToken):
            try:
                return self.buckets.take(step.client)
            except STORE_ERRORS as exc:
                return exc
        try:
            return BODY_COMPLETE if read_body(environ, step.body) else BODY_TOO_LARGE
        except BodyCutShort:
            return BODY_CUT_SHORT

    def __call__(self, environ: dict, start_response):
        started = time.monotonic()
        environ[ARRIVED_KEY] = started
        door = self.door
        request = head_request(environ)
        route = door.route_of(request)
        body = door.new_body()
        answer = {"status": 0, "size": 0, "request_id": "-"}
        door.metrics.started()

        def observed_start_response(status: str, headers, exc_info=None):
            answer["status"] = int(status.split(" ", 1)[0])
            answer["request_id"] = Headers(headers).get(REQUEST_ID_HEADER, "-")
            return start_response(status, headers, exc_info)

        def done() -> None:
            body.close()
            door.metrics.finished()
            door.answered(request, route, environ.get("SERVER_PROTOCOL", "HTTP/1.1"), answer["status"], answer["size"],
                          started, answer["request_id"])

        try:
            refusal = run_steps(door.before_app(request, route, body), lambda step: self._perform(environ, step))
            if refusal is not None:
                response = door.refuse(request, refusal, started)
                observed_start_response(f"{response.status} {HTTPStatus(response.status).phrase}", list(response.headers.items()))
                chunks, close = [response.body], None
            else:
                chunks = self.app(environ, observed_start_response)
                close = getattr(chunks, "close", None)
        except BaseException:
            done()
            raise

        def counted():
            for chunk in chunks:
                answer["size"] += len(chunk)
                yield chunk

        return ClosingIterator(counted(), [callback for callback in (close, done) if callback])
