"""The FastAPI stack's entry points: `build_app` for a ServerOptions, and the uvicorn factory
`drum_compat.fastapi_backend.asgi:app_from_environment` (run with --factory), called in each worker."""
from __future__ import annotations

from fastapi import FastAPI

from drum_compat.compat.bootstrap import build_core, flask_extension_refusal
from drum_compat.compat.options import ServerOptions
from drum_compat.compat.startup import build_or_exit
from drum_compat.fastapi_backend.app import create_fastapi_app
from drum_compat.fastapi_backend.recycling import RECYCLE_AFTER, RECYCLE_JITTER, UVICORN_KEEPALIVE
from drum_compat.shared.server_types import Stack


class FlaskExtensionRefused(RuntimeError):
    pass


def build_app(options: ServerOptions) -> FastAPI:
    refusal = flask_extension_refusal(options.code_dir)
    if refusal:
        raise FlaskExtensionRefused(refusal)
    settings = options.server_settings or {}
    return create_fastapi_app(build_core(options, Stack.FASTAPI), settings.get(RECYCLE_AFTER, 0), settings.get(RECYCLE_JITTER, 0),
                              settings.get("timeout_keep_alive", UVICORN_KEEPALIVE))


def app_from_environment() -> FastAPI:
    options = ServerOptions.from_environ()
    # the exit status makes uvicorn's supervisor stop instead of restarting a worker that cannot load forever
    return build_or_exit(lambda: build_app(options), options.code_dir)
