"""gunicorn settings for the Flask stack, read by `gunicorn -c python:flask_backend.gunicorn_conf`:
bind and access log here, everything else from compat.settings as the launcher resolved it."""
import logging
import signal

# Imported here, in the master before fork and before gevent patches threading, so its locks stay
# native: model threads update metrics too, and a gevent lock cannot be shared with a native thread.
from prometheus_client.multiprocess import mark_process_dead

from compat.metrics_dir import remove_metrics_dir
from compat.options import ServerOptions
from compat.tls import gunicorn_ssl_context

_options = ServerOptions.from_environ()
LAST_RESORT_MARGIN = 30  # seconds

bind = f"{_options.host}:{_options.port}"
accesslog = None  # drum-compat writes one access line per request, the same on both stacks
globals().update(_options.server_settings or {})
if globals().get("timeout"):
    # DRUM_CLIENT_REQUEST_TIMEOUT answers 504 itself; gunicorn's kill is the last resort for a worker
    # whose heartbeat stopped, later than the 504 (gevent beats only once a second)
    timeout = globals()["timeout"] + LAST_RESORT_MARGIN
if globals().get("worker_class") == "sync":
    # gunicorn's sync worker cannot accept while a request runs, so probes would wait behind the model
    # and overload would queue unseen in the kernel. gthread is sync's no-monkey-patching twin that
    # keeps accepting: each connection gets a thread; drum-compat's admission bounds the model work.
    worker_class = "gthread"
    threads = globals().get("worker_connections", 1000)
ssl_context = gunicorn_ssl_context  # used only when certfile is set


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


def post_worker_init(worker):
    if worker.cfg.worker_class_str == "gevent":
        native_logging_locks()
    if worker.cfg.worker_class_str == "gthread":
        # A gthread worker checks for SIGTERM once a second and keeps its copy of the listening socket
        # until then, so connections arriving meanwhile would be accepted late: refuse them now.
        def stop_accepting_then_exit(sig, frame):
            for listener in worker.sockets:
                listener.close()
            worker.handle_exit(sig, frame)

        signal.signal(signal.SIGTERM, stop_accepting_then_exit)
        signal.siginterrupt(signal.SIGTERM, False)


def child_exit(server, worker):
    mark_process_dead(worker.pid)  # its live gauges (in flight, queue) leave the sums


def on_exit(server):
    remove_metrics_dir()


def worker_exit(server, worker):
    # gunicorn has stopped accepting and waited for in-flight requests (graceful_timeout)
    from flask_backend.app import CORE_EXTENSION

    core = getattr(worker.wsgi, "extensions", {}).get(CORE_EXTENSION)
    if core is not None:
        core.close()
