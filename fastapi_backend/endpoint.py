"""The ASGI adapter: scope + body -> NeutralRequest -> DrumApp -> NeutralResponse -> ASGI messages.
Model routes run in the worker's model executor so the event loop keeps answering probes."""
from __future__ import annotations

from functools import partial

from drum_compat.fastapi_backend.model_pool import AsyncModelRunner
from drum_compat.shared.app import DrumApp
from drum_compat.shared.guards.front_door import ARRIVED_KEY, BODY_KEY
from drum_compat.shared.http import BodySource, NeutralRequest, NeutralResponse, wsgi_style_headers
from drum_compat.shared.request_id import current_request_id


class ClientDisconnected(Exception):
    pass


def neutral_request(scope: dict, body: "bytes | BodySource") -> NeutralRequest:
    root_path = scope.get("root_path", "")
    path = scope["path"]
    if root_path and path.startswith(root_path):
        path = path[len(root_path):]
    client = scope.get("client")
    return NeutralRequest(
        method=scope["method"],
        path=path,
        body=body,
        headers=wsgi_style_headers(scope["headers"]),
        query_string=scope.get("query_string", b""),
        scheme=scope.get("scheme", "http"),
        server=scope.get("server"),
        root_path=root_path,
        remote_addr=client[0] if client else None,
    )


async def send_response(send, response: NeutralResponse) -> None:
    # header names go out as the core wrote them (Starlette's Response would lowercase them)
    headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in response.headers.items()]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})


class NeutralEndpoint:
    def __init__(self, core: DrumApp, model_runner: AsyncModelRunner) -> None:
        self.core = core
        self.model_runner = model_runner

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1000})
            return
        # fastapi_backend.guards received the body (bounded, spooled) and noted the arrival
        started = scope[ARRIVED_KEY]
        request = neutral_request(scope, scope[BODY_KEY])
        request_id = self.core.request_id_for(request)
        token = current_request_id.set(request_id)
        try:
            matched = self.core.resolve(request)
            if isinstance(matched, NeutralResponse):
                response = matched
            elif matched.runs_model:
                response = await self.model_runner.run(partial(self.core.call, matched.endpoint, request), started)
            else:
                response = self.core.call(matched.endpoint, request)
            response = self.core.finish(request, response, request_id, started)
        finally:
            current_request_id.reset(token)
        await send_response(send, response)
