"""The direction of the imports, checked on the source: the core imports no web framework, server, gevent,
redis or compat; a backend never imports the other; compat imports a backend only inside a function. And, running
them, no request reads the environment."""
from __future__ import annotations

import ast
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE_FORBIDDEN = ("flask", "fastapi", "starlette", "gevent", "uvicorn", "gunicorn", "redis", "a2wsgi",
                  "werkzeug.wrappers", "werkzeug.serving", "werkzeug.wsgi", "werkzeug.local",
                  "drum_compat.compat", "drum_compat.flask_backend", "drum_compat.fastapi_backend")
BACKENDS = ("drum_compat.flask_backend", "drum_compat.fastapi_backend")


def imports(path: Path, module_level_only: bool = False) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if module_level_only else ast.walk(tree)
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def offending(path: Path, forbidden: tuple[str, ...], module_level_only: bool = False) -> list[str]:
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
    return [f"{shown}:{line} imports {name}" for line, name in imports(path, module_level_only)
            if any(name == root or name.startswith(root + ".") for root in forbidden)]


def sources(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def test_the_core_imports_no_framework_server_gevent_redis_or_compat():
    assert sources("shared")
    assert [problem for path in sources("shared") for problem in offending(path, CORE_FORBIDDEN)] == []


@pytest.mark.parametrize("backend,other", [("flask_backend", "drum_compat.fastapi_backend"),
                                           ("fastapi_backend", "drum_compat.flask_backend")])
def test_a_backend_never_imports_the_other(backend, other):
    assert [problem for path in sources(backend) for problem in offending(path, (other,))] == []


def test_compat_imports_a_backend_only_when_it_starts_one():
    assert [problem for path in sources("compat") for problem in offending(path, BACKENDS, module_level_only=True)] == []


def test_the_check_can_fail(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import gevent\n\ndef f():\n    from drum_compat.compat import cli\n")
    assert offending(probe, CORE_FORBIDDEN) == ["probe.py:1 imports gevent", "probe.py:4 imports drum_compat.compat"]
    assert offending(probe, ("drum_compat.compat",), module_level_only=True) == []


class EnvironmentReads(dict):
    """os.environ while requests are answered: every read by drum-compat's own code is noted (libraries a model imports
    on its first call read theirs, which no setting of ours is)."""

    def __init__(self, environ) -> None:
        super().__init__(environ)
        self.read: list[str] = []

    def _note(self, key) -> None:
        frame = sys._getframe(2)
        while frame.f_code.co_filename in (os.__file__, "<frozen os>"):  # os.getenv and friends read through us
            frame = frame.f_back
        reader = Path(frame.f_code.co_filename).resolve()
        if any(reader.is_relative_to(ROOT / folder) for folder in ("shared", "compat", "flask_backend", "fastapi_backend")):
            self.read.append(f"{key} read by {frame.f_code.co_filename}:{frame.f_lineno}")

    def __getitem__(self, key):
        self._note(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        self._note(key)
        return super().get(key, default)

    def __contains__(self, key) -> bool:
        self._note(key)
        return super().__contains__(key)


def test_no_environment_is_read_on_the_request_path(tmp_path, monkeypatch):
    """Settings are read once, when a worker starts: a request reads none (the README says so), on either stack."""
    import asyncio

    import httpx
    from werkzeug.test import Client

    from drum_compat.compat.parity.cases import payload_cases, route_cases
    from drum_compat.fastapi_backend.app import LeanDispatch, create_fastapi_app
    from drum_compat.flask_backend.app import create_flask_app
    from drum_compat.shared.app import AppSettings, DrumApp
    from drum_compat.shared.server_types import SERVER_TYPES
    from tests.conftest import load_model

    model = load_model(tmp_path, "regression")
    flask_app = create_flask_app(DrumApp.for_model(model, AppSettings(server_type=SERVER_TYPES["gunicorn"])))
    flask_app.wsgi_app.answer_from_core()
    fastapi_app = LeanDispatch(create_fastapi_app(DrumApp.for_model(model, AppSettings(server_type=SERVER_TYPES["uvicorn"]))))
    cases = route_cases() + payload_cases("regression")
    flask_client = Client(flask_app)
    fastapi_client = httpx.AsyncClient(transport=httpx.ASGITransport(app=fastapi_app), base_url="http://model", trust_env=False)
    environ = EnvironmentReads(os.environ)
    monkeypatch.setattr(os, "environ", environ)

    async def through_fastapi() -> list[int]:
        async with fastapi_client as client:
            return [(await client.request(case.method, case.path, content=case.body, headers=case.headers)).status_code
                    for case in cases]

    statuses = [flask_client.open(case.path, method=case.method, data=case.body, headers=case.headers).status_code
                for case in cases] + asyncio.run(through_fastapi())
    monkeypatch.undo()
    assert 200 in statuses and environ.read == []
