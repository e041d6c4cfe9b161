"""Admission to the model threads and the request deadline, as plain bookkeeping: who runs, who waits,
who gave up; each stack supplies only the thread pool and the blocking or async wait (shared.steps)."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Protocol

from drum_compat.shared.http import NeutralResponse, json_response, set_headers
from drum_compat.shared.metrics import DEADLINE, QUEUE_FULL, QUEUE_TIMEOUT
from drum_compat.shared.guards.streaming import ModelStream
from drum_compat.shared.steps import STILL_RUNNING, Steps, Submit, Wait

RETRY_AFTER = "1"  # seconds: a busy worker frees a slot or another worker takes the retry
SPARE_REQUEST_THREADS = 32  # beyond what admission may hold: probes and refusals never wait for a thread


@dataclass(frozen=True)
class AdmissionLimits:
    threads: int = 1  # DRUM_EXECUTOR_WORKERS
    # DRUM_EXECUTOR_QUEUE_DEPTH. DRUM queues without bound (in the kernel), so the default must hold any
    # ordinary client pool: 64 connections per worker wait, never 503; the queue timeout bounds the wait
    queue_depth: int = 100
    queue_timeout: float = 30.0  # DRUM_EXECUTOR_QUEUE_TIMEOUT
    deadline: float = 0.0  # DRUM_CLIENT_REQUEST_TIMEOUT; 0: none
    # DRUM_QUEUE_IN_BACKLOG: requests wait for a thread in the kernel's listen backlog, not here (shared.guards.balance)
    queue_in_backlog: bool = False

    @property
    def request_threads(self) -> int:
        """Threads a thread-per-request server (gunicorn's gthread, a2wsgi's pool) needs so that admission, never
        the server's own queue, decides who waits: one per request admission lets run or wait, plus spares."""
        return self.threads + self.queue_depth + SPARE_REQUEST_THREADS


@dataclass(eq=False)
class Ticket:
    arrived: float
    request_id: str = ""  # named in the log line of a worker replaced because this call is stuck
    state: str = "waiting"  # waiting -> running -> done, or waiting -> abandoned (never runs)
    started: float = 0.0  # when a model thread took it
    timed_out: bool = False  # the requester got its 504 while the model still ran
    stream: ModelStream | None = None  # a streamed answer holds the ticket until the stream ends


@dataclass(frozen=True)
class RunningCall:
    """A model call in a model thread now, as the supervision policy (shared.guards.supervision) reads it."""
    request_id: str
    started: float


@dataclass
class AdmissionFigures:
    """Cumulative counters for /stats/ (the live ones are read from the gate)."""
    admitted: int = 0
    completed: int = 0
    rejected: dict = field(default_factory=lambda: {QUEUE_FULL: 0, QUEUE_TIMEOUT: 0, DEADLINE: 0})


class AdmissionObserver(Protocol):
    """What the gate reports (shared.metrics.Metrics): counts after each change, each refusal, model time."""

    def admission_changed(self, running: int, waiting: int) -> None: ...
    def rejected(self, reason: str) -> None: ...
    def model_ran(self, seconds: float) -> None: ...


class IgnoreAdmission:
    def admission_changed(self, running: int, waiting: int) -> None:
        pass

    def rejected(self, reason: str) -> None:
        pass

    def model_ran(self, seconds: float) -> None:
        pass


class AdmissionObservers:
    """Several observers of one gate (the metrics, and on a server of several workers the load board)."""

    def __init__(self, *observers: AdmissionObserver) -> None:
        self.observers = observers

    def admission_changed(self, running: int, waiting: int) -> None:
        for observer in self.observers:
            observer.admission_changed(running, waiting)

    def rejected(self, reason: str) -> None:
        for observer in self.observers:
            observer.rejected(reason)

    def model_ran(self, seconds: float) -> None:
        for observer in self.observers:
            observer.model_ran(seconds)


