"""Recycling a uvicorn worker (shared.guards.retirement), done the way gunicorn does it: the worker stops accepting at
once (its socket stays open in the supervisor, so new connections wait for the replacement), answers what it has with
`Connection: close`, then exits. uvicorn's own request limit instead closes connections that a client may be reusing,
which resets requests."""
from __future__ import annotations

import asyncio
import logging
import signal

from uvicorn.server import Server

logger = logging.getLogger("drum_compat")
# the uvicorn settings runtime.settings derives for recycling; applied by the core's Retirement, not handed to uvicorn
RECYCLE_AFTER, RECYCLE_JITTER = "limit_max_requests", "limit_max_requests_jitter"
UVICORN_KEEPALIVE = 5  # seconds, uvicorn's default when DRUM_UVICORN_KEEP_ALIVE is not set


def running_uvicorn_server() -> Server | None:
    """The uvicorn Server of this worker: it installs its bound `handle_exit` as the SIGTERM handler."""
    handler = signal.getsignal(signal.SIGTERM)
    server = getattr(handler, "__self__", None)
    return server if isinstance(server, Server) else None


def drain_then_exit(keepalive: float, loop: asyncio.AbstractEventLoop):
    """The retirement's exit, safe from any thread: on the loop, stop accepting, then exit once the worker's connections
    are closed (answers meanwhile say Connection: close; idle ones reach their keep-alive timeout), so no client sends a
    request on a connection the exit would drop (uvicorn closes the connections idle at exit at once)."""
    def drain(why: str) -> None:
        server = running_uvicorn_server()
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
