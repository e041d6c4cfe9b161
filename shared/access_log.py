"""One access log line per request, the same on both stacks: gunicorn's common log format plus the
duration in seconds, the request id and the server type, on stdout through the `drum_compat.access` logger."""
from __future__ import annotations

import functools
import logging
import sys
import time

ACCESS_LOGGER = "drum_compat.access"


def access_line(peer: str | None, method: str, target: str, protocol: str, status: int, size: int,
                seconds: float, request_id: str, server_type: str, now: float | None = None) -> str:
    """The server type last, so that the arms of an A/B deployment logging to one place are told apart."""
    stamp = clock_stamp(int(time.time() if now is None else now))
    return f'{peer or "-"} - - [{stamp}] "{method} {target} {protocol}" {status} {size} {seconds:.4f} {request_id} {server_type}'


@functools.lru_cache(maxsize=4)
def clock_stamp(second: int) -> str:
    """The line's local time, made once a second (strftime of localtime is a tenth of an answer to /ping)."""
    return time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(second))


class AccessLineHandler(logging.StreamHandler):
    """drum-compat's own handler of the access log: the bare line on stdout."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)
        self.setFormatter(logging.Formatter("%(message)s"))


def log_access(logger: logging.Logger, line: str) -> None:
    """While the logger has only drum-compat's own handler (nobody configured it otherwise), the line goes straight
    to its stream: a LogRecord, its caller lookup and the handler's lock cost more than a whole /ping's answer."""
    handlers = logger.handlers
    if (len(handlers) == 1 and type(handlers[0]) is AccessLineHandler and handlers[0].level <= logging.INFO
            and not handlers[0].filters and not logger.filters and logger.isEnabledFor(logging.INFO)):
        try:
            handlers[0].stream.write(line + handlers[0].terminator)
            handlers[0].stream.flush()
            return
        except Exception:  # noqa: BLE001 - as logging would: its handleError reports it, the request goes on
            pass
    logger.info(line)


def configure_access_log() -> logging.Logger:
    """Independent of --logging-level, as gunicorn's access log was."""
    logger = logging.getLogger(ACCESS_LOGGER)
    logger.handlers[:] = [AccessLineHandler()]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger
