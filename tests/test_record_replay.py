"""Recording (DRUM_RECORD_REQUESTS) on real servers: redaction, the body cap, sampling, rotation with several
workers on one file; then `drum-compat replay` of those files against two real servers, alike and not."""
from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import httpx
import pytest
from werkzeug.datastructures import Headers

from drum_compat.runtime.record import FileRecorder
from drum_compat.compat.running import DRUM_COMPAT, run_to_exit
from tests.processes import refusing_port, serve, wait_until
from drum_compat.shared.http import NeutralRequest
from drum_compat.shared.record import REDACTED, RecordPolicy, record_entry
from tests.models import write_model
from tests.test_parity_command import TELLS_STACKS_APART

CSV = b"x\n1\n2\n"


def test_an_entry_redacts_secrets_and_keeps_the_body_within_its_cap():
    policy = RecordPolicy(redact=frozenset({"x-tenant-key"}), max_body=4)
    request = NeutralRequest(method="POST", path="/predict/", query_string=b"a=1", headers=Headers(
        [("Authorization", "Bearer s3cret"), ("Cookie", "session=1"), ("X-Tenant-Key", "k"), ("Content-Type", "text/csv")]))
    entry = record_entry(policy, request, b"x\n1\n", 4, 200, 0.0123, "rid-1", "fastapi")
    assert dict(entry["headers"]) == {"Authorization": REDACTED, "Cookie": REDACTED, "X-Tenant-Key": REDACTED,
                                      "Content-Type": "text/csv"}
    assert (entry["method"], entry["path"], entry["query"], entry["status"], entry["server_type"]) == (
        "POST", "/predict/", "a=1", 200, "fastapi")
    assert base64.b64decode(entry["body"]) == b"x\n1\n"
    omitted = record_entry(policy, request, None, 5, 200, 0.0, "rid-2", "fastapi")
    assert omitted["body_omitted"] == 5 and "body" not in omitted


def test_sampling_keeps_about_the_percent_asked(tmp_path):
    recorder = FileRecorder(str(tmp_path / "r.jsonl"), RecordPolicy(sample_percent=30), 1 << 20, 1)
    kept = sum(recorder.keep() for _ in range(2000))
    recorder.close()
    assert 480 <= kept <= 720  # 600 expected; 5 sigma either side


def record(tmp_path, server_type: str, count: int, body: bytes, **env) -> list[Path]:
    code_dir, _ = write_model(tmp_path, "regression")
    log = tmp_path / "requests.jsonl"
    settings = {"DRUM_RECORD_REQUESTS": str(log), "DRUM_RECORD_REDACT_HEADERS": "X-Tenant-Key", **env}
    with serve(code_dir, server_type, "--target-type", "regression", env=settings) as server, httpx.Client() as client:
        for _ in range(count):
            answer = client.post(f"{server.base_url}/predict/?from=test", content=body, headers={
                "Content-Type": "text/csv", "Authorization": "Bearer s3cret", "X-Tenant-Key": "tenant-7"})
            assert answer.status_code == 200
            for probe in ("/ping", "/livez", "/readyz", "/metrics"):  # probes and scrapes are never recorded
                assert client.get(f"{server.base_url}{probe}").status_code == 200
    return sorted(tmp_path.glob("requests.jsonl*"))


@pytest.mark.servers
@pytest.mark.parametrize("server_type", ["gunicorn", "fastapi"])
def test_requests_are_recorded_redacted(tmp_path, server_type):
    files = record(tmp_path, server_type, 5, CSV)
    entries = [json.loads(line) for line in files[0].read_text().splitlines()]
    mine = [entry for entry in entries if entry["path"] == "/predict/"]
    assert len(mine) == 5 and entries == mine  # neither the probes nor the readiness checks
    for entry in mine:
        headers = dict(entry["headers"])
        assert headers["Authorization"] == headers["X-Tenant-Key"] == REDACTED
        assert "s3cret" not in json.dumps(entry) and "tenant-7" not in json.dumps(entry)
        assert (entry["query"], base64.b64decode(entry["body"]), entry["status"], entry["server_type"]) == (
            "from=test", CSV, 200, server_type)


@pytest.mark.servers
def test_two_workers_rotate_one_file_without_losing_or_mixing_lines(tmp_path):
    body = b"x\n" + b"1\n" * 40_000  # 80 kB: 30 of them cross the 1 MiB cap twice
    files = record(tmp_path, "gunicorn", 30, body, CUSTOM_MODEL_WORKERS="2", DRUM_RECORD_MAX_BYTES=str(1 << 20),
                   DRUM_RECORD_BACKUPS="5")
    assert [path.name for path in files][:2] == ["requests.jsonl", "requests.jsonl.1"]
    entries = [json.loads(line) for path in files for line in path.read_text().splitlines()]  # every line whole JSON
    assert all(path.stat().st_size <= (1 << 20) + 200_000 for path in files)
    assert sum(entry["path"] == "/predict/" for entry in entries) == 30


