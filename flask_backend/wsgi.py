"""The Flask stack's entry points: `build_app` for a ServerOptions, and the gunicorn factory
`flask_backend.wsgi:app_from_environment()`, called in each worker after fork."""
from __future__ import annotations

from typing import Callable

from flask import Flask

from compat.bootstrap import build_core
from compat.options import ServerOptions
from flask_backend.app import create_flask_app, log_only
from flask_backend.extensions import load_flask_extensions
from flask_backend.recycling import GUNICORN_KEEPALIVE, CloseWhenRetiring, GunicornRetirement
from shared.handlers import PredictionHandlers


def build_app(options: ServerOptions, recycle: Callable[[str], None] = log_only) -> Flask:
    core = build_core(options, "flask")
    app = create_flask_app(core, recycle)
    if isinstance(core.handlers, PredictionHandlers):  # DRUM's error server loads no extensions
        load_flask_extensions(app, core.handlers.model.config.code_dir)
    return app


def app_from_environment() -> Flask:
    options = ServerOptions.from_environ()
    retirement = GunicornRetirement((options.server_settings or {}).get("keepalive", GUNICORN_KEEPALIVE))
    app = build_app(options, retirement.begin)
    app.wsgi_app = CloseWhenRetiring(app.wsgi_app, retirement)
    return app
