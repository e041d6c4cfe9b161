"""DRUM's `--show-perf`: the time each prediction spends in its handler, which /stats/ reports as `time_info` over the
requests since its last read (then forgotten), with DRUM's numbers: each time rounded to the millisecond, then min, max,
mean and sum by pandas, null before the first request and NaN after a read with none since."""
from __future__ import annotations

import functools
import threading
import time

import pandas as pd

REPORT = "run_predictor_total"
UNMEASURED = {REPORT: {"avg": None, "max": None, "min": None, "total": None}}


class PredictorTimings:
    """Safe from several model threads at once (DRUM's collector fails a concurrent request with a 500)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seconds: list[float] | None = None  # None until the first prediction

    def record(self, seconds: float) -> None:
        with self._lock:
            self._seconds = [*(self._seconds or ()), seconds]

    def report(self) -> dict:
        """The report, and the times it covers forgotten."""
        with self._lock:
            seconds, self._seconds = self._seconds, ([] if self._seconds is not None else None)
        if seconds is None:
            return UNMEASURED
        rounded = pd.Series(seconds, dtype="float64").round(3)
        return {REPORT: {"avg": rounded.mean(), "max": rounded.max(), "min": rounded.min(), "total": rounded.sum()}}


def timed(handler):
    """A prediction handler whose time --show-perf reports (its instance's `timings`; None: not measured)."""
    @functools.wraps(handler)
    def measured(self, request):
        if self.timings is None:
            return handler(self, request)
        started = time.time()
        try:
            return handler(self, request)
        finally:
            self.timings.record(time.time() - started)

    return measured
