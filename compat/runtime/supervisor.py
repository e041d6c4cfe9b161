"""A served worker's life under supervision, the same on gunicorn and uvicorn: a watchdog that replaces it when the
policy (shared.guards.supervision) says so, an exit that never waits on a hung model thread, and death with its master."""
from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
import time
from typing import Callable

import psutil

from drum_compat.shared.guards.admission import AdmissionGate
from drum_compat.shared.guards.supervision import SupervisionLimits, replacement
from drum_compat.shared.metrics import Metrics

logger = logging.getLogger("drum_compat")
CHECK_EVERY = 1.0  # seconds between two readings
PR_SET_PDEATHSIG = 1  # prctl(2)


class Watchdog:
    """Reads the worker's model calls and memory every CHECK_EVERY seconds on a thread of its own (a native one under
    gevent: `start_thread`, `sleep`). The first verdict is counted, fails this worker's /livez (the gate's `retiring`)
    and retires the worker through `retire` (which logs it, and must be safe from any thread)."""

    def __init__(self, gate: AdmissionGate, limits: SupervisionLimits, metrics: Metrics, retire: Callable[[str], None],
                 start_thread: Callable = threading._start_new_thread, sleep: Callable[[float], None] = time.sleep) -> None:
        self.gate = gate
        self.limits = limits
        self.metrics = metrics
        self.retire = retire
        self._start_thread = start_thread
        self._sleep = sleep
        self._process = psutil.Process() if limits.max_rss else None

    @property
    def needed(self) -> bool:
        return bool(self.limits.deadline or self.limits.max_rss)

    def start(self) -> None:
        if self.needed:
            self._start_thread(self._watch, ())

    def check(self) -> bool:
        """One reading; True once the worker is being replaced."""
        if self.gate.retiring is not None:
            return True
        rss = self._process.memory_info().rss if self._process is not None else None
        verdict = replacement(self.limits, self.gate.running_calls(), self.gate.limits.threads, time.monotonic(), rss)
        if verdict is None:
            return False
        self.gate.retiring = verdict.message
        self.metrics.worker_replaced(verdict.reason)
        self.retire(verdict.message)  # logs "Worker <pid> recycled: <message>"
        return True

    def _watch(self) -> None:
        while not self.check():
            self._sleep(CHECK_EVERY)


def exit_past_hung_calls(gate: AdmissionGate) -> None:
    """The last step of a worker's exit, once the server has drained: model threads still running would hold the
    interpreter's exit forever (it joins its threads), so they are abandoned, saying which, and the process ends now."""
    now = time.monotonic()
    calls = gate.running_calls()
    with gate.lock:
        busy = len(gate.calls)
    if not busy:
        return
    named = ", ".join(f"request {call.request_id or '(unknown)'} running {now - call.started:.0f} s" for call in calls)
    logger.warning("Worker %d exits abandoning %d model call(s) still running%s", os.getpid(), busy, f": {named}" if named else "")
    for handler in logging.getLogger().handlers + logger.handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def exit_past_hung_calls_after(gate: AdmissionGate, seconds: float, start_thread: Callable = threading._start_new_thread,
                               sleep: Callable[[float], None] = time.sleep) -> None:
    """`exit_past_hung_calls` in `seconds`, on a thread of its own: for a worker whose master kills it at the end of the
    graceful timeout (gunicorn), so that it says which calls it abandons before that."""
    def later() -> None:
        sleep(seconds)
        exit_past_hung_calls(gate)

    start_thread(later, ())


def die_with_parent(master: int) -> None:
    """SIGTERM this worker when the process that started it ends, however it ends (SIGKILL included), so a worker never
    outlives its master and keeps its port; if the master is already gone, end now. Linux only; elsewhere a no-op."""
    if os.getpid() == master:  # run in the master's own process (an app served in-process): nothing to die with
        return
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return
    prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != master:  # it ended before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)
