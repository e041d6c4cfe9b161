"""The values of DRUM_SERVER_TYPE: which app each one serves and which server runs it. The setting
itself is read like every other one, from compat.settings."""
from __future__ import annotations

from dataclasses import dataclass


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


def stack_of(server_type: str) -> str:
    return SERVER_TYPES[server_type].stack
