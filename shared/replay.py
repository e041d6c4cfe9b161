"""Answers given again: what a constant handler (shared.handlers.constant) answered to one request head is given to the
next request with that head, with a request id of its own and what the whole cycle leaves behind. Which heads and
answers qualify is decided here; how the answer's bytes are kept and written is the backend's (fastapi_backend.at_once)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Generic, Hashable, TypeVar

from drum_compat.shared.cycle import RequestCycle, answered
from drum_compat.shared.http import NeutralResponse

if TYPE_CHECKING:
    from drum_compat.shared.app import DrumApp

# distinct request heads whose answers are kept: a probe sends the same head every time; a head that varies (a header
# holding a timestamp) fills this, and its requests then take the whole cycle
REMEMBERED_ANSWERS = 64
Wire = TypeVar("Wire")  # the backend's own form of an answer


@dataclass(frozen=True)
class Remembered(Generic[Wire]):
    wire: Wire  # the answer's head as the backend writes it
    status: int
    body: bytes
    rule: str
    method: str
    target: str
    protocol: str


class ReplayCache(Generic[Wire]):
    def __init__(self, core: "DrumApp", capacity: int = REMEMBERED_ANSWERS) -> None:
        self.core = core
        self.capacity = capacity
        self.remembered: dict[Hashable, Remembered[Wire]] = {}

    def replayable(self, client_sent_an_id: bool) -> bool:
        """A client's own request id must come back to it, and a recorded request is recorded whole: neither is
        answered again."""
        return not client_sent_an_id and self.core.recorder is None

    def get(self, head: Hashable) -> Remembered[Wire] | None:
        return self.remembered.get(head)

    def keeps(self, cycle: RequestCycle, response: NeutralResponse) -> bool:
        """Whether this answer is remembered: its handler is constant, it is no error (which also writes the core's own
        log line, which a replay would not), and there is room."""
        return (cycle.route is not None and cycle.route.constant and response.status < 400
                and len(self.remembered) < self.capacity)

    def remember(self, head: Hashable, cycle: RequestCycle, response: NeutralResponse, wire: Wire) -> None:
        """An answer it `keeps`, with the backend's form of it."""
        self.remembered[head] = Remembered(wire, response.status, response.body, cycle.route.rule, cycle.request.method,
                                           cycle.target, cycle.protocol)

    def give_again(self, remembered: Remembered[Wire], peer: str | None, arrived: float,
                   write: Callable[[Wire, str, bool], None]) -> None:
        """`write(wire, request_id, closes)`: the backend writes the answer with its new id, ending the connection when
        `closes` (as a cycle's answer would say now: the wire is kept without it); then the metrics and the access line, as
        the cycle writes them. Not the in-flight gauge's +1 and -1: a replay is one call, which no scrape of
        this worker can interrupt."""
        request_id = self.core.request_ids.choose(None)
        self.core.retirement.admit()
        write(remembered.wire, request_id, self.core.closes_connections)
        answered(self.core, remembered.rule, peer, remembered.method, remembered.target, remembered.protocol,
                 remembered.status, len(remembered.body), time.monotonic() - arrived, request_id)
