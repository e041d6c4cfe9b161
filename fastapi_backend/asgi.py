"""The FastAPI stack's entry points: `build_app` for a ServerOptions, and the uvicorn factory
`fastapi_backend.asgi:app_from_environment` (run with --factory), called in each worker."""
from __future__ import annotations

from fastapi import FastAPI

from compat.bootstrap import build_core, flask_extension_refusal
from compat.options import ServerOptions
from fastapi_backend.app import create_fastapi_app


class FlaskExtensionRefused(RuntimeError):
    pass


def build_app(options: ServerOptions) -> FastAPI:
    refusal = flask_extension_refusal(options.code_dir)
    if refusal:
        raise FlaskExtensionRefused(refusal)
    return create_fastapi_app(build_core(options, "fastapi"))


def app_from_environment() -> FastAPI:
    return build_app(ServerOptions.from_environ())
