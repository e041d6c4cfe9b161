"""`drum-compat server` started for real per server type: same answers over HTTP, DRUM_SERVER_TYPE
selection, startup failures and the error server."""
from __future__ import annotations

import json

import httpx
import pytest

from tests.models import write_model, write_sklearn_model
from drum_compat.compat.running import run_to_exit
from tests.processes import serve

pytestmark = pytest.mark.servers
SERVER_TYPES = ["gunicorn", "fastapi", "flask"]
CSV = b"x,y\n1,2\n3,4\n"


def exchange(base_url: str) -> list:
    """A fixed corpus; only volatile header values are dropped."""
    answers = []
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for method, path, body, headers in [
            ("POST", "/predictions/", CSV, {"Content-Type": "text/csv"}),
            ("POST", "/predict/", b"x\n" + b"\n".join(str(i).encode() for i in range(10_000)) + b"\n", {"Content-Type": "text/csv"}),
            ("POST", "/invocations", (b"x,y\n1,2\n" for _ in range(1)), {"Content-Type": "text/csv"}),  # chunked
            ("POST", "/predict/", b"", {}),
            ("POST", "/predict", CSV, {"Content-Type": "text/csv"}),
            ("GET", "/invocations", None, {}),
            ("GET", "/invocations/", None, {}),
            ("GET", "/nope", None, {}),
            ("GET", "/ping", None, {}),
            ("GET", "/capabilities/", None, {}),
            ("GET", "/readyz", None, {}),
        ]:
            response = client.request(method, path, content=body, headers=headers)
            kept = sorted(
                (name.lower(), value.replace(base_url, "<base>")) for name, value in response.headers.items()
                if name.lower() not in ("date", "server", "connection", "x_request_id", "x-request-id", "transfer-encoding")
            )
            port = base_url.rsplit(":", 1)[1].encode()
            answers.append((method, path, response.status_code, kept, response.content.replace(port, b"<port>")))
    return answers


# every way of running a server the corpus must see answer exactly alike
CORPUS_RUNS = {
    "gunicorn": ("gunicorn", {}),
    "gunicorn-sync": ("gunicorn", {"DRUM_GUNICORN_WORKER_CLASS": "sync"}),
    "gunicorn-2-workers": ("gunicorn", {"CUSTOM_MODEL_WORKERS": "2"}),
    "fastapi": ("fastapi", {}),
    "fastapi-2-workers": ("fastapi", {"CUSTOM_MODEL_WORKERS": "2"}),
    "flask": ("flask", {}),
}


def test_server_types_answer_alike_over_http(tmp_path):
    code_dir, _ = write_model(tmp_path, "regression")
    results = {}
    for run, (server_type, env) in CORPUS_RUNS.items():
        with serve(code_dir, server_type, "--target-type", "regression", env=env) as server:
            results[run] = exchange(server.base_url)
            info = httpx.get(f"{server.base_url}/info/").json()
            assert info["drumServer"] == ("fastapi" if server_type == "fastapi" else "flask")
    assert results["gunicorn"][0][2:] == (200, [
        ("content-length", "25"), ("content-type", "application/json"), ("referrer-policy", "no-referrer"),
        ("x-content-type-options", "nosniff"), ("x-drum-version", "0.1.0"), ("x-frame-options", "DENY")], b'{"predictions":[2.0,6.0]}')
    for run in CORPUS_RUNS:
        for expected, actual in zip(results["gunicorn"], results[run]):
            assert actual == expected, (run, expected[:2])


def test_request_id_over_the_wire(tmp_path):
    code_dir, _ = write_model(tmp_path, "regression")
    for server_type in ("gunicorn", "fastapi"):
        with serve(code_dir, server_type, "--target-type", "regression") as server:
            response = httpx.get(f"{server.base_url}/info/", headers={"X-Request-ID": "req-42", "X_Request_ID": "spoofed"})
            assert response.headers["X_Request_ID"] == response.headers["X-Request-ID"] == "req-42"


