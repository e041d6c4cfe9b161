"""gunicorn settings for the Flask stack, read by `gunicorn -c python:flask_backend.gunicorn_conf`.
The full DRUM_GUNICORN_* table comes with the settings issue; these are DRUM's defaults."""
from compat.options import ServerOptions

_options = ServerOptions.from_environ()

bind = _options.address if ":" in _options.address else f"{_options.address}:{_options.port}"
workers = _options.workers
worker_class = "gevent"
worker_connections = 1000
timeout = 120
graceful_timeout = 299
backlog = 2048
loglevel = "info"
accesslog = "-"
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'


def post_request(worker, req, environ, resp):
    # A gevent worker serves a pipelining keep-alive client in a streak while other connections
    # starve (p99 of seconds at 32 connections); yielding once per request keeps it fair.
    if worker_class == "gevent":
        import gevent

        gevent.sleep(0)
