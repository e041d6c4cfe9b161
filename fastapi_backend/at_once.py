"""Requests the core answers at once (probes, information routes, routing answers) answered by the protocol inside
its parser callback: no task, no ASGI messages, and the bytes uvicorn would have written for the same answer."""
from __future__ import annotations

import time
from dataclasses import dataclass

from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from drum_compat.fastapi_backend.cycle import CycleMiddleware, head_request
from drum_compat.fastapi_backend.recycling import RecyclingMiddleware
from drum_compat.shared.cycle import RequestCycle, answered
from drum_compat.shared.http import NeutralResponse
from drum_compat.shared.request_id import REQUEST_ID_HEADER, current_request_id

# distinct request heads whose answers are kept for replay: a probe sends the same head every time; a head that varies
# (a header holding a timestamp) fills this, and its requests then take the whole cycle
REMEMBERED_ANSWERS = 64
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
class Replay:
    """A constant route's answer to one request head, as the whole cycle made it: the core's header lines split where
    the request id stood, so that the next request with that head gets the same bytes with an id of its own."""
    status: int
    own_around_id: tuple[bytes, ...]
    body: bytes
    rule: str
    method: str
    target: str
    protocol: str


@dataclass(frozen=True)
class Replayed:
    replay: Replay
    peer: str | None
    arrived: float


@dataclass(frozen=True)
class Pending:
    """A request the whole cycle answers; `head` is where its answer is remembered, when it may be."""
    cycle: RequestCycle
    head: tuple | None


class AnswersAtOnce:
    """What the lean dispatch offers its protocol: the cycle middleware's core and the recycling's request count,
    so an answer at once meets what the middleware chain would have done."""

    def __init__(self, cycles: CycleMiddleware, recycling: RecyclingMiddleware) -> None:
        self.core = cycles.core
        self.recycling = recycling
        self.replays: dict[tuple, Replay] = {}

    def take(self, scope: dict) -> Pending | Replayed | None:
        """The request's answer at once, remembered or to be made; None leaves it to the app."""
        head = self._replayable_head(scope)
        replay = self.replays.get(head) if head is not None else None
        if replay is not None:
            client = scope.get("client")
            return Replayed(replay, client[0] if client else None, time.monotonic())
        request = head_request(scope)
        if not self.core.answers_at_once(request):
            return None
        return Pending(RequestCycle(self.core, request, f"HTTP/{scope['http_version']}"), head)

    def _replayable_head(self, scope: dict) -> tuple | None:
        """A client's own request id must come back to it, and a recorded request is recorded whole: neither is
        replayed."""
        if self.core.recorder is not None or any(name == CLIENT_REQUEST_ID for name, _ in scope["headers"]):
            return None
        return head_key(scope)

    def answer(self, taken: Pending | Replayed, write, default_headers: list[tuple[bytes, bytes]], keep_alive: bool) -> bool:
        """Write the answer of a bodiless request; whether its connection stays open."""
        keep_alive = not self.recycling.admit() and keep_alive
        if isinstance(taken, Replayed):
            self._replay(taken, write, default_headers, keep_alive)
            return keep_alive
        cycle = taken.cycle
        token = current_request_id.set(cycle.request_id)
        try:
            response = cycle.answer_at_once()
            if response.headers.get("Connection", "").lower() == "close":  # the core ends this connection (/livez of a
                keep_alive = False  # worker being replaced): one `connection: close`, written last as uvicorn writes it
                response.headers.remove("Connection")
            own = own_lines(response)
            write(wire_bytes(response.status, own, response.body, default_headers, keep_alive))
            cycle.response_started(response.status)
            cycle.sent(len(response.body))
            if taken.head is not None and cycle.route is not None and cycle.route.constant:
                self._remember(taken.head, cycle, response, own)
        finally:
            current_request_id.reset(token)
            cycle.ended()
        return keep_alive

    def _remember(self, head: tuple, cycle: RequestCycle, response: NeutralResponse, own: bytes) -> None:
        # an error answer also writes the core's log line (DrumApp.log_response), which a replay would not
        if response.status < 400 and len(self.replays) < REMEMBERED_ANSWERS:
            self.replays[head] = Replay(response.status, tuple(own.split(cycle.request_id.encode("latin-1"))),
                                        response.body, cycle.route.rule, cycle.request.method, cycle.target,
                                        cycle.protocol)

    def _replay(self, taken: Replayed, write, default_headers: list[tuple[bytes, bytes]], keep_alive: bool) -> None:
        """What the cycle leaves behind for this head, without making its answer again: a new id in the answer, the
        metrics and the access line. Not the in-flight gauge's +1 and -1: the replay is one call, which no scrape of
        this worker can interrupt."""
        replay = taken.replay
        request_id = self.core.request_ids.choose(None)
        write(wire_bytes(replay.status, request_id.encode("latin-1").join(replay.own_around_id), replay.body,
                         default_headers, keep_alive))
        answered(self.core, replay.rule, taken.peer, replay.method, replay.target, replay.protocol, replay.status,
                 len(replay.body), time.monotonic() - taken.arrived, request_id)
