"""A worker's start, the same on every server type: a failed one has the model's traceback logged once by the worker
that failed, its cause repeated as the master's last line, and one exit status for each kind of failure; a loaded one
has its heap settled before the first request, and its threads share one malloc arena."""
from __future__ import annotations

import ctypes
import gc
import logging
import os
import sys
from typing import Callable, TypeVar

from drum_compat.compat.instance import record_startup_failure
from drum_compat.shared.model.python_model import HookFailed

MODEL_LOAD_FAILURE = 3  # also gunicorn's worker-boot status and uvicorn's STARTUP_FAILURE, so each master stops
logger = logging.getLogger("drum_compat")
MALLOC_ARENA_MAX = "MALLOC_ARENA_MAX"  # glibc's variable, read at the process's start
M_ARENA_MAX = -8  # the same limit as a mallopt parameter (malloc.h), for a process already running
App = TypeVar("App")


def build_or_exit(build: Callable[[], App], code_dir: str) -> App:
    """Build a worker's app; if the model cannot load, log why once and end the worker with MODEL_LOAD_FAILURE
    (a SystemExit, which neither gunicorn nor uvicorn logs again)."""
    share_one_malloc_arena()  # before the model's load_model can start a thread
    try:
        app = build()
    except Exception as exc:
        cause = f"The model in {code_dir} failed to load: {exc}"
        logger.error(cause, exc_info=not _hook_traceback_logged(exc))
        record_startup_failure(cause)
        sys.exit(MODEL_LOAD_FAILURE)
    settle_heap()
    return app


def settle_heap() -> None:
    """What the worker loaded (frameworks, pandas, the model) lives as long as it does: frozen out of the cyclic
    collector's sight, a full collection scans only what requests left, instead of pausing every request in flight
    for the ~120,000 objects of a loaded worker (90 ms on the benchmark's machine, its p99)."""
    gc.collect()
    gc.freeze()


def share_one_malloc_arena() -> bool:
    """glibc gives each thread that allocates an arena of its own, up to 8 per core. A model thread's arena keeps
    what a large request freed beside the main arena's, so the next one peaked ~70 MiB higher on a 50 MB CSV; DRUM
    runs the model on the main thread and has one. MALLOC_ARENA_MAX, when set, is the operator's and glibc's.
    False where there is nothing to do (set, or a C library without glibc's mallopt)."""
    if MALLOC_ARENA_MAX in os.environ:
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    return mallopt is not None and mallopt(M_ARENA_MAX, 1) == 1


def _hook_traceback_logged(exc: BaseException | None) -> bool:
    while exc is not None:
        if isinstance(exc, HookFailed):
            return True
        exc = exc.__cause__
    return False


def report_startup_failure(cause: str | None) -> None:
    """The master's last words when a worker could not start."""
    if cause:
        print(f"drum-compat: error: {cause}", file=sys.stderr, flush=True)
