"""One access log line per request, the same on both stacks: gunicorn's common log format plus the
duration in seconds, the request id and the server type, on stdout through the `drum_compat.access` logger."""
from __future__ import annotations

import logging
import sys
import time

ACCESS_LOGGER = "drum_compat.access"


def access_line(peer: str | None, method: str, target: str, protocol: str, status: int, size: int,
                seconds: float, request_id: str, server_type: str, now: float | None = None) -> str:
    """The server type last, so that the arms of an A/B deployment logging to one place are told apart."""
    stamp = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(now))
    return f'{peer or "-"} - - [{stamp}] "{method} {target} {protocol}" {status} {size} {seconds:.4f} {request_id} {server_type}'


def configure_access_log() -> logging.Logger:
    """Independent of --logging-level, as gunicorn's access log was."""
    logger = logging.getLogger(ACCESS_LOGGER)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger
