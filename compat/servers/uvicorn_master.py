"""The uvicorn master for the FastAPI stack (`drum_compat.servers.uvicorn_master:main`): uvicorn's supervisor
with the settings the launcher resolved, on the socket it bound. Workers build the app after they start."""
from __future__ import annotations

import logging
import pickle
import socket
import sys
import time

from uvicorn.config import STARTUP_FAILURE
from uvicorn.server import Server
from uvicorn.supervisors import Multiprocess, multiprocess

from drum_compat.runtime.instance import remove_instance
from drum_compat.runtime.options import ServerOptions
from drum_compat.runtime.startup import report_startup_failure
from drum_compat.runtime.tls import uvicorn_ssl_context
from drum_compat.runtime.settings import setting_value, uvicorn_settings_applied_by_us
from drum_compat.servers.uvicorn_protocol import DrumConfig
from drum_compat.shared.guards.protocol import ProtocolLimits

PROTOCOL_LIMITS = tuple(ProtocolLimits.__dataclass_fields__)
EXIT_MARGIN = 10  # seconds past the graceful timeout a worker gets to exit before its SIGKILL
logger = logging.getLogger("uvicorn.error")


class BacklogServer(Server):
    """uvicorn's Server; with DRUM_QUEUE_IN_BACKLOG it keeps its listening sockets for the worker's own accept loop
    (servers.uvicorn_balancing) instead of serving them: uvloop would accept every connection waiting at once."""

    listening: list[socket.socket] = []

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        if self.config.queue_in_backlog and sockets:
            self.listening, sockets = sockets, []
        await super().startup(sockets)


class WatchedProcess(multiprocess.Process):
    """uvicorn's worker process, with a health check that never blocks the supervisor's loop (uvicorn's waits for each
    answer, so one frozen worker delayed signals and the others' checks): one ping outstanding at a time, and the worker
    counts as dead only when it leaves it unanswered longer than the timeout (DRUM_UVICORN_WORKER_HEALTHCHECK_TIMEOUT).
    A worker still importing or a hook holding the GIL answers late, not never."""

    ping_sent: float | None = None

    def is_alive(self, timeout: float = 5) -> bool:
        if not self.process.is_alive():
            return False
        try:
            if self.ping_sent is None:
                self.parent_conn.send(b"ping")
                self.ping_sent = time.monotonic()
            elif self.parent_conn.poll(0):
                self.parent_conn.recv()
                self.ping_sent = None
        except (OSError, EOFError, pickle.UnpicklingError):
            return False
        return self.ping_sent is None or time.monotonic() - self.ping_sent < timeout

    @property
    def server(self) -> Server:
        if self._server is None:
            self._server = BacklogServer(config=self.config)
        return self._server


# uvicorn's supervisor makes its workers by this module-level name: each one it starts is watched this way
multiprocess.Process = WatchedProcess


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

    def join_all(self) -> None:
        """A worker ends within the graceful timeout, hung model calls or not (runtime.supervisor abandons them); one
        that does not is killed past it, so the server always stops."""
        ends = time.monotonic() + (self.config.timeout_graceful_shutdown or 0) + EXIT_MARGIN
        for process in self.processes:
            process.process.join(max(ends - time.monotonic(), 0))
            if process.process.exitcode is None:
                logger.error("Child process [%s] did not exit within the graceful timeout: killed", process.pid)
                process.kill()
                process.process.join()


def main() -> None:
    options = ServerOptions.from_environ()
    # what uvicorn has no setting for is applied by drum-compat: recycling by each worker
    # (servers.uvicorn_worker), protocol limits by the protocol (servers.uvicorn_protocol)
    ours = uvicorn_settings_applied_by_us()
    given = options.server_settings or {}
    settings = {name: value for name, value in given.items() if name not in ours}
    config = DrumConfig(
        "drum_compat.servers.uvicorn_worker:app_from_environment",
        protocol_limits=ProtocolLimits(**{name: given[name] for name in PROTOCOL_LIMITS if name in given}),
        queue_in_backlog=setting_value(options.core_settings or {}, "queue_in_backlog"),
        factory=True,
        host=options.host,
        port=options.port,
        access_log=False,  # drum-compat writes one access line per request, the same on both stacks
        # uvicorn would believe X-Forwarded-For from any loopback peer; the client address is decided
        # by drum-compat alone (DRUM_TRUSTED_PROXIES), as under gunicorn
        proxy_headers=False,
        ssl_context_factory=uvicorn_ssl_context if settings.get("ssl_certfile") else None,
        **settings,
    )
    # Always supervised, one worker included: a worker that reaches DRUM_UVICORN_MAX_REQUESTS (or
    # dies) is replaced while the listening socket stays open, so a recycle never ends the server.
    listener = socket.socket(fileno=options.listen_fd)  # runtime.listener's
    supervisor = DrumSupervisor(config, sockets=[listener])
    # uvicorn says it where it binds the socket itself, gunicorn always ("Listening at: ..."): here too
    host, port = listener.getsockname()[:2]
    logger.info("Uvicorn running on %s://%s:%d (Press CTRL+C to quit)", "https" if config.is_ssl else "http",
                f"[{host}]" if ":" in host else host, port)
    try:
        supervisor.run()
    finally:
        report_startup_failure(remove_instance())
    if any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes):
        sys.exit(STARTUP_FAILURE)
