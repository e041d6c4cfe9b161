"""The Flask stack's entry points: `build_app` for a ServerOptions, and `app_from_options`, which
gunicorn calls in each worker after fork."""
from __future__ import annotations

from typing import Callable

from flask import Flask

from drum_compat.compat.bootstrap import build_core
from drum_compat.compat.extensions import ExtensionError, extension_refusal
from drum_compat.compat.options import ServerOptions
from drum_compat.compat.startup import build_or_exit
from drum_compat.flask_backend.app import create_flask_app, log_only
from drum_compat.flask_backend.extensions import load_flask_extensions
from drum_compat.flask_backend.recycling import GUNICORN_KEEPALIVE, CloseWhenRetiring, GunicornRetirement
from drum_compat.flask_backend.steps import native_lock
from drum_compat.shared.handlers import PredictionHandlers
from drum_compat.shared.server_types import Stack


def build_app(options: ServerOptions, recycle: Callable[[str], None] = log_only) -> Flask:
    refusal = extension_refusal(options.code_dir, Stack.FLASK)
    if refusal:
        raise ExtensionError(refusal)
    core = build_core(options, Stack.FLASK, native_lock)
    app = create_flask_app(core, recycle)
    extended = isinstance(core.handlers, PredictionHandlers)  # DRUM's error server loads no extensions
    if not (extended and load_flask_extensions(app, core.handlers.model.config.code_dir)):
        app.wsgi_app.answer_from_core()
    return app


def app_from_options(options: ServerOptions) -> Flask:
    retirement = GunicornRetirement((options.server_settings or {}).get("keepalive", GUNICORN_KEEPALIVE))
    app = build_or_exit(lambda: build_app(options, retirement.begin), options.code_dir)
    app.wsgi_app = CloseWhenRetiring(app.wsgi_app, retirement)
    return app
