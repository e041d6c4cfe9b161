"""The core's replay (shared.replay) on the Flask stack's lean path, as on the uvicorn protocol (tests/test_at_once.py): a
constant handler's answer to a bodiless head is given again to the next request with that head, the same bytes with an
id of its own, counted and logged as the whole cycle would; never a client's own id, a body, an error or a recording."""
from __future__ import annotations

import logging
import re

import pytest
from werkzeug.test import Client

from drum_compat.compat.parity.cases import route_cases
from drum_compat.flask_backend.app import create_flask_app
from drum_compat.shared.app import AppSettings, DrumApp
from drum_compat.shared.cycle import ACCESS_LOGGER, RequestCycle
from drum_compat.shared.guards.security import CorsPolicy
from drum_compat.shared.server_types import SERVER_TYPES
from tests.conftest import load_model

UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
ID_HEADERS = ("X_Request_ID", "X-Request-ID")
LIVE_PATHS = {"/stats", "/metrics"}  # their bodies move between two answers
VARIANTS = {"plain": {}, "CORS origin": {"Origin": "https://app.example"}, "other origin": {"Origin": "https://elsewhere.example"},
            "Connection: close": {"Connection": "close"}}


@pytest.fixture
def lean(tmp_path):
    core = DrumApp.for_model(load_model(tmp_path, "regression"),
                             AppSettings(server_type=SERVER_TYPES["gunicorn"], cors=CorsPolicy(("https://app.example",))))
    app = create_flask_app(core)
    app.wsgi_app.answer_from_core()
    return app


def replays(app):
    return app.wsgi_app.replays


def answer(client: Client, method: str, path: str, headers: dict | None = None, body: bytes = b""):
    # buffered: the answer is read whole and closed, as a server does, so the cycle ends
    response = client.open(path, method=method, headers=headers or {}, data=body, buffered=True,
                           environ_base={"REMOTE_ADDR": "127.0.0.1"})
    return response.status, list(response.headers.items()), response.get_data()


def without_ids(answered) -> tuple:
    status, headers, body = answered
    return status, [(name, "<id>" if name in ID_HEADERS else value) for name, value in headers], UUID4.sub("<id>", body.decode("latin-1"))


def ids_of(answered) -> list[str]:
    return [value for name, value in answered[1] if name in ID_HEADERS]


def test_every_bodiless_routes_answer_is_given_again_with_a_new_id_as_the_cycle_made_it(lean):
    client = Client(lean)
    found = []
    for case in (case for case in route_cases() if not case.body and case.path.rstrip("/") not in LIVE_PATHS):
        for variant, headers in VARIANTS.items():
            first = answer(client, case.method, case.path, headers)
            for attempt in range(2):
                again = answer(client, case.method, case.path, headers)
                ids = ids_of(again)
                if len(set(ids)) != 1 or ids[0] == ids_of(first)[0] or without_ids(again) != without_ids(first):
                    found.append((case.label, variant, attempt, again, first))
    assert found == []
    remembered = {head[5] for head in replays(lean).remembered}  # PATH_INFO
    assert {"/", "/ping/", "/ping", "/health/"} <= remembered
    assert all(replay.status == 200 for replay in replays(lean).remembered.values())


def test_a_replay_counts_and_logs_as_the_whole_cycle_does(lean, monkeypatch, caplog):
    client = Client(lean)
    metrics = lean.wsgi_app.core.metrics
    answered = metrics.requests.labels("/ping/", "GET", "200", "gunicorn")
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        first = answer(client, "GET", "/ping?probe=1")
        counted = answered._value.get()
        built = []
        monkeypatch.setattr(RequestCycle, "__init__", lambda *args, **kwargs: built.append(args))
        again = [answer(client, "GET", "/ping?probe=1") for _ in range(5)]
    assert built == []  # answered from the replay: no cycle made
    assert answered._value.get() == counted + 5
    lines = [record.getMessage() for record in caplog.records if record.name == ACCESS_LOGGER]
    ids = [ids_of(answered_once)[0] for answered_once in (first, *again)]
    assert len(lines) == 6 and len(set(ids)) == 6
    for line, request_id in zip(lines, ids):
        assert line.startswith("127.0.0.1 - - [") and '"GET /ping?probe=1 HTTP/1.1" 200 17 ' in line, line
        assert line.endswith(f" {request_id} gunicorn"), line


def test_never_given_again_a_clients_own_id_a_body_an_error_or_a_recorded_request(lean, tmp_path, monkeypatch):
    client = Client(lean)
    for n in range(3):
        assert ids_of(answer(client, "GET", "/ping", {"X-Request-ID": f"client-{n}"})) == [f"client-{n}"] * 2
    for _ in range(2):
        answer(client, "GET", "/ping", body=b"a body")  # a body follows: its head is never a replay's
    monkeypatch.setattr(lean.wsgi_app.core.gate, "stuck", lean.wsgi_app.core.gate.limits.threads)  # /readyz: 503
    assert [answer(client, "GET", "/readyz")[0] for _ in range(2)] == ["503 SERVICE UNAVAILABLE"] * 2
    assert replays(lean).remembered == {}

    class Recorder:
        def keep(self) -> bool:
            return False

    lean.wsgi_app.core.recorder = Recorder()
    for _ in range(3):
        answer(client, "GET", "/ping")
    assert replays(lean).remembered == {}
    lean.wsgi_app.core.recorder = None
    answer(client, "GET", "/ping")
    assert len(replays(lean).remembered) == 1  # the same probe, once nothing is recorded

    error_server = create_flask_app(DrumApp.for_load_error("no model", AppSettings(server_type=SERVER_TYPES["gunicorn"])))
    error_server.wsgi_app.answer_from_core()
    assert [answer(Client(error_server), "GET", "/ping")[0][:3] for _ in range(2)] == ["513"] * 2
    assert replays(error_server).remembered == {}  # an error answer also writes the core's own log line


def test_an_extensions_app_gives_nothing_again(tmp_path):
    full = create_flask_app(DrumApp.for_model(load_model(tmp_path, "regression"), AppSettings(server_type=SERVER_TYPES["gunicorn"])))
    client = Client(full)
    assert len({ids_of(answer(client, "GET", "/ping"))[0] for _ in range(3)}) == 3
    assert full.wsgi_app.replays is None  # its hooks run for every request
