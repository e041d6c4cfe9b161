"""Connections spread over the workers by load, on real servers (issue 24, item 8): keep-alive clients that a race put on
one worker move to another with room, nothing queues on a worker while another has a free thread, and SIGKILL of the
busiest worker loses no more than the calls it was running. The policy itself: tests/test_guard_logic.py."""
from __future__ import annotations

import http.client
import os
import signal
import socket
import threading
import time
from collections import Counter

import httpx
import psutil
import pytest

from drum_compat.runtime.load_board import LoadBoard
from drum_compat.compat.running import RunningServer
from tests.models import write_model
from tests.processes import READY_TIMEOUT, serve, wait_until
from tests.test_supervision import CONFIGURATIONS

pytestmark = pytest.mark.servers
CALL = b"sleep=0.2"


class KeepAliveClient(threading.Thread):
    """Sends model requests back to back on one keep-alive connection (a new one when an answer closes it or the
    connection fails), counting answers and failures, until stopped."""

    def __init__(self, port: int, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.stop = stop
        self.answers: Counter = Counter()
        self.failed = 0

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.connection.request("POST", "/predictUnstructured/", body=CALL, headers={"Content-Type": "text/plain"})
                response = self.connection.getresponse()
                response.read()
                self.answers[response.status] += 1
            except (OSError, http.client.HTTPException):
                self.failed += 1
                self.connection.close()


def connections_by_worker(server: RunningServer, port: int) -> Counter:
    """Client connections each worker process holds now."""
    held: Counter = Counter()
    for process in psutil.Process(server.process.pid).children(recursive=True):
        try:
            established = [c for c in process.net_connections("tcp") if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port]
        except psutil.NoSuchProcess:
            continue
        if established:
            held[process.pid] = len(established)
    return held


def run_clients(tmp_path, configuration: str, clients: int, threads: int, settle: float = 3.0, **env: str):
    """Two workers of `threads` model threads, `clients` keep-alive clients; after `settle` seconds the busiest worker is
    SIGKILLed. Returns (connections by worker before the kill, failures of the clients, the answers)."""
    server_type, stack_env = CONFIGURATIONS[configuration]
    code_dir, _ = write_model(tmp_path, "faults")
    env = {**stack_env, "CUSTOM_MODEL_WORKERS": "2", "DRUM_EXECUTOR_WORKERS": str(threads), "DRUM_CLIENT_REQUEST_TIMEOUT": "0",
           **env}
    with serve(code_dir, server_type, "--target-type", "unstructured", env=env) as server:
        port = int(server.base_url.rsplit(":", 1)[1])
        wait_until(lambda: len(psutil.Process(server.process.pid).children(recursive=True)) >= 2, "both workers started")
        stop = threading.Event()
        pool = [KeepAliveClient(port, stop) for _ in range(clients)]
        for client in pool:
            client.connection.connect()  # all at once, as a client pool opens: the workers race for them
        for client in pool:
            client.start()
        try:
            time.sleep(settle)
            # with the queue in the backlog every answer closes its connection: on a busy machine a reading can fall in
            # the gap between a close and the next accept of both workers, so read again until a worker holds one
            held = wait_until(lambda: connections_by_worker(server, port), "a worker holding a client connection", timeout=10,
                              every=0.01)
            busiest = max(held, key=held.get)
            os.kill(busiest, signal.SIGKILL)
            time.sleep(2.0)
        finally:
            stop.set()
            for client in pool:
                client.join(30)
        answers = sum((client.answers for client in pool), Counter())
        return held, sum(client.failed for client in pool), answers


@pytest.mark.parametrize("configuration", CONFIGURATIONS)
def test_with_room_on_another_worker_nothing_queues_and_a_killed_worker_loses_only_its_running_calls(tmp_path, configuration):
    threads, clients = 4, 6  # more than one worker's threads, fewer than both workers'
    held, failed, answers = run_clients(tmp_path, configuration, clients, threads)
    assert sum(held.values()) == clients, held
    # before, a race could leave all 6 on one worker: 4 running, 2 queued while the other worker idled, all 6 lost
    assert max(held.values()) <= threads, held
    assert failed <= threads, (failed, held)
    assert answers[200] > 0 and set(answers) == {200}, answers


@pytest.mark.parametrize("configuration", CONFIGURATIONS)
def test_keep_alive_clients_of_an_overloaded_server_spread_over_its_workers(tmp_path, configuration):
    clients = 16  # one model thread per worker: every worker is busy, requests queue on both
    held, failed, answers = run_clients(tmp_path, configuration, clients, threads=1)
    assert sum(held.values()) == clients, held
    # before: 15 and 1, or 16 and 0, and SIGKILL of the busy one lost 15
    assert max(held.values()) <= 11, held
    assert failed <= 11, (failed, held)
    assert answers[200] > 0 and set(answers) == {200}, answers


@pytest.mark.parametrize("configuration", CONFIGURATIONS)
def test_with_the_queue_in_the_backlog_a_killed_worker_loses_only_its_running_call(tmp_path, configuration):
    """DRUM_QUEUE_IN_BACKLOG, as DRUM's sync workers: one connection per model thread, closed after each answer; the
    other clients wait in the kernel's listen backlog, which the surviving worker and the replacement accept from."""
    clients = 16
    held, failed, answers = run_clients(tmp_path, configuration, clients, threads=1, DRUM_QUEUE_IN_BACKLOG="true")
    assert max(held.values()) <= 1, held  # by default: 9 here, and 9 lost
    assert failed <= 1, (failed, held)
    assert answers[200] > clients and set(answers) == {200}, answers


def test_with_the_queue_in_the_backlog_a_websocket_does_not_keep_its_place(tmp_path):
    """A custom_fastapi.py's WebSocket leaves the count of connections, as it leaves uvicorn's: with one model thread, an
    open socket would otherwise leave no room for any request, for good."""
    code_dir, _ = write_model(tmp_path, "faults")
    (code_dir / "custom_fastapi.py").write_text(
        "from fastapi import WebSocket\n\n"
        "def init_app(app):\n"
        "    @app.websocket('/feed')\n"
        "    async def feed(websocket: WebSocket):\n"
        "        await websocket.accept()\n"
        "        await websocket.receive_text()\n")
    env = {"DRUM_EXECUTOR_WORKERS": "1", "DRUM_QUEUE_IN_BACKLOG": "true"}
    with serve(code_dir, "fastapi", "--target-type", "unstructured", env=env) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=READY_TIMEOUT) as feed:
            feed.sendall(b"GET /feed HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                         b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
            assert feed.recv(65536).startswith(b"HTTP/1.1 101 ")
            answers = [httpx.post(f"{server.base_url}/predictUnstructured/", content=b"ok", timeout=30).status_code
                       for _ in range(3)]
    assert answers == [200, 200, 200]  # before: each waited in the backlog behind the socket until the timeout


def test_the_board_counts_workers_that_accept_and_reuses_the_slots_of_those_gone(tmp_path):
    now = [100.0]
    path = str(tmp_path / "board")

    def worker() -> LoadBoard:
        return LoadBoard(path, workers=2, clock=lambda: now[0])

    first, second = worker(), worker()
    first.admission_changed(1, 3)
    assert list(second.others()) == []  # still starting: its loop has not run, it takes no connections yet
    first.stamp()
    second.stamp()
    assert second.index != first.index
    assert [(load.running, load.waiting) for load in second.others()] == [(1, 3)]
    now[0] += 10  # neither has written since: a dead or frozen worker is nobody's to count on
    assert list(second.others()) == []
    third = worker()
    third.stamp()
    assert third.index == first.index
    third.leave()  # a retiring worker: gone from the board, and it stays gone whatever it still runs
    third.admission_changed(0, 1)
    third.stamp()
    second.stamp()
    assert list(second.others()) == []
    fourth = worker()
    fourth.stamp()
    assert fourth.index == first.index
