"""Worker supervision on real servers and real faults, each stack alike (issue 24): a hung model call is answered 504
and its worker replaced; a call that merely ends late is not; the queue timeout holds whatever the model does; a hook
holding the GIL is not killed; SIGTERM ends the server past a hung call; SIGKILL of the master takes its workers; a
worker over its memory limit is replaced without failing a request."""
from __future__ import annotations

import collections
import os
import re
import signal
import socket
import threading
import time

import httpx
import psutil
import pytest

from drum_compat.compat.running import RunningServer, ended
from tests.models import write_model
from tests.processes import READY_TIMEOUT, serve, wait_until

pytestmark = pytest.mark.servers
CONFIGURATIONS = {
    "gunicorn-gevent": ("gunicorn", {}),
    "gunicorn-sync": ("gunicorn", {"DRUM_GUNICORN_WORKER_CLASS": "sync"}),
    "fastapi": ("fastapi", {}),
}
GRACEFUL = {"gunicorn": "DRUM_GUNICORN_GRACEFUL_TIMEOUT", "fastapi": "DRUM_UVICORN_GRACEFUL_TIMEOUT"}


def faults_server(tmp_path, configuration, **env) -> RunningServer:
    server_type, stack_env = CONFIGURATIONS[configuration]
    code_dir, _ = write_model(tmp_path, "faults")
    return serve(code_dir, server_type, "--target-type", "unstructured", env={**stack_env, **env})


def predict(base_url: str, body: str, **headers) -> httpx.Response:
    return httpx.post(f"{base_url}/predictUnstructured/", content=body, headers=headers, timeout=READY_TIMEOUT)


def in_background(call, *args) -> list:
    """`call(*args)` in a thread; the list receives its response, or the transport error that ended it."""
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(call(*args))
        except httpx.TransportError as exc:
            outcome.append(exc)

    threading.Thread(target=run, daemon=True).start()
    return outcome


