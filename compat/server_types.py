"""The vocabulary of the switch: a server type (DRUM_SERVER_TYPE) names a stack (the app: Flask or FastAPI,
what /info/ reports) and the server that runs it. The setting itself is read from compat.settings."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Name(str, Enum):
    """A name that is its own value wherever it is shown (f-strings, JSON, dict keys)."""

    def __str__(self) -> str:
        return self.value


class Stack(Name):
    """The app; also the name /info/ reports and the key of per-stack settings."""

    FLASK = "flask"
    FASTAPI = "fastapi"


class Server(Name):
    GUNICORN = "gunicorn"
    WERKZEUG = "werkzeug"
    UVICORN = "uvicorn"


@dataclass(frozen=True)
class ServerType:
    stack: Stack
    server: Server
    description: str


SERVER_TYPES: dict[str, ServerType] = {
    "gunicorn": ServerType(Stack.FLASK, Server.GUNICORN, "Flask app on gunicorn (gevent workers); the default"),
    "flask": ServerType(Stack.FLASK, Server.WERKZEUG, "Flask's own werkzeug server, for debugging"),
    "werkzeug": ServerType(Stack.FLASK, Server.WERKZEUG, "same as flask"),
    "fastapi": ServerType(Stack.FASTAPI, Server.UVICORN, "FastAPI app on uvicorn"),
    "uvicorn": ServerType(Stack.FASTAPI, Server.UVICORN, "same as fastapi"),
}


def stack_of(server_type: str) -> Stack:
    return SERVER_TYPES[server_type].stack
