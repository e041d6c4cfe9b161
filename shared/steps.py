"""The steps a core decision, written as a generator, asks its backend to perform, every one of them (h11's idea: the
core says what to do next, the backend does the I/O and sends the outcome back), and the blocking and async drivers."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Generator, TypeVar

if TYPE_CHECKING:
    from drum_compat.shared.guards.body import RequestBody

Result = TypeVar("Result")
Steps = Generator[Any, Any, Result]


@dataclass(frozen=True)
class Submit:
    """Step: start `job` in a model thread, in the request's context; send back a handle to wait on."""

    job: Callable[[], Any]


@dataclass(frozen=True)
class Wait:
    """Step: wait at most `seconds` (None: without end) for the job behind `handle` (what Submit sent back),
    never cancelling it; send back its response, or STILL_RUNNING."""

    handle: Any
    seconds: float | None


STILL_RUNNING = "still running"


@dataclass(frozen=True)
class TakeToken:
    """Step: take one token of `client` from the rate store; send back its Decision, or the error it raised."""

    client: str


@dataclass(frozen=True)
class ReadBody:
    """Step: read the body into `body`, at most its limit, within `seconds` (None: no bound); send back BODY_COMPLETE,
    BODY_OVER_LIMIT, BODY_CUT_SHORT, BODY_TOO_SLOW or BODY_MALFORMED (a chunked body the server's parser refused)."""

    body: RequestBody
    seconds: float | None = None


# what ReadBody sends back
BODY_COMPLETE, BODY_OVER_LIMIT, BODY_CUT_SHORT, BODY_TOO_SLOW = "complete", "too large", "cut short", "too slow"
BODY_MALFORMED = "malformed"


@dataclass(frozen=True)
class Forward:
    """Step: send the request upstream, its body streamed from the file `body`; `timeout` bounds the connect and each
    read. Send back an Upstream with the answer's head (its body not read yet), or the error: a TimeoutError when
    `timeout` ran out, else the client's own."""

    method: str
    url: str
    headers: list[tuple[str, str]]
    body: Any  # None: the request has no body
    timeout: float


@dataclass(frozen=True)
class Upstream:
    status: int
    headers: list[tuple[str, str]]
    handle: Any  # the backend's open response


@dataclass(frozen=True)
class ReadUpstream:
    """Step: the next piece of the answer's body as it arrived (undecoded), b"" at its end, or the error raised."""

    handle: Any


@dataclass(frozen=True)
class CloseUpstream:
    """Step: release the upstream connection (at the end, or when the client left early)."""

    handle: Any


def run_steps(steps: Steps[Result], perform: Callable[[Any], Any]) -> Result:
    """Perform each step with a blocking `perform` and send its outcome back, or throw in what performing it raised
    (the core decides what a failed step means); the generator's return value."""
    try:
        step = next(steps)
        while True:
            try:
                outcome = perform(step)
            except Exception as exc:
                step = steps.throw(exc)
            else:
                step = steps.send(outcome)
    except StopIteration as finished:
        return finished.value


async def run_steps_async(steps: Steps[Result], perform: Callable[[Any], Awaitable[Any]]) -> Result:
    """The same, with an awaited `perform` (an event loop's I/O)."""
    try:
        step = next(steps)
        while True:
            try:
                outcome = await perform(step)
            except Exception as exc:
                step = steps.throw(exc)
            else:
                step = steps.send(outcome)
    except StopIteration as finished:
        return finished.value
