"""Room for new connections near a worker's file-descriptor limit: past the limit less a reserve, each new connection
closes the one that has waited longest for a request head, so idle and slow clients cannot starve probes and requests."""
from __future__ import annotations

from typing import Callable, Iterable, TypeVar

# descriptors kept free for what a worker opens besides connections (the model's files, logs, the metrics directory)
# and for the connections its loop accepts before it can close others: an event loop out of descriptors resets every
# connection waiting to be accepted (libuv's EMFILE trick)
FD_RESERVE = 64

Connection = TypeVar("Connection")


def short_of_fds(connections: int, fd_limit: int, count_fds: Callable[[], int]) -> bool:
    """Whether a worker holding `connections` must make room. Descriptors are only counted (`count_fds`, a listing of
    the process's) once connections alone take half the limit, so an ordinary worker never pays for it."""
    return connections * 2 >= fd_limit and count_fds() > fd_limit - FD_RESERVE


def longest_waiting(head_waits: Iterable[tuple[float, Connection]]) -> Connection | None:
    """The connection to close for room, from (since when it waits for a request head, connection) pairs: a client
    that idles or trickles longest has had its chance; one whose request runs is never among them."""
    oldest = min(head_waits, key=lambda wait: wait[0], default=None)
    return None if oldest is None else oldest[1]
