"""When a worker must be replaced, decided from plain readings: a model call stuck for good, or the worker's memory
over its limit. Never because it is slow: a call that merely ends past its deadline is a 504 and nothing more."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from drum_compat.shared.guards.admission import RunningCall
from drum_compat.shared.metrics import MEMORY, STUCK_CALL

MIB = 1024 * 1024


@dataclass(frozen=True)
class SupervisionLimits:
    deadline: float = 0.0  # DRUM_CLIENT_REQUEST_TIMEOUT; 0: no call is ever stuck
    grace: float = 30.0  # DRUM_STUCK_CALL_GRACE: past deadline + grace a call is stuck even with threads free
    max_rss: int = 0  # bytes (DRUM_MAX_WORKER_RSS_MB); 0: no memory guard


@dataclass(frozen=True)
class Replacement:
    reason: str  # shared.metrics.REPLACEMENT_REASONS
    message: str  # for the log line: which request and how long, or how much memory


def replacement(limits: SupervisionLimits, calls: Sequence[RunningCall], threads: int, now: float,
                rss: int | None = None) -> Replacement | None:
    """Whether the worker must be replaced now. A call is stuck once it has run (from the moment a model thread took
    it, not from its arrival, so queueing never counts) past the deadline plus the grace, or past the deadline alone
    when every model thread is busy (nothing else can be served: DRUM's gunicorn kills the worker then)."""
    if limits.deadline and calls:
        oldest = min(calls, key=lambda call: call.started)
        ran = now - oldest.started
        every_thread_busy = len(calls) >= threads
        if ran > limits.deadline + limits.grace or (every_thread_busy and ran > limits.deadline):
            why = (f"every model thread is busy and the oldest call has run past the {limits.deadline:g} s deadline"
                   if every_thread_busy and ran <= limits.deadline + limits.grace else
                   f"a call has run past the {limits.deadline:g} s deadline plus {limits.grace:g} s of grace")
            return Replacement(STUCK_CALL, f"the model call of request {oldest.request_id or '(unknown)'} has run {ran:.1f} s: "
                                           f"{why} (DRUM_CLIENT_REQUEST_TIMEOUT, DRUM_STUCK_CALL_GRACE)")
    if limits.max_rss and rss is not None and rss > limits.max_rss:
        return Replacement(MEMORY, f"resident memory {rss / MIB:.0f} MiB is above {limits.max_rss / MIB:.0f} MiB "
                                   "(DRUM_MAX_WORKER_RSS_MB)")
    return None
