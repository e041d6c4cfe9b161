"""The front door as pure ASGI middleware (never BaseHTTPMiddleware): rate limit, body limit (the body
is received here, bounded, and handed on spooled in the scope), then metrics and the access line."""
from __future__ import annotations

import inspect
import time

from drum_compat.compat.rate_store import STORE_ERRORS
from drum_compat.fastapi_backend.endpoint import ClientDisconnected, neutral_request, send_response
from drum_compat.shared.guards.body import RequestBody
from drum_compat.shared.guards.front_door import ARRIVED_KEY, BODY_COMPLETE, BODY_KEY, BODY_TOO_LARGE, FrontDoor, ReadBody, TakeToken
from drum_compat.shared.steps import run_steps_async

REQUEST_ID = b"x-request-id"


async def receive_body(receive, body: RequestBody) -> bool:
    """False as soon as the body crosses the limit (the rest is never received)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected()
        if not body.feed(message.get("body", b"")):
            return False
        if not message.get("more_body", False):
            return True


class GuardMiddleware:
    def __init__(self, app, front_door: FrontDoor, buckets) -> None:
        self.app = app
        self.door = front_door
        self.buckets = buckets  # LocalBuckets, or RedisBuckets with an asyncio client

    async def _perform(self, receive, step: TakeToken | ReadBody):
        if isinstance(step, TakeToken):
            try:
                decision = self.buckets.take(step.client)
                return await decision if inspect.isawaitable(decision) else decision
            except STORE_ERRORS as exc:
                return exc
        return BODY_COMPLETE if await receive_body(receive, step.body) else BODY_TOO_LARGE

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        door = self.door
        request = neutral_request(scope, b"")
        route = door.route_of(request)
        body = door.new_body()
        answer = {"status": 0, "size": 0, "request_id": "-"}

        async def observed_send(message) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
                answer["request_id"] = next((value.decode("latin-1") for name, value in message.get("headers", ())
                                             if name.lower() == REQUEST_ID), "-")
            elif message["type"] == "http.response.body":
                answer["size"] += len(message.get("body", b""))
            await send(message)

        door.metrics.started()
        try:
            refusal = await run_steps_async(door.before_app(request, route, body), lambda step: self._perform(receive, step))
            if refusal is not None:
                await send_response(observed_send, door.refuse(request, refusal, started))
            else:
                scope[BODY_KEY], scope[ARRIVED_KEY] = body, started
                await self.app(scope, receive, observed_send)
        except ClientDisconnected:
            door.client_left(request, body)  # nobody is left to answer
        finally:
            body.close()
            door.metrics.finished()
            if answer["status"]:
                door.answered(request, route, f"HTTP/{scope.get('http_version', '1.1')}", answer["status"], answer["size"],
                              started, answer["request_id"])
