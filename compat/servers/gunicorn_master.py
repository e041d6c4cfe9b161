"""The gunicorn master for the Flask stack (`drum_compat.servers.gunicorn_master:main`): gunicorn's own
application class, configured from the settings the launcher resolved, serving the socket it bound."""
from __future__ import annotations

import logging
import signal
from typing import Any

from gunicorn.app.base import BaseApplication

# Imported here, in the master before fork and before gevent patches threading, so its locks stay
# native: model threads update metrics too, and a gevent lock cannot be shared with a native thread.
from prometheus_client.multiprocess import mark_process_dead

from drum_compat.runtime.instance import remove_instance
from drum_compat.runtime.options import ServerOptions
from drum_compat.runtime.settings import SETTINGS_BY_KEY, setting_value
from drum_compat.runtime.startup import report_startup_failure
from drum_compat.runtime.supervisor import die_with_parent, exit_past_hung_calls, exit_past_hung_calls_after
from drum_compat.runtime.tls import gunicorn_ssl_context
from drum_compat.shared.guards.admission import AdmissionLimits

LAST_RESORT_MARGIN = 30  # seconds
ABANDON_BEFORE_KILL = 0.5  # seconds before the master's SIGKILL at the graceful timeout
CONTROL_SOCKET_OFF = "control_socket_disable"

logger = logging.getLogger("drum_compat")


def post_request(worker, req, environ, resp):
    # A gevent worker serves a pipelining keep-alive client in a streak while other connections
    # starve (p99 of seconds at 32 connections); yielding once per request keeps it fair.
    if worker.cfg.worker_class_str == "gevent":
        import gevent

        gevent.sleep(0)


def native_logging_locks():
    """gevent swaps logging's locks for gevent locks, which hang when a native model thread logs while
    the hub does (found by a contention test); give logging's lock and every handler a native RLock."""
    from gevent.monkey import get_original

    native_rlock = get_original("_thread", "RLock")
    logging._lock = native_rlock()
    for reference in logging._handlerList:
        handler = reference()
        if handler is not None:
            handler.lock = native_rlock()


def post_fork(server, worker):
    die_with_parent(server.pid)  # gunicorn's own check of its parent runs only while the worker's loop does


def stop_gthread_accepting(worker) -> None:
    """From the SIGTERM handler: a gthread worker would accept until its loop next looks at `alive`, and keep its copy of
    the listening socket open, so new connections would queue unanswered. Its listeners leave its poller now and are
    closed by its loop, never inside an accept; an event for one already selected finds it closed and is skipped (a
    listener closed while still registered stayed readable through the master's copy, and the accept on it killed the
    worker with every request it ran)."""
    worker.set_accept_enabled(False)

    def close_listeners() -> None:
        for listener in worker.sockets:
            listener.close()

    worker.method_queue.defer(close_listeners)


def skip_closed_listeners(worker) -> None:
    accept = worker.accept

    def accept_if_open(listener) -> None:
        if listener.sock is not None:
            accept(listener)

    worker.accept = accept_if_open  # gthread registers `self.accept` each time it starts accepting


def post_worker_init(worker):
    if worker.cfg.worker_class_str == "gevent":
        native_logging_locks()
    from gevent.monkey import get_original

    from drum_compat.flask_backend.app import CORE_EXTENSION
    from drum_compat.servers.gunicorn_balancing import balance_gunicorn_worker
    from drum_compat.servers.gunicorn_worker import BALANCE_EXTENSION

    gthread = worker.cfg.worker_class_str == "gthread"
    core = worker.wsgi.extensions.get(CORE_EXTENSION)
    balance = worker.wsgi.extensions.get(BALANCE_EXTENSION)
    if gthread:
        skip_closed_listeners(worker)
    if balance is not None:
        balance_gunicorn_worker(worker, balance)

    def exit_gracefully(sig, frame):
        if balance is not None:
            balance.leave()
        if core is not None:  # the master SIGKILLs a worker still running at the graceful timeout: say why first
            exit_past_hung_calls_after(core.gate, max(worker.cfg.graceful_timeout - ABANDON_BEFORE_KILL, 0),
                                       get_original("_thread", "start_new_thread"), get_original("time", "sleep"))
        worker.handle_exit(sig, frame)
        if gthread:
            stop_gthread_accepting(worker)

    signal.signal(signal.SIGTERM, exit_gracefully)
    signal.siginterrupt(signal.SIGTERM, False)


