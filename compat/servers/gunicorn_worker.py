"""A gunicorn worker's app (`app_from_options`, built after fork) with what the worker adds around it: its place on the
load board, its watchdog, and its retirement's exit (shared.guards.retirement): answers close their connections for one
keep-alive period, so no client sends a request on a connection the worker is about to drop, then it SIGTERMs itself
(gunicorn's graceful exit and replacement)."""
from __future__ import annotations

import os
import signal

from flask import Flask
from gevent.monkey import get_original

from drum_compat.flask_backend.app import CORE_EXTENSION
from drum_compat.flask_backend.wsgi import build_app
from drum_compat.runtime.instance import instance_dir
from drum_compat.runtime.load_board import worker_balance
from drum_compat.runtime.options import ServerOptions
from drum_compat.runtime.startup import build_or_exit
from drum_compat.runtime.supervisor import Watchdog

GUNICORN_KEEPALIVE = 2  # seconds, gunicorn's default when DRUM_GUNICORN_KEEP_ALIVE is not set
BALANCE_EXTENSION = "drum_compat.balance"  # app.extensions key: the worker's runtime.load_board.Balance (its hooks apply it)


def app_from_options(options: ServerOptions) -> Flask:
    app = build_or_exit(lambda: build_app(options), options.code_dir)
    core = app.extensions[CORE_EXTENSION]
    balance = app.extensions[BALANCE_EXTENSION] = worker_balance(core.gate, instance_dir(), options.workers)
    core.retirement.on_begin(lambda why: balance.leave())  # the worker takes no more connections
    core.retirement.on_begin(exit_after_drain((options.server_settings or {}).get("keepalive", GUNICORN_KEEPALIVE)))
    app.wsgi_app = ClosesWhenTold(app.wsgi_app)
    # native even under gevent: it must read the gate while the hub waits
    Watchdog(core.gate, core.settings.supervision, core.metrics, core.retirement.begin,
             get_original("_thread", "start_new_thread"), get_original("time", "sleep")).start()
    return app


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
