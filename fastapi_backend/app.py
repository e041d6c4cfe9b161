"""Build the FastAPI app around a neutral DrumApp. FastAPI's own routing, slash redirects, JSON
404/405 and docs routes are kept out of the way: the core answers every path."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from fastapi import FastAPI

from fastapi_backend.endpoint import NeutralEndpoint
from shared.app import DrumApp

MODEL_THREADS = 1  # DRUM never ran a model concurrently inside one process


def create_fastapi_app(core: DrumApp) -> FastAPI:
    executor = ThreadPoolExecutor(max_workers=MODEL_THREADS, thread_name_prefix="drum-model")
    core.on_close(lambda: executor.shutdown(wait=True))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        core.close()  # uvicorn has stopped accepting and waited for in-flight requests

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.mount("", NeutralEndpoint(core, executor))
    return app
