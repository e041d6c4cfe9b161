"""Both stacks' lean dispatch (no extension loaded: requests go straight through drum-compat's middleware to the cycle)
answers exactly as the full FastAPI or Flask app, every route of the corpus, status lines included; request ids stay
unique and uuid4-shaped."""
from __future__ import annotations

import asyncio
import random
import uuid

import httpx

from drum_compat.compat.parity.cases import payload_cases, route_cases
from werkzeug.test import Client

from drum_compat.fastapi_backend.app import LeanDispatch, create_fastapi_app
from drum_compat.flask_backend.app import create_flask_app
from drum_compat.flask_backend.cycle import CoreAnswer
from drum_compat.shared.app import AppSettings, DrumApp
from drum_compat.shared.request_id import RequestIds
from drum_compat.shared.server_types import SERVER_TYPES
from tests.conftest import load_model
from drum_compat.compat.parity.compare import differences, normalise


def test_the_lean_dispatch_answers_as_the_full_app(tmp_path):
    core = DrumApp.for_model(load_model(tmp_path, "regression"), AppSettings(server_type=SERVER_TYPES["uvicorn"]))
    full = create_fastapi_app(core)
    lean = LeanDispatch(full)
    cases = route_cases() + payload_cases("regression")

    async def answers(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://model") as client:
            return [normalise(*(lambda r: (r.status_code, r.headers.multi_items(), r.content))(
                await client.request(case.method, case.path, content=case.body, headers=case.headers))) for case in cases]

    # as the parity runner compares (counters of /stats/ and /metrics move between the two runs)
    compared = zip(cases, asyncio.run(answers(lean)), asyncio.run(answers(full)))
    assert [(case.label, found) for case, lean_answer, full_answer in compared
            if (found := differences(case.method, case.path, lean_answer, full_answer))] == []
    assert lean.chain is not full  # not the FastAPI app under another name


def test_the_lean_wsgi_dispatch_answers_as_flask(tmp_path):
    model = load_model(tmp_path, "regression")
    settings = AppSettings(server_type=SERVER_TYPES["gunicorn"])
    full, lean = create_flask_app(DrumApp.for_model(model, settings)), create_flask_app(DrumApp.for_model(model, settings))
    lean.wsgi_app.answer_from_core()
    assert isinstance(lean.wsgi_app.app, CoreAnswer) and not isinstance(full.wsgi_app.app, CoreAnswer)
    cases = route_cases() + payload_cases("regression")

    def answers(app):
        client = Client(app)
        for case in cases:
            response = client.open(case.path, method=case.method, data=case.body, headers=case.headers)
            yield response.status, normalise(response.status_code, response.headers.items(), response.get_data())

    compared = zip(cases, answers(lean), answers(full))
    assert [(case.label, found) for case, (lean_status, lean_answer), (full_status, full_answer) in compared
            if (found := differences(case.method, case.path, lean_answer, full_answer)
                + ([f"status line {lean_status!r} != {full_status!r}"] if lean_status != full_status else []))] == []


def test_request_ids_are_unique_uuid4s_without_a_syscall_each():
    ids = RequestIds()
    drawn = {ids.choose(None) for _ in range(10_000)}
    assert len(drawn) == 10_000 and all(uuid.UUID(value).version == 4 for value in list(drawn)[:100])
    assert RequestIds().choose(None) not in drawn  # another worker's sequence
    assert ids.choose("client-id.1") == "client-id.1" and ids.choose("bad id\n") != "bad id\n"


def test_request_ids_are_what_uuid_makes_of_the_same_bits():
    ids, same_bits = RequestIds(), random.Random(7)
    ids._random = random.Random(7)
    for _ in range(20_000):
        assert ids.choose(None) == str(uuid.UUID(int=same_bits.getrandbits(128), version=4))
