"""Requests the core answers at once (probes, information routes, routing answers) answered by the protocol inside
its parser callback: no task, no ASGI messages, and the bytes uvicorn would have written for the same answer."""
from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from drum_compat.fastapi_backend.cycle import CycleMiddleware, head_request
from drum_compat.fastapi_backend.recycling import RecyclingMiddleware
from drum_compat.shared.cycle import RequestCycle
from drum_compat.shared.http import NeutralResponse
from drum_compat.shared.request_id import current_request_id


def wire_bytes(response: NeutralResponse, default_headers: list[tuple[bytes, bytes]], keep_alive: bool) -> bytes:
    """As uvicorn's `send` writes a complete answer: its own headers first, names lowercased, `connection: close`
    last when the connection ends. Values need no check: each is the core's own or a request header's, which
    llhttp held to the same rule."""
    own = "".join([f"{name.lower()}: {value}\r\n" for name, value in response.headers]).encode("latin-1")
    return b"".join([STATUS_LINE[response.status], *(b"%s: %s\r\n" % pair for pair in default_headers), own,
                     b"" if keep_alive else b"connection: close\r\n", b"\r\n", response.body])


class AnswersAtOnce:
    """What the lean dispatch offers its protocol: the cycle middleware's core and the recycling's request count,
    so an answer at once meets what the middleware chain would have done."""

    def __init__(self, cycles: CycleMiddleware, recycling: RecyclingMiddleware) -> None:
        self.core = cycles.core
        self.on_unwedged = cycles.on_unwedged
        self.recycling = recycling

    def take(self, scope: dict) -> RequestCycle | None:
        """The request's cycle when the core answers it at once; None leaves it to the app."""
        head = head_request(scope)
        if not self.core.answers_at_once(head):
            return None
        return RequestCycle(self.core, head, f"HTTP/{scope['http_version']}", self.on_unwedged)

    def answer(self, cycle: RequestCycle, write, default_headers: list[tuple[bytes, bytes]], keep_alive: bool) -> bool:
        """Write the answer of a bodiless request; whether its connection stays open."""
        keep_alive = not self.recycling.admit() and keep_alive
        token = current_request_id.set(cycle.request_id)
        try:
            response = cycle.answer_at_once()
            write(wire_bytes(response, default_headers, keep_alive))
            cycle.response_started(response.status)
            cycle.sent(len(response.body))
        finally:
            current_request_id.reset(token)
            cycle.ended()
        return keep_alive