def test_runtime_parameter_selects_fastapi_and_sklearn_artifact(tmp_path):
    code_dir = write_sklearn_model(tmp_path)
    param = json.dumps({"type": "string", "payload": "FastAPI"})
    with serve(code_dir, "gunicorn", "--target-type", "binary", "--positive-class-label", "yes",
                       "--negative-class-label", "no", env={"MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE": param}) as server:
        info = httpx.get(f"{server.base_url}/info/").json()
        assert (info["drumServer"], info["predictor"], info["positiveClassLabel"]) == ("fastapi", "scikit-learn", "yes")
        predictions = httpx.post(f"{server.base_url}/predict/", content=b"f\n0\n3\n", headers={"Content-Type": "text/csv"}).json()
        assert [sorted(row) for row in predictions["predictions"]] == [["no", "yes"], ["no", "yes"]]
        assert predictions["predictions"][0]["no"] > 0.5 > predictions["predictions"][1]["no"]


@pytest.mark.parametrize("server_type", ["gunicorn", "fastapi"])
def test_env_equivalents_of_options(tmp_path, server_type):
    code_dir, _ = write_model(tmp_path, "multiclass")
    env = {"TARGET_TYPE": "multiclass", "CLASS_LABELS": "cat dog horse", "URL_PREFIX": "/m"}
    with serve(code_dir, server_type, env=env, ready_path="/m/") as server:
        assert httpx.get(f"{server.base_url}/").status_code == 404
        info = httpx.get(f"{server.base_url}/m/info/").json()
        assert (info["targetType"], info["classLabels"]) == ("multiclass", ["cat", "dog", "horse"])
        answer = httpx.post(f"{server.base_url}/m/predict/", content=b"x\n1\n", headers={"Content-Type": "text/csv"})
        assert answer.json()["predictions"] == [{"dog": 0.7, "cat": 0.1, "horse": 0.2}]


def test_unknown_server_type_exits_2(tmp_path):
    code_dir, _ = write_model(tmp_path, "regression")
    result = run_to_exit(code_dir, "tornado", "--target-type", "regression")
    assert result.returncode == 2
    assert "valid values: gunicorn, flask, werkzeug, fastapi, uvicorn" in result.stderr


@pytest.mark.parametrize("server_type", SERVER_TYPES)
def test_load_failure_exits_non_zero_with_cause(tmp_path, server_type):
    code_dir, _ = write_model(tmp_path, "broken")
    result = run_to_exit(code_dir, server_type, "--target-type", "regression")
    assert result.returncode != 0
    assert "weights are corrupt" in result.stdout + result.stderr


@pytest.mark.parametrize("server_type", SERVER_TYPES)
def test_with_error_server_answers_513(tmp_path, server_type):
    code_dir, _ = write_model(tmp_path, "broken")
    with serve(code_dir, server_type, "--target-type", "regression", env={"WITH_ERROR_SERVER": "1"}) as server:
        response = httpx.post(f"{server.base_url}/predict/", content=CSV)
        assert response.status_code == 513
        assert "'load_model' hook failed to load the model. Exception: RuntimeError('weights are corrupt')" in response.json()["message"]
        assert httpx.get(f"{server.base_url}/ping").status_code == 513


@pytest.mark.servers
@pytest.mark.parametrize("server_type, said", [("gunicorn", "Listening at: http://127.0.0.1:{port}"),
                                               ("fastapi", "Uvicorn running on http://127.0.0.1:{port}")])
def test_each_stack_says_where_it_listens(tmp_path, server_type, said):
    code_dir, _ = write_model(tmp_path, "regression")
    with serve(code_dir, server_type, "--target-type", "regression") as server:
        output = server.stop()
    assert said.format(port=server.port) in output  # uvicorn said nothing: its supervisor was handed the socket


def test_the_version_is_told_without_loading_the_server():
    """Through the real console script: `--version` answers at once (it loaded pandas and the whole runtime, seconds
    on a busy machine)."""
    import subprocess

    from drum_compat.compat.running import DRUM_COMPAT
    from drum_compat.shared import __version__

    shown = subprocess.run([DRUM_COMPAT, "--version"], capture_output=True, text=True, timeout=60,
                           env={"PYTHONPROFILEIMPORTTIME": "1", "PATH": "/usr/bin:/bin"})
    assert shown.stdout == f"drum-compat {__version__}\n"
    imported = {line.rsplit("|", 1)[-1].strip() for line in shown.stderr.splitlines() if line.startswith("import time:")}
    assert "drum_compat.shared" in imported and not imported & {"pandas", "numpy", "drum_compat.compat.cli", "httpx"}
