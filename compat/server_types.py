"""DRUM_SERVER_TYPE: which web stack serves the model. A runtime parameter
(`MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE`) wins over the plain environment variable."""
from __future__ import annotations

from typing import Mapping

from shared.runtime_parameters import RuntimeParameters

SERVER_TYPE_PARAM = "DRUM_SERVER_TYPE"
DEFAULT_SERVER_TYPE = "gunicorn"

# server type -> (stack reported as drumServer, what runs it)
SERVER_TYPES: dict[str, tuple[str, str]] = {
    "gunicorn": ("flask", "Flask app on gunicorn (gevent workers); the default"),
    "flask": ("flask", "Flask's own werkzeug server, for debugging"),
    "werkzeug": ("flask", "same as flask"),
    "fastapi": ("fastapi", "FastAPI app on uvicorn"),
    "uvicorn": ("fastapi", "same as fastapi"),
}


class UnknownServerType(ValueError):
    pass


def resolve_server_type(environ: Mapping[str, str]) -> str:
    if RuntimeParameters.has(SERVER_TYPE_PARAM, environ):
        raw = RuntimeParameters.get(SERVER_TYPE_PARAM, environ)
        source = f"runtime parameter MLOPS_RUNTIME_PARAM_{SERVER_TYPE_PARAM}"
    else:
        raw = environ.get(SERVER_TYPE_PARAM) or DEFAULT_SERVER_TYPE
        source = SERVER_TYPE_PARAM
    value = str(raw).strip().lower()
    if value not in SERVER_TYPES:
        raise UnknownServerType(
            f"{source}={raw!r} is not a server type; valid values: {', '.join(SERVER_TYPES)}"
        )
    return value


def stack_of(server_type: str) -> str:
    return SERVER_TYPES[server_type][0]
