"""A worker's start, the same on every server type: a failed one has the model's traceback logged once by the worker
that failed, its cause repeated as the master's last line, and one exit status for each kind of failure; a loaded one
has its heap settled before the first request, and malloc tuned for large requests."""
from __future__ import annotations

import ctypes
import gc
import logging
import os
import sys
from typing import Callable, TypeVar

from drum_compat.runtime.instance import record_startup_failure
from drum_compat.runtime.requirements import missing_module_hint
from drum_compat.shared.model.python_model import DrumPythonModelAdapterError

MODEL_LOAD_FAILURE = 3  # also gunicorn's worker-boot status and uvicorn's STARTUP_FAILURE, so each master stops
logger = logging.getLogger("drum_compat")
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8  # mallopt's parameters (malloc.h), for a running process
# blocks from this size on are mapped afresh for each allocation: above the buffers pandas' CSV tokenizer sizes to the
# body (three of ~1.5 MiB for 100 kB; mapped, each request faulted them in again: ~100 page faults, ~10% of a
# 10,000-row request's CPU), not above one 262,144-row column chunk (2 MiB), so a large CSV's chunks and columns are
# still mapped and given back
MMAP_THRESHOLD = 2 * 1024 * 1024
# each with glibc's environment variable of the same setting and drum-compat's value
MALLOC_SETTINGS = ((M_ARENA_MAX, "MALLOC_ARENA_MAX", 1), (M_MMAP_THRESHOLD, "MALLOC_MMAP_THRESHOLD_", MMAP_THRESHOLD),
                   (M_TRIM_THRESHOLD, "MALLOC_TRIM_THRESHOLD_", 8 * 1024 * 1024))
App = TypeVar("App")


def build_or_exit(build: Callable[[], App], code_dir: str) -> App:
    """Build a worker's app; if the model cannot load, log why once and end the worker with MODEL_LOAD_FAILURE
    (a SystemExit, which neither gunicorn nor uvicorn logs again)."""
    tune_malloc()  # before the model's load_model can start a thread
    try:
        app = build()
    except Exception as exc:
        cause = f"The model in {code_dir} failed to load: {exc}"
        if hint := missing_module_hint(exc, code_dir):
            cause += f"\n{hint}"
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


def tune_malloc() -> list[str]:
    """glibc's malloc held to what a worker serving large requests needs; returns the settings applied. Each one an
    operator set in the environment is theirs (glibc read it at the process's start), and a C library without
    glibc's mallopt is left alone.
    - One arena: glibc gives each thread that allocates an arena of its own, and a model thread's kept what a large
      request freed beside the main arena's (DRUM runs the model on the main thread, so it has one).
    - A fixed mmap threshold: glibc raises its own to the size of each large block freed, so the next request took
      from the heap what the first had mapped and returned; on a 50 MB CSV the second peaked ~40 MiB higher.
    - An 8 MiB trim threshold: a fixed mmap threshold also stops glibc raising its trim threshold (to twice the other),
      and at its 128 KiB default the gevent worker's heap top was returned and faulted in again ~200 times per 50 MB
      request: ~40,000 more page faults, at ~3 µs each on the benchmark's VM. Peaks and the idle size stay as they were."""
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return []
    return [variable for parameter, variable, value in MALLOC_SETTINGS
            if variable not in os.environ and mallopt(parameter, value) == 1]


def _hook_traceback_logged(exc: BaseException | None) -> bool:
    while exc is not None:
        if isinstance(exc, DrumPythonModelAdapterError):
            return True
        exc = exc.__cause__
    return False


def report_startup_failure(cause: str | None) -> None:
    """The master's last words when a worker could not start."""
    if cause:
        print(f"drum-compat: error: {cause}", file=sys.stderr, flush=True)
