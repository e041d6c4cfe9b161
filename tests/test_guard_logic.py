"""The guards' plain logic, in-process: the admission gate on a fake clock, the token bucket, who the
client is behind proxies, the body buffer, the guard settings, and both stacks answering guard refusals alike."""
from __future__ import annotations

import io
import ipaddress
import os
from pathlib import Path

import pytest
from werkzeug.datastructures import Headers

from drum_compat.runtime.bootstrap import app_settings
from drum_compat.runtime.instance import INSTANCE_DIR_ENV, InstanceError, create_instance, remove_instance
from drum_compat.runtime.settings import resolve_settings
from drum_compat.shared.app import AppSettings, DrumApp
from drum_compat.shared.guards.admission import AdmissionGate, AdmissionLimits, RunningCall
from drum_compat.shared.guards.balance import WorkerLoad, hands_back_connection, takes_new_connections
from drum_compat.shared.guards.body import SPOOL_ABOVE, RequestBody
from drum_compat.shared.guards.front_door import FrontDoorSettings
from drum_compat.shared.guards.protocol import (UNUSUAL_LINE, ProtocolRefusal, as_http_11, bodiless, first_line_verdict,
                                               unusual_coding)
from drum_compat.shared.guards.rate_limit import LocalBuckets, RateLimitPolicy, parse_networks, take_token
from drum_compat.shared.guards.room import FD_RESERVE, longest_waiting, short_of_fds
from drum_compat.shared.guards.supervision import MIB, SupervisionLimits, replacement
from drum_compat.shared.metrics import DEADLINE, MEMORY, MULTIPROCESS_DIR_ENV, QUEUE_FULL, QUEUE_TIMEOUT, STUCK_CALL
from drum_compat.shared.server_types import SERVER_TYPES, Stack
from drum_compat.shared.steps import BODY_COMPLETE, BODY_OVER_LIMIT
from tests.conftest import Stacks, load_model


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def gate(**limits) -> tuple[AdmissionGate, Clock]:
    clock = Clock()
    return AdmissionGate(AdmissionLimits(**limits), clock=clock), clock


def test_gate_admits_threads_plus_queue_then_refuses():
    admission, clock = gate(threads=1, queue_depth=2)
    tickets = [admission.admit(clock()) for _ in range(4)]
    assert all(tickets[:3]) and tickets[3] is None
    assert admission.snapshot()["rejected"][QUEUE_FULL] == 1
    assert admission.limits.queue_depth == 2 and AdmissionLimits(threads=3).queue_depth == 100  # default


def test_a_waiter_leaves_after_the_queue_timeout_and_its_job_never_runs():
    admission, clock = gate(threads=1, queue_timeout=30)
    ticket = admission.admit(clock())
    assert admission.next_wait(ticket) == 30
    clock.now += 10
    assert admission.expire(ticket) is None  # woke early: wait on
    clock.now += 20
    assert admission.expire(ticket) == QUEUE_TIMEOUT
    calls = []
    assert admission.job(ticket, lambda: calls.append(1))() is None and calls == []
    assert admission.snapshot()["waiting"] == 0


def test_deadline_counts_queueing_and_a_timed_out_run_keeps_its_thread():
    admission, clock = gate(threads=1, queue_timeout=30, deadline=1)
    running, queued = admission.admit(clock(), "r-1"), admission.admit(clock(), "r-2")
    assert admission.start(running)
    assert admission.next_wait(queued) == 1  # the deadline comes before the queue timeout
    clock.now += 1
    assert admission.expire(queued) == DEADLINE
    assert not admission.wedged
    assert admission.expire(running) == DEADLINE
    assert admission.wedged and admission.snapshot()["running"] == 1  # still held until the thread ends
    assert admission.running_calls() == [RunningCall("r-1", 100.0)]  # what supervision reads
    assert admission.admit(clock()) is not None  # the queue still takes work meanwhile
    admission.finish(running)
    assert not admission.wedged and admission.running_calls() == []


LIMITS = SupervisionLimits(deadline=3, grace=30)


def test_a_call_is_stuck_past_the_deadline_only_when_every_thread_is_busy():
    one = [RunningCall("r-1", 100.0)]
    assert replacement(LIMITS, one, threads=1, now=103.0) is None  # at the deadline: not yet
    verdict = replacement(LIMITS, one, threads=1, now=103.5)
    assert verdict.reason == STUCK_CALL and "request r-1 has run 3.5 s" in verdict.message
    assert "every model thread is busy" in verdict.message
    # a thread is free: the stuck call is given the grace before the worker is replaced
    assert replacement(LIMITS, one, threads=2, now=133.0) is None
    verdict = replacement(LIMITS, one, threads=2, now=133.5)
    assert verdict.reason == STUCK_CALL and "plus 30 s of grace" in verdict.message


