"""Fixtures: model directories, both stacks built in-process around the same loaded model, and
helpers that send one request to both and normalise only what legitimately differs."""
from __future__ import annotations

import asyncio
import ctypes
import sys
from dataclasses import replace
from pathlib import Path

import httpx
import psutil
import pytest

from drum_compat.compat.parity.cases import Case
from drum_compat.compat.parity.compare import Answer, Difference, differences, normalise
from drum_compat.compat.running import answers
from drum_compat.fastapi_backend.app import LeanDispatch, create_fastapi_app
from drum_compat.flask_backend.app import create_flask_app
from drum_compat.flask_backend.extensions import load_flask_extensions
from drum_compat.shared.app import AppSettings, DrumApp
from drum_compat.shared.guards.security import CorsPolicy
from drum_compat.shared.model.config import resolve_model_config
from drum_compat.shared.model.python_model import PythonModel
from drum_compat.shared.server_types import DEFAULT_SERVER_TYPE, Stack
from tests.models import MODELS, write_model
from tests.processes import program

ROOT = Path(__file__).resolve().parent.parent


class Stacks:
    """The same loaded model behind the Flask app and the FastAPI app, each served as in production."""

    def __init__(self, model: PythonModel | None, load_error: str | None = None, url_prefix: str = "", extensions_dir=None,
                 cors: CorsPolicy = CorsPolicy(), settings: AppSettings | None = None):
        def core(stack: Stack):
            base = settings or AppSettings(server_type=DEFAULT_SERVER_TYPE[stack], url_prefix=url_prefix, cors=cors)
            settings_for_stack = replace(base, server_type=DEFAULT_SERVER_TYPE[stack])
            return DrumApp.for_model(model, settings_for_stack) if model else DrumApp.for_load_error(load_error, settings_for_stack)

        # as production serves them: the lean paths, the full apps only where an extension is loaded
        self.flask_app = create_flask_app(core(Stack.FLASK))
        if extensions_dir is not None:
            load_flask_extensions(self.flask_app, extensions_dir)
        else:
            self.flask_app.wsgi_app.answer_from_core()
        self.flask_client = self.flask_app.test_client()
        self.fastapi_app = create_fastapi_app(core(Stack.FASTAPI))
        if extensions_dir is None:
            self.fastapi_app = LeanDispatch(self.fastapi_app)

    def flask(self, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> Answer:
        response = self.flask_client.open(path, method=method, data=body, headers=headers or {})
        return normalise(response.status_code, response.headers.items(), response.get_data())

    def fastapi(self, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> Answer:
        async def send():
            transport = httpx.ASGITransport(app=self.fastapi_app)
            async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
                return await client.request(method, path, content=body, headers=headers or {})

        response = asyncio.run(send())
        return normalise(response.status_code, response.headers.multi_items(), response.content)

    def differences(self, case: Case) -> list[Difference]:
        """What the parity runner would report for this case, in-process."""
        return differences(case.method, case.path, self.flask(case.method, case.path, case.body, case.headers),
                           self.fastapi(case.method, case.path, case.body, case.headers))

    def both(self, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> Answer:
        """Send to both stacks, assert they answered alike, return the (shared) answer."""
        flask_answer = self.flask(method, path, body, headers)
        fastapi_answer = self.fastapi(method, path, body, headers)
        assert fastapi_answer.status == flask_answer.status, (method, path, flask_answer.body, fastapi_answer.body)
        assert fastapi_answer.headers == flask_answer.headers, (method, path)
        assert fastapi_answer.body == flask_answer.body, (method, path)
        return flask_answer


def load_model(root, name: str) -> PythonModel:
    code_dir, options = write_model(root, name)
    return PythonModel.load(resolve_model_config(str(code_dir), **options))


@pytest.fixture(scope="session")
def model_root(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def stacks_for(model_root):
    cache: dict = {}

    def get(name: str, url_prefix: str = "") -> Stacks:
        key = (name, url_prefix)
        if key not in cache:
            cache[key] = Stacks(load_model(model_root, name), url_prefix=url_prefix)
        return cache[key]

    return get


@pytest.fixture(scope="session")
def model_names():
    return sorted(MODELS)


@pytest.fixture(scope="session")
def upstream():
    """A stand-in for a NIM's OpenAI-compatible server (tests/upstream.py) on loopback; its URL."""
    def command(port: int) -> list[str]:
        return [sys.executable, "-m", "uvicorn", "tests.upstream:app", "--host", "127.0.0.1", "--port", str(port),
                "--log-level", "warning", "--no-server-header", "--no-date-header"]

    with program(command, answers("/v1/ready", statuses=(201,)), cwd=ROOT) as server:  # it answers anything 201
        yield f"http://127.0.0.1:{server.port}"


PR_SET_CHILD_SUBREAPER = 36


def pytest_configure(config):
    """Orphans (a worker whose master was killed, a server a shell left behind) become this process's children, not
    init's, so that the check at the end of the session sees every process the suite started."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


@pytest.hookimpl(trylast=True)  # after pytest-xdist has ended its workers
def pytest_sessionfinish(session, exitstatus):
    """Fail the run if a process it started outlived its test (after a short grace for those still exiting), and
    end those processes, so that none runs on after the suite. Under pytest-xdist the controller checks, once its
    workers have ended and their orphans have come to it."""
    if hasattr(session.config, "workerinput"):
        return
    descendants = psutil.Process().children(recursive=True)
    _, alive = psutil.wait_procs(descendants, timeout=15)
    left = []
    for process in alive:
        try:  # pytest names the test in each process's environment (a process started by a fixture: its setup)
            started_by = process.environ().get("PYTEST_CURRENT_TEST", "?")
            left.append(f"{process.pid}, started by {started_by}: {' '.join(process.cmdline())[:200]}")
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)  # and reap those this process adopted
    if left:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        reporter.write_line(f"ERROR: {len(left)} process(es) the tests started were still running, now killed:", red=True)
        for line in left:
            reporter.write_line(f"  {line}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
