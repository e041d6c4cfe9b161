"""Requests the core answers at once (probes, information routes, routing answers) answered by the protocol inside
its parser callback: no task, no ASGI messages, and the bytes uvicorn would have written for the same answer."""
from __future__ import annotations

import time
from dataclasses import dataclass

from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from drum_compat.fastapi_backend.cycle import head_request
from drum_compat.shared.app import DrumApp
from drum_compat.shared.cycle import RequestCycle
from drum_compat.shared.http import NeutralResponse
from drum_compat.shared.replay import Remembered, ReplayCache
from drum_compat.shared.request_id import REQUEST_ID_HEADER, current_request_id

CLIENT_REQUEST_ID = REQUEST_ID_HEADER.lower().encode("latin-1")


def own_lines(response: NeutralResponse) -> bytes:
    """The core's header lines as uvicorn's `send` writes them, names lowercased. Values need no check: each is the
    core's own or a request header's, which llhttp held to the same rule."""
    return "".join([f"{name.lower()}: {value}\r\n" for name, value in response.headers]).encode("latin-1")


def wire_bytes(status: int, own: bytes, body: bytes, default_headers: list[tuple[bytes, bytes]], keep_alive: bool) -> bytes:
    """As uvicorn's `send` writes a complete answer: its own headers first, `connection: close` last when the
    connection ends."""
    return b"".join([STATUS_LINE[status], *(b"%s: %s\r\n" % pair for pair in default_headers), own,
                     b"" if keep_alive else b"connection: close\r\n", b"\r\n", body])


def head_key(scope: dict) -> tuple:
    """Everything in a request's head the core could answer from (its peer only goes into the access line)."""
    return (scope["method"], scope["scheme"], scope["server"], scope["root_path"], scope["path"], scope["query_string"],
            scope["http_version"], tuple(scope["headers"]))


@dataclass(frozen=True)
class Replayed:
    """A request answered from the ReplayCache: `remembered.wire` is the core's header lines split where the request id
    stood, so that it gets the same bytes with an id of its own."""
    remembered: Remembered[tuple[bytes, ...]]
    peer: str | None
    arrived: float


@dataclass(frozen=True)
class Pending:
    """A request the whole cycle answers; `head` is where its answer is remembered, when it may be."""
    cycle: RequestCycle
    head: tuple | None


class AnswersAtOnce:
    """What the lean dispatch offers its protocol: the requests its core answers at once, and their bytes."""

    def __init__(self, core: DrumApp) -> None:
        self.core = core
        self.replays: ReplayCache[tuple[bytes, ...]] = ReplayCache(core)

    def take(self, scope: dict) -> Pending | Replayed | None:
        """The request's answer at once, remembered or to be made; None leaves it to the app."""
        client_sent_an_id = any(name == CLIENT_REQUEST_ID for name, _ in scope["headers"])
        head = head_key(scope) if self.replays.replayable(client_sent_an_id) else None
        remembered = self.replays.get(head) if head is not None else None
        if remembered is not None:
            client = scope.get("client")
            return Replayed(remembered, client[0] if client else None, time.monotonic())
        request = head_request(scope)
        if not self.core.answers_at_once(request):
            return None
        return Pending(RequestCycle(self.core, request, f"HTTP/{scope['http_version']}"), head)

    def answer(self, taken: Pending | Replayed, write, default_headers: list[tuple[bytes, bytes]], keep_alive: bool) -> bool:
        """Write the answer of a bodiless request; whether its connection stays open (the client's word and the core's)."""
        if isinstance(taken, Replayed):
            def with_its_id(own_around_id: tuple[bytes, ...], request_id: str, closes: bool) -> None:
                nonlocal keep_alive
                keep_alive = keep_alive and not closes
                write(wire_bytes(taken.remembered.status, request_id.encode("latin-1").join(own_around_id),
                                 taken.remembered.body, default_headers, keep_alive))

            self.replays.give_again(taken.remembered, taken.peer, taken.arrived, with_its_id)
            return keep_alive
        cycle = taken.cycle
        token = current_request_id.set(cycle.request_id)
        try:
            response = cycle.answer_at_once()
            if response.headers.get("Connection", "").lower() == "close":  # the core ends this connection: one
                keep_alive = False  # `connection: close`, written last as uvicorn writes it
                response.headers.remove("Connection")
            own = own_lines(response)
            write(wire_bytes(response.status, own, response.body, default_headers, keep_alive))
            cycle.response_started(response.status)
            cycle.sent(len(response.body))
            if taken.head is not None and self.replays.keeps(cycle, response):
                self.replays.remember(taken.head, cycle, response, tuple(own.split(cycle.request_id.encode("latin-1"))))
        finally:
            current_request_id.reset(token)
            cycle.ended()
        return keep_alive
