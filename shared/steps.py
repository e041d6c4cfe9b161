"""How a backend drives a core decision written as a generator of steps (h11's idea: the core says what to do
next, the backend does the I/O and sends the outcome back): one blocking driver and one async driver."""
from __future__ import annotations

from typing import Any, Awaitable, Callable, Generator, TypeVar

Result = TypeVar("Result")
Steps = Generator[Any, Any, Result]


def run_steps(steps: Steps[Result], perform: Callable[[Any], Any]) -> Result:
    """Perform each step with a blocking `perform` and send its outcome back; the generator's return value."""
    try:
        step = next(steps)
        while True:
            step = steps.send(perform(step))
    except StopIteration as finished:
        return finished.value


async def run_steps_async(steps: Steps[Result], perform: Callable[[Any], Awaitable[Any]]) -> Result:
    """The same, with an awaited `perform` (an event loop's I/O)."""
    try:
        step = next(steps)
        while True:
            step = steps.send(await perform(step))
    except StopIteration as finished:
        return finished.value
