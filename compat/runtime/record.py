"""The recording file of DRUM_RECORD_REQUESTS: sampled requests appended as JSON lines, rotated by size, safe
with several workers writing one file (concurrent-log-handler's locked rotation), readable by its owner only."""
from __future__ import annotations

import json
import logging
import os
import random
import stat
import sys
import time
from typing import Any, Callable

from drum_compat.shared.record import RecordPolicy

logger = logging.getLogger("drum_compat")


OWNER_ONLY = 0o077  # the umask the recording files (and their lock) are created with: 0600, bodies and headers inside
WARN_EVERY = 60.0  # seconds between two warnings of failing writes


def unusable_reason(path: str) -> str | None:
    """Why DRUM_RECORD_REQUESTS cannot be written (startup stops with it), or None."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        return f"its directory {directory} does not exist"
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"its directory {directory} is not writable"  # the rotation and the lock file are made there
    if os.path.lexists(path):
        if not stat.S_ISREG(os.stat(path).st_mode):
            return "it is not a regular file"
        if not os.access(path, os.W_OK):
            return "it is not writable"
    return None


class FileRecorder:
    def __init__(self, path: str, policy: RecordPolicy, max_bytes: int, backups: int) -> None:
        # imported here: it brings portalocker and redis (and OpenTelemetry's SDK with it), a worker's start slower
        from concurrent_log_handler import ConcurrentRotatingFileHandler

        self.policy = policy
        self.path = path
        self.failures = 0
        self._warned_at: float | None = None
        self._random = random.Random()
        self._handler = ConcurrentRotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8",
                                                      umask=OWNER_ONLY)
        self._handler.setFormatter(logging.Formatter("%(message)s"))
        self._handler.handleError = self._failed

    def _failed(self, record: logging.LogRecord) -> None:
        """A failed write is one warning a minute at most, naming the error, never the entry (it holds request bodies):
        logging's own report would print the record, body included, for every request."""
        self.failures += 1
        now = time.monotonic()
        if self._warned_at is None or now - self._warned_at >= WARN_EVERY:
            self._warned_at = now
            error = sys.exc_info()[1]
            logger.warning("Recording to %s failed (%s: %s); %d request(s) not recorded so far (warned once a minute "
                           "at most)", self.path, type(error).__name__, error, self.failures)

    def keep(self) -> bool:
        return self.policy.sample_percent >= 100 or self._random.random() * 100 < self.policy.sample_percent

    def write(self, entry: dict) -> None:
        record = logging.LogRecord("drum_compat.record", logging.INFO, __file__, 0, json.dumps(entry, separators=(",", ":")),
                                   None, None)
        self._handler.handle(record)  # a failed write is reported by the handler, never raised into the request

    def close(self) -> None:
        try:
            self._handler.close()
        except OSError as exc:  # what the last failed writes left buffered fails again: named, never shown
            logger.warning("Recording to %s: the last entries were lost at exit (%s)", self.path, exc)


def recorder_from(value: Callable[[str], Any]) -> FileRecorder | None:
    """The recorder the settings ask for (`value`: a setting's resolved value by key), or None when recording is off."""
    path = value("record_requests")
    if not path:
        return None
    redact = frozenset(name.strip().lower() for name in value("record_redact_headers").split(",") if name.strip())
    redact_query = tuple(word.strip().lower() for word in value("record_redact_query").split(",") if word.strip())
    policy = RecordPolicy(value("record_sample_percent"), redact, value("record_max_body"), redact_query)
    return FileRecorder(path, policy, value("record_max_bytes"), value("record_backups"))
