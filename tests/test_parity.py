"""Every case goes to the Flask app (test client) and the FastAPI app (httpx over ASGI): same
status, same headers (Date/Server and request-id values aside), same body bytes."""
from __future__ import annotations

import json

import pytest

from drum_compat.compat.parity.cases import CSV, CSV_HEADERS, STRUCTURED_PAYLOADS, multipart, route_cases

@pytest.mark.parametrize("case", route_cases(), ids=lambda case: case.name)
def test_routing_is_identical(stacks_for, case):
    """The parity runner's route corpus, in-process (per-server content of /info/ and /stats/ compared as it does)."""
    assert stacks_for("regression").differences(case) == []


@pytest.mark.parametrize("path", ["/", "/pfx", "/pfx/", "/pfx/info", "/pfx/ping", "/pfx/predict/", "/predict/", "/pfx/invocations"])
@pytest.mark.parametrize("method", ["GET", "POST", "HEAD"])
def test_url_prefix_routing_is_identical(stacks_for, path, method):
    stacks_for("regression", url_prefix="/pfx").both(method, path, CSV, CSV_HEADERS)


def test_info_differs_only_in_drum_server(stacks_for):
    stacks = stacks_for("binary")
    flask_info, fastapi_info = stacks.flask("GET", "/info/").json, stacks.fastapi("GET", "/info/").json
    assert flask_info.pop("drumServer") == "flask" and fastapi_info.pop("drumServer") == "fastapi"
    assert flask_info == fastapi_info


STRUCTURED_MODELS = ["regression", "regression_extra", "binary", "multiclass", "multilabel", "anomaly", "failing", "custom_task", "unstructured", "transform"]


@pytest.mark.parametrize("payload", sorted(STRUCTURED_PAYLOADS))
@pytest.mark.parametrize("model", STRUCTURED_MODELS)
def test_structured_predictions_are_identical(stacks_for, model, payload):
    body, headers = STRUCTURED_PAYLOADS[payload]
    stacks_for(model).both("POST", "/predict/", body, headers)


@pytest.mark.parametrize("model", STRUCTURED_MODELS)
def test_the_three_predict_paths_are_one_endpoint(stacks_for, model):
    """/predictions/ and /invocations answer exactly as /predict/ (so the payload corpus runs on one of them)."""
    for payload in ("raw csv", "multipart X mtx", "malformed csv", "empty body"):
        body, headers = STRUCTURED_PAYLOADS[payload]
        answers = {path: stacks_for(model).both("POST", path, body, headers) for path in ("/predict/", "/predictions/", "/invocations")}
        assert answers["/predictions/"] == answers["/predict/"] == answers["/invocations"], (model, payload)


@pytest.mark.parametrize("payload", sorted(STRUCTURED_PAYLOADS))
@pytest.mark.parametrize("model", ["transform", "regression", "unstructured"])
def test_transform_is_identical(stacks_for, model, payload):
    body, headers = STRUCTURED_PAYLOADS[payload]
    stacks_for(model).both("POST", "/transform/", body, headers)


def test_transform_with_target_is_identical(stacks_for):
    body, headers = multipart({"X": ("X.csv", CSV, "text/csv"), "y": ("y.csv", b"t\n1\n0\n", "text/csv")})
    answer = stacks_for("transform").both("POST", "/transform/", body, headers)
    assert answer.status == 200 and b'name="y.transformed"' in answer.body


@pytest.mark.parametrize("failure", ["custom", "notframe", "twocols", "boom"])
def test_error_paths_are_identical(stacks_for, failure):
    stacks_for("failing").both("POST", "/predict/", f"{failure}\n1\n".encode(), CSV_HEADERS)


UNSTRUCTURED_CASES = [
    ("echo", "my text, мой текст".encode("utf-8"), {"Content-Type": "text/plain; charset=UTF-8"}),
    ("echo", "my text, мой текст".encode("utf-16"), {"Content-Type": "text/plain; charset=utf16"}),
    ("echo&ret_mimetype=application/octet-stream&ret_charset=utf16", "my text".encode("utf-8"), {"Content-Type": "text/plain"}),
    ("echo&ret_mimetype=text/plain_drum_test", b"abc", {"Content-Type": "text/plain"}),
    ("echo", b"\x00\x01\xff", {"Content-Type": "application/octet-stream;"}),
    ("echo", b"a=1&b=2", {"Content-Type": "application/x-www-urlencoded;"}),
    ("echo", b"a=1&b=2", {"Content-Type": "application/x-www-form-urlencoded"}),
    ("echo", b'{"k": "v"}', {"Content-Type": "application/json"}),
    ("echo", b"no content type", {}),
    ("echo", b"", {}),
    ("echo", b"\xff\xfe bad utf8", {"Content-Type": "text/plain"}),
    ("echo", b"x", {"Content-Type": "text/plain; charset=no-such-charset"}),
    ("kwargs&a=1&a=2&b=", b"hello", {"Content-Type": "text/csv", "X-DataRobot-Consumer-Id": "c1"}),
    ("kwargs", b"\x01\x02", {"Content-Type": "image/png"}),
    ("kwargs", b"\x01\x02", {"Content-Type": "image/png; charset=ascii"}),
    ("count", b"one two three four five six seven eight nine ten", {"Content-Type": "text/plain"}),
    ("binary", b"0123456789", {"Content-Type": "application/octet-stream"}),
    ("none", b"x", {}),
    ("bad", b"x", {}),
    ("nomime", b"x", {}),
    ("boom", b"x", {}),
    ("teapot", b"x", {}),
]


@pytest.mark.parametrize("path", ["/predictUnstructured/", "/predictionsUnstructured/"])
@pytest.mark.parametrize("query,body,headers", UNSTRUCTURED_CASES)
def test_unstructured_is_identical(stacks_for, path, query, body, headers):
    stacks_for("unstructured").both("POST", f"{path}?ret_mode={query}", body, headers)


def test_unstructured_multipart_body_reaches_hook_raw(stacks_for):
    body, headers = multipart({"filekey": ("words.txt", b"a b c", "text/plain")})
    answer = stacks_for("unstructured").both("POST", "/predictUnstructured/?ret_mode=kwargs", body, headers)
    seen = answer.json
    assert seen["type"] == "bytes" and seen["mimetype"] == "multipart/form-data"
    assert seen["headers"]["Content-Type"].startswith("multipart/form-data; boundary=")


def test_large_csv_is_identical(stacks_for):
    rows = "\n".join(f"{i},{i * 0.5}" for i in range(10_000))
    answer = stacks_for("regression").both("POST", "/predictions/", f"x,y\n{rows}\n".encode(), CSV_HEADERS)
    assert len(answer.json["predictions"]) == 10_000


def test_read_input_data_and_all_hooks_are_identical(stacks_for):
    answer = stacks_for("all_hooks").both("POST", "/predict/", json.dumps({"a": [1, 2]}).encode(), {"Content-Type": "application/json"})
    assert answer.status == 200


@pytest.mark.parametrize("path", ["/", "/ping", "/ping/", "/health/", "/predict/", "/predictions/", "/invocations", "/transform/",
                                  "/predictUnstructured/", "/info/", "/capabilities/", "/stats/", "/livez", "/readyz", "/nope"])
@pytest.mark.parametrize("method", ["GET", "POST", "HEAD"])
def test_error_server_is_identical(model_root, method, path):
    from tests.conftest import Stacks

    Stacks(None, load_error="An error occurred when loading your artifact: boom").both(method, path, CSV, CSV_HEADERS)
