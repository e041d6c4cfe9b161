"""The Flask stack's entry point: `build_app` for a ServerOptions (gunicorn's worker adds its own around it:
drum_compat.servers.gunicorn_worker)."""
from __future__ import annotations

from flask import Flask

from drum_compat.runtime.bootstrap import build_core
from drum_compat.runtime.extensions import ExtensionError, extension_refusal
from drum_compat.runtime.options import ServerOptions
from drum_compat.flask_backend.app import create_flask_app
from drum_compat.flask_backend.extensions import load_flask_extensions
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
