"""Recycling a gunicorn worker from inside the app (after work that held every model thread past its
deadline): answer with `Connection: close` for one keep-alive period, so no client sends a request on a
connection the worker is about to drop, then SIGTERM itself (gunicorn's graceful exit and replacement)."""
from __future__ import annotations

import logging
import os
import signal
from typing import Callable

from gevent.monkey import get_original

logger = logging.getLogger("drum_compat")
GUNICORN_KEEPALIVE = 2  # seconds, gunicorn's default when DRUM_GUNICORN_KEEP_ALIVE is not set


class GunicornRetirement:
    def __init__(self, keepalive: float = GUNICORN_KEEPALIVE, on_begin: Callable[[], None] = lambda: None) -> None:
        self.keepalive = keepalive
        self.on_begin = on_begin  # the worker leaves the load board: it takes no more connections
        self.begun = False

    def begin(self, why: str) -> None:
        """Safe from any thread, model threads included: the timer is a native thread even under gevent."""
        if self.begun:
            return
        self.begun = True
        self.on_begin()
        logger.warning("Worker %d recycled: %s", os.getpid(), why)
        get_original("_thread", "start_new_thread")(self._exit_after_drain, ())

    def _exit_after_drain(self) -> None:
        # connections idle before retirement are closed by gunicorn's keep-alive timer meanwhile
        get_original("time", "sleep")(self.keepalive + 1)
        os.kill(os.getpid(), signal.SIGTERM)


class CloseWhenRetiring:
    """WSGI: once retirement has begun, every response closes its connection; so does any the core marks
    `Connection: close` (413, 408, a replaced worker's /livez, a client handed back to another worker). gunicorn drops
    an app's hop-by-hop headers, so it is told through its own response object, whose bound `start_response` the app
    is handed."""

    def __init__(self, app, retirement: GunicornRetirement) -> None:
        self.app = app
        self.retirement = retirement

    def __call__(self, environ, start_response):
        def closing_start_response(status, headers, exc_info=None):
            closes = any(name.lower() == "connection" and value.lower() == "close" for name, value in headers)
            if self.retirement.begun and not closes:
                headers, closes = [*headers, ("Connection", "close")], True
            if closes:
                force_close = getattr(getattr(start_response, "__self__", None), "force_close", None)
                if force_close is not None:  # gunicorn's Response
                    force_close()
            return start_response(status, headers, exc_info)

        return self.app(environ, closing_start_response)
