"""Worker recycling for uvicorn, done the way gunicorn does it: after DRUM_UVICORN_MAX_REQUESTS plus
0..jitter requests the worker stops accepting at once (its socket stays open in the supervisor, so new
connections wait for the replacement), answers what it has with `Connection: close`, then exits.
uvicorn's own limit instead closes connections that a client may be reusing, which resets requests."""
from __future__ import annotations

import logging
import random
import signal

from uvicorn.server import Server

logger = logging.getLogger("drum_compat")
# the uvicorn settings compat.settings derives for recycling; applied here, not handed to uvicorn
RECYCLE_AFTER, RECYCLE_JITTER = "limit_max_requests", "limit_max_requests_jitter"


def running_uvicorn_server() -> Server | None:
    """The uvicorn Server of this worker: it installs its bound `handle_exit` as the SIGTERM handler."""
    handler = signal.getsignal(signal.SIGTERM)
    server = getattr(handler, "__self__", None)
    return server if isinstance(server, Server) else None


class RecycleAfterRequests:
    def __init__(self, app, max_requests: int, jitter: int = 0) -> None:
        self.app = app
        self.budget = max_requests + random.randint(0, jitter)
        self.requests = 0  # this worker's HTTP requests, counted as they arrive

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.requests += 1
        if self.requests < self.budget:
            await self.app(scope, receive, send)
            return
        if self.requests == self.budget:
            self._retire()

        async def send_closing(message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, send_closing)

    def _retire(self) -> None:
        server = running_uvicorn_server()
        if server is None:
            logger.warning("Worker reached %d requests but is not run by uvicorn's Server: not recycled", self.budget)
            return
        logger.info("Worker recycled after %d requests", self.budget)
        for listener in server.servers:
            listener.close()  # stop accepting now; in-flight requests finish before the exit
        server.should_exit = True
