"""--allow-dr-api-access against DRUM 1.18.1: model code finds the DataRobot client DRUM sets up (its endpoint and
token), the client having asked a DataRobot of the test's own (a real socket) for its version; the options that must go
with it stop the start with DRUM's words and status."""
from __future__ import annotations

import json
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from drum_compat.compat.running import run_to_exit
from tests.processes import serve
from tests.test_against_drum import DRUM, REFERENCE_MISSING, running_drum

needs_drum = pytest.mark.skipif(not DRUM.exists() and not os.environ.get("CI"), reason=REFERENCE_MISSING)
MODEL = '''
import datarobot

def load_model(code_dir):
    return datarobot.client.get_client()  # set up before the model loads, as DRUM does

def score_unstructured(model, data, **kwargs):
    client = datarobot.client.get_client()
    return f"{client is model} {client.endpoint} {client.token}"
'''


class FakeDataRobot:
    """Answers the client's version question (no version string: compatible, with the client's warning), and what
    DRUM asks of a deployment: its model's prompt column and its drift and data-collection settings."""

    def __init__(self, collects: bool = True) -> None:
        self.asked: list[tuple[str, str]] = []
        answers = {"/api/v2/version/": {"versionString": None},
                   "/api/v2/deployments/deployment-1/": {"id": "deployment-1", "label": "chat",
                                                         "model": {"id": "model-1", "prompt": "question"}},
                   "/api/v2/deployments/deployment-1/settings/": {
                       "featureDrift": {"enabled": False}, "targetDrift": {"enabled": False},
                       "predictionsDataCollection": {"enabled": collects}}}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                fake.asked.append((self.path, self.headers.get("Authorization", "")))
                body = json.dumps(answers.get(self.path, {"message": "not found"})).encode()
                self.send_response(200 if self.path in answers else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@needs_drum
@pytest.mark.servers
def test_model_code_finds_the_client_drum_sets_up(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "custom.py").write_text(MODEL)
    fake = FakeDataRobot()
    try:
        env = {"ALLOW_DR_API_ACCESS_FOR_ALL_CUSTOM_MODELS": "true", "EXTERNAL_WEB_SERVER_URL": fake.url, "API_TOKEN": "t0ken"}
        with running_drum(tmp_path / "m", "unstructured", **env) as url:
            expected = httpx.post(f"{url}/predictUnstructured/", content=b"x").text
        assert expected == f"True {fake.url}/api/v2 t0ken"
        for stack in ("gunicorn", "fastapi"):
            asked = len(fake.asked)
            with serve(tmp_path / "m", stack, "--target-type", "unstructured", env=env) as server:
                assert httpx.post(f"{server.base_url}/predictUnstructured/", content=b"x").text == expected, stack
            assert fake.asked[asked:] == [("/api/v2/version/", "Token t0ken")], stack  # once, from the one worker
    finally:
        fake.close()


@needs_drum
@pytest.mark.parametrize("env", [{"ALLOW_DR_API_ACCESS_FOR_ALL_CUSTOM_MODELS": "true"},
                                 {"ALLOW_DR_API_ACCESS_FOR_ALL_CUSTOM_MODELS": "1", "API_TOKEN": "t"}])
def test_missing_options_stop_the_start_with_drums_words_and_status(tmp_path, env):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "custom.py").write_text(MODEL)
    drum = subprocess.run([str(DRUM), "server", "--code-dir", str(tmp_path / "m"), "--address", "127.0.0.1:9",
                           "--target-type", "unstructured"], env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=120)
    ours = run_to_exit(tmp_path / "m", "gunicorn", "--target-type", "unstructured", env=env)
    assert ours.returncode == drum.returncode == 1
    drums_words = drum.stdout.split("usage:")[0].strip()
    assert "DataRobot APIs access requires" in drums_words and ours.stdout.strip() == drums_words


def test_without_the_client_package_the_start_names_it(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "custom.py").write_text(MODEL)
    broken = tmp_path / "site" / "datarobot"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('no datarobot here')\n")
    result = run_to_exit(tmp_path / "m", "fastapi", "--target-type", "unstructured", "--allow-dr-api-access",
                         "--webserver", "http://127.0.0.1:9", env={"API_TOKEN": "t", "PYTHONPATH": str(tmp_path / "site")})
    assert result.returncode == 2
    assert ("drum-compat: error: --allow-dr-api-access needs the `datarobot` package (pip install 'drum-compat[datarobot]'), "
            "which DRUM installs: no datarobot here") in result.stderr


@needs_drum
@pytest.mark.servers
@pytest.mark.parametrize("collects", [True, False])
def test_a_monitored_chat_reads_the_deployments_prompt_column_and_settings_as_drum_does(tmp_path, collects):
    from tests.test_against_drum import ROOT
    from tests.test_monitoring import monitored, send, spooled

    code_dir = ROOT / "examples" / "models" / "chat"
    chat = [("/v1/chat/completions", {"json": {"model": "m", "messages": [{"role": "user", "content": "hi you"}],
                                               "datarobot_association_id": "a-1"}})]
    fake = FakeDataRobot(collects)
    try:
        def env(spool):
            return monitored(spool, TARGET_NAME="resultText", ALLOW_DR_API_ACCESS_FOR_ALL_CUSTOM_MODELS="true",
                             EXTERNAL_WEB_SERVER_URL=fake.url, API_TOKEN="t0ken")

        with running_drum(code_dir, "textgeneration", **env(tmp_path / "drum")) as url:
            assert send(url, chat) == [200]
        expected = spooled(tmp_path / "drum")
        assert [record["data"].get("features") for record in expected] == (
            [None, {"question": ["hi you"]}] if collects else [None])
        for stack in ("gunicorn", "fastapi"):
            with serve(code_dir, stack, "--target-type", "textgeneration", env=env(tmp_path / stack)) as server:
                assert send(server.base_url, chat) == [200]
            assert spooled(tmp_path / stack) == expected, stack
    finally:
        fake.close()
