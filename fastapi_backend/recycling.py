"""Worker recycling for uvicorn, done the way gunicorn does it: the worker stops accepting at once (its
socket stays open in the supervisor, so new connections wait for the replacement), answers what it has
with `Connection: close`, then exits. Triggers: DRUM_UVICORN_MAX_REQUESTS plus 0..jitter requests, or
the end of work that had held every model thread past its deadline. uvicorn's own request limit
instead closes connections that a client may be reusing, which resets requests."""
from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
from typing import Callable

from uvicorn.server import Server

logger = logging.getLogger("drum_compat")
# the uvicorn settings runtime.settings derives for recycling; applied here, not handed to uvicorn
RECYCLE_AFTER, RECYCLE_JITTER = "limit_max_requests", "limit_max_requests_jitter"


def running_uvicorn_server() -> Server | None:
    """The uvicorn Server of this worker: it installs its bound `handle_exit` as the SIGTERM handler."""
    handler = signal.getsignal(signal.SIGTERM)
    server = getattr(handler, "__self__", None)
    return server if isinstance(server, Server) else None


UVICORN_KEEPALIVE = 5  # seconds, uvicorn's default when DRUM_UVICORN_KEEP_ALIVE is not set


class Retirement:
    """This worker's retirement; call `begin` on the event loop. The exit waits until the worker's
    connections are closed (answers meanwhile say Connection: close; idle ones reach their keep-alive
    timeout), so no client sends a request on a connection the exit would drop: uvicorn closes the
    connections idle at exit at once."""

    def __init__(self, keepalive: float = UVICORN_KEEPALIVE, on_begin: Callable[[], None] = lambda: None) -> None:
        self.keepalive = keepalive
        self.on_begin = on_begin  # the worker leaves the load board: it takes no more connections
        self.begun = False

    def begin(self, why: str) -> None:
        if self.begun:
            return
        server = running_uvicorn_server()
        if server is None:
            logger.warning("Worker should be recycled (%s) but is not run by uvicorn's Server", why)
            return
        self.begun = True
        self.on_begin()
        logger.warning("Worker %d recycled: %s", os.getpid(), why)
        for listener in server.servers:
            listener.close()  # stop accepting now; in-flight requests finish before the exit
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self.keepalive + 1

        def exit_once_drained() -> None:
            # every answer now closes its connection; an idle one closes at its keep-alive timeout
            if not server.server_state.connections or loop.time() >= give_up_at:
                server.should_exit = True
            else:
                loop.call_later(0.05, exit_once_drained)

        exit_once_drained()


class RecyclingMiddleware:
    def __init__(self, app, retirement: Retirement, max_requests: int = 0, jitter: int = 0) -> None:
        self.app = app
        self.retirement = retirement
        self.budget = max_requests + random.randint(0, jitter) if max_requests else 0
        self.requests = 0  # this worker's HTTP requests, counted as they arrive

    def admit(self) -> bool:
        """Count an HTTP request as it arrives; True when its answer must close its connection (the worker retires)."""
        self.requests += 1
        if self.requests == self.budget:
            self.retirement.begin(f"after {self.budget} requests")
        return self.retirement.begun

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self.admit():
            await self.app(scope, receive, send)
            return

        async def send_closing(message) -> None:
            headers = message.get("headers", ())
            if message["type"] == "http.response.start" and not any(name.lower() == b"connection" for name, _ in headers):
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, send_closing)