def replacements(base_url: str, reason: str) -> float:
    text = httpx.get(f"{base_url}/metrics", timeout=30).text
    found = re.search(rf'^drum_worker_replacements_total{{reason="{reason}",[^}}]*}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def workers(server: RunningServer) -> list[psutil.Process]:
    return [child for child in psutil.Process(server.process.pid).children(recursive=True) if not ended(child)]


@pytest.mark.parametrize("configuration", CONFIGURATIONS)
def test_a_hung_model_call_gets_its_504_and_its_worker_is_replaced(tmp_path, configuration):
    deadline = 2
    with faults_server(tmp_path, configuration, DRUM_CLIENT_REQUEST_TIMEOUT=str(deadline)) as server, \
            httpx.Client(base_url=server.base_url, timeout=READY_TIMEOUT) as kept_alive:
        first_pid = kept_alive.post("/predictUnstructured/", content="ok").text  # this connection stays with that worker
        began = time.monotonic()
        hung = predict(server.base_url, "hang", **{"X-Request-ID": "hung-call-1"})
        waited = time.monotonic() - began
        # requests sent while the call hangs are each answered (a 504 or 503 while the only thread is held, or a 200
        # from the replacement), never left waiting: before, gunicorn's later requests hung for good
        during = [in_background(predict, server.base_url, "ok") for _ in range(3)]
        liveness = wait_until(lambda: (answer := kept_alive.get("/livez")).status_code != 200 and answer,
                              "the stuck worker's /livez fails")

        def replaced() -> bool:
            response = predict(server.base_url, "ok")
            return response.status_code == 200 and response.text != first_pid

        wait_until(replaced, "a new worker answers")
        wait_until(lambda: all(during), "every request sent during the hang is answered")
        counted = replacements(server.base_url, "stuck_model_call")
        log = server.stop()

    assert hung.status_code == 504 and b"DRUM_CLIENT_REQUEST_TIMEOUT" in hung.content
    assert deadline <= waited
    assert {response[0].status_code for response in during} <= {200, 503, 504}
    assert f"Worker {first_pid} recycled: the model call of request hung-call-1 has run" in log
    assert re.search(rf"Worker {first_pid} exits abandoning 1 model call\(s\) still running: request hung-call-1", log)
    assert counted == 1
    # the stuck worker's /livez says so while it drains (before: 200 for good)
    assert liveness.status_code == 503 and b"this worker is being replaced: the model call of request hung-call-1" in liveness.content
    assert liveness.headers["Connection"] == "close"


@pytest.mark.parametrize("configuration", CONFIGURATIONS)
def test_calls_ending_past_their_deadline_under_overload_are_504s_and_nothing_more(tmp_path, configuration):
    deadline, call, clients = 2, 0.3, 12  # the later clients' calls start or end past their deadline
    with faults_server(tmp_path, configuration, DRUM_CLIENT_REQUEST_TIMEOUT=str(deadline)) as server:
        first_pid = predict(server.base_url, "ok").text
        outcomes = [in_background(predict, server.base_url, f"cpu={call}") for _ in range(clients)]
        wait_until(lambda: all(outcomes), "every client answered")
        time.sleep(2 * call)  # a recycle would have begun as the last call ended
        after = predict(server.base_url, "ok")
        counted = replacements(server.base_url, "stuck_model_call")
        log = server.stop()

    statuses = sorted(outcome[0].status_code for outcome in outcomes)
    assert 504 in statuses and 200 in statuses, statuses
    assert after.text == first_pid, "the worker was replaced"
    assert counted == 0 and "recycled" not in log


@pytest.mark.parametrize("configuration", CONFIGURATIONS)
def test_the_queue_timeout_holds_while_every_thread_is_busy(tmp_path, configuration):
    queue_timeout, call, clients = 2, 0.5, 20  # served one after another, the last would wait 10 s

    def timed() -> tuple[httpx.Response, float]:
        began = time.monotonic()
        return predict(server.base_url, f"cpu={call}"), time.monotonic() - began

    with faults_server(tmp_path, configuration, DRUM_EXECUTOR_QUEUE_TIMEOUT=str(queue_timeout)) as server:
        outcomes = [in_background(timed) for _ in range(clients)]
        wait_until(lambda: all(outcomes), "every client answered")
    statuses = [outcome[0][0].status_code for outcome in outcomes]
    assert statuses.count(503) >= clients - 2 * queue_timeout / call - 1, statuses
    # a request admitted just before its queue timeout still runs one call, and a busy machine adds some: nobody waits
    # anywhere near the 10 s of a queue that ignores its timeout (gevent before: 15.8 s for 5)
    assert max(outcome[0][1] for outcome in outcomes) < queue_timeout + 4 * call


@pytest.mark.parametrize("server_type", ["gunicorn", "fastapi"])
def test_a_load_model_holding_the_gil_is_waited_for_not_killed(tmp_path, server_type):
    # one regular expression holding the GIL for ~9 s on an idle core, past uvicorn's own 5 s health check
    with faults_server(tmp_path, "fastapi" if server_type == "fastapi" else "gunicorn-gevent", FAULTS_LOAD_GIL="28") as server:
        answered = predict(server.base_url, "ok")
        log = server.stop()
    assert answered.status_code == 200
    assert "died" not in log and "killed" not in log.lower()


@pytest.mark.parametrize("server_type", ["gunicorn", "fastapi"])
def test_sigterm_ends_the_server_within_the_graceful_timeout_past_a_hung_call(tmp_path, server_type):
    graceful = 3
    configuration = "fastapi" if server_type == "fastapi" else "gunicorn-gevent"
    env = {"DRUM_CLIENT_REQUEST_TIMEOUT": "0", GRACEFUL[server_type]: str(graceful)}
    with faults_server(tmp_path, configuration, **env) as server:
        hung = in_background(lambda: httpx.post(f"{server.base_url}/predictUnstructured/", content="hang", timeout=READY_TIMEOUT))
        wait_until(lambda: httpx.get(f"{server.base_url}/stats/", timeout=30).json()["admission"]["running"] == 1,
                   "the hung call runs")
        began = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(READY_TIMEOUT)
        took = time.monotonic() - began
        log = server.read_output()
    assert "exits abandoning 1 model call(s) still running" in log
    # drained for the graceful timeout, then abandoned; the margin is the workers' own exit, never a hang (before: none)
    assert graceful - 1 <= took < graceful + 20, log[-2000:]
    wait_until(lambda: hung, "the hung request is ended")
    assert isinstance(hung[0], httpx.TransportError) or hung[0].status_code >= 500


@pytest.mark.parametrize("server_type", ["gunicorn", "fastapi"])
def test_sigkill_of_the_master_takes_its_workers_and_frees_the_port(tmp_path, server_type):
    configuration = "fastapi" if server_type == "fastapi" else "gunicorn-gevent"
    with faults_server(tmp_path, configuration, CUSTOM_MODEL_WORKERS="2") as server:
        children = workers(server)
        assert children
        os.kill(server.process.pid, signal.SIGKILL)
        wait_until(lambda: all(map(ended, children)), "every worker ended with its master")
        probe = socket.socket()
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", server.port))  # "Address already in use" while an orphan still listened
        probe.close()


@pytest.mark.parametrize("configuration", CONFIGURATIONS)
def test_a_worker_over_its_memory_limit_is_replaced_without_failing_a_request(tmp_path, configuration):
    with faults_server(tmp_path, configuration) as server:
        idle = max(worker.memory_info().rss for worker in workers(server))
    limit = idle // (1024 * 1024) + 60
    with faults_server(tmp_path, configuration, DRUM_MAX_WORKER_RSS_MB=str(limit)) as server:
        first_pid = predict(server.base_url, "ok").text
        answers = []

        def leak_until_replaced() -> bool:
            answers.append(predict(server.base_url, "leak=20"))
            return answers[-1].text != first_pid

        wait_until(leak_until_replaced, "a new worker answers")
        counted = replacements(server.base_url, "memory")
        log = server.stop()
    assert all(answer.status_code == 200 for answer in answers)
    assert len(answers) >= 3  # ~60 MiB over the idle size, 20 MiB a request; more while the first drains
    assert f"Worker {first_pid} recycled: resident memory" in log and f"above {limit} MiB (DRUM_MAX_WORKER_RSS_MB)" in log
    assert counted == 1


def rejections(base_url: str, reason: str) -> float:
    text = httpx.get(f"{base_url}/metrics", timeout=30).text
    found = re.search(rf'^drum_rejections_total{{reason="{reason}",[^}}]*}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def read_until_closed(connection: socket.socket) -> bytes:
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    return received


@pytest.mark.parametrize("configuration", CONFIGURATIONS)
def test_a_body_trickled_past_the_request_timeout_gets_408_and_the_connection_closes(tmp_path, configuration):
    deadline = 2
    with faults_server(tmp_path, configuration, DRUM_CLIENT_REQUEST_TIMEOUT=str(deadline)) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=READY_TIMEOUT) as connection:
            began = time.monotonic()
            connection.sendall(b"POST /predictUnstructured/ HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nok")
            trickled = 0
            connection.settimeout(0.5)
            answer = b""
            # a byte every 0.5 s until just before the timeout (before: never answered, on both stacks; a timeout of
            # each wait for data would answer only 2 s after the last byte); then none, so that no byte is unread
            # when the server closes (which would reset the connection under its answer). gthread bounds each wait
            # for data only (README: Supervision), so there the client stalls after two bytes
            trickle = 2 if configuration == "gunicorn-sync" else None
            while not answer and time.monotonic() - began < READY_TIMEOUT:
                try:
                    answer = connection.recv(65536)
                except TimeoutError:
                    if (trickle is None or trickled < trickle) and time.monotonic() - began < deadline - 0.25:
                        connection.sendall(b" ")
                        trickled += 1
                        last_byte = time.monotonic() - began
            took = time.monotonic() - began
            connection.settimeout(READY_TIMEOUT)
            answer += read_until_closed(connection)
        counted = rejections(server.base_url, "body_too_slow")
        assert predict(server.base_url, "ok").status_code == 200  # the worker serves on
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert answer.endswith(b'{"message":"ERROR: The request body did not arrive within 2 s (DRUM_CLIENT_REQUEST_TIMEOUT)"}\n')
    assert deadline <= took and trickled >= 2
    if configuration != "gunicorn-sync":
        assert took < last_byte + deadline  # timed from the request's arrival: a timeout per wait would answer only then
    assert counted == 1


CLOCK_GRAIN = 0.005  # seconds


@pytest.mark.parametrize("sent", [b"POST /predictUnstructured/ HTTP/1.1\r\nHost: x\r\n", b""], ids=["part", "nothing"])
@pytest.mark.parametrize("configuration", ["gunicorn-gevent", "fastapi"])
def test_a_request_head_that_never_ends_is_closed_after_the_keep_alive_period(tmp_path, configuration, sent):
    keepalive = 1
    env = {"DRUM_GUNICORN_KEEP_ALIVE" if configuration.startswith("gunicorn") else "DRUM_UVICORN_KEEP_ALIVE": str(keepalive)}
    with faults_server(tmp_path, configuration, **env) as server:
        began = time.monotonic()  # before connecting: the server's timer starts when it accepts
        with socket.create_connection(("127.0.0.1", server.port), timeout=READY_TIMEOUT) as connection:
            connection.sendall(sent)  # and never the rest
            received = read_until_closed(connection)  # before, on fastapi: open for good
            took = time.monotonic() - began
        counted = rejections(server.base_url, "head_too_slow")
    assert received == b""  # closed without an answer, as gunicorn does
    # uvloop's clock is libuv's, read in whole milliseconds at the start of each turn of the loop: its timer may end a
    # millisecond before the wall clock's period (measured once: 0.99996 s of 1 s)
    assert keepalive - CLOCK_GRAIN <= took
    if configuration == "fastapi":
        assert counted == 1  # gunicorn closes it inside its own loop, uncounted


@pytest.mark.parametrize("configuration", ["gunicorn-gevent", "fastapi"])
def test_probes_are_answered_while_slow_clients_hold_all_the_open_files_a_worker_may_have(tmp_path, configuration):
    """450 request heads that never end against a worker limited to 400 open files (before, on fastapi: 14 of 15 probes
    reset, libuv closing what it could not accept): fastapi closes the connection waiting longest for each new one past
    the limit less a reserve; gunicorn retries its accept until its keep-alive period frees descriptors."""
    fd_limit, heads, probes = 400, 450, 10
    with faults_server(tmp_path, configuration) as server:
        master = psutil.Process(server.process.pid)
        for process in [master, *master.children(recursive=True)]:  # workers are running: lower each one's own limit
            process.rlimit(psutil.RLIMIT_NOFILE, (fd_limit, process.rlimit(psutil.RLIMIT_NOFILE)[1]))
        slow = []
        try:
            for _ in range(heads):
                connection = socket.create_connection(("127.0.0.1", server.port), timeout=READY_TIMEOUT)
                slow.append(connection)
                connection.sendall(b"POST /predictUnstructured/ HTTP/1.1\r\nHost: x\r\n")
            answers = []
            for _ in range(probes):
                try:
                    answers.append(httpx.get(f"{server.base_url}/ping", timeout=10).status_code)
                except httpx.TransportError as exc:
                    answers.append(type(exc).__name__)
                time.sleep(0.2)
            for connection in slow:
                connection.settimeout(READY_TIMEOUT)
                assert read_until_closed(connection) == b""  # every slow client is closed, none answered
            closed_for_room = rejections(server.base_url, "closed_for_room")
        finally:
            for connection in slow:
                connection.close()
    assert answers == [200] * probes
    if configuration == "fastapi":
        assert closed_for_room > 0


def test_gthread_workers_replaced_under_a_stream_of_new_connections_lose_nothing(tmp_path):
    """Replacements (SIGTERM from the watchdog) while connections keep arriving. A gthread worker's handler used to close
    its listeners while they stayed on its poller, readable through the master's copy, and an accept on a closed
    listener killed the worker with the requests it ran: seen in 2 of 3 runs of `make overload` (500s, resets), not
    reproduced by this shorter run, which guards the same path."""
    env = {"CUSTOM_MODEL_WORKERS": "2", "DRUM_CLIENT_REQUEST_TIMEOUT": "1", "DRUM_EXECUTOR_QUEUE_DEPTH": "2"}
    outcomes: list = []
    with faults_server(tmp_path, "gunicorn-sync", **env) as server:
        stop = time.monotonic() + 10

        def client(seed: int) -> None:
            calls = 0
            while time.monotonic() < stop:  # a new connection per request; now and then a call stuck past the deadline
                calls += 1
                try:
                    outcomes.append(predict(server.base_url, "cpu=1.5" if (calls + seed) % 15 == 0 else "cpu=0.05").status_code)
                except httpx.TransportError as exc:
                    outcomes.append(type(exc).__name__)

        callers = [threading.Thread(target=client, args=(seed,)) for seed in range(16)]  # most refused at once: 503
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join(READY_TIMEOUT)
        output = server.stop()
    assert output.count("recycled: the model call of request") >= 2, output[-3000:]
    assert "Exception in worker process" not in output, output[-3000:]
    assert outcomes and set(outcomes) <= {200, 503, 504} and 200 in outcomes, collections.Counter(outcomes)
