"""drum-compat against DRUM 1.18 itself (installed by `make reference` into its own venv, as CI does): the
parity runner's whole corpus and a bounded fuzz run, on each stack, differ only where the guide says they do; and raw
requests bent where HTTP parsers disagree, generated, get DRUM's answers from both stacks."""
from __future__ import annotations

import json
import os
import subprocess
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from drum_compat.compat.parity.compare import differences, normalise, split_documented
from drum_compat.compat.parity.fuzz import raw_cases, search
from drum_compat.compat.parity.runner import Side
from drum_compat.compat.running import DRUM_COMPAT, answers
from tests.processes import READY_TIMEOUT, program, serve
from tests.test_fuzz import shown
from tests.test_llm_routes import HOOKED

ROOT = Path(__file__).resolve().parent.parent
DRUM = Path(os.environ.get("DRUM_REFERENCE", ROOT / ".venv-drum" / "bin" / "drum"))
MODEL = ROOT / "examples" / "models" / "regression"

REFERENCE_MISSING = f"DRUM 1.18 is not installed at {DRUM}: run `make reference`"
# skipped on a developer's machine without it; in CI (which runs `make reference` first) its absence fails
pytestmark = [pytest.mark.servers, pytest.mark.skipif(not DRUM.exists() and not os.environ.get("CI"), reason=REFERENCE_MISSING)]


@contextmanager
def running_drum(code_dir: Path, target_type: str, **env: str):
    assert DRUM.exists(), REFERENCE_MISSING
    environ = {name: value for name, value in os.environ.items() if not name.startswith(("DRUM_", "MLOPS_RUNTIME_PARAM_"))}

    def command(port: int) -> list[str]:
        return [str(DRUM), "server", "--code-dir", str(code_dir), "--address", f"127.0.0.1:{port}", "--target-type",
                target_type]

    with program(command, answers("/"), env={**environ, **env}) as server:  # DRUM and its workers, nothing else
        yield f"http://127.0.0.1:{server.port}"


@pytest.fixture(scope="module")
def drum():
    with running_drum(MODEL, "regression") as url:
        yield url


@pytest.mark.parametrize("stack", ["gunicorn", "fastapi"])
def test_drum_compat_differs_from_drum_only_as_documented(drum, stack, tmp_path):
    finished = subprocess.run([DRUM_COMPAT, "parity", "--code-dir", str(MODEL), "--against", drum, "--stack", stack,
                               "--data", str(ROOT / "examples" / "data" / "houses.csv"), "--fuzz", "150", "--fuzz-seed", "1",
                               "--json", str(tmp_path / "r.json"), "--startup-timeout", str(READY_TIMEOUT)],
                              capture_output=True, text=True, timeout=600 + READY_TIMEOUT)
    report = json.loads((tmp_path / "r.json").read_text())
    assert finished.returncode == 0, [case for case in report["cases"] if not case["alike"]][:5]
    documented = {difference["guide"] for case in report["cases"] for difference in case["documented"]}
    assert "security headers and X-Request-ID on every response" in documented  # the comparison did see DRUM
    predictions = [case for case in report["cases"] if case["group"] == "data" and case["status"] == [200, 200]]
    assert predictions  # DRUM and drum-compat both scored the user's data, with the same bytes
    refused = [case for case in report["cases"] if case["group"] == "protocol" and case["status"][0] == 400]
    assert len(refused) > 20  # the malformed requests reached both, and both refused them alike


RAW_EXAMPLES = int(os.environ.get("DRUM_COMPAT_FUZZ_EXAMPLES", 300))


def test_generated_malformed_requests_get_drums_answers_from_both_stacks(drum):
    """Raw requests bent in one to three places (odd bytes, bare LFs, repeated and odd fields, versions, transfer codings,
    chunk lines): each stack's answer is DRUM's, but for the guide's documented differences."""
    with serve(MODEL, "gunicorn") as gunicorn, serve(MODEL, "fastapi") as uvicorn, httpx.Client(timeout=30) as client:
        reference = Side("DRUM", drum, client)
        stacks = [Side("gunicorn", gunicorn.base_url, client), Side("fastapi", uvicorn.base_url, client)]
        refused = []

        def check(case) -> list[str]:
            expected = reference.send(case)
            refused.append(expected.status == 400)
            found = []
            for stack in stacks:
                unexpected, _ = split_documented(case.path, differences(case.method, case.path, expected, stack.send(case), True))
                found += [f"{stack.label}: {line}" for line in unexpected]
            return found

        failure = search(RAW_EXAMPLES, check, derandomize=not os.environ.get("DRUM_COMPAT_FUZZ_EXAMPLES"), strategy=raw_cases())
    assert failure is None, shown(failure)
    assert 0.2 < sum(refused) / len(refused) < 0.95  # the bends reach both a parser's refusals and the routes


def statuses_against_drum(code_dir, target_name: str, report_file) -> dict:
    """`drum-compat parity --against` a DRUM 1.18 serving the same text-generation model: each case's statuses, once
    the run passed (every answer alike or documented)."""
    env = {"TARGET_NAME": target_name}
    with running_drum(code_dir, "textgeneration", **env) as url:
        finished = subprocess.run([DRUM_COMPAT, "parity", "--code-dir", str(code_dir), "--target-type", "textgeneration",
                                   "--against", url, "--json", str(report_file), "--startup-timeout", str(READY_TIMEOUT)],
                                  capture_output=True, text=True, timeout=600 + READY_TIMEOUT, env={**os.environ, **env})
    report = json.loads(report_file.read_text())
    assert finished.returncode == 0, [case for case in report["cases"] if not case["alike"]][:5]
    return {case["name"]: case["status"] for case in report["cases"]}


def test_a_text_generation_model_with_its_models_hook_differs_only_as_documented(tmp_path):
    (tmp_path / "custom.py").write_text(HOOKED)
    answered = statuses_against_drum(tmp_path, "answer", tmp_path / "r.json")
    assert answered["GET /v1/models"] == [200, 200]  # the hook's models, the same bytes as DRUM's


def test_a_chat_model_streams_the_same_bytes_as_drum(tmp_path):
    answered = statuses_against_drum(ROOT / "examples" / "models" / "chat", "resultText", tmp_path / "r.json")
    assert answered["streamed chat to /v1/chat/completions"] == [200, 200]  # the event bytes compared equal
    assert answered["chat completion to /chat/completions"] == [200, 200]
    assert answered["chat, text/plain to /chat/completions"] == [500, 500]


def test_static_paths_are_the_documented_difference(drum):
    """The guide's `/static/<path>` row: DRUM's Flask keeps its unused static route (GET 404, POST 405 with Allow,
    OPTIONS 200); drum-compat serves no files and has no such route (404 for every method), and --against says so."""
    methods = ("GET", "POST", "OPTIONS")
    with httpx.Client(timeout=30) as client:
        drums = {method: client.request(method, f"{drum}/static/x").status_code for method in methods}
        assert drums == {"GET": 404, "POST": 405, "OPTIONS": 200}
        for stack in ("gunicorn", "fastapi"):
            with serve(MODEL, stack) as server:
                ours = {method: client.request(method, f"{server.base_url}/static/x").status_code for method in methods}
            assert ours == dict.fromkeys(methods, 404), stack
    found = differences("POST", "/static/x", normalise(405, [("Allow", "GET")], b""), normalise(404, [], b""), True)
    assert split_documented("/static/x", found) == ([], [(difference, "/static/<path>: no such route") for difference in found])
