"""The directory where prometheus_client's multiprocess mode keeps each worker's metric files: made
by the launcher before the server starts (or the operator's PROMETHEUS_MULTIPROC_DIR, emptied of old
files), removed by the server's master when it exits if drum-compat made it."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Mapping

from shared.metrics import MULTIPROCESS_DIR_ENV

OWNED_ENV = "DRUM_COMPAT_METRICS_DIR_OWNED"  # "1": drum-compat made the directory and removes it


def prepare_metrics_dir(environ: Mapping[str, str]) -> dict[str, str]:
    """What to add to the server's environment."""
    given = environ.get(MULTIPROCESS_DIR_ENV, "")
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):  # a previous run's counters would be summed into this one's
            stale.unlink()
        return {MULTIPROCESS_DIR_ENV: given}
    return {MULTIPROCESS_DIR_ENV: tempfile.mkdtemp(prefix="drum-compat-metrics-"), OWNED_ENV: "1"}


def remove_metrics_dir(environ: Mapping[str, str] | None = None) -> None:
    environ = os.environ if environ is None else environ
    if environ.get(OWNED_ENV) == "1" and environ.get(MULTIPROCESS_DIR_ENV):
        shutil.rmtree(environ[MULTIPROCESS_DIR_ENV], ignore_errors=True)