def test_the_oldest_call_is_named_and_queueing_never_counts():
    calls = [RunningCall("young", 110.0), RunningCall("old", 100.5)]
    assert "request old has run 3.1 s" in replacement(LIMITS, calls, threads=2, now=103.6).message
    # a call that waited 2.9 s in the queue and has run 0.3 s: a 504 at most, never a replacement (issue 24, 3)
    assert replacement(LIMITS, [RunningCall("late", 102.9)], threads=1, now=103.2) is None


def test_without_a_deadline_no_call_is_stuck_and_memory_is_checked_only_when_guarded():
    assert replacement(SupervisionLimits(deadline=0), [RunningCall("r", 0.0)], threads=1, now=1e6) is None
    guarded = SupervisionLimits(max_rss=100 * MIB)
    assert replacement(guarded, [], 1, 0.0, rss=100 * MIB) is None
    verdict = replacement(guarded, [], 1, 0.0, rss=101 * MIB)
    assert verdict.reason == MEMORY and "101 MiB is above 100 MiB (DRUM_MAX_WORKER_RSS_MB)" in verdict.message
    assert replacement(SupervisionLimits(), [], 1, 0.0, rss=1 << 40) is None


POLICY = RateLimitPolicy(per_minute=60, burst=3)


def test_token_bucket_allows_the_burst_then_one_per_refill():
    clock = Clock()
    buckets = LocalBuckets(POLICY, clock)
    assert [buckets.take("a").allowed for _ in range(4)] == [True, True, True, False]
    assert buckets.take("b").allowed  # another client has its own bucket
    denied = buckets.take("a")
    assert denied.retry_after(POLICY) == 1 and denied.reset(POLICY) == 3
    clock.now += 1
    assert buckets.take("a").allowed and not buckets.take("a").allowed
    assert take_token(0.0, 0.0, 1000.0, POLICY).tokens == 2  # refill never exceeds the burst


TRUSTED = RateLimitPolicy(60, 3, parse_networks("10.0.0.0/8, 192.168.1.1"))


@pytest.mark.parametrize("peer, forwarded, client", [
    ("203.0.113.5", "1.2.3.4", "203.0.113.5"),  # untrusted peer: its header is ignored
    ("10.1.1.1", "1.2.3.4", "1.2.3.4"),
    ("10.1.1.1", "6.6.6.6, 1.2.3.4, 192.168.1.1", "1.2.3.4"),  # right-most address not a proxy
    ("10.1.1.1", "10.2.2.2, 10.3.3.3", "10.2.2.2"),  # only proxies: the first one
    ("10.1.1.1", "1.2.3.4, not-an-ip", "10.1.1.1"),  # a malformed chain: the peer
    ("10.1.1.1", None, "10.1.1.1"),
])
def test_the_client_behind_trusted_proxies(peer, forwarded, client):
    assert TRUSTED.client_of(peer, forwarded) == client
    assert TRUSTED.trusted_proxies[1] == ipaddress.ip_network("192.168.1.1/32")


def test_a_body_past_10_mib_is_spooled_to_disk_and_removed_at_close(tmp_path):
    body = RequestBody(limit=SPOOL_ABOVE + 10, spool_dir=str(tmp_path))  # the instance's directory
    assert body.feed(b"x" * SPOOL_ABOVE) and not body.spooled
    assert body.feed(b"y" * 10) and body.spooled
    path = Path(f"/proc/self/fd/{body.file.fileno()}").resolve()
    assert path.parent == tmp_path
    assert body.read()[-10:] == b"y" * 10
    assert not body.feed(b"z")  # past the limit
    body.close()
    assert not path.exists() or "(deleted)" in str(path)


class CountedInput:
    """A wsgi.input that records the size of each read."""

    def __init__(self, data: bytes) -> None:
        self.stream = io.BytesIO(data)
        self.asked: list[int] = []

    def read(self, size: int) -> bytes:
        self.asked.append(size)
        return self.stream.read(size)


