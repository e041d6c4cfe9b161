"""/directAccess/<path> and /nim/<path> forwarded to a real upstream started by the test, alike on both stacks: the
request and the answer streamed (a 50 MiB upload and a 50 MiB answer leave the worker's memory bounded), hop-by-hop
headers dropped, redirects passed back, DRUM's 400 without an upstream and a clear 500 past the upstream timeout."""
from __future__ import annotations

import json
import os
import subprocess
import time

import httpx
import psutil
import pytest

from drum_compat.compat.running import DRUM_COMPAT, RunningServer
from tests.models import EXAMPLES
from tests.processes import refusing_port, serve
from tests.upstream import SLOW_UPSTREAM

pytestmark = pytest.mark.servers
MIB = 1024 * 1024
TIMEOUT_PARAMETER = {"MLOPS_RUNTIME_PARAM_NIM_DIRECT_ACCESS_REQUEST_TIMEOUT": json.dumps({"type": "numeric", "payload": 2})}


@pytest.fixture(scope="module", params=["gunicorn", "uvicorn"])
def proxy(request, upstream):
    env = {"DRUM_DIRECT_ACCESS_URL": upstream, **TIMEOUT_PARAMETER}
    with serve(EXAMPLES / "regression", request.param, "--target-type", "regression", env=env) as server:
        yield server


def worker_rss(server: RunningServer) -> int:
    workers = psutil.Process(server.process.pid).children(recursive=True)
    return sum(process.memory_info().rss for process in workers)


def test_method_path_query_headers_and_body_reach_the_upstream(proxy, upstream):
    for prefix in ("/directAccess", "/nim"):
        answer = httpx.put(f"{proxy.base_url}{prefix}/v1/chat/completions/?a=1&b=%20", content=b"hello",
                           headers={"X-Tenant": "acme", "Proxy-Authorization": "Basic c2VjcmV0", "Content-Type": "text/plain"})
        assert answer.status_code == 201 and answer.headers["x-upstream"] == "nim"
        seen = answer.json()
        assert (seen["method"], seen["path"], seen["query"], seen["received"]) == ("PUT", "/v1/chat/completions", "a=1&b=%20", 5)
        assert seen["headers"]["x-tenant"] == "acme" and seen["headers"]["content-type"] == "text/plain"
        # hop-by-hop headers stay on their own connection, both ways; Host is the upstream's
        assert "proxy-authorization" not in seen["headers"] and seen["headers"]["host"] == upstream.split("//")[1]
        assert "keep-alive" not in answer.headers and "proxy-authenticate" not in answer.headers
        assert answer.headers["X-Request-ID"]  # drum-compat's headers are added to the upstream's


def test_redirects_are_passed_back_not_followed(proxy):
    answer = httpx.get(f"{proxy.base_url}/directAccess/v1/moved")
    assert (answer.status_code, answer.headers["location"]) == (302, "/v1/elsewhere")


def test_fifty_mib_each_way_pass_with_bounded_worker_memory(proxy):
    httpx.get(f"{proxy.base_url}/directAccess/v1/big/1")  # warm: the client's pool and buffers exist
    before = worker_rss(proxy)
    received = 0
    with httpx.stream("GET", f"{proxy.base_url}/directAccess/v1/big/50", timeout=60) as answer:
        assert answer.status_code == 200
        for chunk in answer.iter_raw():
            received += len(chunk)
    assert received == 50 * MIB
    upload = httpx.post(f"{proxy.base_url}/nim/v1/upload", content=(b"y" * MIB for _ in range(50)), timeout=60)
    assert upload.json()["received"] == 50 * MIB
    assert worker_rss(proxy) - before < 32 * MIB  # neither body was held in memory


def test_past_the_upstream_timeout_the_answer_is_a_clear_500(proxy, upstream):
    began = time.monotonic()
    answer = httpx.get(f"{proxy.base_url}/directAccess/v1/slow", timeout=30)
    assert answer.status_code == 500 and time.monotonic() - began < SLOW_UPSTREAM  # before the upstream answered
    assert answer.json() == {"message": f"ERROR: The upstream at {upstream} did not answer within 2 s "
                                        "(NIM_DIRECT_ACCESS_REQUEST_TIMEOUT)"}


def test_an_unreachable_upstream_is_a_500_naming_it():
    with refusing_port() as port:
        gone = f"http://127.0.0.1:{port}"
        with serve(EXAMPLES / "regression", "uvicorn", "--target-type", "regression", env={"DRUM_DIRECT_ACCESS_URL": gone}) as server:
            answer = httpx.get(f"{server.base_url}/nim/v1/models", timeout=60)
    assert answer.status_code == 500 and answer.json()["message"].startswith(f"ERROR: The upstream at {gone} could not be reached")