def child_exit(server, worker):
    mark_process_dead(worker.pid)  # its live gauges (in flight, queue) leave the sums


def on_exit(server):
    report_startup_failure(remove_instance())


def worker_exit(server, worker):
    # gunicorn has stopped accepting and waited for in-flight requests (graceful_timeout); a worker whose
    # model did not load has no app
    from drum_compat.flask_backend.app import CORE_EXTENSION

    core = getattr(getattr(worker, "wsgi", None), "extensions", {}).get(CORE_EXTENSION)
    if core is not None:
        core.close()
        exit_past_hung_calls(core.gate)


def gunicorn_settings(options: ServerOptions) -> dict[str, Any]:
    """Every gunicorn setting drum-compat gives, by gunicorn's own names."""
    settings: dict[str, Any] = dict(options.server_settings or {})
    if settings.get("timeout"):
        # DRUM_CLIENT_REQUEST_TIMEOUT answers 504 itself; gunicorn's kill is the last resort for a worker
        # whose heartbeat stopped, later than the 504 (gevent beats only once a second)
        settings["timeout"] += LAST_RESORT_MARGIN
    core = options.core_settings or {}
    threads, depth, in_backlog = (setting_value(core, key)
                                  for key in ("executor_workers", "executor_queue_depth", "queue_in_backlog"))
    if settings.get("worker_class") == "sync":
        # gunicorn's sync worker cannot accept while a request runs, so probes would wait behind the model
        # and overload would queue unseen in the kernel. gthread is sync's no-monkey-patching twin that
        # keeps accepting: each connection gets a thread; drum-compat's admission bounds the model work.
        settings["worker_class"] = "gthread"
        # the rest of worker_connections stays open as idle keep-alive connections, which hold no thread
        settings["threads"] = threads if in_backlog else AdmissionLimits(threads, depth).request_threads
    if in_backlog:  # shared.guards.balance.has_room_for_connection, applied by gunicorn itself
        default = SETTINGS_BY_KEY["worker_connections"].default
        if settings.get("worker_connections", default) != default:
            logger.warning("DRUM_WORKER_CONNECTIONS=%s is replaced by %d (DRUM_EXECUTOR_WORKERS): DRUM_QUEUE_IN_BACKLOG "
                           "holds one connection per model thread", settings["worker_connections"], threads)
        settings["worker_connections"] = threads
    return {
        **settings,
        "bind": [f"fd://{options.listen_fd}"],  # the launcher's socket (runtime.listener)
        "accesslog": None,  # drum-compat writes one access line per request, the same on both stacks
        CONTROL_SOCKET_OFF: True,  # gunicorn's default is one socket per user in $HOME, shared by every instance
        "ssl_context": gunicorn_ssl_context,  # used only when certfile is set
        "post_request": post_request,
        "post_fork": post_fork,
        "post_worker_init": post_worker_init,
        "child_exit": child_exit,
        "worker_exit": worker_exit,
        "on_exit": on_exit,
    }


class DrumGunicorn(BaseApplication):
    """gunicorn's application base, not its command-line one: no config file, no working directory on
    sys.path (a folder there could shadow the model's modules), and the app built in each worker."""

    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        super().__init__(prog="drum-compat")

    def load_config(self) -> None:
        for name, value in gunicorn_settings(self.options).items():
            if name == CONTROL_SOCKET_OFF and name not in self.cfg.settings:
                continue  # a gunicorn from before the control socket has none to turn off
            self.cfg.set(name, value)
        # GUNICORN_CMD_ARGS wins, as it does for gunicorn's own command line (and so under DRUM); not for the
        # address and the config file, which drum-compat's launcher owns
        from_env = self.cfg.parser().parse_args(self.cfg.get_cmd_args_from_env())
        for name, value in vars(from_env).items():
            if value is not None and name not in ("args", "bind", "config"):
                self.cfg.set(name.lower(), value)

    def load(self):
        from drum_compat.servers.gunicorn_worker import app_from_options

        return app_from_options(self.options)


def main() -> None:
    DrumGunicorn(ServerOptions.from_environ()).run()
