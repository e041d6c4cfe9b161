"""Drop-in safety on real servers: default admission never refuses an ordinary client pool, the model's own
`shared`/`compat` modules win over ours, instances side by side on one host, startup failures alike."""
from __future__ import annotations

import asyncio
import socket
import textwrap
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.models import write_model
from drum_compat.compat.running import free_port, run_to_exit
from tests.processes import serve, wait_until
from tests.test_guards import scrape

pytestmark = pytest.mark.servers
CONFIGURATIONS = {"gunicorn-gevent": ("gunicorn", {}), "gunicorn-sync": ("gunicorn", {"DRUM_GUNICORN_WORKER_CLASS": "sync"}),
                  "fastapi": ("fastapi", {})}
SERVER_TYPES = ["gunicorn", "fastapi", "flask"]
CSV = b"x,y\n" + b"".join(b"%d,%d\n" % (i, i * 2) for i in range(10))


async def closed_loop(base_url: str, connections: int, requests_each: int) -> Counter:
    """`connections` keep-alive clients of one connection each, all started at once, each sending its next
    request as soon as the last is answered."""
    async def one_client() -> list[int]:
        async with httpx.AsyncClient(base_url=base_url, limits=httpx.Limits(max_connections=1), timeout=60) as client:
            return [(await client.post("/predictions/", content=CSV, headers={"Content-Type": "text/csv"})).status_code
                    for _ in range(requests_each)]

    results = await asyncio.gather(*(one_client() for _ in range(connections)))
    return Counter(status for statuses in results for status in statuses)


@pytest.mark.parametrize("configuration", CONFIGURATIONS)
def test_default_admission_answers_every_request_of_8_and_64_connection_pools(tmp_path, configuration):
    server_type, env = CONFIGURATIONS[configuration]
    code_dir, _ = write_model(tmp_path, "regression")
    with serve(code_dir, server_type, "--target-type", "regression", env=env) as server:
        for connections, requests_each in ((8, 40), (64, 10)):
            counts = asyncio.run(closed_loop(server.base_url, connections, requests_each))
            assert counts == {200: connections * requests_each}, (connections, counts)


MODEL_WITH_GENERIC_NAMES = {
    "custom.py": """
        import os
        import sys

        import pandas as pd

        import compat  # the model's own package
        from shared import helper  # the model's own module

        def load_model(code_dir):
            if compat.__file__ != os.path.join(code_dir, "compat", "__init__.py"):
                raise RuntimeError(f"compat is not the model's: {compat.__file__}")
            on_path = [entry for entry in sys.path if entry in ("", ".", os.getcwd())]
            if on_path:
                raise RuntimeError(f"the working directory is on sys.path: {on_path}")
            return "model"

        def score(data, model, **kwargs):
            return pd.DataFrame({"Predictions": [float(helper() + compat.OFFSET)] * len(data)})
    """,
    "shared.py": "def helper():\n    return 40\n",
    "compat/__init__.py": "OFFSET = 2\n",
}
# a working directory full of drum-compat's own names: importing any of them from here is a failure
SHADOWS = ("shared/__init__.py", "compat/__init__.py", "flask_backend/__init__.py", "fastapi_backend/__init__.py",
           "drum_compat/__init__.py", "drum_compat/shared/__init__.py", "drum_compat/compat/__init__.py")


