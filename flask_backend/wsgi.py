"""The Flask stack's entry points: `build_app` for a ServerOptions, and `app_from_options`, which
gunicorn calls in each worker after fork."""
from __future__ import annotations

from flask import Flask
from gevent.monkey import get_original

from drum_compat.runtime.bootstrap import build_core
from drum_compat.runtime.extensions import ExtensionError, extension_refusal
from drum_compat.runtime.instance import instance_dir
from drum_compat.runtime.load_board import worker_balance
from drum_compat.runtime.options import ServerOptions
from drum_compat.runtime.startup import build_or_exit
from drum_compat.runtime.supervisor import Watchdog
from drum_compat.flask_backend.app import BALANCE_EXTENSION, CORE_EXTENSION, create_flask_app
from drum_compat.flask_backend.extensions import load_flask_extensions
from drum_compat.flask_backend.recycling import GUNICORN_KEEPALIVE, ClosesWhenTold, exit_after_drain
from drum_compat.flask_backend.steps import native_lock
from drum_compat.shared.handlers import PredictionHandlers
from drum_compat.shared.server_types import Stack


def build_app(options: ServerOptions) -> Flask:
    refusal = extension_refusal(options.code_dir, Stack.FLASK)
    if refusal:
        raise ExtensionError(refusal)
    core = build_core(options, Stack.FLASK, native_lock)
    app = create_flask_app(core)
    extended = isinstance(core.handlers, PredictionHandlers)  # DRUM's error server loads no extensions
    if not (extended and load_flask_extensions(app, core.handlers.model.config.code_dir)):
        app.wsgi_app.answer_from_core()
    return app


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
