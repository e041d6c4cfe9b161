"""Start the chosen server. gunicorn and uvicorn replace this process (exec), so the `drum-compat`
pid is the server's master and gets the signals; each worker loads the model after fork."""
from __future__ import annotations

import os
import sys

from compat.metrics_dir import prepare_metrics_dir
from compat.options import ServerOptions
from compat.server_types import SERVER_TYPES


def _worker_environ(options: ServerOptions) -> dict[str, str]:
    return {**os.environ, **options.to_environ(), **prepare_metrics_dir(os.environ)}


def gunicorn_argv() -> list[str]:
    return [sys.executable, "-m", "gunicorn", "-c", "python:flask_backend.gunicorn_conf", "flask_backend.wsgi:app_from_environment()"]


def uvicorn_argv() -> list[str]:
    # uvicorn runs in-process from fastapi_backend.serve, so no setting (a TLS key password
    # included) ever appears on a command line
    return [sys.executable, "-m", "fastapi_backend.serve"]


def exec_server(argv: list[str], options: ServerOptions) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(argv[0], argv, _worker_environ(options))


def run_werkzeug(options: ServerOptions) -> None:
    """Flask's own server, as DRUM's werkzeug mode: model loaded first, one request at a time
    (or N forked processes with --max-workers N)."""
    from werkzeug.serving import WSGIRequestHandler

    from flask_backend.wsgi import build_app

    class UnversionedHandler(WSGIRequestHandler):
        def version_string(self) -> str:
            return "Werkzeug"  # like gunicorn and uvicorn: no versions for scanners to match

    app = build_app(options)
    app.run(host=options.host, port=options.port, threaded=False, processes=options.workers, request_handler=UnversionedHandler)


def launch(options: ServerOptions) -> None:
    server = SERVER_TYPES[options.server_type].server
    if server == "gunicorn":
        exec_server(gunicorn_argv(), options)
    elif server == "uvicorn":
        exec_server(uvicorn_argv(), options)
    else:
        run_werkzeug(options)
