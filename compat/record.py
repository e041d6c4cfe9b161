"""The recording file of DRUM_RECORD_REQUESTS: sampled requests appended as JSON lines, rotated by size, safe
with several workers writing one file (concurrent-log-handler's locked rotation)."""
from __future__ import annotations

import json
import logging
import random
from typing import Any, Callable

from concurrent_log_handler import ConcurrentRotatingFileHandler

from drum_compat.shared.record import RecordPolicy

logger = logging.getLogger("drum_compat")


class FileRecorder:
    def __init__(self, path: str, policy: RecordPolicy, max_bytes: int, backups: int) -> None:
        self.policy = policy
        self.path = path
        self._random = random.Random()
        self._handler = ConcurrentRotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        self._handler.setFormatter(logging.Formatter("%(message)s"))

    def keep(self) -> bool:
        return self.policy.sample_percent >= 100 or self._random.random() * 100 < self.policy.sample_percent

    def write(self, entry: dict) -> None:
        record = logging.LogRecord("drum_compat.record", logging.INFO, __file__, 0, json.dumps(entry, separators=(",", ":")),
                                   None, None)
        self._handler.handle(record)  # a failed write is reported by the handler, never raised into the request

    def close(self) -> None:
        self._handler.close()


def recorder_from(value: Callable[[str], Any]) -> FileRecorder | None:
    """The recorder the settings ask for (`value`: a setting's resolved value by key), or None when recording is off."""
    path = value("record_requests")
    if not path:
        return None
    redact = frozenset(name.strip().lower() for name in value("record_redact_headers").split(",") if name.strip())
    policy = RecordPolicy(value("record_sample_percent"), redact, value("record_max_body"))
    return FileRecorder(path, policy, value("record_max_bytes"), value("record_backups"))
