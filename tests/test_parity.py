"""Every case goes to the Flask app (test client) and the FastAPI app (httpx over ASGI): same
status, same headers (Date/Server and request-id values aside), same body bytes."""
from __future__ import annotations

import json

import pytest
from requests_toolbelt import MultipartEncoder

CSV = b"x,y\n1,2\n3,4\n"
CSV_HEADERS = {"Content-Type": "text/csv"}
MTX = b"%%MatrixMarket matrix coordinate real general\n2 3 2\n1 1 1.5\n2 3 2.0\n"

ROUTE_PATHS = [
    "/", "/ping", "/ping/", "/health", "/health/", "/info", "/info/", "/capabilities", "/capabilities/",
    "/stats", "/predict", "/predict/", "/predictions", "/predictions/", "/invocations", "/invocations/",
    "/transform", "/transform/", "/predictUnstructured", "/predictUnstructured/", "/predictionsUnstructured/",
    "/livez", "/livez/", "/readyz", "/startupz", "/nope", "/static/x", "/predict/extra", "//info/", "/info/?a=1",
    "/%E2%9C%93/", "/info%2F",
]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
# routes whose GET body is volatile (live figures) or differs by design (drumServer)
VOLATILE_GET = {"/stats/", "/info/", "/info/?a=1", "/info%2F"}


def multipart(fields: dict) -> tuple[bytes, dict]:
    encoder = MultipartEncoder(fields=fields, boundary="b0undaryb0undaryb0undary0000000a")
    return encoder.to_string(), {"Content-Type": encoder.content_type}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("path", ROUTE_PATHS)
def test_routing_is_identical(stacks_for, method, path):
    stacks = stacks_for("regression")
    if method in ("GET", "HEAD") and path in VOLATILE_GET:
        flask_answer, fastapi_answer = stacks.flask(method, path), stacks.fastapi(method, path)
        assert flask_answer.status == fastapi_answer.status == 200
        assert [name for name, _ in flask_answer.headers] == [name for name, _ in fastapi_answer.headers]
        if method == "GET":
            assert sorted(flask_answer.json) == sorted(fastapi_answer.json)
        return
    stacks.both(method, path, body=CSV if method in ("POST", "PUT", "PATCH") else b"", headers=CSV_HEADERS)


@pytest.mark.parametrize("path", ["/", "/pfx", "/pfx/", "/pfx/info", "/pfx/ping", "/pfx/predict/", "/predict/", "/pfx/invocations"])
@pytest.mark.parametrize("method", ["GET", "POST", "HEAD"])
def test_url_prefix_routing_is_identical(stacks_for, path, method):
    stacks_for("regression", url_prefix="/pfx").both(method, path, CSV, CSV_HEADERS)


def test_info_differs_only_in_drum_server(stacks_for):
    stacks = stacks_for("binary")
    flask_info, fastapi_info = stacks.flask("GET", "/info/").json, stacks.fastapi("GET", "/info/").json
    assert flask_info.pop("drumServer") == "flask" and fastapi_info.pop("drumServer") == "fastapi"
    assert flask_info == fastapi_info


STRUCTURED_PAYLOADS = {
    "raw csv": (CSV, CSV_HEADERS),
    "raw csv no content type": (CSV, {}),
    "raw csv text/plain": (CSV, {"Content-Type": "text/plain; charset=latin-1"}),
    "raw csv uppercase mimetype": (CSV, {"Content-Type": "TEXT/CSV"}),
    "json body": (b'{"x": [1]}', {"Content-Type": "application/json"}),
    "octet-stream": (CSV, {"Content-Type": "application/octet-stream"}),
    "form urlencoded": (CSV, {"Content-Type": "application/x-www-form-urlencoded"}),
    "empty body": (b"", CSV_HEADERS),
    "empty body no headers": (b"", {}),
    "multipart X csv": multipart({"X": ("data.csv", CSV, "text/csv")}),
    "multipart X plain field": multipart({"X": "x,y\n1,2\n"}),
    "multipart wrong key": multipart({"data": ("data.csv", CSV, "text/csv")}),
    "multipart X mtx": multipart({"X": ("X.mtx", MTX, "text/plain"), "X.colnames": ("c", b"a\nb\nc\n", "text/plain")}),
    "multipart X mtx no colnames": multipart({"X": ("x.mtx", MTX, "application/octet-stream")}),
    "multipart X MTX uppercase ext": multipart({"X": ("x.MTX", MTX, "text/plain")}),
    "raw mtx": (MTX, {"Content-Type": "text/mtx;"}),
    "unicode csv": ("naïve,ünï\n1,2\n".encode(), CSV_HEADERS),
    "latin-1 csv": ("naïve,x\n1,2\n".encode("latin-1"), CSV_HEADERS),
    "single column with blank lines": (b"x\n1\n\n3\n", CSV_HEADERS),
    "malformed csv": (b'a,b\n1,2,3,4\n"x', CSV_HEADERS),
    "header only csv": (b"x,y\n", CSV_HEADERS),
    "whitespace body": (b"\n\n", CSV_HEADERS),
    "binary garbage": (bytes(range(256)), CSV_HEADERS),
}
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
