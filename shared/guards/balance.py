"""Spreading connections over a server's workers, as a policy on plain numbers: which worker takes a new connection and
which hands a keep-alive client back to the shared listening socket (runtime.load_board publishes the loads)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

# seconds a worker with no free model thread leaves new connections to a worker carrying fewer requests: long enough
# for that worker's loop to wake on a busy machine, short enough that a probe barely notices
ACCEPT_PAUSE = 0.025


@dataclass(frozen=True)
class WorkerLoad:
    running: int  # model calls in its threads
    waiting: int  # model requests queued for a thread

    @property
    def requests(self) -> int:
        return self.running + self.waiting


def takes_new_connections(mine: WorkerLoad, threads: int, others: Iterable[WorkerLoad]) -> bool:
    """A worker with a free model thread takes new connections. One without lets them wait (ACCEPT_PAUSE at a time)
    while another worker carries fewer requests, so they go there and nothing queues behind a busy worker that a worker
    with room could start. When none carries fewer, it takes them: its admission queue answers at once (a probe never
    waits behind a busy server's model, overload gets its 503)."""
    if mine.requests < threads:
        return True
    return not any(other.requests < mine.requests for other in others)


def has_room_for_connection(connections: int, threads: int) -> bool:
    """DRUM_QUEUE_IN_BACKLOG, as DRUM's sync workers: a worker holds no more connections than it has model threads and
    each answer closes its connection, so a request never waits in a worker for a thread but in the kernel's listen
    backlog, which every worker accepts from and which outlives any of them (gunicorn applies the same rule itself as
    worker_connections)."""
    return connections < threads


def hands_back_connection(mine: WorkerLoad, threads: int, others: Iterable[WorkerLoad], queue_full: bool = False) -> bool:
    """After an answer, close its keep-alive connection when the client's next request would wait here for a thread and
    another worker carries clearly fewer requests: two fewer, and a quarter of its own queue more (so that under heavy
    overload, when every queue sways, clients are not sent reconnecting for nothing). That next request then arrives on
    a new connection, which a worker with room takes: keep-alive clients that all connected to one worker spread out
    instead of queueing there. A refusal because this worker's queue is full goes to any worker carrying fewer."""
    if queue_full:
        return any(other.requests < mine.requests for other in others)
    return mine.requests >= threads and any(other.requests + 2 + max(other.requests - threads, 0) // 4 <= mine.requests
                                            for other in others)
