"""One server instance's own files, so several instances can run on one host: a temp directory (metrics,
request bodies spooled to disk, the note of a failed start) its master removes at exit; a lock on its metrics."""
from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from pathlib import Path
from typing import Mapping

from drum_compat.shared.metrics import MULTIPROCESS_DIR_ENV

INSTANCE_DIR_ENV = "DRUM_COMPAT_INSTANCE_DIR"  # handed to the server processes by the launcher
LOCK_FILE = ".drum-compat.lock"  # in the metrics directory; held by the master for its whole life
STARTUP_FAILURE_FILE = "startup-failure.txt"  # a worker's cause, repeated by the master as its last words


class InstanceError(RuntimeError):
    """The instance cannot start as configured; the message says why."""


def create_instance(environ: Mapping[str, str]) -> dict[str, str]:
    """Make the instance directory and claim the metrics directory; what to add to the server's environment."""
    instance_dir = tempfile.mkdtemp(prefix="drum-compat-")
    given = environ.get(MULTIPROCESS_DIR_ENV, "")
    metrics_dir = Path(given) if given else Path(instance_dir, "metrics")
    try:
        metrics_dir.mkdir(parents=True, exist_ok=True)
        _lock_for_life(metrics_dir)
    except (OSError, InstanceError):
        shutil.rmtree(instance_dir, ignore_errors=True)
        raise
    for stale in metrics_dir.glob("*.db"):  # a previous run's counters would be summed into this one's
        stale.unlink()
    return {INSTANCE_DIR_ENV: instance_dir, MULTIPROCESS_DIR_ENV: str(metrics_dir)}


def _lock_for_life(metrics_dir: Path) -> None:
    """flock the directory's lock file from a descriptor that survives exec and is never closed: the
    lock lasts exactly as long as this process (the server's master) and its forked workers."""
    fd = os.open(metrics_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise InstanceError(
            f"{MULTIPROCESS_DIR_ENV}={metrics_dir} is in use by another running drum-compat instance (pid {holder}); "
            "two instances summing each other's metric files would both report wrong figures. "
            f"Give each instance its own {MULTIPROCESS_DIR_ENV}, or leave it unset."
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    os.set_inheritable(fd, True)


def instance_dir(environ: Mapping[str, str] | None = None) -> str | None:
    return (os.environ if environ is None else environ).get(INSTANCE_DIR_ENV) or None


def record_startup_failure(cause: str) -> None:
    """Called in a worker whose model cannot load: the master repeats it when it exits."""
    directory = instance_dir()
    if directory:
        Path(directory, STARTUP_FAILURE_FILE).write_text(cause)


def remove_instance(environ: Mapping[str, str] | None = None) -> str | None:
    """At the master's exit: remove the instance directory; the recorded startup failure, if any."""
    directory = instance_dir(environ)
    if not directory:
        return None
    note = Path(directory, STARTUP_FAILURE_FILE)
    cause = note.read_text() if note.exists() else None
    shutil.rmtree(directory, ignore_errors=True)
    return cause
