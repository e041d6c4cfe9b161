"""The worker's model threads seen from a gunicorn request: admission through the core's gate, the
wait bounded by the queue timeout and the deadline. Under gevent the threads are gevent's native pool,
so model code never runs on (or blocks) the hub; the waiting greenlet yields while it waits."""
from __future__ import annotations

import contextvars
from concurrent.futures import Executor, Future, ThreadPoolExecutor, TimeoutError
from typing import Callable

from gevent import monkey

from drum_compat.shared.guards.admission import STILL_RUNNING, AdmissionGate, Submit, Wait
from drum_compat.shared.http import NeutralResponse
from drum_compat.shared.steps import run_steps


def native_lock():
    """An OS lock even where gevent patched `threading`: the hub and the native model threads both take it."""
    return monkey.get_original("_thread", "allocate_lock")()


def model_executor(threads: int) -> Executor:
    if monkey.is_module_patched("threading"):  # gunicorn's gevent worker
        from gevent.threadpool import ThreadPoolExecutor as NativeThreadPoolExecutor

        return NativeThreadPoolExecutor(max_workers=threads)
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="drum-model")


class BlockingModelRunner:
    def __init__(self, gate: AdmissionGate, on_unwedged: Callable[[], None]) -> None:
        self.gate = gate
        self.on_unwedged = on_unwedged
        self.executor = model_executor(gate.limits.threads)

    def run(self, call: Callable[[], NeutralResponse], arrived: float) -> NeutralResponse:
        submitted: list[Future] = []

        def perform(step: Submit | Wait):
            if isinstance(step, Submit):
                submitted.append(self.executor.submit(contextvars.copy_context().run, step.job))
                return None
            try:
                return submitted[0].result(timeout=step.seconds)
            except TimeoutError:
                return STILL_RUNNING

        return run_steps(self.gate.model_call(call, arrived, self.on_unwedged), perform)
