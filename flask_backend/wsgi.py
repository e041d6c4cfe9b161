"""The Flask stack's entry points: `build_app` for a ServerOptions, and the gunicorn factory
`flask_backend.wsgi:app_from_environment()`, called in each worker after fork."""
from __future__ import annotations

import logging
import os
import signal
from typing import Callable

from flask import Flask

from compat.bootstrap import build_core
from compat.options import ServerOptions
from flask_backend.app import create_flask_app, log_only
from flask_backend.extensions import load_flask_extensions
from shared.handlers import PredictionHandlers

logger = logging.getLogger("drum_compat")


def recycle_gunicorn_worker(why: str) -> None:
    """gunicorn's graceful worker exit (SIGTERM): in-flight requests finish, the master forks a fresh worker."""
    logger.warning("Worker %d recycled: %s", os.getpid(), why)
    os.kill(os.getpid(), signal.SIGTERM)


def build_app(options: ServerOptions, recycle: Callable[[str], None] = log_only) -> Flask:
    core = build_core(options, "flask")
    app = create_flask_app(core, recycle)
    if isinstance(core.handlers, PredictionHandlers):  # DRUM's error server loads no extensions
        load_flask_extensions(app, core.handlers.model.config.code_dir)
    return app


def app_from_environment() -> Flask:
    return build_app(ServerOptions.from_environ(), recycle_gunicorn_worker)
