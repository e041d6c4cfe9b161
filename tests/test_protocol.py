"""The HTTP protocol over raw sockets, the same expectations on every stack: gunicorn's limits and error pages,
any token method and `*` reaching the core, half-closed clients answered, bodies cut short never scored,
fairness with 1,000 idle keep-alive connections, and the parser differences that remain, pinned."""
from __future__ import annotations

import inspect
import re
import socket
import textwrap
import time

import gunicorn.config
import httpx
import pytest
import uvicorn

from drum_compat.compat.parity.cases import MALFORMED_POSTS, protocol_cases
from drum_compat.compat.parity.compare import differences, normalise as normalise_answer
from drum_compat.compat.parity.raw import exchange as exchange_raw
from tests.processes import serve, wait_until
from tests.test_guards import scrape

pytestmark = pytest.mark.servers
CONFIGURATIONS = {"gunicorn-gevent": ("gunicorn", {}), "gunicorn-sync": ("gunicorn", {"DRUM_GUNICORN_WORKER_CLASS": "sync"}),
                  "fastapi": ("fastapi", {})}
# the servers' own defaults (drum-compat keeps them): how long an idle keep-alive connection stays open
KEEP_ALIVE = {"gunicorn": gunicorn.config.Keepalive.default,
              "fastapi": inspect.signature(uvicorn.Config).parameters["timeout_keep_alive"].default}
# each score call leaves a file, so a test can see whether the model ran
SCORE_RECORDED = """
    import os
    import uuid

    import pandas as pd

    def load_model(code_dir):
        return code_dir

    def score(data, model, **kwargs):
        open(os.path.join(model, f"scored-{uuid.uuid4().hex}"), "w").close()
        return pd.DataFrame({"Predictions": [1.0] * len(data)})
"""
CSV = b"x,y\n1,2\n3,4\n"


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    running = {}
    try:
        for name, (server_type, env) in CONFIGURATIONS.items():
            code_dir = tmp_path_factory.mktemp(name)
            (code_dir / "custom.py").write_text(textwrap.dedent(SCORE_RECORDED).lstrip())
            running[name] = serve(code_dir, server_type, "--target-type", "regression", env=env)
            running[name].code_dir = code_dir
        yield running
    finally:
        for server in running.values():
            server.stop()


