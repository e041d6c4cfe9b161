"""Security headers on every response of both stacks, CORS only for listed origins (preflight
included, never with credentials), and no server version in the Server header of any server type."""
from __future__ import annotations

import httpx
import pytest

from drum_compat.shared.guards.security import CorsPolicy, parse_origins
from tests.conftest import Stacks, load_model
from tests.models import write_model
from tests.processes import serve

CSV = b"x\n1\n"
HARDENED = {"x-content-type-options": "nosniff", "x-frame-options": "DENY", "referrer-policy": "no-referrer"}


@pytest.fixture(scope="module")
def cors_stacks(model_root):
    return Stacks(load_model(model_root, "regression"), cors=CorsPolicy(parse_origins("https://app.example.com, https://b.example/")))


@pytest.mark.parametrize("method,path,body", [
    ("GET", "/", b""), ("POST", "/predict/", CSV), ("POST", "/predict/", b"bad"), ("GET", "/nope", b""),
    ("DELETE", "/predict/", b""), ("OPTIONS", "/predict/", b""), ("GET", "/predict", b""),
])
def test_every_response_is_hardened_and_no_cors_without_origins(stacks_for, method, path, body):
    answer = stacks_for("regression").both(method, path, body, {"Content-Type": "text/csv", "Origin": "https://app.example.com"})
    assert {name: answer.header(name) for name in HARDENED} == HARDENED
    assert not any(name.startswith("access-control-") for name, _ in answer.headers)


def test_listed_origin_gets_cors_and_others_do_not(cors_stacks):
    answer = cors_stacks.both("POST", "/predict/", CSV, {"Content-Type": "text/csv", "Origin": "https://app.example.com"})
    assert (answer.status, answer.header("access-control-allow-origin"), answer.header("vary")) == (200, "https://app.example.com", "Origin")
    assert answer.header("access-control-allow-credentials") is None
    assert answer.header("access-control-expose-headers") == "X-Request-ID, X_Request_ID, X-Drum-Version"
    assert cors_stacks.both("GET", "/", b"", {"Origin": "https://b.example"}).header("access-control-allow-origin") == "https://b.example"
    stranger = cors_stacks.both("POST", "/predict/", CSV, {"Content-Type": "text/csv", "Origin": "https://evil.example"})
    assert stranger.status == 200 and not any(name.startswith("access-control-") for name, _ in stranger.headers)
    assert stranger.header("vary") == "Origin"  # a cache must not hand it a listed origin's answer, nor the reverse


def test_preflight_answers_methods_and_requested_headers(cors_stacks):
    answer = cors_stacks.both("OPTIONS", "/predict/", b"", {
        "Origin": "https://app.example.com", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, x-request-id"})
    assert answer.status == 200
    assert answer.header("access-control-allow-methods") == answer.header("allow") == "POST, OPTIONS"
    assert (answer.header("access-control-allow-headers"), answer.header("access-control-max-age")) == ("content-type, x-request-id", "600")


def test_wildcard_origin_is_never_combined_with_credentials(model_root):
    stacks = Stacks(load_model(model_root, "regression"), cors=CorsPolicy(parse_origins("*")))
    answer = stacks.both("GET", "/ping", b"", {"Origin": "https://anyone.example"})
    assert answer.header("access-control-allow-origin") == "*"
    assert answer.header("access-control-allow-credentials") is None and answer.header("vary") is None


@pytest.mark.servers
@pytest.mark.parametrize("server_type,expected_server", [("gunicorn", "gunicorn"), ("fastapi", "uvicorn"), ("flask", "Werkzeug")])
def test_real_servers_send_no_version_and_apply_cors_from_the_setting(tmp_path, server_type, expected_server):
    code_dir, _ = write_model(tmp_path, "regression")
    env = {"DRUM_CORS_ORIGINS": "https://app.example.com"}
    with serve(code_dir, server_type, "--target-type", "regression", env=env) as server:
        response = httpx.post(f"{server.base_url}/predict/", content=CSV,
                              headers={"Content-Type": "text/csv", "Origin": "https://app.example.com"})
        assert response.headers["server"] == expected_server
        assert response.headers["access-control-allow-origin"] == "https://app.example.com"
        assert {name: response.headers[name] for name in HARDENED} == HARDENED
