"""`python -m fastapi_backend.serve`: uvicorn's supervisor with the settings the launcher resolved
(compat.settings). Workers build the app after they start, so this master never imports model code."""
from __future__ import annotations

import socket
import sys

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from drum_compat.compat.instance import remove_instance
from drum_compat.compat.options import ServerOptions
from drum_compat.compat.startup import report_startup_failure
from drum_compat.compat.tls import uvicorn_ssl_context
from drum_compat.fastapi_backend.recycling import RECYCLE_AFTER, RECYCLE_JITTER


class DrumSupervisor(Multiprocess):
    """uvicorn's supervisor; on SIGTERM/SIGINT it also closes its own copy of the listening socket,
    so new connections are refused while workers drain instead of queueing until the exit resets them."""

    def handle_term(self) -> None:
        self._stop_accepting()
        super().handle_term()

    def handle_int(self) -> None:
        self._stop_accepting()
        super().handle_int()

    def _stop_accepting(self) -> None:
        for listener in self.sockets:
            listener.close()


def main() -> None:
    options = ServerOptions.from_environ()
    # recycling is applied by each worker's app (fastapi_backend.recycling), not by uvicorn's limit
    settings = {name: value for name, value in (options.server_settings or {}).items() if name not in (RECYCLE_AFTER, RECYCLE_JITTER)}
    config = uvicorn.Config(
        "drum_compat.fastapi_backend.asgi:app_from_environment",
        factory=True,
        host=options.host,
        port=options.port,
        http="httptools",
        access_log=False,  # drum-compat writes one access line per request, the same on both stacks
        # uvicorn would believe X-Forwarded-For from any loopback peer; the client address is decided
        # by drum-compat alone (DRUM_TRUSTED_PROXIES), as under gunicorn
        proxy_headers=False,
        ssl_context_factory=uvicorn_ssl_context if settings.get("ssl_certfile") else None,
        **settings,
    )
    # Always supervised, one worker included: a worker that reaches DRUM_UVICORN_MAX_REQUESTS (or
    # dies) is replaced while the listening socket stays open, so a recycle never ends the server.
    supervisor = DrumSupervisor(config, sockets=[socket.socket(fileno=options.listen_fd)])  # compat.listener's
    try:
        supervisor.run()
    finally:
        report_startup_failure(remove_instance())
    if any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes):
        sys.exit(STARTUP_FAILURE)


if __name__ == "__main__":
    main()