def exchange(port: int, data: bytes, half_close: bool = False, timeout: float = 30.0) -> bytes:
    """Send raw bytes, read until the server closes or one whole answer has come."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused mid-send: the answer may still be readable
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
            head, separator, body = received.partition(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length: *(\d+)", head)
            if separator and length and len(body) >= int(length.group(1)):
                break
        return received


VOLATILE = re.compile(rb"(?im)^(date|server|connection|x_request_id|x-request-id): .*\r\n")


def normalised(answer: bytes) -> tuple[int, list[bytes], bytes]:
    """Status code, header lines (lower-cased names, volatile ones dropped, sorted) and body."""
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = VOLATILE.sub(b"", head + b"\r\n").split(b"\r\n")
    headers = sorted(line.split(b":", 1)[0].lower() + b":" + line.split(b":", 1)[1] for line in lines if line)
    return int(status_line.split(b" ")[1]), headers, body


def line_of(length: int) -> bytes:
    """A GET request whose request line is exactly `length` bytes."""
    target = b"/ping?q=" + b"a" * (length - len(b"GET /ping?q= HTTP/1.1"))
    return b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n"


def with_headers(count: int, value_size: int = 1) -> bytes:
    return (b"GET /ping HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * value_size) for i in range(count - 1))
            + b"\r\n")


# (raw request, the status every stack answers); the bodies must be identical too
CASES = {
    "64 KiB header": (b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 65536 + b"\r\n\r\n", 431),
    "header line of 8190 bytes with its CRLF": (b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (8188 - 7) + b"\r\n\r\n", 200),
    "header line of 8191 bytes with its CRLF": (b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (8189 - 7) + b"\r\n\r\n", 431),
    "100 headers": (with_headers(100), 200),
    "101 headers": (with_headers(101), 431),
    "request line of 4094 bytes": (line_of(4094), 200),
    "request line of 4095 bytes": (line_of(4095), 414),
    "8 KiB request line": (line_of(8192), 414),
    "* target": (b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", 404),
    "absolute-form target": (b"GET http://127.0.0.1/ping HTTP/1.1\r\nHost: x\r\n\r\n", 200),
    "unknown method": (b"FOO /ping HTTP/1.1\r\nHost: x\r\n\r\n", 404),
    "unknown method with a body": (b"BREW /predictions/ HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", 405),
    "WebDAV method": (b"PROPFIND /ping HTTP/1.1\r\nHost: x\r\n\r\n", 404),
    "lower-case method": (b"get /ping HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "method of 21 characters": (b"A" * 21 + b" /ping HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "HTTP/9.9": (b"GET /ping HTTP/9.9\r\nHost: x\r\n\r\n", 400),
    "no HTTP version": (b"GET /ping\r\n\r\n", 400),
    "HTTP/0.9 request line alone": (b"GET /ping\r\n", 400),  # before: uvicorn waited for a head, never answering
    "WebSocket upgrade": (b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                          b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", 200),  # uvicorn: 403
    "not HTTP at all": (b"\x16\x03\x01garbage\r\n\r\n", 400),
    "Content-Length and Transfer-Encoding": (
        b"POST /predictions/ HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    "prediction": (b"POST /predictions/ HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nContent-Length: %d\r\n\r\n%s" % (len(CSV), CSV), 200),
    # a field of one member given twice: gunicorn refuses it (RFC 9110 5.3); uvicorn took the first Host, joined Content-Types
    "two Host headers": (b"GET /ping HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400),
    "two Content-Type headers": (b"POST /predictions/ HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
                                 b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(CSV), CSV), 400),
    # a chunked body's trailer is no request header (uvicorn had let it replace the Content-Type: 422)
    "a trailer after a chunked body": (b"POST /predictions/ HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
                                       b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n"
                                       b"Content-Type: application/json\r\n\r\n" % (len(CSV), CSV), 200),
}
SIZE_SEEN = re.compile(rb"too large \(\d+ &gt;")  # how much of the line gunicorn had read when it refused


@pytest.mark.parametrize("case", CASES)
def test_every_stack_gives_the_same_answer(servers, case):
    data, status = CASES[case]
    answers = {name: normalised(exchange(server.port, data)) for name, server in servers.items()}
    assert {name: answer[0] for name, answer in answers.items()} == {name: status for name in servers}
    comparable = {(code, tuple(headers), SIZE_SEEN.sub(b"too large (N &gt;", body)) for code, headers, body in answers.values()}
    assert len(comparable) == 1, answers


BROKEN_CHUNKS = ("a chunk size that is no number", "a chunk without its CRLF", "a NUL in a chunk extension")
assert set(BROKEN_CHUNKS) <= set(MALFORMED_POSTS)


@pytest.mark.parametrize("case", protocol_cases("regression"), ids=lambda case: case.name)
def test_requests_bent_where_parsers_disagree_get_the_same_bytes_on_every_stack(servers, case):
    """The parity corpus's protocol cases (each also compared with DRUM by tests/test_against_drum.py): uvicorn refuses
    what gunicorn refuses with gunicorn's own page (its parser judges what llhttp refuses), and serves what it serves."""
    before = {name: scored(server) for name, server in servers.items()}
    answers = {name: normalise_answer(*exchange_raw(server.base_url, case.method, case.raw, 30), server.base_url)
               for name, server in servers.items()}
    assert all(answer.status for answer in answers.values())  # an answer, not a closed connection
    found = {name: differences(case.method, case.path, answers["gunicorn-gevent"], answer) for name, answer in answers.items()}
    assert found == {name: [] for name in servers}
    if case.name in BROKEN_CHUNKS:  # the pinned difference from DRUM's 500: a 400, and the model never runs
        assert answers["fastapi"].status == 400 and answers["fastapi"].json == {
            "message": "ERROR: The request body is not valid chunked transfer coding"}
        assert {name: scored(server) for name, server in servers.items()} == before


