"""The vocabulary of the switch: a server type (DRUM_SERVER_TYPE) names a stack (the app: Flask or FastAPI,
what /info/ reports) and the server that runs it; one type used by settings, TLS, entry points and metrics."""
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
    name: str  # as DRUM_SERVER_TYPE spells it; also the metrics' server_type label
    stack: Stack
    server: Server
    description: str


SERVER_TYPES: dict[str, ServerType] = {kind.name: kind for kind in (
    ServerType("gunicorn", Stack.FLASK, Server.GUNICORN, "Flask app on gunicorn (gevent workers); the default"),
    ServerType("flask", Stack.FLASK, Server.WERKZEUG, "Flask's own werkzeug server, for debugging"),
    ServerType("werkzeug", Stack.FLASK, Server.WERKZEUG, "same as flask"),
    ServerType("fastapi", Stack.FASTAPI, Server.UVICORN, "FastAPI app on uvicorn"),
    ServerType("uvicorn", Stack.FASTAPI, Server.UVICORN, "same as fastapi"),
)}
# what a stack runs on when no server type is named (an app built in-process, in tests or by a user)
DEFAULT_SERVER_TYPE = {Stack.FLASK: SERVER_TYPES["gunicorn"], Stack.FASTAPI: SERVER_TYPES["fastapi"]}
