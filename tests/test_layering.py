"""The direction of the imports, checked on the source: the core imports no web framework, server, gevent,
redis or compat; a backend never imports the other; compat imports a backend only inside a function."""
from __future__ import annotations

import ast
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
