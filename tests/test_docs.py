"""The examples users copy from README.md and migration_guide.md, executed against real servers,
and the option tables checked against the declarations they document."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from drum_compat.compat.options import SERVER_OPTIONS
from drum_compat.shared.server_types import SERVER_TYPES
from drum_compat.compat.running import RunningServer, free_port

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
    with RunningServer(ROOT / "examples/models/regression", "gunicorn") as server:
        command = command.replace("127.0.0.1:8080", f"127.0.0.1:{server.port}")
        output = subprocess.run(command, shell=True, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert output.strip() == expected.strip()


def start_example(command: str) -> subprocess.Popen:
    """A documented server command in a shell of its own process group."""
    command = command.replace("drum-compat", str(Path(sys.executable).with_name("drum-compat")), 1)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_RUNTIME_PARAM_", "DRUM_"))}
    return subprocess.Popen(command, shell=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def answer_of(process: subprocess.Popen, url: str, verify=True) -> dict:
    """`url`'s JSON once the example's server answers."""
    for _ in range(300):
        try:
            return httpx.get(url, timeout=1, verify=verify).json()
        except httpx.TransportError:
            assert process.poll() is None, "server exited"
            time.sleep(0.1)
    raise TimeoutError(url)


def stop_example(process: subprocess.Popen) -> None:
    os.killpg(process.pid, 15)  # the shell's own process group: the server it started, nothing else
    process.wait(timeout=15)


def serve_example(command: str, url: str, verify=True) -> dict:
    """Run a documented server command until `url` answers; return its JSON."""
    process = start_example(command)
    try:
        return answer_of(process, url, verify)
    finally:
        stop_example(process)


@pytest.mark.servers
def test_guide_switch_example():
    port = free_port()
    command = blocks_after(GUIDE, "guide-example: switch")[0].strip().replace("127.0.0.1:8080", f"127.0.0.1:{port}")
    assert serve_example(command, f"http://127.0.0.1:{port}/info/")["drumServer"] == "fastapi"


@pytest.mark.servers
def test_guide_tls_example(tmp_path):
    from tests.test_tls import client_context, write_server_pki

    ca, cert, key = write_server_pki(tmp_path, "example-password")
    port = free_port()
    command = blocks_after(GUIDE, "guide-example: tls")[0].strip().replace("127.0.0.1:8443", f"127.0.0.1:{port}")
    command = command.replace("server.pem", str(cert)).replace("server.key", str(key)).replace('"..."', '"example-password"')
    info = serve_example(command, f"https://127.0.0.1:{port}/info/", verify=client_context(ca))
    assert info["drumServer"] == "fastapi"


def test_readme_documents_every_option_and_server_type():
    for option in SERVER_OPTIONS:
        assert f"`{option.flag}`" in README, option.flag
        if option.env:
            assert f"`{option.env}" in README, option.env
    for server_type in SERVER_TYPES:
        assert f"`{server_type}`" in README, server_type


@pytest.mark.servers
def test_guide_guards_example():
    command, access_line = blocks_after(GUIDE, "guide-example: guards")[:2]
    port = free_port()
    stats = serve_example(command.replace("127.0.0.1:8080", f"127.0.0.1:{port}"), f"http://127.0.0.1:{port}/stats/")
    assert stats["admission"]["queue_depth"] == 8 and stats["admission"]["request_timeout"] == 30
    assert stats["admission"]["threads"] == 1
    # the documented line has the shape the access log test checks on every stack
    assert re.fullmatch(r'127\.0\.0\.1 - - \[[^\]]+\] "POST /predictions/ HTTP/1\.1" 200 \d+ \d+\.\d{4} \S+ fastapi', access_line.strip())


@pytest.mark.servers
def test_guide_side_by_side_example():
    commands = blocks_after(GUIDE, "guide-example: side by side")[0].strip().splitlines()
    ports = {address: free_port() for address in ("127.0.0.1:8080", "127.0.0.1:8081")}
    processes = []
    try:
        for line in commands:
            address = next(address for address in ports if address in line)
            processes.append((start_example(line.rstrip(" &").replace(address, f"127.0.0.1:{ports[address]}")), ports[address]))
        servers = {answer_of(process, f"http://127.0.0.1:{port}/info/")["drumServer"] for process, port in processes}
        assert servers == {"flask", "fastapi"}  # both up at once, neither in the other's way
    finally:
        for process, _ in processes:
            stop_example(process)


@pytest.mark.servers
def test_guide_parity_example(tmp_path):
    command, cases = blocks_after(GUIDE, "guide-example: parity")[:2]
    (tmp_path / "my-cases.yaml").write_text(cases)
    command = command.replace("drum-compat", str(Path(sys.executable).with_name("drum-compat")), 1)
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
    port = free_port()
    process = start_example(start.rstrip(" &").replace("127.0.0.1:8080", f"127.0.0.1:{port}"))
    try:
        answer_of(process, f"http://127.0.0.1:{port}/info/")
        command = status.replace("drum-compat", str(Path(sys.executable).with_name("drum-compat")), 1)
        shown = subprocess.run(command.replace("127.0.0.1:8080", f"127.0.0.1:{port}"), shell=True, capture_output=True,
                               text=True, timeout=60, check=True).stdout
    finally:
        stop_example(process)
    assert "gunicorn" in shown and "fastapi" in shown and "p99 latency" in shown


@pytest.mark.servers
def test_guide_record_and_replay_example(tmp_path):
    serve, replay = blocks_after(GUIDE, "guide-example: record")[:2]
    port = free_port()
    process = start_example(serve.replace("/var/tmp/requests.jsonl", str(tmp_path / "requests.jsonl"))
                            .replace("127.0.0.1:8080", f"127.0.0.1:{port}"))
    try:
        answer_of(process, f"http://127.0.0.1:{port}/info/")
        with httpx.Client() as client:
            for _ in range(100):
                client.post(f"http://127.0.0.1:{port}/predictions/", content=(ROOT / "examples/data/houses.csv").read_bytes(),
                            headers={"Content-Type": "text/csv"})
    finally:
        stop_example(process)
    recorded = (tmp_path / "requests.jsonl").read_text().splitlines()
    assert 1 <= len(recorded) <= 40  # 10 % of about 100
    model = ROOT / "examples/models/regression"
    with RunningServer(model, "gunicorn") as a, RunningServer(model, "fastapi") as b:
        command = (replay.replace("drum-compat", str(Path(sys.executable).with_name("drum-compat")), 1)
                   .replace("/var/tmp/requests.jsonl", str(tmp_path / "requests.jsonl")).replace("replay.json", str(tmp_path / "replay.json"))
                   .replace("127.0.0.1:8081", f"127.0.0.1:{a.port}").replace("127.0.0.1:8082", f"127.0.0.1:{b.port}"))
        subprocess.run(command, shell=True, cwd=ROOT, check=True, capture_output=True, text=True, timeout=120)
    report = json.loads((tmp_path / "replay.json").read_text())
    assert (report["replayed"], report["different"]) == (len(recorded), 0)


def documented_exchange(tmp_path, marker: str, exchanges: int) -> None:
    """A guide example: its first block sets up and starts a server (the last line), then each (command, output) pair
    is run against it and must print exactly the documented output."""
    blocks = blocks_after(GUIDE, marker)[:1 + 2 * exchanges]
    *setup, serve = blocks[0].strip().splitlines()
    port = free_port()

    def local(text: str) -> str:
        return text.replace("/tmp/", f"{tmp_path}/").replace("127.0.0.1:8080", f"127.0.0.1:{port}")

    for line in setup:
        subprocess.run(local(line), shell=True, cwd=ROOT, check=True)
    process = start_example(local(serve))
    try:
        answer_of(process, f"http://127.0.0.1:{port}/ping/")
        for command, expected in zip(blocks[1::2], blocks[2::2]):
            shown = subprocess.run(local(command), shell=True, cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
            assert shown.stdout.strip() == expected.strip(), command
    finally:
        stop_example(process)


@pytest.mark.servers
@pytest.mark.parametrize("marker, exchanges", [("custom_flask", 2), ("custom_fastapi", 1), ("chat", 1),
                                               ("predictions stream", 1)])
def test_guide_extension_chat_and_stream_examples(tmp_path, marker, exchanges):
    documented_exchange(tmp_path, f"guide-example: {marker}", exchanges)


@pytest.mark.servers
def test_guide_direct_access_example(upstream):
    command = next(block for block in blocks_after(GUIDE, "guide-example: chat") if "DRUM_DIRECT_ACCESS_URL" in block)
    port = free_port()
    process = start_example(command.strip().replace("http://127.0.0.1:8000", upstream) + f" --address 127.0.0.1:{port}")
    try:
        answer_of(process, f"http://127.0.0.1:{port}/ping/")
        forwarded = httpx.post(f"http://127.0.0.1:{port}/nim/v1/completions", content=b"{}").json()
        assert (forwarded["method"], forwarded["path"], forwarded["received"]) == ("POST", "/v1/completions", 2)
    finally:
        stop_example(process)
