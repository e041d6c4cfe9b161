"""The FastAPI stack's protocol answers bodiless requests to probes, information routes and routing answers itself
(fastapi_backend.at_once): byte for byte what the app would have written through uvicorn, with no task; everything
else still goes to the app, pipelined requests in order, and a failure is uvicorn's 500."""
from __future__ import annotations

import asyncio
import logging
import re

import pytest
from uvicorn.server import ServerState

from drum_compat.compat.parity.cases import route_cases
from drum_compat.fastapi_backend.app import LeanDispatch, create_fastapi_app
from drum_compat.servers.uvicorn_protocol import DrumConfig, DrumHttpToolsProtocol
from drum_compat.shared.app import AppSettings, DrumApp
from drum_compat.shared.cycle import ACCESS_LOGGER, RequestCycle
from drum_compat.shared.replay import REMEMBERED_ANSWERS
from drum_compat.shared.guards.security import CorsPolicy
from drum_compat.shared.server_types import SERVER_TYPES
from tests.conftest import load_model

DEFAULT_HEADERS = [(b"date", b"Tue, 01 Dec 2026 10:00:00 GMT"), (b"server", b"uvicorn")]


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False

    def get_extra_info(self, name, default=None):
        return {"sockname": ("127.0.0.1", 8080), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def write(self, data) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def lean_app(folder, **settings) -> LeanDispatch:
    core = DrumApp.for_model(load_model(folder, "regression"), AppSettings(server_type=SERVER_TYPES["uvicorn"], **settings))
    return LeanDispatch(create_fastapi_app(core))


@pytest.fixture(scope="module")
def lean(tmp_path_factory):
    return lean_app(tmp_path_factory.mktemp("at_once"))


@pytest.fixture
def fresh(tmp_path):
    """An app of its own: no answers remembered by another test."""
    return lean_app(tmp_path)


def connection(app, at_once: bool) -> tuple[DrumHttpToolsProtocol, Transport]:
    config = DrumConfig(app=app, proxy_headers=False, access_log=False, lifespan="off", log_config=None)
    state = ServerState()
    state.default_headers = DEFAULT_HEADERS
    protocol = DrumHttpToolsProtocol(config, state, {}, _loop=asyncio.get_running_loop())
    if not at_once:
        protocol.at_once = None
    transport = Transport()
    protocol.connection_made(transport)
    return protocol, transport


async def exchange(app, request: bytes, at_once: bool) -> tuple[bytes, bool, DrumHttpToolsProtocol]:
    """What the connection wrote for `request`, whether the protocol answered before any task ran, the protocol."""
    protocol, transport = connection(app, at_once)
    protocol.data_received(request)
    answered_in_callback = protocol.cycle is not None and protocol.cycle.response_complete and not protocol.tasks
    for _ in range(5000):  # at least 5 s
        if protocol.cycle is not None and protocol.cycle.response_complete and not protocol.tasks:
            break
        await asyncio.sleep(0.001)
    return bytes(transport.written), answered_in_callback, protocol


def request_bytes(method: str, target: str, headers: dict[str, str], version: str = "1.1", body: bytes = b"",
                  request_id: str | None = "same-id") -> bytes:
    # by default the same client id on both sides, so the answers' id headers are equal
    lines = [f"{method} {target} HTTP/{version}", "Host: 127.0.0.1:8080",
             *([f"X-Request-ID: {request_id}"] if request_id else []), *(f"{name}: {value}" for name, value in headers.items())]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def comparable(path: str, written: bytes) -> bytes:
    """The answer, less what a live counter moves between two runs: /stats/ and /metrics's body and its length."""
    if path.rstrip("/") not in LIVE_PATHS:
        return written
    head, _, _ = written.partition(b"\r\n\r\n")
    return b"\r\n".join(line for line in head.split(b"\r\n") if not line.startswith(b"content-length:"))


LIVE_PATHS = {"/stats", "/metrics"}
BODILESS = [case for case in route_cases() if not case.body]
VARIANTS = {
    "keep-alive": ({}, "1.1"),
    "Connection: close": ({"Connection": "close"}, "1.1"),
    "HTTP/1.0": ({}, "1.0"),
    "HTTP/1.0 keep-alive": ({"Connection": "keep-alive"}, "1.0"),
    "CORS preflight": ({"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}, "1.1"),
}


def test_every_bodiless_request_gets_the_bytes_the_app_would_write(lean):
    async def compare():
        found, answered_at_once = [], 0
        for case in BODILESS:
            for variant, (headers, version) in VARIANTS.items():
                request = request_bytes(case.method, case.path, headers, version)
                at_once, in_callback, _ = await exchange(lean, request, at_once=True)
                through_app, _, _ = await exchange(lean, request, at_once=False)
                answered_at_once += in_callback
                if comparable(case.path, at_once) != comparable(case.path, through_app):
                    found.append((case.label, variant, at_once, through_app))
        return found, answered_at_once

    found, answered_at_once = asyncio.run(compare())
    assert found == []
    # probes, information routes and routing answers (most of the table) were answered in the callback
    assert answered_at_once > len(BODILESS) * len(VARIANTS) // 2


@pytest.mark.parametrize("request_line, why", [
    ("POST /predictions/ HTTP/1.1", "a body"),
    ("GET /models HTTP/1.1", "runs model code"),
    ("GET /directAccess/v1/models HTTP/1.1", "may forward to an upstream"),
    ("BREW /ping HTTP/1.1", "a method llhttp does not parse"),
])
def test_what_waits_on_something_goes_to_the_app(lean, request_line, why):
    method, target, _ = request_line.split(" ")
    body = b"a,b\n1,2\n" if method == "POST" else b""
    written, in_callback, protocol = asyncio.run(exchange(lean, request_bytes(method, target, {}, body=body), True))
    assert not in_callback, why
    assert written.startswith(b"HTTP/1.1 "), written


def test_pipelined_requests_are_answered_in_order_and_idle_time_is_not_counted_meanwhile(lean):
    async def pipelined():
        protocol, transport = connection(lean, at_once=True)
        slow = request_bytes("POST", "/predictions/", {}, body=b"x\n" + b"1\n" * 2000)
        protocol.data_received(request_bytes("GET", "/ping", {}) + slow + request_bytes("GET", "/info/", {}))
        # the probe is out, the prediction runs: the keep-alive timer the probe armed must not close the connection
        assert transport.written.count(b"HTTP/1.1 ") == 1 and protocol.timeout_keep_alive_task is None
        for _ in range(400):
            if transport.written.count(b"HTTP/1.1 ") == 3:
                break
            await asyncio.sleep(0.005)
        return bytes(transport.written), protocol

    written, protocol = asyncio.run(pipelined())
    answers = [part.split(b"\r\n", 1)[0] for part in written.split(b"HTTP/1.1 ")[1:]]
    assert answers == [b"200 OK", b"200 OK", b"200 OK"], written
    assert written.index(b'{"message":"OK"}') < written.index(b'"predictions"') < written.index(b'"drumVersion"')
    assert protocol.timeout_keep_alive_task is not None  # idle again after the last answer


def test_a_failing_answer_is_uvicorns_500_and_is_logged(lean, monkeypatch, caplog):
    def broken(self, received=b""):
        raise RuntimeError("core bug")

    monkeypatch.setattr(RequestCycle, "answer_at_once", broken)
    with caplog.at_level(logging.ERROR, logger="uvicorn.error"):
        written, _, protocol = asyncio.run(exchange(lean, request_bytes("GET", "/ping", {}), True))
    assert written.startswith(b"HTTP/1.1 500 Internal Server Error\r\n") and written.endswith(b"Internal Server Error")
    assert b"connection: close" in written and protocol.transport.closed
    assert any(record.exc_info and "core bug" in str(record.exc_info[1]) for record in caplog.records)


UUID4 = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
CONSTANT_PATHS = ["/", "/ping", "/ping/", "/health/", "/livez", "/startupz"]


def ids_of(written: bytes) -> list[bytes]:
    """The uuid4s of the answer's head (a body, such as Swagger UI's script, may hold some of its own)."""
    return UUID4.findall(written.partition(b"\r\n\r\n")[0])


def test_a_probes_answer_is_replayed_with_a_new_id_byte_for_byte_as_the_app_would_write(tmp_path):
    """With no client id, the core makes an id, so a head seen before is answered from the answer it got then
    (shared.replay): every bodiless route, each variant and a CORS origin, three times, as the app writes it, ids aside."""
    app = lean_app(tmp_path, cors=CorsPolicy(("https://app.example",)))
    variants = {**VARIANTS, "CORS origin": ({"Origin": "https://app.example"}, "1.1"),
                "other origin": ({"Origin": "https://elsewhere.example"}, "1.1")}

    async def compare():
        found = []
        for case in BODILESS:
            for variant, (headers, version) in variants.items():
                request = request_bytes(case.method, case.path, headers, version, request_id=None)
                through_app, _, _ = await exchange(app, request, at_once=False)
                for attempt in range(3):
                    at_once, _, _ = await exchange(app, request, at_once=True)
                    ids = ids_of(at_once)
                    if len(ids) != 2 or ids[0] != ids[1] or ids_of(through_app)[0] == ids[0]:
                        found.append((case.label, variant, attempt, "ids", at_once))
                    if UUID4.sub(b"<id>", comparable(case.path, at_once)) != UUID4.sub(b"<id>", comparable(case.path, through_app)):
                        found.append((case.label, variant, attempt, at_once, through_app))
        return found

    assert asyncio.run(compare()) == []
    remembered = {head[4] for head in app.at_once.replays.remembered}
    # constant routes only (the cases reach the remembered number before the last of them)
    assert {"/", "/ping/", "/ping", "/health/"} <= remembered <= set(CONSTANT_PATHS)
    assert all(replay.status == 200 for replay in app.at_once.replays.remembered.values())


def test_a_replay_counts_and_logs_as_the_whole_cycle_does(fresh, monkeypatch, caplog):
    request = request_bytes("GET", "/ping?probe=1", {}, request_id=None)
    metrics = fresh.at_once.core.metrics
    answered = metrics.requests.labels("/ping/", "GET", "200", "uvicorn")
    in_flight = metrics.in_flight.labels("uvicorn")

    async def probe(times: int) -> list[bytes]:
        return [(await exchange(fresh, request, at_once=True))[0] for _ in range(times)]

    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        first = asyncio.run(probe(1))
        counted, flying = answered._value.get(), in_flight._value.get()
        built = []
        monkeypatch.setattr(RequestCycle, "__init__", lambda *args, **kwargs: built.append(args))
        replayed = asyncio.run(probe(5))
    assert built == []  # answered from the replay: no cycle made
    assert answered._value.get() == counted + 5 and in_flight._value.get() == flying == 0
    lines = [record.getMessage() for record in caplog.records if record.name == ACCESS_LOGGER]
    assert len(lines) == 6
    ids = [ids_of(written)[0].decode() for written in first + replayed]
    assert len(set(ids)) == 6
    for line, request_id in zip(lines, ids):
        assert line.startswith('127.0.0.1 - - [') and '"GET /ping?probe=1 HTTP/1.1" 200 17 ' in line, line
        assert line.endswith(f" {request_id} uvicorn"), line


def test_a_clients_own_id_is_never_replayed_away(fresh):
    async def probes():
        return [(await exchange(fresh, request_bytes("GET", "/ping", {}, request_id=f"client-{n}"), True))[0]
                for n in range(3)]

    for n, written in enumerate(asyncio.run(probes())):
        assert f"x-request-id: client-{n}\r\n".encode() in written
    assert fresh.at_once.replays.remembered == {}


def test_answers_that_may_change_are_never_remembered(fresh, monkeypatch):
    gate = fresh.at_once.core.gate
    monkeypatch.setattr(gate, "stuck", gate.limits.threads)  # wedged: /readyz answers 503 until the wedge ends
    error_server = LeanDispatch(create_fastapi_app(DrumApp.for_load_error("no model", AppSettings(server_type=SERVER_TYPES["uvicorn"]))))

    async def twice(app, path):
        return [(await exchange(app, request_bytes("GET", path, {}, request_id=None), True))[0] for _ in range(2)]

    assert all(written.startswith(b"HTTP/1.1 503 ") for written in asyncio.run(twice(fresh, "/readyz")))
    asyncio.run(twice(fresh, "/info/"))
    assert fresh.at_once.replays.remembered == {}
    assert all(written.startswith(b"HTTP/1.1 513 ") for written in asyncio.run(twice(error_server, "/ping")))
    assert error_server.at_once.replays.remembered == {}  # an error answer also writes the core's own log line


def test_heads_past_the_remembered_number_take_the_whole_cycle(fresh):
    async def probes():
        return [(await exchange(fresh, request_bytes("GET", "/ping", {"X-Probe": str(n)}, request_id=None), True))[0]
                for n in range(REMEMBERED_ANSWERS + 5)]

    answers = asyncio.run(probes())
    assert len(fresh.at_once.replays.remembered) == REMEMBERED_ANSWERS
    assert {UUID4.sub(b"<id>", written) for written in answers} == {UUID4.sub(b"<id>", answers[0])}


def test_nothing_is_replayed_while_requests_are_recorded(fresh):
    """A recorded request is recorded whole (shared.replay decides, for any backend)."""
    class Recorder:
        def keep(self) -> bool:
            return False

    fresh.at_once.core.recorder = Recorder()
    request = request_bytes("GET", "/ping", {}, request_id=None)

    async def probes():
        return [(await exchange(fresh, request, at_once=True))[0] for _ in range(3)]

    assert all(written.startswith(b"HTTP/1.1 200 OK") for written in asyncio.run(probes()))
    assert fresh.at_once.replays.remembered == {}
    fresh.at_once.core.recorder = None
    asyncio.run(probes())
    assert len(fresh.at_once.replays.remembered) == 1  # the same probe, once nothing is recorded
