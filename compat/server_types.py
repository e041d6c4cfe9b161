"""DRUM_SERVER_TYPE: which web stack serves the model. A runtime parameter
(`MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE`) wins over the plain environment variable."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from shared.runtime_parameters import RuntimeParameters

SERVER_TYPE_PARAM = "DRUM_SERVER_TYPE"
DEFAULT_SERVER_TYPE = "gunicorn"

@dataclass(frozen=True)
class ServerType:
    stack: str  # the app, and what /info/ reports as drumServer
    server: str  # what runs it: gunicorn, werkzeug or uvicorn
    description: str


SERVER_TYPES: dict[str, ServerType] = {
    "gunicorn": ServerType("flask", "gunicorn", "Flask app on gunicorn (gevent workers); the default"),
    "flask": ServerType("flask", "werkzeug", "Flask's own werkzeug server, for debugging"),
    "werkzeug": ServerType("flask", "werkzeug", "same as flask"),
    "fastapi": ServerType("fastapi", "uvicorn", "FastAPI app on uvicorn"),
    "uvicorn": ServerType("fastapi", "uvicorn", "same as fastapi"),
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
    return SERVER_TYPES[server_type].stack