@pytest.mark.parametrize("declared", [True, False])
def test_the_gunicorn_stack_reads_a_large_body_in_few_reads_and_stops_past_the_limit(tmp_path, declared):
    from drum_compat.runtime.startup import MMAP_THRESHOLD
    from drum_compat.flask_backend.steps import WSGI_READ, read_body

    data = os.urandom(5_000_000)
    stream = CountedInput(data)
    environ = {"wsgi.input": stream, **({"CONTENT_LENGTH": str(len(data))} if declared else {"wsgi.input_terminated": True})}
    body = RequestBody(limit=len(data), spool_dir=str(tmp_path))
    assert read_body(environ, body) == BODY_COMPLETE and body.read() == data
    assert len(stream.asked) <= len(data) // WSGI_READ + 2  # gunicorn's reader costs per call, not per byte
    assert WSGI_READ < MMAP_THRESHOLD  # each read's buffer comes from the heap, not from a fresh mapping
    over = CountedInput(data)
    assert read_body({"wsgi.input": over, "CONTENT_LENGTH": str(len(data))},
                     RequestBody(limit=WSGI_READ, spool_dir=str(tmp_path))) == BODY_OVER_LIMIT
    assert len(over.asked) == 2 and over.stream.tell() == 2 * WSGI_READ  # the rest left unread


def test_guard_settings_are_read_with_their_fastapi_aliases():
    resolution = resolve_settings("fastapi", {"DRUM_FASTAPI_MAX_UPLOAD_SIZE": "2048", "DRUM_EXECUTOR_WORKERS": "3",
                                              "DRUM_RATE_LIMIT_ENABLED": "yes", "DRUM_TRUSTED_PROXIES": "10.0.0.0/8"})
    assert resolution.value("max_upload_size") == 2048
    assert any("DRUM_FASTAPI_MAX_UPLOAD_SIZE is deprecated" in message for message in resolution.warnings)
    core = {key: resolution.value(key) for key in resolution.values}
    settings = app_settings(SERVER_TYPES["uvicorn"], core, environ={"DRUM_RATE_LIMIT_REDIS_URL": "redis://:pw@127.0.0.1:1/0"})
    assert settings.admission == AdmissionLimits(threads=3, queue_depth=100, queue_timeout=30, deadline=120)
    assert settings.front_door.rate_limit.trusted_proxies == parse_networks("10.0.0.0/8")
    assert settings.front_door.redis_url == "redis://:pw@127.0.0.1:1/0" and "pw" not in repr(settings.front_door)
    assert settings.server_type.name == "uvicorn" and settings.server_type.stack == Stack.FASTAPI


def test_instance_dir_is_made_and_removed_and_a_given_metrics_dir_emptied_and_locked(tmp_path):
    made = create_instance({})
    assert os.path.isdir(made[MULTIPROCESS_DIR_ENV]) and made[MULTIPROCESS_DIR_ENV].startswith(made[INSTANCE_DIR_ENV])
    assert remove_instance(made) is None
    assert not os.path.exists(made[INSTANCE_DIR_ENV])
    (tmp_path / "counter_1.db").write_bytes(b"old")
    given = create_instance({MULTIPROCESS_DIR_ENV: str(tmp_path)})
    assert given[MULTIPROCESS_DIR_ENV] == str(tmp_path) and not (tmp_path / "counter_1.db").exists()
    with pytest.raises(InstanceError, match=f"in use by another running drum-compat instance \\(pid {os.getpid()}\\)"):
        create_instance({MULTIPROCESS_DIR_ENV: str(tmp_path)})  # the lock is held by an open descriptor, this one
    remove_instance(given)
    assert tmp_path.is_dir()  # the operator's directory is never removed


@pytest.fixture()
def guarded(tmp_path):
    model = load_model(tmp_path, "regression")
    front_door = FrontDoorSettings(max_upload_size=64, rate_limit=RateLimitPolicy(per_minute=1, burst=2))
    return Stacks(model, settings=AppSettings(server_type=SERVER_TYPES["gunicorn"], front_door=front_door))


def test_both_stacks_refuse_a_declared_oversize_body_alike(guarded):
    answer = guarded.both("POST", "/predict/", b"x" * 65, {"Content-Type": "text/csv"})
    assert answer.status == 413 and answer.json == {"message": "ERROR: Request body is larger than 64 bytes (DRUM_MAX_UPLOAD_SIZE)"}


