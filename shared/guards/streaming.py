"""A streamed answer whose chunks the model produces one at a time, each in a model thread under the request's
admission ticket; the ticket (its slot) is released when the chunks run out, fail, pass the deadline or the client leaves."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable, Iterator

from drum_compat.shared.steps import STILL_RUNNING, Steps, Submit, Wait

if TYPE_CHECKING:
    from drum_compat.shared.guards.admission import AdmissionGate, Ticket

logger = logging.getLogger("drum_compat")
FAILED = "failed"  # what an advance sends back when the model's iterator raised (already logged)


class StreamAborted(Exception):
    """The answer cannot be completed (its status is already out): the backend drops the connection, so the
    client sees a truncated response instead of a complete-looking one."""


class ModelStream:
    """Requester side: `next` (steps Submit, Wait: one chunk, or None at the end) and `close` (the client left or
    the backend is done). Model side: `advance` and `end`, which run in a model thread."""

    def __init__(self, gate: "AdmissionGate", ticket: "Ticket", chunks: Iterator[bytes], release: Callable[[], None]) -> None:
        self._gate = gate
        self._ticket = ticket
        self._chunks = chunks
        self._release = release  # frees the ticket's slot: once, from the thread that ends the stream
        self._advancing = False  # a model thread is inside next(chunks)
        self._abandoned = False  # the requester will not ask again
        self._ended = False

    def next(self) -> Steps[bytes | None]:
        gate, ticket = self._gate, self._ticket
        if self._ended or self._abandoned:
            return None
        with gate.lock:
            self._advancing = True
        handle = yield Submit(self.advance)
        while True:
            outcome = yield Wait(handle, gate.next_wait(ticket))
            if outcome is not STILL_RUNNING:
                break
            reason = gate.expire(ticket)
            if reason:
                yield from self.close()  # the advance still runs: it ends the stream when it returns
                raise StreamAborted(f"{reason} after the answer started")
        if outcome is FAILED:
            raise StreamAborted("the model's stream failed")
        return outcome

    def close(self) -> Steps[None]:
        """Stop asking for chunks; an idle stream is ended in a model thread (its cleanup is model code, and it
        must not race an advance), a busy one by the advance when it returns. Nothing to wait for."""
        with self._gate.lock:
            if self._ended or self._abandoned:
                return
            self._abandoned = True
            idle = not self._advancing
        if idle:
            yield Submit(self.end)

    # -- in a model thread ---------------------------------------------------------------------------
    def advance(self) -> bytes | str | None:
        try:
            chunk = next(self._chunks)
        except StopIteration:
            chunk = None
        except Exception:
            logger.exception("The model's streamed answer failed after it started; the client gets it truncated")
            chunk = FAILED
        with self._gate.lock:
            self._advancing = False
            abandoned = self._abandoned
        if chunk is None or chunk is FAILED or abandoned:
            self.end()
        return chunk

    def end(self) -> None:
        """Close the model's iterator (a generator sees GeneratorExit) and free the slot, once."""
        with self._gate.lock:
            if self._ended:
                return
            self._ended = True
        close = getattr(self._chunks, "close", None)
        try:
            if close is not None:
                close()
        except Exception:
            logger.exception("Closing the model's streamed answer failed")
        finally:
            self._release()
