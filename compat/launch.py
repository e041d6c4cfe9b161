"""Start the chosen server. The launcher binds the socket and makes the instance's own directory first, then
gunicorn and uvicorn replace this process (exec), so the `drum-compat` pid is the server's master."""
from __future__ import annotations

import os
import signal
import sys
from dataclasses import replace

from drum_compat.runtime.instance import create_instance, remove_instance
from drum_compat.runtime.listener import bind_listener
from drum_compat.runtime.options import ServerOptions
from drum_compat.runtime.settings import SETTINGS_BY_KEY
from drum_compat.runtime.startup import build_or_exit, report_startup_failure
from drum_compat.shared.server_types import SERVER_TYPES, Server


def python_module_argv(module: str) -> list[str]:
    """Run `module.main()` in a new interpreter. Not `python -m`, which puts the working directory first on
    sys.path where a folder of the user's could shadow modules; `-c` puts "" there (unless PYTHONSAFEPATH is
    set), removed before any import."""
    return [sys.executable, "-c", f"import sys; sys.path[:1] = [p for p in sys.path[:1] if p]; from {module} import main; main()"]


def exec_server(module: str, options: ServerOptions, environ: dict[str, str]) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    argv = python_module_argv(module)
    os.execve(argv[0], argv, {**environ, **options.to_environ()})


def run_werkzeug(options: ServerOptions) -> None:
    """Flask's own server, as DRUM's werkzeug mode: model loaded first, one request at a time
    (or N forked processes with --max-workers N)."""
    from werkzeug.serving import WSGIRequestHandler, make_server

    from drum_compat.flask_backend.wsgi import build_app

    class UnversionedHandler(WSGIRequestHandler):
        def version_string(self) -> str:
            return "Werkzeug"  # like gunicorn and uvicorn: no versions for scanners to match

    app = build_or_exit(lambda: build_app(options), options.code_dir)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # so the instance directory is removed on the way out
    server = make_server(options.host, options.port, app, threaded=False, processes=options.workers,
                         request_handler=UnversionedHandler, fd=options.listen_fd)
    server.log_startup()
    server.serve_forever()


def launch(options: ServerOptions) -> None:
    """Raises AddressUnavailable or InstanceError before anything is left behind."""
    listener = bind_listener(options.host, options.port, (options.server_settings or {}).get("backlog", SETTINGS_BY_KEY["backlog"].default))
    options = replace(options, listen_fd=listener.fileno())
    environ = {**os.environ, **create_instance(os.environ)}
    module = {Server.GUNICORN: "drum_compat.servers.gunicorn_master", Server.UVICORN: "drum_compat.servers.uvicorn_master"}.get(
        SERVER_TYPES[options.server_type].server)
    if module:
        exec_server(module, options, environ)
    os.environ.update(environ)
    try:
        run_werkzeug(options)
    finally:
        report_startup_failure(remove_instance())