@pytest.mark.servers
def test_a_body_over_the_cap_is_recorded_without_it(tmp_path):
    files = record(tmp_path, "fastapi", 1, CSV, DRUM_RECORD_MAX_BODY="3")
    entry = next(json.loads(line) for line in files[0].read_text().splitlines() if '"/predict/"' in line)
    assert entry["body_omitted"] == len(CSV) and "body" not in entry


def replay(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([DRUM_COMPAT, "replay", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.servers
def test_replay_against_both_stacks(tmp_path):
    files = record(tmp_path, "gunicorn", 20, CSV)
    code_dir, _ = write_model(tmp_path / "served", "regression")
    with serve(code_dir, "gunicorn", "--target-type", "regression") as a, \
            serve(code_dir, "fastapi", "--target-type", "regression") as b:
        finished = replay("--log", *map(str, files), "--a", a.base_url, "--b", b.base_url, "--rate", "100",
                          "--header", "Authorization: Bearer replayed", "--report", str(tmp_path / "report.json"))
        with refusing_port() as port:  # B down: one line (the issue: a difference per request, a latency for refusals)
            down = replay("--log", *map(str, files), "--a", a.base_url, "--b", f"http://127.0.0.1:{port}")
    assert down.returncode == 2 and down.stdout == "", down.stdout
    assert down.stderr.startswith(f"drum-compat: error: http://127.0.0.1:{port} is unreachable (ConnectError: ")
    assert down.stderr.rstrip().endswith(": nothing replayed") and len(down.stderr.splitlines()) == 1
    report = json.loads((tmp_path / "report.json").read_text())
    assert finished.returncode == 0, report["cases"][:3]
    assert report["replayed"] == sum(1 for path in files for _ in path.read_text().splitlines()) >= 20
    assert report["different"] == 0 and report["omitted"] == 0
    for side in ("a", "b"):
        assert 0 < report["latency"][side]["p50"] <= report["latency"][side]["p99"]
    assert "p99" in finished.stdout


@pytest.mark.servers
def test_replaying_against_the_recording_server_records_nothing_again(tmp_path):
    """The issue: each replay against the server that records doubled the file (7, 14, 28, 56 lines)."""
    code_dir, _ = write_model(tmp_path, "regression")
    log = tmp_path / "requests.jsonl"
    with serve(code_dir, "fastapi", "--target-type", "regression", env={"DRUM_RECORD_REQUESTS": str(log)}) as server:
        for _ in range(3):
            assert httpx.post(f"{server.base_url}/predict/", content=CSV, headers={"Content-Type": "text/csv"}).status_code == 200
        wait_until(lambda: log.exists() and len(log.read_text().splitlines()) == 3, "three requests recorded")
        for _ in range(2):
            finished = replay("--log", str(log), "--a", server.base_url, "--b", server.base_url)
            assert finished.returncode == 0, finished.stdout + finished.stderr
        assert httpx.post(f"{server.base_url}/predict/", content=CSV, headers={"Content-Type": "text/csv"}).status_code == 200
        wait_until(lambda: len(log.read_text().splitlines()) == 4, "the client's next request recorded")
    assert len(log.read_text().splitlines()) == 4


@pytest.mark.servers
def test_replay_reports_what_differs(tmp_path):
    files = record(tmp_path, "gunicorn", 3, CSV)
    code_dir = tmp_path / "apart"
    code_dir.mkdir()
    (code_dir / "custom.py").write_text(TELLS_STACKS_APART)
    with serve(code_dir, "gunicorn", "--target-type", "regression") as a, \
            serve(code_dir, "fastapi", "--target-type", "regression") as b:
        finished = replay("--log", *map(str, files), "--a", a.base_url, "--b", b.base_url, "--report", str(tmp_path / "r.json"))
    report = json.loads((tmp_path / "r.json").read_text())
    assert finished.returncode == 1 and report["different"] == 3
    assert [case["differences"] for case in report["cases"]] == [  # the two bodies, whole, as the parity report has them
        [{"part": "body", "a": '{"predictions":[1.0,1.0]}', "b": '{"predictions":[2.0,2.0]}'}]] * 3


def test_an_unreadable_recording_exits_2(tmp_path):
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    finished = replay("--log", str(tmp_path / "bad.jsonl"), "--a", "http://127.0.0.1:1", "--b", "http://127.0.0.1:2")
    assert finished.returncode == 2 and "bad.jsonl:1: not a recorded request" in finished.stderr


def test_a_malformed_header_option_exits_2(tmp_path):
    (tmp_path / "r.jsonl").write_text("")
    finished = replay("--log", str(tmp_path / "r.jsonl"), "--a", "http://127.0.0.1:1", "--b", "http://127.0.0.1:2",
                      "--header", "Authorization Bearer x")
    assert finished.returncode == 2 and "expected NAME:VALUE" in finished.stderr


def test_query_parameters_named_like_secrets_are_redacted():
    policy = RecordPolicy(redact_query=("token", "key", "secret", "password", "sig"))
    request = NeutralRequest(method="GET", path="/info/", query_string=b"token=t1&model=m&Api_Key=k&X-Amz-Signature=s&a=")
    entry = record_entry(policy, request, b"", 0, 200, 0.0, "rid", "fastapi")
    assert entry["query"] == "token=<redacted>&model=m&Api_Key=<redacted>&X-Amz-Signature=<redacted>&a="
    plain = NeutralRequest(method="GET", path="/info/", query_string=b"b=%20&a=1")
    assert record_entry(policy, plain, b"", 0, 200, 0.0, "rid", "fastapi")["query"] == "b=%20&a=1"  # untouched


def test_a_failing_write_is_one_warning_naming_the_error_never_the_entry(tmp_path, caplog):
    path = tmp_path / "r.jsonl"
    recorder = FileRecorder(str(path), RecordPolicy(), 1 << 20, 1)
    recorder.write({"body": "c2VjcmV0LWJvZHk="})
    disk_full(path)
    with caplog.at_level("WARNING", logger="drum_compat"):
        for _ in range(5):
            recorder.write({"body": "c2VjcmV0LWJvZHk="})
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1 and f"Recording to {path} failed (OSError: [Errno 28] No space left on device)" in warnings[0]
    assert "c2VjcmV0" not in caplog.text
    assert recorder.failures == 5


def disk_full(path: Path) -> None:
    """Every later write to `path` fails in the kernel, as on a full disk: the recorder reopens it (it is a new file)."""
    path.unlink()
    path.symlink_to("/dev/full")


@pytest.mark.servers
@pytest.mark.parametrize("server_type", ["gunicorn", "fastapi"])
def test_default_redaction_covers_api_tokens_and_the_files_are_the_owners_only(tmp_path, server_type):
    code_dir, _ = write_model(tmp_path, "regression")
    log = tmp_path / "requests.jsonl"
    with serve(code_dir, server_type, "--target-type", "regression", env={"DRUM_RECORD_REQUESTS": str(log)}) as server:
        answer = httpx.post(f"{server.base_url}/predict/?token=t0ken&from=test", content=CSV, headers={
            "Content-Type": "text/csv", "X-DataRobot-Api-Token": "dr-secret", "X-Api-Key": "key-secret"})
        assert answer.status_code == 200
        # the entry is written once the answer has gone out: read when it is there
        recorded = wait_until(lambda: log.exists() and '"/predict/"' in log.read_text() and log.read_text(),
                              "the request's entry")
        modes = {path.name: path.stat().st_mode & 0o777 for path in tmp_path.glob("requests.jsonl*")}
        disk_full(log)
        later = [httpx.post(f"{server.base_url}/predict/", content=b"x\n" + b"7\n" * i, headers={"Content-Type": "text/csv"})
                 for i in range(1, 4)]
        server_log = server.stop()
    entry = next(json.loads(line) for line in recorded.splitlines() if '"/predict/"' in line)
    headers = {name.lower(): value for name, value in entry["headers"]}
    assert headers["x-datarobot-api-token"] == headers["x-api-key"] == REDACTED and entry["query"] == "token=<redacted>&from=test"
    assert "secret" not in recorded and "t0ken" not in recorded
    assert modes == {"requests.jsonl": 0o600}  # the lock file lives in the same directory under another name
    # the disk filled: requests are still answered, and the log has one warning, never a body (before: 45 lines each)
    assert [answer.status_code for answer in later] == [200, 200, 200]
    assert server_log.count("not recorded so far") == 1 and "No space left on device" in server_log
    assert base64.b64encode(b"x\n7\n").decode() not in server_log and "Traceback" not in server_log


@pytest.mark.parametrize("path, reason", [("/nonexistent/x.jsonl", "its directory /nonexistent does not exist"),
                                          ("/dev/full", "it is not a regular file")])
def test_an_unusable_recording_path_refuses_to_start(tmp_path, path, reason):
    code_dir, _ = write_model(tmp_path, "regression")
    for server_type in ("gunicorn", "fastapi"):
        result = run_to_exit(code_dir, server_type, "--target-type", "regression", env={"DRUM_RECORD_REQUESTS": path})
        assert result.returncode == 2
        assert f"drum-compat: error: DRUM_RECORD_REQUESTS='{path}' cannot be recorded to: {reason}" in result.stderr