def test_both_stacks_rate_limit_alike(guarded):
    # each stack has its own bucket for the test client: 2 allowed, then 429 on both
    answers = [guarded.both("POST", "/predict/", b"a\n1\n", {"Content-Type": "text/csv"}) for _ in range(3)]
    assert [answer.status for answer in answers] == [200, 200, 429]
    assert answers[2].header("RateLimit-Limit") == "2" and answers[2].header("Retry-After") == "60"
    assert guarded.both("GET", "/ping/").status == 200  # probes are never limited


def test_the_event_loops_wait_for_a_model_call_never_cancels_it():
    import asyncio
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from drum_compat.fastapi_backend.steps import wait_at_most
    from drum_compat.shared.steps import STILL_RUNNING

    release = threading.Event()

    async def scenario():
        with ThreadPoolExecutor(1) as pool:
            slow = asyncio.wrap_future(pool.submit(lambda: release.wait(5) and "late"))
            assert await wait_at_most(slow, 0.05) is STILL_RUNNING  # the deadline passed: the call goes on
            waiting = asyncio.ensure_future(wait_at_most(slow, None))
            await asyncio.sleep(0.05)
            waiting.cancel()  # the request went away
            with pytest.raises(asyncio.CancelledError):
                await waiting
            assert not slow.cancelled()
            release.set()
            assert await wait_at_most(slow, 5) == "late"
            failing = asyncio.wrap_future(pool.submit(lambda: 1 / 0))
            with pytest.raises(ZeroDivisionError):
                await wait_at_most(failing, 5)

    asyncio.run(scenario())


def test_invented_methods_share_one_metrics_label():
    from drum_compat.shared.metrics import Metrics

    metrics = Metrics("gunicorn")
    for index in range(200):  # a scanner's methods: every token reaches the app on gunicorn
        metrics.answered("unmatched", f"SCAN{index}", 405, 0.001)
    metrics.answered("/predict/", "POST", 200, 0.01)
    text = metrics.exposition().body.decode()
    answered = [line for line in text.splitlines() if line.startswith("drum_requests_total{")]
    assert len(answered) == 2 and 'method="other"' in answered[0] + answered[1]
    assert any('method="other"' in line and line.endswith(" 200.0") for line in answered)


@pytest.mark.parametrize("mine, others, takes", [
    ((3, 0), [(4, 9)], True),  # a free thread here: take it, however loaded the others
    ((4, 0), [(4, 0)], True),  # every worker as busy: take it (its queue answers; a probe never waits for a thread)
    ((4, 2), [(4, 5)], True),  # this worker is the least loaded
    ((4, 0), [(3, 0)], False),  # another has a free thread: leave it there
    ((4, 3), [(4, 1), (4, 9)], False),  # another carries fewer requests
    ((4, 3), [], True),  # alone on the board
])
def test_a_worker_takes_new_connections_unless_another_carries_fewer_requests(mine, others, takes):
    assert takes_new_connections(WorkerLoad(*mine), 4, [WorkerLoad(*other) for other in others]) is takes


@pytest.mark.parametrize("threads, mine, others, hands_back", [
    (1, (1, 14), [(1, 0)], True),  # 15 against 1: the pile-up of keep-alive clients spreads
    (4, (4, 1), [(3, 0)], True),  # a request waits here while another worker has a free thread
    (4, (4, 0), [(1, 0)], True),  # the client's next request would wait here, not there
    (4, (3, 0), [(0, 0)], False),  # a free thread here: the client's next request starts at once
    (1, (1, 1), [(1, 0)], False),  # one apart: moving a client would only move the imbalance
    (1, (1, 5), [(1, 5), (1, 4)], False),
    (1, (1, 8), [(1, 6)], False),  # 9 against 7: within two and a quarter of the queue
    (1, (1, 99), [(1, 97)], False),  # heavy overload sways: no reconnecting for nothing
    (1, (1, 99), [(1, 70)], True),
])
def test_a_worker_hands_a_keep_alive_client_back_only_when_its_next_request_would_wait_and_another_carries_clearly_fewer(
        threads, mine, others, hands_back):
    assert hands_back_connection(WorkerLoad(*mine), threads, [WorkerLoad(*other) for other in others]) is hands_back


def test_a_refusal_for_a_full_queue_goes_to_any_worker_carrying_fewer():
    full = WorkerLoad(1, 100)
    assert hands_back_connection(full, 1, [WorkerLoad(1, 99)], queue_full=True)
    assert not hands_back_connection(full, 1, [WorkerLoad(1, 100)], queue_full=True)
    assert not hands_back_connection(full, 1, [WorkerLoad(1, 99)])  # an answer: within a quarter of the other's queue


