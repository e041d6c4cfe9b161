"""The FastAPI stack's entry point: `build_app` for a ServerOptions (uvicorn's worker adds its own around it:
drum_compat.servers.uvicorn_worker)."""
from __future__ import annotations

from fastapi import FastAPI

from drum_compat.runtime.bootstrap import build_core
from drum_compat.runtime.extensions import FLASK_EXTENSION_FILE
from drum_compat.runtime.options import ServerOptions
from drum_compat.fastapi_backend.app import LeanDispatch, create_fastapi_app
from drum_compat.fastapi_backend.extensions import load_fastapi_extensions
from drum_compat.shared.handlers import PredictionHandlers
from drum_compat.shared.model.python_model import find_code_file
from drum_compat.shared.server_types import Stack


def build_app(options: ServerOptions) -> FastAPI | LeanDispatch:
    """The FastAPI app when an extension is loaded; else its lean dispatch (the same answers, fewer layers)."""
    core = build_core(options, Stack.FASTAPI)
    extended = isinstance(core.handlers, PredictionHandlers)  # DRUM's error server loads no extensions
    bridged = None
    if extended and find_code_file(options.code_dir, FLASK_EXTENSION_FILE) is not None:
        # the one place the FastAPI stack stands on the Flask one: a custom_flask.py runs in the Flask app it expects
        from drum_compat.flask_backend.extensions import bridged_flask_app

        bridged = bridged_flask_app(core, options.code_dir)
    app = create_fastapi_app(core, wsgi_app=bridged)
    if bridged is not None or (extended and load_fastapi_extensions(app, options.code_dir)):
        return app
    return LeanDispatch(app)

