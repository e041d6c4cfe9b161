"""The FastAPI stack's protocol answers bodiless requests to probes, information routes and routing answers itself
(fastapi_backend.at_once): byte for byte what the app would have written through uvicorn, with no task; everything
else still goes to the app, pipelined requests in order, and a failure is uvicorn's 500."""
from __future__ import annotations

import asyncio
import logging

import pytest
from uvicorn.server import ServerState

from drum_compat.compat.parity.cases import route_cases
from drum_compat.fastapi_backend.app import LeanDispatch, create_fastapi_app
from drum_compat.fastapi_backend.protocol import DrumConfig, DrumHttpToolsProtocol
from drum_compat.shared.app import AppSettings, DrumApp
from drum_compat.shared.cycle import RequestCycle
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


@pytest.fixture(scope="module")
def lean(tmp_path_factory):
    core = DrumApp.for_model(load_model(tmp_path_factory.mktemp("at_once"), "regression"),
                             AppSettings(server_type=SERVER_TYPES["uvicorn"]))
    return LeanDispatch(create_fastapi_app(core))


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
    for _ in range(200):
        if protocol.cycle is not None and protocol.cycle.response_complete and not protocol.tasks:
            break
        await asyncio.sleep(0.005)
    return bytes(transport.written), answered_in_callback, protocol


def request_bytes(method: str, target: str, headers: dict[str, str], version: str = "1.1", body: bytes = b"") -> bytes:
    # the same client id on both sides, so the answers' id headers are equal
    lines = [f"{method} {target} HTTP/{version}", "Host: 127.0.0.1:8080", "X-Request-ID: same-id",
             *(f"{name}: {value}" for name, value in headers.items())]
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

