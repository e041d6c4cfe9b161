"""The examples users copy from README.md and migration_guide.md, executed against real servers,
and the option tables checked against the declarations they document."""
from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
from pathlib import Path

import httpx
import pytest

from drum_compat.runtime.options import SERVER_OPTIONS
from drum_compat.shared.server_types import SERVER_TYPES
from drum_compat.compat.running import DRUM_COMPAT, Program, answers
from tests.processes import program, serve

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
GUIDE = (ROOT / "migration_guide.md").read_text()


def blocks_after(text: str, marker: str) -> list[str]:
    """The fenced code blocks that follow an `<!-- marker -->` comment."""
    tail = text.split(f"<!-- {marker} -->", 1)[1]
    return re.findall(r"```\w*\n(.*?)```", tail, re.S)


@pytest.mark.servers
def test_readme_prediction_example():
    command, expected = blocks_after(README, "readme-example: predictions")[:2]
    with serve(ROOT / "examples/models/regression", "gunicorn") as server:
        command = command.replace("127.0.0.1:8080", f"127.0.0.1:{server.port}")
        output = subprocess.run(command, shell=True, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert output.strip() == expected.strip()


@pytest.mark.servers
def test_readme_runtime_parameters_example():
    command, request, expected = blocks_after(README, "readme-example: runtime parameters")[:3]
    with example(command.replace("\\\n", " "), "127.0.0.1:8080", "/") as server:
        request = request.replace("127.0.0.1:8080", f"127.0.0.1:{server.port}")
        output = subprocess.run(request, shell=True, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert output == expected


def example(command: str, address: str, ready_path: str, **request) -> Program:
    """A documented server command, its `address` moved to a free port, in a shell of its own session, until
    `ready_path` answers (its answer in `.ready`)."""
    command = command.strip().rstrip(" &").replace("drum-compat", DRUM_COMPAT, 1)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_RUNTIME_PARAM_", "DRUM_"))}
    scheme = "https" if "verify" in request else "http"
    return program(lambda port: command.replace(address, f"127.0.0.1:{port}"), answers(ready_path, scheme=scheme, **request),
                   shell=True, cwd=ROOT, env=env, signal_session=True)


def served(command: str, address: str, path: str, **request) -> dict:
    """Run a documented server command until `path` answers; return its JSON."""
    with example(command, address, path, **request) as server:
        return server.ready.json()


@pytest.mark.servers
def test_guide_switch_example():
    command = blocks_after(GUIDE, "guide-example: switch")[0]
    assert served(command, "127.0.0.1:8080", "/info/")["drumServer"] == "fastapi"


@pytest.mark.servers
def test_guide_tls_example(tmp_path):
    from tests.test_tls import client_context, write_server_pki

    ca, cert, key = write_server_pki(tmp_path, "example-password")
    command = blocks_after(GUIDE, "guide-example: tls")[0]
    command = command.replace("server.pem", str(cert)).replace("server.key", str(key)).replace('"..."', '"example-password"')
    info = served(command, "127.0.0.1:8443", "/info/", verify=client_context(ca))
    assert info["drumServer"] == "fastapi"


def test_readme_documents_every_option_and_server_type():
    for option in SERVER_OPTIONS:
        assert f"`{option.flag}`" in README, option.flag
        if option.env:
            assert f"`{option.env}" in README, option.env
    for server_type in SERVER_TYPES:
        assert f"`{server_type}`" in README, server_type


def test_the_guide_names_every_drum_option_and_variable():
    from drum_compat.runtime.options import ACCEPTED_OPTIONS
    from drum_compat.runtime.refusals import UNSERVED_OPTIONS

    table = GUIDE.split("## DRUM's command line and variables", 1)[1].split("\n## ", 1)[0]
    for option in (*SERVER_OPTIONS, *ACCEPTED_OPTIONS, *UNSERVED_OPTIONS):
        assert f"`{option.flag}" in table, option.flag
        for name in ((option.env,) if isinstance(option.env, str) else option.env or ()):
            assert f"`{name}`" in table, name


@pytest.mark.servers
def test_guide_guards_example():
    command, access_line = blocks_after(GUIDE, "guide-example: guards")[:2]
    stats = served(command, "127.0.0.1:8080", "/stats/")
    assert stats["admission"]["queue_depth"] == 8 and stats["admission"]["request_timeout"] == 30
    assert stats["admission"]["threads"] == 1
    # the documented line has the shape the access log test checks on every stack
    assert re.fullmatch(r'127\.0\.0\.1 - - \[[^\]]+\] "POST /predictions/ HTTP/1\.1" 200 \d+ \d+\.\d{4} \S+ fastapi', access_line.strip())


@pytest.mark.servers
def test_guide_side_by_side_example():
    commands = blocks_after(GUIDE, "guide-example: side by side")[0].strip().splitlines()
    with contextlib.ExitStack() as stack:
        servers = [stack.enter_context(example(line, address, "/info/")) for line, address in zip(commands, ("127.0.0.1:8080", "127.0.0.1:8081"))
                   if address in line]
        assert {server.ready.json()["drumServer"] for server in servers} == {"flask", "fastapi"}  # both up at once
        assert len({server.port for server in servers}) == 2


@pytest.mark.servers
def test_guide_parity_example(tmp_path):
    command, cases = blocks_after(GUIDE, "guide-example: parity")[:2]
    (tmp_path / "my-cases.yaml").write_text(cases)
    command = command.replace("drum-compat", DRUM_COMPAT, 1)
    for name in ("my-cases.yaml", "parity.xml", "parity.json"):
        command = command.replace(name, str(tmp_path / name))
    finished = subprocess.run(command, shell=True, cwd=ROOT, capture_output=True, text=True, timeout=300)
    report = json.loads((tmp_path / "parity.json").read_text())
    assert finished.returncode == 0, [case for case in report["cases"] if not case["alike"]][:3]
    mine = [case for case in report["cases"] if case["group"] == "user"]
    assert [(case["name"], case["status"]) for case in mine] == [("a known customer", [200, 200]), ("health probe", [200, 200])]
    assert (tmp_path / "parity.xml").read_text().count("<testcase ") == report["summary"]["cases"]


@pytest.mark.servers
def test_guide_ab_example():
    start, status = blocks_after(GUIDE, "guide-example: ab")[0].strip().splitlines()
    with example(start, "127.0.0.1:8080", "/info/") as front:
        command = status.replace("drum-compat", DRUM_COMPAT, 1).replace("127.0.0.1:8080", f"127.0.0.1:{front.port}")
        shown = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=60, check=True).stdout
    assert "gunicorn" in shown and "fastapi" in shown and "p99 latency" in shown


@pytest.mark.servers
def test_guide_record_and_replay_example(tmp_path):
    recording, replay = blocks_after(GUIDE, "guide-example: record")[:2]
    with example(recording.replace("/var/tmp/requests.jsonl", str(tmp_path / "requests.jsonl")), "127.0.0.1:8080", "/info/") as server, \
            httpx.Client(timeout=60) as client:
        for _ in range(100):
            client.post(f"http://127.0.0.1:{server.port}/predictions/", content=(ROOT / "examples/data/houses.csv").read_bytes(),
                        headers={"Content-Type": "text/csv"})
    recorded = (tmp_path / "requests.jsonl").read_text().splitlines()
    assert 1 <= len(recorded) <= 40  # 10 % of about 100
    model = ROOT / "examples/models/regression"
    with serve(model, "gunicorn") as a, serve(model, "fastapi") as b:
        command = (replay.replace("drum-compat", DRUM_COMPAT, 1)
                   .replace("/var/tmp/requests.jsonl", str(tmp_path / "requests.jsonl")).replace("replay.json", str(tmp_path / "replay.json"))
                   .replace("127.0.0.1:8081", f"127.0.0.1:{a.port}").replace("127.0.0.1:8082", f"127.0.0.1:{b.port}"))
        subprocess.run(command, shell=True, cwd=ROOT, check=True, capture_output=True, text=True, timeout=120)
    report = json.loads((tmp_path / "replay.json").read_text())
    assert (report["replayed"], report["different"]) == (len(recorded), 0)


def documented_exchange(tmp_path, marker: str, exchanges: int) -> None:
    """A guide example: its first block sets up and starts a server (the last line), then each (command, output) pair
    is run against it and must print exactly the documented output."""
    blocks = blocks_after(GUIDE, marker)[:1 + 2 * exchanges]
    *setup, command = blocks[0].strip().splitlines()

    def local(text: str) -> str:
        return text.replace("/tmp/", f"{tmp_path}/")

    for line in setup:
        subprocess.run(local(line), shell=True, cwd=ROOT, check=True)
    with example(local(command), "127.0.0.1:8080", "/ping/") as server:
        for command, expected in zip(blocks[1::2], blocks[2::2]):
            command = local(command).replace("127.0.0.1:8080", f"127.0.0.1:{server.port}")
            shown = subprocess.run(command, shell=True, cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
            assert shown.stdout.strip() == expected.strip(), command


@pytest.mark.servers
@pytest.mark.parametrize("marker, exchanges", [("custom_flask", 2), ("custom_fastapi", 1), ("chat", 1),
                                               ("predictions stream", 1)])
def test_guide_extension_chat_and_stream_examples(tmp_path, marker, exchanges):
    documented_exchange(tmp_path, f"guide-example: {marker}", exchanges)


@pytest.mark.servers
def test_guide_direct_access_example(upstream):
    command = next(block for block in blocks_after(GUIDE, "guide-example: chat") if "DRUM_DIRECT_ACCESS_URL" in block)
    with example(command.strip().replace("http://127.0.0.1:8000", upstream) + " --address 127.0.0.1:8080", "127.0.0.1:8080",
                 "/ping/") as server:
        forwarded = httpx.post(f"http://127.0.0.1:{server.port}/nim/v1/completions", content=b"{}", timeout=60).json()
    assert (forwarded["method"], forwarded["path"], forwarded["received"]) == ("POST", "/v1/completions", 2)


@pytest.mark.servers
def test_guide_monitoring_example(tmp_path):
    start, request, records = blocks_after(GUIDE, "guide-example: monitoring")[:3]
    spool = tmp_path / "spool"
    start = start.replace("/tmp/mlops-spool", str(spool))
    mkdir, command = start.split("\n", 1)
    subprocess.run(mkdir, shell=True, check=True)
    with example(command.replace("\\\n", " "), "127.0.0.1:8080", "/") as server:
        request = request.replace("127.0.0.1:8080", f"127.0.0.1:{server.port}")
        subprocess.run(request, shell=True, cwd=ROOT, capture_output=True, text=True, check=True, executable="/bin/bash")
    spooled = []
    for line in (spool / "fs_spool.1").read_text().splitlines():
        record = json.loads(line)
        data = {key: value for key, value in json.loads(record["data"]).items() if key not in ("timestamp", "executionTime")}
        spooled.append(f"{record['header']['dataType']} {json.dumps(data)}")
    assert spooled == records.strip().splitlines()


@pytest.mark.servers
def test_guide_opentelemetry_example():
    import base64

    from tests.otlp import OtlpReceiver

    start, request = blocks_after(GUIDE, "guide-example: opentelemetry")[:2]
    trace_id, parent_id = re.search(r"traceparent: 00-(\w+)-(\w+)-01", request).groups()
    with OtlpReceiver() as receiver:
        with example(start.replace("http://127.0.0.1:4318", receiver.endpoint).replace("\\\n", " "), "127.0.0.1:8080", "/") as server:
            request = request.replace("127.0.0.1:8080", f"127.0.0.1:{server.port}").replace("\\\n", " ")
            subprocess.run(request, shell=True, cwd=ROOT, capture_output=True, text=True, check=True, executable="/bin/bash")
        spans = receiver.spans()
    assert [(span["name"], span["trace_id"], span["parent_span_id"]) for span in spans] == [
        ("drum.invocations", base64.b64encode(bytes.fromhex(trace_id)).decode(),
         base64.b64encode(bytes.fromhex(parent_id)).decode())]


def test_the_quick_start_says_where_the_drum_compat_command_is():
    """`make` installs into .venv: a user who types the examples' bare `drum-compat` is told how to reach it."""
    quick_start = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "`.venv/bin/drum-compat`" in quick_start and "`. .venv/bin/activate`" in quick_start
    venv_bin = Path(DRUM_COMPAT).parent
    assert (venv_bin / "activate").is_file() and venv_bin.name == "bin"
    shown = subprocess.run([". ./activate && command -v drum-compat"], shell=True, cwd=venv_bin, capture_output=True,
                           text=True, timeout=30, env={"PATH": "/usr/bin:/bin"})
    assert shown.stdout.strip() == str(venv_bin / "drum-compat")


@pytest.mark.parametrize("command", ["server", "config", "parity", "replay", "ab", "ab-status"])
def test_every_command_describes_itself_wrapped_and_shows_its_defaults(command):
    """Through the real console script: a description under the usage (config, replay and ab-status had none), wrapped
    (server's was one long line), and the defaults of the options that have one worth saying."""
    shown = subprocess.run([DRUM_COMPAT, command, "--help"], capture_output=True, text=True, timeout=60,
                           env={**os.environ, "API_TOKEN": "s3cret-token"})
    assert shown.returncode == 0
    description = shown.stdout.split("\n\n")[1]
    assert not description.startswith(("options:", "positional arguments:")) and len(description.split()) > 8
    assert max(map(len, description.splitlines())) <= 100
    assert "s3cret-token" not in shown.stdout  # a default read from the environment is never shown
    expected = {"server": ["TARGET_NAME", "(default: warning)"], "parity": ["(default: 120.0)", "(default: 60.0)"],
                "replay": ["(default: 0.0)"], "ab": ["(default: 120.0)"]}
    for text in expected.get(command, []):
        assert text in " ".join(shown.stdout.split()), text
