"""`custom_flask.py` from the code dir, applied exactly as DRUM applies it: imported as `custom_flask` with its folder
on sys.path, then `init_app(app)` after our hooks are registered; its routes are then known to the core's guards."""
from __future__ import annotations

import logging
import sys

from flask import Flask

from drum_compat.runtime.extensions import FLASK_EXTENSION_FILE, ExtensionError, apply_extension
from drum_compat.flask_backend.app import CORE_EXTENSION, create_flask_app
from drum_compat.shared.model.python_model import find_code_file
from drum_compat.shared.routes import extension_route

logger = logging.getLogger("drum_compat")
# they need the server's raw socket (gunicorn's or werkzeug's), which a2wsgi does not have
WEBSOCKET_LIBRARIES = ("flask_sock", "flask_socketio", "simple_websocket", "geventwebsocket")


def load_flask_extensions(app: Flask, code_dir: str, bridged: bool = False) -> bool:
    """Returns whether an extension was applied. `bridged`: the app is served through a2wsgi (the FastAPI stack),
    so what needs a WSGI server's socket is refused by name."""
    path = find_code_file(code_dir, FLASK_EXTENSION_FILE)
    if path is None:
        logger.info("No %s found in %s", FLASK_EXTENSION_FILE, code_dir)
        return False
    before = set(sys.modules)
    apply_extension(path, app, "Flask")
    if bridged:
        refuse_unbridgeable(app, path, set(sys.modules) - before)
    rules = [rule for rule in app.url_map.iter_rules() if not rule.endpoint.startswith("model_api.")]
    core = app.extensions[CORE_EXTENSION]
    core.add_extension_routes([extension_route(rule.rule, rule.methods - {"HEAD", "OPTIONS"}) for rule in rules])
    return True


def refuse_unbridgeable(app: Flask, path, imported: set[str]) -> None:
    sockets = [rule.rule for rule in app.url_map.iter_rules() if rule.websocket]
    libraries = sorted(name for name in imported if name.split(".")[0] in WEBSOCKET_LIBRARIES and "." not in name)
    if sockets or libraries:
        what = ", ".join([*(f"websocket route {rule}" for rule in sockets), *(f"module {name}" for name in libraries)])
        raise ExtensionError(
            f"{path} uses what the FastAPI stack cannot serve through its WSGI bridge ({what}: websockets need the WSGI "
            "server's own socket). Refusing to start rather than serve without it; use DRUM_SERVER_TYPE=gunicorn.")


def bridged_flask_app(core, code_dir: str) -> Flask:
    """For the FastAPI stack, when the code dir has a custom_flask.py: the Flask app it expects (DRUM's blueprint and
    endpoint names, its hooks), with the extension applied, as a WSGI app for fastapi_backend.wsgi_bridge."""
    app = create_flask_app(core, bridged=True)
    load_flask_extensions(app, code_dir, bridged=True)
    return app
