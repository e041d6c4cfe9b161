"""The direction of the imports, checked on the source: the layers (shared, the runtime, the Flask backend, the FastAPI
backend, the servers, the tools) import only downwards, with no cycle anywhere; the core imports no web framework, server,
gevent or redis; one stack's modules load the other's only for a bridged custom_flask.py; the tools import a backend only
inside a function, when they start one. And, running them, no request reads the
environment."""
from __future__ import annotations

import ast
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE_FORBIDDEN = ("flask", "fastapi", "starlette", "gevent", "uvicorn", "gunicorn", "redis", "a2wsgi",
                  "werkzeug.wrappers", "werkzeug.serving", "werkzeug.wsgi", "werkzeug.local",
                  "drum_compat.runtime", "drum_compat.compat", "drum_compat.flask_backend", "drum_compat.fastapi_backend")
BACKENDS = ("drum_compat.flask_backend", "drum_compat.fastapi_backend")
# each folder's installed package, lowest layer first: a module imports only from its own layer or those below
LAYERS = {"shared": "drum_compat.shared", "compat/runtime": "drum_compat.runtime", "flask_backend": "drum_compat.flask_backend",
          "fastapi_backend": "drum_compat.fastapi_backend", "compat/servers": "drum_compat.servers", "compat": "drum_compat.compat"}
STACK_MODULES = {"flask": ("drum_compat.flask_backend", "drum_compat.servers.gunicorn_"),
                 "fastapi": ("drum_compat.fastapi_backend", "drum_compat.servers.uvicorn_")}


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


def installed_modules(root: Path, layers: dict[str, str]) -> dict[str, Path]:
    """Every module's installed name and its file (a folder nested in another layer's belongs to its own)."""
    modules = {}
    for folder, package in layers.items():
        for path in (root / folder).rglob("*.py"):
            if any(path.is_relative_to(root / other) for other in layers if other != folder and other.startswith(folder + "/")):
                continue
            parts = list(path.relative_to(root / folder).with_suffix("").parts)
            modules[".".join([package, *(parts[:-1] if parts[-1] == "__init__" else parts)])] = path
    return modules


def type_checking_only(tree: ast.Module) -> set[ast.AST]:
    return {child for node in ast.walk(tree) if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"
            for child in ast.walk(node)}


def import_graph(modules: dict[str, Path], module_level_only: bool = False) -> dict[str, set[str]]:
    """Which of `modules` each one imports when it runs (imports for type checkers only left out)."""
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        skipped = type_checking_only(tree)
        imported = set()
        for node in (tree.body if module_level_only else ast.walk(tree)):
            if node in skipped:
                continue
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported |= {f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                             for alias in node.names}
            elif isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
        graph[name] = {target for target in imported if target in modules and target != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The graph's strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in graph[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = [stack.pop()]
            while component[-1] != module:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for module in graph:
        if module not in index:
            visit(module)
    return found


def layer_of(module: str) -> int:
    return next(rank for rank, package in enumerate(LAYERS.values()) if module == package or module.startswith(package + "."))


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return [f"{module} imports {target}" for module, targets in sorted(graph.items()) for target in sorted(targets)
            if layer_of(target) > layer_of(module)]


MODULES = installed_modules(ROOT, LAYERS)


def test_the_layers_import_only_downwards_and_nothing_imports_in_a_cycle():
    graph = import_graph(MODULES)
    assert len(graph) > 60 and "drum_compat.runtime.settings" in graph
    assert upward_imports(graph) == []
    assert cycles(graph) == []


def test_the_fastapi_stack_stands_on_the_flask_one_only_for_a_bridged_custom_flask_py():
    # a custom_flask.py runs in the Flask app it expects, inside the FastAPI stack: loaded only for such a model
    graph = import_graph(MODULES)  # the Flask stack never loads the FastAPI one, not even lazily
    assert [f"{module} imports {target}" for module, targets in graph.items() if module.startswith(STACK_MODULES["flask"])
            for target in targets if target.startswith(STACK_MODULES["fastapi"])] == []
    module_level = import_graph(MODULES, module_level_only=True)
    assert [f"{module} imports {target}" for module, targets in module_level.items() if module.startswith(STACK_MODULES["fastapi"])
            for target in targets if target.startswith(STACK_MODULES["flask"])] == []


def test_the_tools_import_a_backend_only_when_they_start_one():
    tools = [path for path in sources("compat") if not path.is_relative_to(ROOT / "compat/runtime")
             and not path.is_relative_to(ROOT / "compat/servers")]
    assert [problem for path in tools for problem in offending(path, (*BACKENDS, "drum_compat.servers"), module_level_only=True)] == []


def test_the_graph_checks_can_fail(tmp_path):
    for folder, source in {"shared": "from drum_compat.runtime import b\n", "compat/runtime": "import drum_compat.shared.a\n"}.items():
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / ("a.py" if folder == "shared" else "b.py")).write_text(source)
    graph = import_graph(installed_modules(tmp_path, LAYERS))
    assert graph == {"drum_compat.shared.a": {"drum_compat.runtime.b"}, "drum_compat.runtime.b": {"drum_compat.shared.a"}}
    assert upward_imports(graph) == ["drum_compat.shared.a imports drum_compat.runtime.b"]
    assert cycles(graph) == [["drum_compat.runtime.b", "drum_compat.shared.a"]]


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
