"""The worker's model threads seen from the event loop: admission through the core's gate, the wait
bounded by the queue timeout and the deadline, the request's context carried into the thread."""
from __future__ import annotations

import asyncio
import contextvars
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from drum_compat.shared.guards.admission import QUEUE_FULL, AdmissionGate
from drum_compat.shared.http import NeutralResponse


class AsyncModelRunner:
    def __init__(self, gate: AdmissionGate, on_unwedged: Callable[[], None]) -> None:
        self.gate = gate
        self.on_unwedged = on_unwedged
        self.executor = ThreadPoolExecutor(max_workers=gate.limits.threads, thread_name_prefix="drum-model")

    async def run(self, call: Callable[[], NeutralResponse], arrived: float) -> NeutralResponse:
        gate = self.gate
        ticket = gate.admit(arrived)
        if ticket is None:
            return gate.rejection(QUEUE_FULL)
        job = gate.job(ticket, call, self.on_unwedged)
        done = asyncio.wrap_future(self.executor.submit(contextvars.copy_context().run, job))
        while True:
            try:
                # shield: a wait that runs out must not cancel the model call, which keeps its slot
                return await asyncio.wait_for(asyncio.shield(done), gate.next_wait(ticket))
            except asyncio.TimeoutError:
                reason = gate.expire(ticket)
                if reason:
                    return gate.rejection(reason)