def test_a_worker_makes_room_only_near_its_fd_limit_and_counts_descriptors_only_past_half_of_it():
    def never() -> int:
        raise AssertionError("descriptors counted for a worker far from its limit")

    assert not short_of_fds(199, 400, never)
    assert not short_of_fds(200, 400, lambda: 400 - FD_RESERVE)
    assert short_of_fds(200, 400, lambda: 401 - FD_RESERVE)


def test_the_connection_closed_for_room_is_the_one_waiting_longest_for_a_head():
    assert longest_waiting([(3.0, "recent"), (1.0, "oldest"), (2.0, "older")]) == "oldest"
    assert longest_waiting([]) is None  # every connection runs a request: none is closed


def test_with_the_queue_in_the_backlog_every_answer_closes_its_connection():
    for in_backlog in (False, True):
        settings = AppSettings(SERVER_TYPES["gunicorn"], admission=AdmissionLimits(queue_in_backlog=in_backlog))
        core = DrumApp.for_load_error("never loaded", settings)
        headers = Headers()
        core.stamp(headers, "id", "GET", Headers())
        assert (headers.get("Connection") == "close") is in_backlog


LLHTTP_METHODS = frozenset({b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH"})


@pytest.mark.parametrize("start, verdict", [
    (b"GET /ping/ HTTP/1.1\r\nHost: a\r\n", None),
    (b"PROPFIND /ping/ HTTP/1.1\r\n", b"PROPFIND"),  # any token method reaches the app
    (b"PURGE /", b"PURGE"),  # known from its first token, before the line ends
    (b"GE", None),  # nothing to say yet
    (b"get /", "Invalid Method 'Invalid HTTP method: 'get''"),  # the line still arriving: its method is no token
    (b"AB /", "Invalid Method 'Invalid HTTP method: 'AB''"),
    # a whole line of another shape goes to gunicorn's parser, which judges the head in its own order
    (b"get / HTTP/1.1\r\n", UNUSUAL_LINE),
    (b"GET /ping/\r\n", UNUSUAL_LINE),
    (b"GET / HTTP/2.0\r\n", UNUSUAL_LINE),
    (b"GET / HTTP/1.2\r\n", UNUSUAL_LINE),
    (b"GET / HTTP/1.1\n", UNUSUAL_LINE),
    (b"GET  / HTTP/1.1\r\n", UNUSUAL_LINE),
    (b"GET http://a/ HTTP/1.1\r\n", UNUSUAL_LINE),
])
def test_a_requests_start_is_judged_as_gunicorn_judges_it(start, verdict):
    judged = first_line_verdict(start, LLHTTP_METHODS)
    if isinstance(verdict, str) and verdict is not UNUSUAL_LINE:
        assert isinstance(judged, ProtocolRefusal) and (judged.status, judged.message) == (400, verdict)
    else:
        assert judged == verdict


@pytest.mark.parametrize("headers, expected", [
    ([], True), ([(b"content-length", b"0")], True), ([(b"content-length", b" 0 ")], True),
    ([(b"content-length", b"5")], False), ([(b"transfer-encoding", b"chunked")], False),
])
def test_bodiless_heads(headers, expected):
    assert bodiless(headers) is expected


@pytest.mark.parametrize("start, read", [
    (b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
    (b"GET / HTTP/1.9\r\n", b"GET / HTTP/1.1\r\n"),
    (b"GET / HTTP/1.1\r\nX: HTTP/1.2\r\n", b"GET / HTTP/1.1\r\nX: HTTP/1.2\r\n"),
    (b"GET / HTTP/2.0\r\n", b"GET / HTTP/2.0\r\n"),  # refused by gunicorn before it gets here
])
def test_the_versions_gunicorn_serves_and_llhttp_refuses_are_read_as_http_11(start, read):
    assert as_http_11(start) == read


@pytest.mark.parametrize("codings, version, unusual", [
    ([], "1.1", False), ([b"chunked"], "1.1", False), ([b" Chunked "], "1.1", False), ([b"chunked"], "1.0", True),
    ([b"identity"], "1.1", True), ([b"gzip, chunked"], "1.1", True), ([b"chunked", b"chunked"], "1.1", True),
])
def test_transfer_codings_that_parsers_judge_differently(codings, version, unusual):
    headers = [(b"host", b"a")] + [(b"transfer-encoding", coding) for coding in codings]
    assert unusual_coding(headers, version) is unusual