class AdmissionGate:
    """At most `threads` requests run model code and `depth` more wait; a waiter leaves after
    queue_timeout (503), anyone after the deadline (504). A timed-out request keeps its thread until
    the thread really ends; when every thread is held like that the worker is not ready. Whether a call is
    stuck for good is the supervision policy's to say, from `running_calls`."""

    def __init__(self, limits: AdmissionLimits, observer: AdmissionObserver | None = None,
                 clock: Callable[[], float] = time.monotonic, new_lock: Callable[[], Any] = threading.Lock) -> None:
        self.limits = limits
        self.observer = observer or IgnoreAdmission()
        self.clock = clock
        # shared by the event loop or gevent hub and real model threads: the backend says which lock
        # both can take (under gevent, an OS lock from before the patching)
        self.lock = new_lock()
        self.running = 0
        self.waiting = 0
        self.stuck = 0  # running, but their requester already had its 504
        self.calls: set[Ticket] = set()  # the running ones
        self.retiring: str | None = None  # why this worker is being replaced (its /livez fails meanwhile)
        # on a server of several workers, runtime.load_board's verdict from every worker's load (shared.guards.balance)
        self.hands_back: Callable[[bool], bool] = lambda queue_full: False
        self.figures = AdmissionFigures()

    def model_call(self, call: Callable[[], NeutralResponse], arrived: float, request_id: str = "") -> Steps[NeutralResponse]:
        """One model call through the gate, as steps (Submit, Wait) the backend performs with its thread pool
        and its way of waiting (shared.steps): admitted or 503 at once, then waits each bounded by the queue
        timeout or the deadline, whichever comes first; returns the model's response, or the 503/504."""
        ticket = self.admit(arrived, request_id)
        if ticket is None:
            return self.handed_back(self.rejection(QUEUE_FULL), queue_full=True)
        handle = yield Submit(self.job(ticket, call))
        while True:
            outcome = yield Wait(handle, self.next_wait(ticket))
            if outcome is not STILL_RUNNING:
                return self.handed_back(outcome)
            reason = self.expire(ticket)
            if reason:
                if ticket.stream is not None:  # the answer began streaming just as the deadline passed
                    yield from ticket.stream.close()
                return self.handed_back(self.rejection(reason))

    def handed_back(self, response: NeutralResponse, queue_full: bool = False) -> NeutralResponse:
        """The answer closes its connection when the client's next model request would wait here while another worker
        has room (`hands_back`): that request then comes on a new connection, which such a worker takes."""
        if self.hands_back(queue_full):
            set_headers(response.headers, [("Connection", "close")])
        return response

    # -- requester side ------------------------------------------------------------------------------
    def admit(self, arrived: float, request_id: str = "") -> Ticket | None:
        """A ticket to hand to the pool, or None: the queue is full (answer `rejection(QUEUE_FULL)`)."""
        with self.lock:
            full = self.running + self.waiting >= self.limits.threads + self.limits.queue_depth
            if full:
                self.figures.rejected[QUEUE_FULL] += 1
            else:
                self.waiting += 1
                self.figures.admitted += 1
                self._changed()
        if full:
            self.observer.rejected(QUEUE_FULL)
            return None
        return Ticket(arrived, request_id)

    def next_wait(self, ticket: Ticket) -> float | None:
        """How long the requester may wait before calling `expire` (None: as long as it takes)."""
        limits = self.limits
        ends = []
        if limits.deadline:
            ends.append(ticket.arrived + limits.deadline)
        if ticket.state == "waiting":
            ends.append(ticket.arrived + limits.queue_timeout)
        return max(min(ends) - self.clock(), 0.0) if ends else None

    def expire(self, ticket: Ticket) -> str | None:
        """The wait ran out: the reason to answer with, or None if the work has meanwhile started
        (then wait again for `next_wait`)."""
        now = self.clock()
        with self.lock:
            past_deadline = bool(self.limits.deadline) and now >= ticket.arrived + self.limits.deadline
            if ticket.state == "waiting":
                if not past_deadline and now < ticket.arrived + self.limits.queue_timeout:
                    return None
                ticket.state = "abandoned"
                self.waiting -= 1
                reason = DEADLINE if past_deadline else QUEUE_TIMEOUT
            elif ticket.state == "running" and past_deadline:
                ticket.timed_out = True
                self.stuck += 1
                reason = DEADLINE
            else:
                return None
            self.figures.rejected[reason] += 1
            self._changed()
        self.observer.rejected(reason)
        return reason

    # -- model thread side ---------------------------------------------------------------------------
    def start(self, ticket: Ticket) -> bool:
        """Called by the model thread that picked the ticket: False if its requester already left."""
        with self.lock:
            if ticket.state != "waiting":
                return False
            ticket.state = "running"
            ticket.started = self.clock()
            self.calls.add(ticket)
            self.waiting -= 1
            self.running += 1
            self._changed()
        return True

    def finish(self, ticket: Ticket) -> None:
        """The model thread is free again."""
        with self.lock:
            ticket.state = "done"
            self.calls.discard(ticket)
            self.running -= 1
            self.figures.completed += 1
            if ticket.timed_out:
                self.stuck -= 1
            self._changed()

    def _changed(self) -> None:
        # under the lock, so the observer sees the counts in the order they changed
        self.observer.admission_changed(self.running, self.waiting)

    # -- state -----------------------------------------------------------------------------------------
    @property
    def wedged(self) -> bool:
        return self.stuck >= self.limits.threads

    def running_calls(self) -> list[RunningCall]:
        """The calls in model threads now; a streamed answer's between its chunks is not one (its client reads)."""
        with self.lock:
            return [RunningCall(ticket.request_id, ticket.started) for ticket in self.calls if ticket.stream is None]

    def snapshot(self) -> dict:
        with self.lock:
            return {
                "threads": self.limits.threads,
                "queue_depth": self.limits.queue_depth,
                "queue_timeout": self.limits.queue_timeout,
                "request_timeout": self.limits.deadline,
                "running": self.running,
                "waiting": self.waiting,
                "stuck": self.stuck,
                "admitted": self.figures.admitted,
                "completed": self.figures.completed,
                "rejected": dict(self.figures.rejected),
            }

    def rejection(self, reason: str) -> NeutralResponse:
        limits = self.limits
        if reason == DEADLINE:
            return json_response(
                {"message": f"ERROR: Request timed out after {limits.deadline:g} s (DRUM_CLIENT_REQUEST_TIMEOUT)"}, 504
            )
        if reason == QUEUE_FULL:
            text = (f"all {limits.threads} model thread(s) are busy and {limits.queue_depth} request(s) already wait "
                    "(DRUM_EXECUTOR_WORKERS, DRUM_EXECUTOR_QUEUE_DEPTH)")
        else:
            text = f"no model thread became free within {limits.queue_timeout:g} s (DRUM_EXECUTOR_QUEUE_TIMEOUT)"
        return json_response({"message": f"ERROR: Server busy: {text}; retry later"}, 503, [("Retry-After", RETRY_AFTER)])

    def job(self, ticket: Ticket, call: Callable[[], NeutralResponse]):
        """What the pool runs for a ticket: nothing if its requester left while it waited; the slot is released
        only when the model call really returns, or for a streamed answer when its stream ends."""
        def run() -> NeutralResponse | None:
            if not self.start(ticket):
                return None
            release = partial(self.release, ticket, self.clock())
            chunks = None
            try:
                response = call()
                chunks = getattr(response, "chunks", None)
            finally:
                if chunks is None:
                    release()
            if chunks is None:
                return response
            stream = ModelStream(self, ticket, chunks, release)
            with self.lock:
                orphaned = ticket.timed_out  # the requester already had its 504: nobody will read this stream
                if not orphaned:
                    ticket.stream = stream
            if orphaned:
                stream.end()
                return None
            response.chunks = stream
            return response

        return run

    def release(self, ticket: Ticket, began: float) -> None:
        self.observer.model_ran(self.clock() - began)
        self.finish(ticket)
