"""The per-request id: chosen from the client's X-Request-ID when safe, carried in a ContextVar
so every log line written while the request runs (model threads included) names it."""
from __future__ import annotations

import logging
import os
import random
import re
from contextvars import ContextVar

REQUEST_ID_HEADER = "X-Request-ID"
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
UUID4_CLEARED = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
UUID4_SET = (0x4000 << 64) | (0x8000 << 48)

current_request_id: ContextVar[str | None] = ContextVar("drum_compat_request_id", default=None)


class RequestIds:
    """uuid4-shaped ids from a generator seeded once from the OS: no getrandom() call per request. One per app, and
    an app is built in each worker after the fork, so two workers never share a sequence. (Ids name requests in
    logs; they are not secrets.)"""

    def __init__(self) -> None:
        self._random = random.Random(os.urandom(32))

    def choose(self, incoming: str | None) -> str:
        """Reuse the client's id only if it cannot inject anything into headers or logs."""
        if incoming is not None and _SAFE_REQUEST_ID.fullmatch(incoming):
            return incoming
        # uuid.UUID(int=..., version=4), formatted without building one: 4 in the version nibble, 10 in the variant bits
        digits = f"{self._random.getrandbits(128) & UUID4_CLEARED | UUID4_SET:032x}"
        return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


class RequestIdLogFilter(logging.Filter):
    """Adds `context_data` (DRUM's log field) and `request_id` to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = current_request_id.get()
        record.request_id = request_id or "-"
        record.context_data = {"request_id": request_id} if request_id else ""
        return True