def test_protocol_refusals_are_gunicorns_error_pages(servers):
    page = (b"<html>\n  <head>\n    <title>Request Header Fields Too Large</title>\n  </head>\n  <body>\n"
            b"    <h1><p>Request Header Fields Too Large</p></h1>\n    Error parsing headers: "
            b"&#x27;limit request headers fields&#x27;\n  </body>\n</html>\n")
    for name, server in servers.items():
        assert exchange(server.port, CASES["101 headers"][0]) == (
            b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Type: text/html\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(page), page)), name


def test_limits_are_settings_on_every_stack(tmp_path):
    for name, (server_type, env) in CONFIGURATIONS.items():
        code_dir = tmp_path / name
        code_dir.mkdir()
        (code_dir / "custom.py").write_text(textwrap.dedent(SCORE_RECORDED).lstrip())
        limits = {"DRUM_LIMIT_REQUEST_LINE": "100", "DRUM_LIMIT_REQUEST_FIELDS": "5", "DRUM_LIMIT_REQUEST_FIELD_SIZE": "50"}
        with serve(code_dir, server_type, "--target-type", "regression", env={**env, **limits}) as server:
            statuses = [normalised(exchange(server.port, data))[0]
                        for data in (line_of(100), line_of(101), with_headers(5), with_headers(6),
                                     with_headers(2, 50 - len("X-H0: \r\n")), with_headers(2, 51 - len("X-H0: \r\n")))]
        assert statuses == [200, 414, 200, 431, 200, 431], name


def test_a_client_that_half_closes_after_its_request_gets_its_answer(servers):
    request = CASES["prediction"][0]
    for name, server in servers.items():
        status, _, body = normalised(exchange(server.port, request, half_close=True))
        assert (status, body) == (200, b'{"predictions":[1.0,1.0]}'), name


def scored(server) -> int:
    return len(list(server.code_dir.glob("scored-*")))


def disconnections(server) -> float:
    samples = scrape(server.base_url)["drum_rejections"].samples
    return sum(sample.value for sample in samples if sample.name == "drum_rejections_total" and sample.labels["reason"] == "client_disconnected")


def test_a_body_shorter_than_its_content_length_never_reaches_the_model(servers):
    declared, sent = 20_000_000, b"x,y\n" + b"1,2\n" * 250_000  # 1 MB of a declared 20 MB
    for name, server in servers.items():
        before, counted = scored(server), disconnections(server)
        head = b"POST /predictions/ HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nContent-Length: %d\r\n\r\n" % declared
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(head + sent)  # then close, mid-body
        half_closed = normalised(exchange(server.port, head + sent, half_close=True))
        wait_until(lambda: disconnections(server) >= counted + 2, f"{name}: both disconnections counted", every=0.1)
        assert disconnections(server) == counted + 2, name
        assert scored(server) == before, name
        message = b'{"message":"ERROR: The request body ended after 1000004 of the 20000000 bytes its Content-Length declared"}\n'
        assert half_closed == (400, [b"content-length: %d" % len(message), b"content-type: application/json",
                                     b"referrer-policy: no-referrer", b"x-content-type-options: nosniff", b"x-drum-version: 0.1.0",
                                     b"x-frame-options: DENY"], message), name
        assert "disconnected after 1000004 of 20000000 body bytes: POST /predictions/ not run" in server.read_output()
        # the worker is unharmed
        assert httpx.post(f"{server.base_url}/predictions/", content=CSV, headers={"Content-Type": "text/csv"}).status_code == 200