def test_the_blocking_proxy_client_is_made_once_for_threads_that_forward_at_once(monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    from drum_compat.flask_backend.steps import BlockingSteps

    made = []

    class SlowClient:  # slow enough that unguarded threads would each make one
        def __init__(self, **options) -> None:
            time.sleep(0.05)
            made.append(self)

        def close(self) -> None:
            made.remove(self)

    monkeypatch.setattr(httpx, "Client", SlowClient)
    steps = BlockingSteps(None, 1)
    with ThreadPoolExecutor(8) as pool:
        clients = set(map(id, pool.map(lambda _: steps.upstream, range(8))))
    assert len(clients) == 1 and len(made) == 1
    steps.close_upstream()
    steps.executor.shutdown()
    assert made == []


def test_encoded_dots_slashes_question_marks_and_hashes_stay_data_under_the_base(proxy):
    seen = httpx.get(f"{proxy.base_url}/directAccess/..%2F..%2Fadmin").json()
    assert seen["raw_path"] == "/..%2F..%2Fadmin"  # one segment of data: before, GET /admin reached the upstream
    seen = httpx.get(f"{proxy.base_url}/nim/v1/a%3Fb%23c/d").json()
    assert (seen["raw_path"], seen["query"]) == ("/v1/a%3Fb%23c/d", "")  # before: a query and a fragment
    for escape in ("v1/%2E%2E/%2E%2E/admin", "v1/%2e/admin", "%2E%2E"):
        answer = httpx.get(f"{proxy.base_url}/directAccess/{escape}")
        assert answer.status_code == 400 and "would leave the base path" in answer.json()["message"], escape


def test_hop_by_hop_headers_named_by_connection_are_dropped_both_ways_and_a_get_has_no_body(proxy):
    answer = httpx.get(f"{proxy.base_url}/directAccess/v1/echo", headers={"Connection": "keep-alive, X-Client-Hop",
                                                                           "X-Client-Hop": "1", "X-Kept": "1"})
    seen = answer.json()
    assert "x-client-hop" not in seen["headers"] and seen["headers"]["x-kept"] == "1"
    assert "transfer-encoding" not in seen["headers"] and "content-length" not in seen["headers"]  # before: chunked
    assert "x-upstream-hop" not in answer.headers
    # the serving server's own Server and Date, once each, never the upstream's
    assert answer.headers.get_list("server") != ["upstream-nim"] and len(answer.headers.get_list("server")) == 1
    assert len(answer.headers.get_list("date")) == 1 and "1970" not in answer.headers["date"]


@pytest.mark.parametrize("server_type", ["gunicorn", "uvicorn"])
def test_credentials_in_the_upstream_url_reach_it_and_nothing_else_and_the_rate_limit_applies(tmp_path, server_type, upstream):
    with_credentials = upstream.replace("http://", "http://admin:secret@")
    env = {"DRUM_DIRECT_ACCESS_URL": with_credentials, "DRUM_RATE_LIMIT_ENABLED": "true", "DRUM_RATE_LIMIT_RPM": "1",
           "DRUM_RATE_LIMIT_BURST": "2"}
    with serve(EXAMPLES / "regression", server_type, "--target-type", "regression", env=env) as server:
        answers = [httpx.get(f"{server.base_url}/directAccess/v1/echo") for _ in range(3)]
        log = server.stop()
    assert answers[0].json()["headers"]["authorization"] == "Basic YWRtaW46c2VjcmV0"  # admin:secret, as HTTP Basic
    assert [answer.status_code for answer in answers] == [201, 201, 429]  # before: never limited
    assert "secret" not in log
    config = subprocess.run([DRUM_COMPAT, "config"], env={**os.environ, **env}, capture_output=True, text=True, check=True)
    assert "admin:secret" not in config.stdout and "http://***@127.0.0.1" in config.stdout


@pytest.mark.parametrize("server_type", ["gunicorn", "uvicorn"])
def test_an_unreachable_upstream_with_credentials_is_a_500_that_never_shows_them(server_type):
    with refusing_port() as port:
        env = {"DRUM_DIRECT_ACCESS_URL": f"http://admin:secret@127.0.0.1:{port}/base"}
        with serve(EXAMPLES / "regression", server_type, "--target-type", "regression", env=env) as server:
            answer = httpx.get(f"{server.base_url}/nim/v1/models", timeout=60)
            log = server.stop()
    assert answer.status_code == 500
    assert answer.json()["message"].startswith(f"ERROR: The upstream at http://***@127.0.0.1:{port}/base could not be reached")
    assert "secret" not in answer.text and "secret" not in log