@pytest.mark.parametrize("server_type", SERVER_TYPES)
def test_a_model_with_its_own_shared_and_compat_serves_from_a_working_directory_full_of_our_names(tmp_path, server_type):
    code_dir = tmp_path / "model"
    for name, source in MODEL_WITH_GENERIC_NAMES.items():
        (code_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (code_dir / name).write_text(textwrap.dedent(source).lstrip())
    workdir = tmp_path / "workdir"
    for name in SHADOWS:
        (workdir / name).parent.mkdir(parents=True, exist_ok=True)
        (workdir / name).write_text(f"raise ImportError('{name} in the working directory was imported')\n")
    with serve(code_dir, server_type, "--target-type", "regression", cwd=workdir) as server:
        answer = httpx.post(f"{server.base_url}/predictions/", content=b"x\n1\n2\n", headers={"Content-Type": "text/csv"})
        info = httpx.get(f"{server.base_url}/info/").json()
    assert (answer.status_code, answer.json()) == (200, {"predictions": [42.0, 42.0]})
    assert info["drumServer"] == ("fastapi" if server_type == "fastapi" else "flask")


def isolated_env(tmp_path) -> dict[str, str]:
    """A HOME and a TMPDIR of the test's own, to see everything an instance writes outside them."""
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir(exist_ok=True)
    tmp.mkdir(exist_ok=True)
    return {"HOME": str(home), "TMPDIR": str(tmp)}


def left_behind(env: dict[str, str]) -> list[str]:
    return sorted(str(path) for folder in (env["HOME"], env["TMPDIR"]) for path in Path(folder).rglob("*"))


def predict(base_url: str, times: int) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for _ in range(times):
            assert client.post("/predictions/", content=CSV, headers={"Content-Type": "text/csv"}).status_code == 200


def predictions_counted(base_url: str) -> dict[str, float]:
    samples = [sample for sample in scrape(base_url)["drum_requests"].samples
               if sample.name == "drum_requests_total" and sample.labels["route"] == "/predictions/"]
    return {sample.labels["server_type"]: sample.value for sample in samples}


def test_gunicorn_and_fastapi_instances_run_side_by_side_on_one_host(tmp_path):
    code_dir, _ = write_model(tmp_path, "regression")
    env = isolated_env(tmp_path)
    shared_metrics = tmp_path / "metrics"
    with serve(code_dir, "gunicorn", "--target-type", "regression",
                       env={**env, "PROMETHEUS_MULTIPROC_DIR": str(shared_metrics)}) as first:
        refused = run_to_exit(code_dir, "fastapi", "--target-type", "regression",
                              env={**env, "PROMETHEUS_MULTIPROC_DIR": str(shared_metrics)})
        assert refused.returncode == 2
        assert refused.stderr.strip().splitlines()[-1].startswith(
            f"drum-compat: error: PROMETHEUS_MULTIPROC_DIR={shared_metrics} is in use by another running drum-compat "
            f"instance (pid {first.process.pid})")
        with serve(code_dir, "fastapi", "--target-type", "regression", env=env) as second:
            predict(first.base_url, 10)
            predict(second.base_url, 7)
            assert predictions_counted(second.base_url) == {"fastapi": 7}
            second.stop()
            assert second.process.returncode == 0
        predict(first.base_url, 3)
        assert predictions_counted(first.base_url) == {"gunicorn": 13}
        first.stop()
        assert first.process.returncode == 0  # still stopped by its own signal, gracefully
    # nothing in $HOME (no gunicorn control socket) and nothing left in the temp directory
    assert left_behind(env) == []
    assert sorted(path.name for path in shared_metrics.iterdir() if path.suffix != ".db") == [".drum-compat.lock"]


@pytest.mark.parametrize("server_type", SERVER_TYPES)
def test_an_address_in_use_stops_every_server_type_alike(tmp_path, server_type):
    code_dir, _ = write_model(tmp_path, "regression")
    env = isolated_env(tmp_path)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = run_to_exit(code_dir, server_type, "--target-type", "regression", env=env, port=port)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == f"drum-compat: error: cannot listen on 127.0.0.1:{port}: Address already in use"
    assert left_behind(env) == []


BROKEN = {
    "hook": ("def load_model(code_dir):\n    raise RuntimeError('weights are corrupt')\n",
             "'load_model' hook failed to load the model. Exception: RuntimeError('weights are corrupt')"),
    # the cause, then where to look (issue 28, item 2): the model directory lists no packages
    "import": ("import no_such_module_anywhere\n", "No module named 'no_such_module_anywhere'\n'no_such_module_anywhere' is "
               "not installed, and {code_dir} has no requirements.txt: install it where the server runs, and list it in "
               "{code_dir}/requirements.txt for the model's image"),
}


@pytest.mark.parametrize("server_type", SERVER_TYPES)
@pytest.mark.parametrize("broken", BROKEN)
def test_a_model_that_cannot_load_ends_every_server_type_with_its_cause(tmp_path, server_type, broken):
    source, cause = BROKEN[broken]
    code_dir = tmp_path / "broken"
    code_dir.mkdir()
    (code_dir / "custom.py").write_text(source)
    env = isolated_env(tmp_path)
    result = run_to_exit(code_dir, server_type, "--target-type", "regression", env={**env, "CUSTOM_MODEL_WORKERS": "1"})
    assert result.returncode == 3
    # the master's last words: the cause (DRUM's text, which may span lines)
    tail = result.stderr.rstrip()
    assert tail.endswith(cause.format(code_dir=code_dir))
    assert f"drum-compat: error: The model in {code_dir} failed to load: " in "\n".join(tail.splitlines()[-5:])
    assert result.stderr.count(f'File "{code_dir / "custom.py"}", line') == 1  # the model's traceback, once
    assert "no attribute" not in result.stderr
    assert left_behind(env) == []


def test_a_failed_start_leaves_the_port_free_for_the_next(tmp_path):
    """The launcher's socket dies with it: a restart on the same port after a failure works."""
    code_dir, _ = write_model(tmp_path, "regression")
    port = free_port()
    assert run_to_exit(tmp_path / "missing", "gunicorn", "--target-type", "regression", port=port).returncode == 2
    with serve(code_dir, "fastapi", "--target-type", "regression", port=port) as server:
        assert httpx.get(f"{server.base_url}/ping").status_code == 200


def test_werkzeug_mode_removes_its_instance_directory_on_sigterm(tmp_path):
    code_dir, _ = write_model(tmp_path, "regression")
    env = isolated_env(tmp_path)
    with serve(code_dir, "flask", "--target-type", "regression", env=env) as server:
        assert left_behind(env) != []  # its directory exists while it runs
        server.stop()
    assert server.process.returncode == 0 and left_behind(env) == []



def test_gunicorn_cmd_args_still_tune_gunicorn(tmp_path):
    """GUNICORN_CMD_ARGS works as with gunicorn's own command line (DRUM's gunicorn honours it too)."""
    code_dir, _ = write_model(tmp_path, "traced")
    with serve(code_dir, "gunicorn", "--target-type", "unstructured",
                       env={"GUNICORN_CMD_ARGS": "--workers 2 --bind 127.0.0.1:1"}) as server:
        wait_until(lambda: len(list(code_dir.glob("loaded-*"))) == 2, "two workers loaded")
        assert httpx.get(f"{server.base_url}/ping").status_code == 200  # on drum-compat's address, not the --bind