def test_a_new_ping_is_answered_at_once_beside_1000_idle_keep_alive_connections(servers):
    for name, server in servers.items():
        idle = []
        try:
            for _ in range(1000):
                sock = socket.create_connection(("127.0.0.1", server.port))
                sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
                idle.append(sock)
            for sock in idle:  # every connection answered once and kept open
                sock.settimeout(10)
                assert sock.recv(65536).startswith(b"HTTP/1.1 200"), name
            began = time.monotonic()
            answer = exchange(server.port, b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            took = time.monotonic() - began
            assert answer.startswith(b"HTTP/1.1 200"), name
            # had it waited for an idle connection's place, it would have taken a keep-alive period
            assert took < KEEP_ALIVE[CONFIGURATIONS[name][0]], (name, took)
        finally:
            for sock in idle:
                sock.close()


# The differences the parsers leave, each pinned: (request, {stack: raw status line}); header names are
# capitalised as sent by gunicorn and lower-case from uvicorn (HTTP header names are case-insensitive).
PARSER_DIFFERENCES = {
    "reason phrase": (b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
                      {"gunicorn-gevent": b"HTTP/1.1 404 NOT FOUND", "gunicorn-sync": b"HTTP/1.1 404 NOT FOUND",
                       "fastapi": b"HTTP/1.1 404 Not Found"}),
    "HTTP/1.0 status line": (b"GET /ping HTTP/1.0\r\n\r\n",
                             {"gunicorn-gevent": b"HTTP/1.0 200 OK", "gunicorn-sync": b"HTTP/1.0 200 OK",
                              "fastapi": b"HTTP/1.1 200 OK"}),
}


@pytest.mark.parametrize("difference", PARSER_DIFFERENCES)
def test_the_remaining_parser_differences_are_exactly_the_documented_ones(servers, difference):
    data, status_lines = PARSER_DIFFERENCES[difference]
    answers = {name: exchange(server.port, data) for name, server in servers.items()}
    assert {name: answer.split(b"\r\n", 1)[0] for name, answer in answers.items()} == status_lines
    names = {name: [line.split(b":")[0] for line in answer.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]]
             for name, answer in answers.items()}
    assert b"Content-Type" in names["gunicorn-gevent"] and b"content-type" in names["fastapi"]
    assert all(name == name.lower() for name in names["fastapi"])
    # apart from status line and header case, the answers are the same
    assert len({(tuple(normalised(answer)[1]), normalised(answer)[2]) for answer in answers.values()}) == 1


def test_a_content_length_too_large_for_a_number_is_the_pinned_difference(servers):
    """The guide's parser table: gunicorn reads 10**20 as a length over the body limit (413); llhttp cannot hold it
    in 64 bits and refuses the request as malformed (400). Neither reads a byte of the body."""
    data = b"POST /predictions/ HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000000000000000\r\n\r\n"
    statuses = {name: exchange(server.port, data).split(b"\r\n", 1)[0] for name, server in servers.items()}
    assert statuses == {"gunicorn-gevent": b"HTTP/1.1 413 REQUEST ENTITY TOO LARGE",
                        "gunicorn-sync": b"HTTP/1.1 413 REQUEST ENTITY TOO LARGE", "fastapi": b"HTTP/1.1 400 Bad Request"}


def test_a_chunked_body_cut_off_by_a_half_closing_client_is_the_pinned_difference(servers):
    """The last row of the guide's parser table: gunicorn's reader reports the missing last chunk and the
    client still reading gets the 400; uvicorn sees a disconnect and closes. Neither runs the model."""
    head = b"POST /predictions/ HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nTransfer-Encoding: chunked\r\n\r\n"
    partial = head + b"8\r\nx,y\n1,2\n\r\n"  # one chunk, no last chunk
    answers = {}
    for name, server in servers.items():
        before = scored(server)
        answers[name] = exchange(server.port, partial, half_close=True)
        assert scored(server) == before, name
    assert normalised(answers["gunicorn-gevent"])[::2] == normalised(answers["gunicorn-sync"])[::2] == (
        400, b'{"message":"ERROR: The request body ended before its last chunk"}\n')
    assert answers["fastapi"] == b""
