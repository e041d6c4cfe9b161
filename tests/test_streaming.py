"""A streamed answer through the admission gate, driven by hand (sans-I/O): the ticket is held until the stream
ends, fails, passes the deadline or is closed, the model's iterator is always closed in a model thread, once."""
from __future__ import annotations

import pytest

from drum_compat.shared.guards.admission import AdmissionGate, AdmissionLimits
from drum_compat.shared.guards.streaming import StreamAborted
from drum_compat.shared.http import NeutralResponse
from drum_compat.shared.steps import STILL_RUNNING, Submit, Wait


class Pool:
    """A model thread pool run by hand: Submit queues the job, `run_all` runs what is queued; a Wait answers the
    job's result if it ran, else STILL_RUNNING (as a wait that ran out)."""

    def __init__(self) -> None:
        self.queued: list = []
        self.results: dict = {}

    def perform(self, step):
        match step:
            case Submit(job):
                self.queued.append(job)
                return job
            case Wait(handle, _):
                if handle in self.queued and self.run_now:
                    self.run_all()
                return self.results.pop(handle, STILL_RUNNING)

    run_now = True

    def run_all(self) -> None:
        while self.queued:
            job = self.queued.pop(0)
            self.results[job] = job()


def drive(steps, pool: Pool):
    try:
        step = next(steps)
        while True:
            step = steps.send(pool.perform(step))
    except StopIteration as finished:
        return finished.value


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def words(log: list, *items: bytes):
    try:
        for item in items:
            log.append(item)
            yield item
    except GeneratorExit:
        log.append("closed")
        raise
    log.append("exhausted")


def streaming_call(chunks):
    return lambda: NeutralResponse(200, chunks=chunks)


@pytest.fixture
def clock():
    return Clock()


def gate(clock, deadline: float = 0.0) -> AdmissionGate:
    return AdmissionGate(AdmissionLimits(threads=1, queue_depth=1, deadline=deadline), clock=clock)


def test_the_ticket_is_held_until_the_last_chunk(clock):
    the_gate, pool, log = gate(clock), Pool(), []
    response = drive(the_gate.model_call(streaming_call(words(log, b"a", b"b")), 0.0), pool)
    assert the_gate.running == 1 and log == []  # nothing iterated yet: each chunk is asked for
    assert drive(response.chunks.next(), pool) == b"a"
    assert drive(response.chunks.next(), pool) == b"b"
    assert the_gate.running == 1
    assert drive(response.chunks.next(), pool) is None
    assert the_gate.running == 0 and log == [b"a", b"b", "exhausted"]
    assert list(response.chunks.close()) == []  # already ended: closing again does nothing


def test_closing_an_idle_stream_closes_the_iterator_in_a_model_thread(clock):
    the_gate, pool, log = gate(clock), Pool(), []
    response = drive(the_gate.model_call(streaming_call(words(log, b"a", b"b", b"c")), 0.0), pool)
    drive(response.chunks.next(), pool)
    closing = list(response.chunks.close())
    assert [type(step) for step in closing] == [Submit] and log == [b"a"]  # not closed on the requester's side
    closing[0].job()
    assert log == [b"a", "closed"] and the_gate.running == 0
    assert drive(response.chunks.next(), pool) is None


def test_a_failing_stream_aborts_and_frees_the_slot(clock):
    def failing():
        yield b"a"
        raise RuntimeError("the LLM went away")

    the_gate, pool = gate(clock), Pool()
    response = drive(the_gate.model_call(streaming_call(failing()), 0.0), pool)
    assert drive(response.chunks.next(), pool) == b"a"
    with pytest.raises(StreamAborted):
        drive(response.chunks.next(), pool)
    assert the_gate.running == 0


def test_past_the_deadline_mid_chunk_the_stream_aborts_and_the_slot_waits_for_the_chunk(clock):
    the_gate, pool, log = gate(clock, deadline=10.0), Pool(), []
    response = drive(the_gate.model_call(streaming_call(words(log, b"a", b"b")), 0.0), pool)
    pool.run_now = False  # the model thread is slow: the chunk is not ready when the wait runs out
    clock.now = 11.0
    with pytest.raises(StreamAborted):
        drive(response.chunks.next(), pool)
    assert the_gate.running == 1 and the_gate.stuck == 1  # the thread still works on the chunk
    pool.run_all()  # the chunk is made at last: the advance sees nobody wants it and ends the stream
    assert log == [b"a", "closed"] and (the_gate.running, the_gate.stuck) == (0, 0)


def test_a_stream_returned_after_its_requester_had_its_504_is_closed_at_once(clock):
    the_gate, log = gate(clock, deadline=10.0), []
    ticket = the_gate.admit(0.0)

    def slow_hook():
        clock.now = 11.0
        assert the_gate.expire(ticket) == "deadline"  # meanwhile, on the requester's side
        return NeutralResponse(200, chunks=words(log, b"a"))

    assert the_gate.job(ticket, slow_hook)() is None  # nobody will read this stream
    assert (the_gate.running, the_gate.stuck, the_gate.waiting) == (0, 0, 0)


def test_a_model_answer_closes_its_connection_when_the_gate_hands_its_client_back(clock):
    the_gate, pool = gate(clock), Pool()
    asked = []
    the_gate.hands_back = lambda queue_full: asked.append(queue_full) or bool(len(asked) % 2)
    closing = drive(the_gate.model_call(lambda: NeutralResponse(200, b"x"), 0.0), pool)
    kept = drive(the_gate.model_call(lambda: NeutralResponse(200, b"x"), 0.0), pool)
    assert closing.headers.get("Connection") == "close" and "Connection" not in kept.headers
    the_gate.running = 2  # every thread taken and the queue full: the refusal asks as such
    refused = drive(the_gate.model_call(lambda: NeutralResponse(200, b"x"), 0.0), pool)
    assert refused.status == 503 and refused.headers.get("Connection") == "close" and asked == [False, False, True]
