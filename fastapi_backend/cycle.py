"""The ASGI side of the core's request cycle: pure ASGI middleware (never BaseHTTPMiddleware) that feeds the
cycle the request head and the response's progress and performs its steps, and the endpoint that sends its answer."""
from __future__ import annotations

import asyncio
from functools import partial

from starlette.routing import Match
from werkzeug.datastructures import Headers

from drum_compat.fastapi_backend.steps import AsyncSteps
from drum_compat.shared.app import DrumApp
from drum_compat.shared.cycle import CYCLE_KEY, RequestCycle
from drum_compat.shared.guards.body import CHUNK, RequestBody
from drum_compat.shared.http import NeutralRequest, NeutralResponse, target_path, wsgi_style_headers
from drum_compat.shared.request_id import current_request_id
from drum_compat.shared.steps import run_steps_async


def head_request(scope: dict) -> NeutralRequest:
    """The request line and headers as a WSGI server would present them; the body comes later."""
    root_path = scope.get("root_path", "")
    path = scope["path"]
    if root_path and path.startswith(root_path):
        path = path[len(root_path):]
    client = scope.get("client")
    return NeutralRequest(
        method=scope["method"], path=path, headers=wsgi_style_headers(scope["headers"]),
        query_string=scope.get("query_string", b""), scheme=scope.get("scheme", "http"), server=scope.get("server"),
        root_path=root_path, remote_addr=client[0] if client else None,
        raw_path=target_path(scope["raw_path"].decode("latin-1")) if scope.get("raw_path") else None,
    )


async def send_response(send, response: NeutralResponse) -> None:
    # header names go out as the core wrote them (Starlette's Response would lowercase them)
    headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in response.headers.items()]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    if response.chunks is None:
        await send({"type": "http.response.body", "body": response.body})


def watch_for_disconnect(receive, cycle: RequestCycle) -> asyncio.Future:
    """uvicorn's `send` to a gone client does nothing, so a stream learns of the disconnect from `receive`."""
    async def until_disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        cycle.client_left()

    return asyncio.ensure_future(until_disconnected())


async def send_stream(send, receive, cycle: RequestCycle, perform) -> None:
    """A streamed answer's chunks, each sent as the model thread makes it, until the end or until the client leaves."""
    watcher = watch_for_disconnect(receive, cycle)
    try:
        while (chunk := await run_steps_async(cycle.next_chunk(), perform)) is not None:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    finally:
        watcher.cancel()
        await run_steps_async(cycle.close_stream(), perform)


def stamped(message: dict, cycle: RequestCycle) -> dict:
    headers = Headers([(name.decode("latin-1"), value.decode("latin-1")) for name, value in message["headers"]])
    cycle.stamp(headers, message["status"])
    return {**message, "headers": [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]}


def replayed(body: RequestBody, receive):
    """`receive` for the app once the front door has the body: the body again, chunk by chunk, then the client's
    own messages (its disconnect)."""
    offset = 0
    replaying = True

    async def receive_again() -> dict:
        nonlocal offset, replaying
        if not replaying:
            return await receive()
        chunk = body.read_at(offset, CHUNK)  # by position: a model thread may be reading the same body meanwhile
        offset += len(chunk)
        replaying = len(chunk) == CHUNK
        return {"type": "http.request", "body": chunk, "more_body": replaying}

    return receive_again


EXTENSION_ROUTE = "extension"  # the route label until the extension's router says which of its routes answered


def taken_by(router, scope: dict) -> bool:
    return any(route.matches(scope)[0] == Match.FULL for route in router.routes)


class CycleMiddleware:
    def __init__(self, app, core: DrumApp, steps: AsyncSteps, router) -> None:
        self.app = app
        self.core = core
        self.steps = steps
        self.router = router  # the app's: its routes are the extensions' (custom_fastapi.py); DRUM's are the core's

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cycle = RequestCycle(self.core, head_request(scope), f"HTTP/{scope.get('http_version', '1.1')}")
        if cycle.route is None and self.router.routes and taken_by(self.router, scope):
            cycle.served_by_extension(EXTENSION_ROUTE)

        async def observed_send(message) -> None:
            if message["type"] == "http.response.start":
                if not cycle.stamped:  # an extension's or FastAPI's own answer
                    message = stamped(message, cycle)
                cycle.response_started(message["status"])
            elif message["type"] == "http.response.body":
                cycle.sent(len(message.get("body", b"")))
            await send(message)

        token = current_request_id.set(cycle.request_id)
        try:
            refusal = await run_steps_async(cycle.enter(), partial(self.steps.perform, receive))
            if refusal is not None:
                await send_response(observed_send, refusal)
            else:
                scope[CYCLE_KEY] = cycle  # for CoreEndpoint, the WSGI bridge and extensions
                await self.app(scope, replayed(cycle.body, receive), observed_send)
                answered_by = scope.get("route")  # set by the router that matched
                if cycle.route is not None and cycle.route.extension and hasattr(answered_by, "path"):
                    cycle.served_by_extension(answered_by.path)
        finally:
            current_request_id.reset(token)
            cycle.ended()


class CoreEndpoint:
    """The router's default: every request no FastAPI route took gets its cycle's answer."""

    def __init__(self, steps: AsyncSteps) -> None:
        self.steps = steps

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1000})
            return
        cycle, perform = scope[CYCLE_KEY], partial(self.steps.perform, receive)
        response = await run_steps_async(cycle.respond(), perform)
        await send_response(send, response)
        if response.chunks is not None:
            await send_stream(send, receive, cycle, perform)
