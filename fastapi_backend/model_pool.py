"""The worker's model threads seen from the event loop: admission through the core's gate, the wait
bounded by the queue timeout and the deadline, the request's context carried into the thread."""
from __future__ import annotations

import asyncio
import contextvars
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from drum_compat.shared.guards.admission import STILL_RUNNING, AdmissionGate, Submit, Wait
from drum_compat.shared.http import NeutralResponse
from drum_compat.shared.steps import run_steps_async


class AsyncModelRunner:
    def __init__(self, gate: AdmissionGate, on_unwedged: Callable[[], None]) -> None:
        self.gate = gate
        self.on_unwedged = on_unwedged
        self.executor = ThreadPoolExecutor(max_workers=gate.limits.threads, thread_name_prefix="drum-model")

    async def run(self, call: Callable[[], NeutralResponse], arrived: float) -> NeutralResponse:
        submitted: list[asyncio.Future] = []

        async def perform(step: Submit | Wait):
            if isinstance(step, Submit):
                submitted.append(asyncio.wrap_future(self.executor.submit(contextvars.copy_context().run, step.job)))
                return None
            try:
                # shield: a wait that runs out must not cancel the model call, which keeps its slot
                return await asyncio.wait_for(asyncio.shield(submitted[0]), step.seconds)
            except asyncio.TimeoutError:
                return STILL_RUNNING

        return await run_steps_async(self.gate.model_call(call, arrived, self.on_unwedged), perform)
