"""Recycling a gunicorn worker from inside the app (shared.guards.retirement): its answers close their connections for
one keep-alive period, so no client sends a request on a connection the worker is about to drop, then it SIGTERMs
itself (gunicorn's graceful exit and replacement)."""
from __future__ import annotations

import os
import signal

from gevent.monkey import get_original

GUNICORN_KEEPALIVE = 2  # seconds, gunicorn's default when DRUM_GUNICORN_KEEP_ALIVE is not set


def exit_after_drain(keepalive: float):
    """The retirement's exit, safe from any thread (model threads included): the timer is a native thread even under
    gevent; connections idle before retirement are closed by gunicorn's keep-alive timer meanwhile."""
    def drain_then_exit() -> None:
        get_original("time", "sleep")(keepalive + 1)
        os.kill(os.getpid(), signal.SIGTERM)

    return lambda why: get_original("_thread", "start_new_thread")(drain_then_exit, ())


class ClosesWhenTold:
    """WSGI: an answer the core marks `Connection: close` (a retiring worker's, 413, 408, a client handed back to another
    worker) closes its connection. gunicorn drops an app's hop-by-hop headers, so it is told through its own response
    object, whose bound `start_response` the app is handed."""

    def __init__(self, app) -> None:
        self.app = app

    def __call__(self, environ, start_response):
        def closing_start_response(status, headers, exc_info=None):
            if any(name.lower() == "connection" and value.lower() == "close" for name, value in headers):
                force_close = getattr(getattr(start_response, "__self__", None), "force_close", None)
                if force_close is not None:  # gunicorn's Response
                    force_close()
            return start_response(status, headers, exc_info)

        return self.app(environ, closing_start_response)
