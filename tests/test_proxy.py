"""/directAccess/<path> and /nim/<path> forwarded to a real upstream started by the test, alike on both stacks: the
request and the answer streamed (a 50 MiB upload and a 50 MiB answer leave the worker's memory bounded), hop-by-hop
headers dropped, redirects passed back, DRUM's 400 without an upstream and a clear 500 past the upstream timeout."""
from __future__ import annotations

import json
import time

import httpx
import psutil
import pytest

from drum_compat.compat.running import RunningServer
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
