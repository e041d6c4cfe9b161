"""Build the FastAPI app around a neutral DrumApp. FastAPI's own routing, slash redirects, JSON
404/405 and docs routes are kept out of the way: the core routes and answers every path."""
from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI

from drum_compat.runtime.rate_store import async_store
from drum_compat.fastapi_backend.at_once import AnswersAtOnce
from drum_compat.fastapi_backend.cycle import CoreEndpoint, CycleMiddleware
from drum_compat.fastapi_backend.extensions import STEPS_STATE
from drum_compat.fastapi_backend.steps import AsyncSteps
from drum_compat.fastapi_backend.wsgi_bridge import WsgiBridge
from drum_compat.shared.app import DrumApp

CORE_STATE = "drum_core"  # app.state attribute holding the DrumApp


def create_fastapi_app(core: DrumApp, wsgi_app=None) -> FastAPI:
    """`wsgi_app`: the Flask app of a custom_flask.py (flask_backend.extensions.bridged_flask_app), which then answers
    every request no FastAPI route took, DRUM's routes included, so that its hooks still run for them."""
    front_door = core.settings.front_door
    steps = AsyncSteps(async_store(front_door.rate_limit, front_door.redis_url), core.gate.limits.threads)
    core.on_close(lambda: steps.executor.shutdown(wait=False, cancel_futures=True))  # a hung call is abandoned

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await steps.close_upstream()
        core.close()  # uvicorn has stopped accepting and waited for in-flight requests

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    # not a route: the router's default, so every request, whatever its target (`*`, absolute-form), reaches the core
    if wsgi_app is None:
        app.router.default = CoreEndpoint(steps)
    else:
        bridge = WsgiBridge(wsgi_app, core.gate.limits.request_threads)
        core.on_close(lambda: bridge.executor.shutdown(wait=False, cancel_futures=True))
        app.router.default = bridge
    setattr(app.state, STEPS_STATE, steps)  # for extensions' in_model_thread
    setattr(app.state, CORE_STATE, core)  # for the server's worker (drum_compat.servers.uvicorn_worker)
    app.add_middleware(CycleMiddleware, core=core, steps=steps, router=app.router)
    return app


class LeanDispatch:
    """What uvicorn serves when no extension is loaded: each request goes straight through drum-compat's own
    middleware to the cycle, past the layers of a FastAPI app that do nothing for DRUM's routes (error and exception
    middleware, exit stack, router); the FastAPI app still runs the lifespan, and is what an extension would extend."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        (middleware,) = app.user_middleware  # CycleMiddleware, the only one when no extension is loaded
        self.chain = middleware.cls(app.router.default, *middleware.args, **middleware.kwargs)
        # for DrumHttpToolsProtocol: the requests it may answer itself, past this chain
        self.at_once = AnswersAtOnce(self.chain.core)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            await self.chain(scope, receive, send)
        else:
            await self.app(scope, receive, send)
