"""The FastAPI stack's entry points: `build_app` for a ServerOptions, and the uvicorn factory
`fastapi_backend.asgi:app_from_environment` (run with --factory), called in each worker."""
from __future__ import annotations

import logging
import sys

from fastapi import FastAPI
from uvicorn.config import STARTUP_FAILURE

from compat.bootstrap import build_core, flask_extension_refusal
from compat.options import ServerOptions
from fastapi_backend.app import create_fastapi_app
from fastapi_backend.recycling import RECYCLE_AFTER, RECYCLE_JITTER, UVICORN_KEEPALIVE

logger = logging.getLogger("drum_compat")


class FlaskExtensionRefused(RuntimeError):
    pass


def build_app(options: ServerOptions) -> FastAPI:
    refusal = flask_extension_refusal(options.code_dir)
    if refusal:
        raise FlaskExtensionRefused(refusal)
    settings = options.server_settings or {}
    return create_fastapi_app(build_core(options, "fastapi"), settings.get(RECYCLE_AFTER, 0), settings.get(RECYCLE_JITTER, 0),
                              settings.get("timeout_keep_alive", UVICORN_KEEPALIVE))


def app_from_environment() -> FastAPI:
    try:
        return build_app(ServerOptions.from_environ())
    except Exception as exc:
        # uvicorn's supervisor stops on this status instead of restarting a worker that cannot
        # load forever (gunicorn does the same with its own worker-boot status, also 3)
        logger.error("Worker could not start: %s", exc)
        sys.exit(STARTUP_FAILURE)
