"""How a backend drives a core decision written as a generator of steps (h11's idea: the core says what to do
next, the backend does the I/O and sends the outcome back): one blocking driver and one async driver."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Generator, TypeVar

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
