"""A retiring worker (shared.guards.retirement): its request budget and its one beginning, and every answer from then on
closing its connection, decided by the core on every path (Flask and FastAPI, lean and full, answered at once, replayed)."""
from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from drum_compat.fastapi_backend.app import LeanDispatch, create_fastapi_app
from drum_compat.flask_backend.app import create_flask_app
from drum_compat.shared.app import AppSettings, DrumApp
from drum_compat.shared.guards.admission import AdmissionLimits
from drum_compat.shared.guards.retirement import Retirement
from drum_compat.shared.server_types import DEFAULT_SERVER_TYPE, Stack
from tests.conftest import load_model
from tests.test_at_once import exchange, request_bytes

REQUESTS = [("GET", "/ping/", b""), ("POST", "/predict/", b"x\n1\n2\n"), ("GET", "/nowhere/", b""),
            ("OPTIONS", "/predict/", b""), ("HEAD", "/info/", b"")]


def test_the_request_that_spends_the_budget_begins_the_retirement_once():
    retirement, began = Retirement(), []
    retirement.after_requests(5, jitter=2)
    retirement.on_begin(began.append)
    assert 5 <= retirement.budget <= 7
    for _ in range(retirement.budget - 1):
        retirement.admit()
    assert not retirement.begun and began == []
    retirement.admit()
    assert retirement.begun and began == [f"after {retirement.budget} requests"]
    retirement.admit()
    retirement.begin("the watchdog's word")
    assert began == [f"after {retirement.budget} requests"]


def test_the_jitter_spreads_budgets_and_no_budget_never_retires():
    budgets = set()
    for _ in range(300):
        retirement = Retirement()
        retirement.after_requests(5, jitter=2)
        budgets.add(retirement.budget)
    assert budgets == {5, 6, 7}
    retirement = Retirement()
    retirement.after_requests(0, jitter=3)
    for _ in range(1000):
        retirement.admit()
    assert not retirement.begun


def test_a_failing_step_leaves_the_others_to_run(caplog):
    retirement, ran = Retirement(), []

    def fails(why: str) -> None:
        raise RuntimeError("the load board is gone")

    retirement.on_begin(fails)
    retirement.on_begin(ran.append)
    with caplog.at_level(logging.WARNING, logger="drum_compat"):
        retirement.begin("a stuck call")
    assert ran == ["a stuck call"]
    assert "recycled: a stuck call" in caplog.text and "the load board is gone" in caplog.text


def closes(headers) -> bool:
    return any(name.lower() == "connection" and value.lower() == "close" for name, value in headers)


def flask_answers(app) -> list[bool]:
    client = app.test_client()
    return [closes(client.open(path, method=method, data=body).headers.items()) for method, path, body in REQUESTS]


def fastapi_answers(app) -> list[bool]:
    async def send():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as client:
            return [closes((await client.request(method, path, content=body)).headers.multi_items())
                    for method, path, body in REQUESTS]

    return asyncio.run(send())


def core_for(stack: Stack, root) -> DrumApp:
    return DrumApp.for_model(load_model(root, "regression"), AppSettings(server_type=DEFAULT_SERVER_TYPE[stack]))


def lean_flask(core):
    app = create_flask_app(core)
    app.wsgi_app.answer_from_core()
    return app


@pytest.mark.parametrize("path, stack, build, answers", [
    ("Flask lean", Stack.FLASK, lean_flask, flask_answers),
    ("Flask full", Stack.FLASK, create_flask_app, flask_answers),
    ("FastAPI lean", Stack.FASTAPI, lambda core: LeanDispatch(create_fastapi_app(core)), fastapi_answers),
    ("FastAPI full", Stack.FASTAPI, create_fastapi_app, fastapi_answers),
])
def test_every_answer_of_a_retiring_worker_closes_its_connection(tmp_path, path, stack, build, answers):
    core = core_for(stack, tmp_path)
    app = build(core)
    assert answers(app) == [False] * len(REQUESTS)
    core.retirement.begin("a test")
    assert answers(app) == [True] * len(REQUESTS)


def test_answers_at_once_and_replays_close_once_retiring(tmp_path):
    app = LeanDispatch(create_fastapi_app(core_for(Stack.FASTAPI, tmp_path)))
    probe = request_bytes("GET", "/ping/", {}, request_id=None)

    async def probes() -> list[tuple[bool, bool, bool]]:
        """(answered at once, `connection: close` written, transport closed) per probe."""
        seen = []
        for _ in range(2):
            written, at_once, protocol = await exchange(app, probe, at_once=True)
            seen.append((at_once, b"\r\nconnection: close\r\n" in written, protocol.transport.is_closing()))
        return seen

    assert asyncio.run(probes()) == [(True, False, False)] * 2
    assert app.at_once.replays.remembered  # the second probe was a replay
    app.at_once.core.retirement.begin("a test")
    assert asyncio.run(probes()) == [(True, True, True)] * 2


def test_replays_close_under_queue_in_backlog(tmp_path):
    """The remembered answer keeps no Connection header: whether a replay closes is the core's word at each replay."""
    core = DrumApp.for_model(load_model(tmp_path, "regression"), AppSettings(
        server_type=DEFAULT_SERVER_TYPE[Stack.FASTAPI], admission=AdmissionLimits(queue_in_backlog=True)))
    app = LeanDispatch(create_fastapi_app(core))
    probe = request_bytes("GET", "/ping/", {}, request_id=None)

    async def probes() -> list[bool]:
        return [b"\r\nconnection: close\r\n" in (await exchange(app, probe, at_once=True))[0] for _ in range(3)]

    assert asyncio.run(probes()) == [True] * 3 and app.at_once.replays.remembered
