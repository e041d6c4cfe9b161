"""Extending the server: a DRUM custom_flask.py served unchanged on gunicorn and on uvicorn (through the WSGI bridge,
its hooks still guarding DRUM's routes by their endpoint names), and custom_fastapi.py, the FastAPI way; both behind
the same guards (metrics, access line, admission), and refused by name where a stack cannot apply them."""
from __future__ import annotations

import asyncio
import re
import shutil
import textwrap

import httpx
import pytest

from drum_compat.compat.running import run_to_exit
from tests.processes import serve
from drum_compat.fastapi_backend.app import create_fastapi_app
from drum_compat.fastapi_backend.extensions import load_fastapi_extensions
from drum_compat.shared.app import AppSettings, DrumApp
from drum_compat.shared.guards.admission import AdmissionLimits
from drum_compat.shared.model.config import resolve_model_config
from drum_compat.shared.model.python_model import PythonModel
from drum_compat.shared.server_types import SERVER_TYPES
from tests.models import EXAMPLES

EXTENSIONS = EXAMPLES.parent / "extensions"
CSV = b"".join((EXAMPLES.parent / "data" / "houses.csv").read_bytes().splitlines(keepends=True)[:3])
AUTH = {"Authorization": "Bearer t0k3n"}
REGRESSION = ("--target-type", "regression")


# what examples/deploy's probes and a Prometheus scrape ask, with no token: the auth examples must leave them open
PROBED = sorted({path for manifest in (EXAMPLES.parent / "deploy" / "k8s").glob("deployment-*.yaml")
                 for path in re.findall(r"httpGet: \{path: (\S+),", manifest.read_text())})
OPEN_WITHOUT_TOKEN = (*PROBED, "/metrics")
assert PROBED == ["/livez", "/readyz", "/startupz"], PROBED


def model_with(tmp_path, extension: str, filename: str):
    code_dir = tmp_path / "model"
    shutil.copytree(EXAMPLES / "regression", code_dir)
    shutil.copy(EXTENSIONS / extension / filename, code_dir / filename)
    return code_dir


def exchange(base_url: str) -> list:
    answers = []
    for method, path, body, headers in [
        ("POST", "/predict/", CSV, {"Content-Type": "text/csv"}),
        ("POST", "/predict/", CSV, {"Content-Type": "text/csv", "Authorization": "Bearer wrong"}),
        ("POST", "/predict/", CSV, {"Content-Type": "text/csv", **AUTH}),
        ("GET", "/ping/", None, {}),
        ("GET", "/info/", None, {}),
        ("GET", "/version", None, {}),
        ("GET", "/version", None, AUTH),
        *(("GET", path, None, {}) for path in OPEN_WITHOUT_TOKEN),
    ]:
        response = httpx.request(method, base_url + path, content=body, headers=headers, timeout=30)
        assert response.headers["X-Request-ID"] and response.headers["X_Request_ID"]  # DRUM's headers on every answer
        content = b"" if path == "/metrics" else response.content  # its series are labelled with the stack
        answers.append((method, path, headers.get("Authorization"), response.status_code, content))
    return answers


@pytest.mark.servers
def test_a_custom_flask_py_guards_drums_routes_alike_on_gunicorn_and_uvicorn(tmp_path):
    code_dir = model_with(tmp_path, "flask_auth", "custom_flask.py")
    seen = {}
    for server_type in ("gunicorn", "uvicorn"):
        with serve(code_dir, server_type, *REGRESSION, "--logging-level", "info") as server:
            seen[server_type] = exchange(server.base_url)
            output = server.stop()
        assert "served POST /predict/ (model_api.predict) with 200" in output  # its after_request hook, by endpoint
    assert seen["gunicorn"] == seen["uvicorn"]
    statuses = [answer[3] for answer in seen["uvicorn"]]
    # /predict/ guarded, /ping/ open, its own route served; the kubelet's probes and the scrape open
    assert statuses == [401, 401, 200, 200, 401, 401, 200] + [200] * len(OPEN_WITHOUT_TOKEN)
    assert seen["uvicorn"][5][4] == b'{"message":"Missing or invalid bearer token"}\n'


