"""A uvicorn worker's app (`app_from_environment`, the factory uvicorn calls in each worker) with what the worker adds
around its lifespan: its watchdog, its place on the load board, and its retirement's exit (shared.guards.retirement), done
the way gunicorn does it: stop accepting at once (the socket stays open in the supervisor, so new connections wait for
the replacement), answer what it has with `Connection: close`, then exit. uvicorn's own request limit instead closes
connections that a client may be reusing, which resets requests."""
from __future__ import annotations

import asyncio
import logging
import signal
from contextlib import asynccontextmanager

from fastapi import FastAPI
from uvicorn.server import Server

from drum_compat.fastapi_backend.app import CORE_STATE, LeanDispatch
from drum_compat.fastapi_backend.asgi import build_app
from drum_compat.runtime.instance import instance_dir
from drum_compat.runtime.load_board import worker_balance
from drum_compat.runtime.options import ServerOptions
from drum_compat.runtime.startup import build_or_exit
from drum_compat.runtime.supervisor import Watchdog, exit_past_hung_calls
from drum_compat.servers.uvicorn_balancing import keep_balance

logger = logging.getLogger("drum_compat")
# the uvicorn settings runtime.settings derives for recycling; applied by the core's Retirement, not handed to uvicorn
RECYCLE_AFTER, RECYCLE_JITTER = "limit_max_requests", "limit_max_requests_jitter"
UVICORN_KEEPALIVE = 5  # seconds, uvicorn's default when DRUM_UVICORN_KEEP_ALIVE is not set


def app_from_environment() -> FastAPI | LeanDispatch:
    options = ServerOptions.from_environ()
    # the exit status makes uvicorn's supervisor stop instead of restarting a worker that cannot load forever
    app = build_or_exit(lambda: build_app(options), options.code_dir)
    supervise(app.app if isinstance(app, LeanDispatch) else app, options)
    return app


def supervise(app: FastAPI, options: ServerOptions) -> None:
    """Around the app's lifespan: the watchdog and the balancing loop start with it; at its end (uvicorn has stopped
    accepting and waited for in-flight requests, the app has closed its core) the worker leaves the board, and its exit
    never waits for a hung model call."""
    core = getattr(app.state, CORE_STATE)
    settings = options.server_settings or {}
    balance = worker_balance(core.gate, instance_dir(), options.workers)
    retirement = core.retirement
    retirement.after_requests(settings.get(RECYCLE_AFTER, 0), settings.get(RECYCLE_JITTER, 0))
    retirement.on_begin(lambda why: balance.leave())  # the worker takes no more connections
    app_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        server = running_uvicorn_server()
        retirement.on_begin(drain_then_exit(server, settings.get("timeout_keep_alive", UVICORN_KEEPALIVE)))
        Watchdog(core.gate, core.settings.supervision, core.metrics, retirement.begin).start()
        balancing = asyncio.create_task(keep_balance(server, balance, retirement))
        try:
            async with app_lifespan(app) as state:
                yield state
        finally:
            balancing.cancel()
            balance.leave()
            exit_past_hung_calls(core.gate)

    app.router.lifespan_context = lifespan


def running_uvicorn_server() -> Server | None:
    """The uvicorn Server of this worker: it installs its bound `handle_exit` as the SIGTERM handler."""
    handler = signal.getsignal(signal.SIGTERM)
    server = getattr(handler, "__self__", None)
    return server if isinstance(server, Server) else None


def drain_then_exit(server: Server | None, keepalive: float):
    """The retirement's exit, safe from any thread: on the loop, stop accepting, then exit once the worker's connections
    are closed (answers meanwhile say Connection: close; idle ones reach their keep-alive timeout), so no client sends a
    request on a connection the exit would drop (uvicorn closes the connections idle at exit at once)."""
    loop = asyncio.get_running_loop()

    def drain(why: str) -> None:
        if server is None:
            logger.warning("Worker should be recycled (%s) but is not run by uvicorn's Server", why)
            return
        for listener in server.servers:
            listener.close()
        give_up_at = loop.time() + keepalive + 1

        def exit_once_drained() -> None:
            if not server.server_state.connections or loop.time() >= give_up_at:
                server.should_exit = True
            else:
                loop.call_later(0.05, exit_once_drained)

        exit_once_drained()

    return lambda why: loop.call_soon_threadsafe(drain, why)