@pytest.mark.servers
def test_a_custom_fastapi_py_adds_routes_and_middleware_behind_the_guards(tmp_path):
    code_dir = model_with(tmp_path, "fastapi_auth", "custom_fastapi.py")
    with serve(code_dir, "uvicorn", *REGRESSION) as server:
        url = server.base_url
        for path in ("/ping/", *OPEN_WITHOUT_TOKEN):  # the probes and the scrape stay open
            assert httpx.get(f"{url}{path}").status_code == 200, path
        refused = httpx.post(f"{url}/predict/", content=CSV, headers={"Content-Type": "text/csv"})
        assert refused.status_code == 401 and refused.headers["X-Request-ID"]  # its middleware, our headers
        assert httpx.post(f"{url}/predict/", content=CSV, headers={"Content-Type": "text/csv", **AUTH}).status_code == 200
        assert httpx.get(f"{url}/version", headers=AUTH).json() == {"model": "regression", "version": "2024.1"}
        assert httpx.post(f"{url}/words", content=b"one two three", headers=AUTH).json() == {"words": 3}
        metrics = httpx.get(f"{url}/metrics", headers=AUTH).text
        output = server.stop()
    assert 'route="/version"' in metrics and 'route="/words"' in metrics  # its routes counted under their own rule
    assert '"GET /version HTTP/1.1" 200' in output  # and in the access log


@pytest.mark.servers
def test_each_stack_refuses_the_extension_it_cannot_apply_by_name(tmp_path):
    code_dir = model_with(tmp_path, "fastapi_auth", "custom_fastapi.py")
    refused = run_to_exit(code_dir, "gunicorn", *REGRESSION)
    assert refused.returncode == 2 and "custom_fastapi.py extends the FastAPI app" in refused.stderr
    (code_dir / "custom_fastapi.py").unlink()
    (code_dir / "custom_flask.py").write_text(textwrap.dedent('''
        def init_app(app):
            app.add_url_rule("/live-feed", view_func=lambda: "", websocket=True)
    '''))
    refused = run_to_exit(code_dir, "uvicorn", *REGRESSION)
    assert refused.returncode != 0 and "websocket route /live-feed" in refused.stdout + refused.stderr


SLOW_EXTENSION = '''
import time
from fastapi import Request
from drum_compat.fastapi_backend.extensions import in_model_thread

def init_app(app):
    @app.post("/slow")
    async def slow(request: Request):
        return await in_model_thread(request, time.sleep, float((await request.body()).decode()))
'''


def test_model_work_of_an_extension_meets_the_deadline_as_drums_routes_do(tmp_path):
    code_dir = model_with(tmp_path, "fastapi_auth", "custom_fastapi.py")
    (code_dir / "custom_fastapi.py").write_text(SLOW_EXTENSION)
    model = PythonModel.load(resolve_model_config(str(code_dir), target_type="regression"))
    core = DrumApp.for_model(model, AppSettings(server_type=SERVER_TYPES["uvicorn"], admission=AdmissionLimits(deadline=0.3)))
    app = create_fastapi_app(core)
    assert load_fastapi_extensions(app, str(code_dir))

    async def post(seconds: str):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://model") as client:
            return await client.post("/slow", content=seconds.encode())

    assert asyncio.run(post("0")).status_code == 200
    late = asyncio.run(post("1"))
    assert (late.status_code, late.json()) == (504, {"message": "ERROR: Request timed out after 0.3 s (DRUM_CLIENT_REQUEST_TIMEOUT)"})
    assert late.headers["X-Request-ID"]


def test_extension_routes_meet_the_rate_limit_and_carry_drums_headers_on_both_stacks(tmp_path):
    from drum_compat.flask_backend.app import create_flask_app
    from drum_compat.flask_backend.extensions import load_flask_extensions
    from drum_compat.shared.guards.rate_limit import RateLimitPolicy
    from drum_compat.shared.guards.front_door import FrontDoorSettings

    flask_dir = model_with(tmp_path / "f", "flask_auth", "custom_flask.py")
    fastapi_dir = model_with(tmp_path / "a", "fastapi_auth", "custom_fastapi.py")
    limited = FrontDoorSettings(rate_limit=RateLimitPolicy(per_minute=60, burst=1))

    def core(code_dir, server_type):
        model = PythonModel.load(resolve_model_config(str(code_dir), target_type="regression"))
        return DrumApp.for_model(model, AppSettings(server_type=SERVER_TYPES[server_type], front_door=limited))

    flask_app = create_flask_app(core(flask_dir, "gunicorn"))
    load_flask_extensions(flask_app, str(flask_dir))
    client = flask_app.test_client()
    flask_answers = [client.get("/version", headers=AUTH) for _ in range(2)]
    fastapi_app = create_fastapi_app(core(fastapi_dir, "uvicorn"))
    load_fastapi_extensions(fastapi_app, str(fastapi_dir))

    async def get(*paths):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fastapi_app), base_url="http://model") as http:
            return [await http.get(path, headers=AUTH) for path in paths]

    fastapi_answers = asyncio.run(get("/version", "/version"))
    assert [answer.status_code for answer in flask_answers] == [200, 429]
    assert [answer.status_code for answer in fastapi_answers] == [200, 429]
    assert all(answer.headers["X-Content-Type-Options"] == "nosniff" for answer in fastapi_answers + flask_answers)
    assert 'route="/version"' in asyncio.run(get("/metrics"))[0].text
