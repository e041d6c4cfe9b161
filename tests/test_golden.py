"""DRUM 1.18's exact bytes (contract sections 1-3), checked on both stacks through `Stacks.both`."""
from __future__ import annotations

import pytest
from requests_toolbelt import MultipartEncoder

from drum_compat.compat.parity.cases import CSV, CSV_HEADERS, MTX, multipart

SAMPLES_MISSING = (
    b'{"message":"ERROR: Samples should be provided as:   - a csv or mtx under `X` form-data param key.  - binary data"}\n'
)


def test_ping_health_capabilities(stacks_for):
    stacks = stacks_for("regression")
    for path in ("/", "/ping", "/ping/", "/health/", "/livez", "/readyz", "/startupz"):
        answer = stacks.both("GET", path)
        assert (answer.status, answer.body, answer.header("content-type")) == (200, b'{"message":"OK"}\n', "application/json")
    answer = stacks.both("GET", "/capabilities/")
    assert answer.body == b'{"supported_methods":{"chat":false},"supported_payload_formats":{"csv":null,"mtx":null}}\n'


def test_common_headers_and_request_id(stacks_for):
    stacks = stacks_for("regression")
    for send in (stacks.flask, stacks.fastapi):
        answer = send("GET", "/nope", headers={"X-Request-ID": "abc-123:x.y"})
        raw = {name: value for name, value in answer.headers}
        assert answer.status == 404 and raw["x-drum-version"] == "0.1.0"
    # the id itself: reused when safe, replaced when not
    for headers, reused in (({"X-Request-ID": "abc-123:x.y"}, True), ({"X-Request-ID": "a b<script>"}, False), ({"X-Request-ID": "x" * 129}, False)):
        flask_response = stacks.flask_client.get("/info/", headers=headers)
        ids = {flask_response.headers["X_Request_ID"], flask_response.headers["X-Request-ID"]}
        assert len(ids) == 1 and (ids == {headers["X-Request-ID"]}) == reused


def test_redirect_404_405(stacks_for):
    stacks = stacks_for("regression")
    redirect = stacks.both("POST", "/predict", CSV, CSV_HEADERS)
    assert redirect.status == 308 and redirect.header("location") == "http://localhost/predict/"
    assert b"Redirecting..." in redirect.body
    assert stacks.both("GET", "/info?x=1").header("location") == "http://localhost/info/?x=1"
    missing = stacks.both("POST", "/invocations/", CSV, CSV_HEADERS)
    assert missing.status == 404 and missing.header("content-type") == "text/html; charset=utf-8"
    assert b"<title>404 Not Found</title>" in missing.body and b"The requested URL was not found on the server." in missing.body
    wrong = stacks.both("GET", "/invocations")
    assert wrong.status == 405 and wrong.header("allow") == "POST, OPTIONS"
    assert b"<title>405 Method Not Allowed</title>" in wrong.body
    assert stacks.both("POST", "/info/").header("allow") == "HEAD, GET, OPTIONS"
    head = stacks.both("HEAD", "/health/")
    assert head.body == b"" and head.header("content-length") == "17"


def test_url_prefix(stacks_for):
    stacks = stacks_for("regression", url_prefix="/pfx")
    assert stacks.both("GET", "/pfx/").status == 200
    assert stacks.both("GET", "/pfx").header("location") == "http://localhost/pfx/"
    assert stacks.both("GET", "/").status == 404
    assert stacks.both("POST", "/pfx/invocations", CSV, CSV_HEADERS).status == 200


@pytest.mark.parametrize(
    "model,body,expected",
    [
        ("regression", CSV, b'{"predictions":[2.0,6.0]}'),
        ("regression_extra", b"x\n1\n2\n",
         b'{"predictions":[0.1,0.2],"extraModelOutput":{"columns":["extra1","extra2"],"index":[0,1],"data":[[2,"high"],[3,"low"]]}}'),
        ("binary", b"x\n1\n12\n", b'{"predictions":[{"yes":0.1,"no":0.9},{"yes":0.2,"no":0.8}]}'),
        ("multiclass", b"x\n1\n",
         b'{"predictions":[{"dog":0.7,"cat":0.1,"horse":0.2}],"extraModelOutput":{"columns":["note"],"index":[0],"data":[["x\\/\\u00e9"]]}}'),
        ("multilabel", b"x\n1\n", b'{"predictions":[{"a":0.9,"b":0.8,"c":0.05}]}'),
        ("anomaly", b"x\n1\n2\n3\n4\n5\n6\n", b'{"predictions":[0.3333333333,0.0,1e+20,null,0.0,0.123456789]}'),
        ("custom_task", b"x\n1\n", b'{"predictions":[1.5]}'),
        ("all_hooks", b'{"a": [1]}', b'{"predictions":[6.0]}'),
    ],
)
def test_prediction_bodies(stacks_for, model, body, expected):
    answer = stacks_for(model).both("POST", "/predict/", body, CSV_HEADERS if model != "all_hooks" else {"Content-Type": "application/json"})
    assert (answer.status, answer.body, answer.header("content-type")) == (200, expected, "application/json")


def test_single_column_blank_lines_become_null_rows(stacks_for):
    assert stacks_for("regression").both("POST", "/predict/", b"x\n1\n\n3\n", CSV_HEADERS).body == b'{"predictions":[2.0,null,6.0]}'


def test_sparse_input(stacks_for):
    body, headers = multipart({"X": ("x.mtx", MTX, "text/plain"), "X.colnames": ("c", b"a\nb\nc\n", "text/plain")})
    assert stacks_for("regression").both("POST", "/predict/", body, headers).body == b'{"predictions":[3.0,0.0]}'
    assert stacks_for("regression").both("POST", "/predict/", MTX, {"Content-Type": "text/mtx;"}).status == 200


@pytest.mark.parametrize(
    "model,path,body,headers,status,expected",
    [
        ("regression", "/predict/", b"", CSV_HEADERS, 422, SAMPLES_MISSING),
        ("regression", "/predict/", CSV, {"Content-Type": "application/x-www-form-urlencoded"}, 422, SAMPLES_MISSING),
        ("regression", "/predict/", CSV, {"Content-Type": "TEXT/CSV"}, 422,
         b'{"message":"ERROR: payload format `TEXT/CSV` is not supported by predictor/transformer. Make DRUM support the format or implement `read_input_data` hook to read the data. "}\n'),
        ("regression", "/predict/", "a\n\u00e9\n".encode("latin-1"), CSV_HEADERS, 500,
         b'{"message":"ERROR: Supplied CSV input file encoding must be UTF-8."}\n'),
        ("regression", "/predict/", b'a,b\n1,2\n3,4,5,6\n', CSV_HEADERS, 500,
         b'{"message":"ERROR: Pandas failed to read input binary data b\'a,b\\\\n1,2\\\\n3,4,5,6\\\\n\'"}\n'),
        ("transform", "/predict/", CSV, CSV_HEADERS, 422,
         b'{"message":"ERROR: This model has target type \'transform\', use the /transform/ endpoint."}\n'),
        ("unstructured", "/predictions/", b"", {}, 422,
         b'{"message":"ERROR: This model has target type \'unstructured\', use the /predictUnstructured/ or /predictionsUnstructured/ endpoint."}\n'),
        ("regression", "/transform/", CSV, CSV_HEADERS, 422,
         b'{"message":"ERROR: This model has target type TargetType.REGRESSION, use the /predict/ endpoint."}\n'),
        ("unstructured", "/transform/", CSV, CSV_HEADERS, 422,
         b'{"message":"ERROR: This model has target type TargetType.UNSTRUCTURED, use the /predictUnstructured/ endpoint."}\n'),
        ("regression", "/predictUnstructured/", CSV, CSV_HEADERS, 422,
         b'{"message":"ERROR: This model has target type TargetType.REGRESSION, use either /predict/ or /predictions/ endpoint."}\n'),
        ("failing", "/predict/", b"boom\n1\n", CSV_HEADERS, 500,
         b'{"message":"ERROR: Model \'score\' hook failed to make predictions. Exception: ValueError(\'boom\')"}\n'),
        ("failing", "/predict/", b"notframe\n1\n", CSV_HEADERS, 500,
         b'{"message":"ERROR: score must return a dataframe, but received <class \'list\'>"}\n'),
        # DRUM drops the prediction column by name first and fails with pandas' own KeyError text (the issue's C16)
        ("failing", "/predict/", b"twocols\n1\n", CSV_HEADERS, 500,
         b'{"message":"ERROR: \\"[\'Predictions\'] not found in axis\\""}\n'),
        ("unstructured", "/predictUnstructured/?ret_mode=bad", b"x", {}, 500,
         b'{"message":"ERROR: In unstructured mode single return value can be of type str/bytes, but received <class \'int\'>"}\n'),
        ("unstructured", "/predictUnstructured/?ret_mode=boom", b"x", {}, 500, b'{"message":"ERROR: unstructured boom"}\n'),
        # recorded from DRUM 1.18.1: a multipart type without a boundary leaves the body as request.data
        ("regression", "/predict/", b"x", {"Content-Type": "multipart/form-data"}, 422,
         b'{"message":"ERROR: payload format `multipart/form-data` is not supported by predictor/transformer. Make DRUM '
         b'support the format or implement `read_input_data` hook to read the data. "}\n'),
    ],
)
def test_error_bodies(stacks_for, model, path, body, headers, status, expected):
    answer = stacks_for(model).both("POST", path, body, headers)
    assert answer.status == status
    assert answer.body == expected if expected.endswith(b"\n") else answer.body.startswith(expected)
    assert answer.header("x-drum-user-http-error") is None


@pytest.mark.parametrize("model,path,body,status,message", [
    ("failing", "/predict/", b"custom\n1\n", 418, b'{"message":"Custom prediction error"}\n'),
    ("unstructured", "/predictUnstructured/?ret_mode=teapot", b"x", 418, b'{"message":"teapot"}\n'),
])
def test_custom_http_error(stacks_for, model, path, body, status, message):
    answer = stacks_for(model).both("POST", path, body, CSV_HEADERS)
    assert (answer.status, answer.body, answer.header("x-drum-user-http-error")) == (status, message, "true")


def test_failure_leaves_server_healthy(stacks_for):
    stacks = stacks_for("failing")
    assert stacks.both("POST", "/predict/", b"boom\n1\n", CSV_HEADERS).status == 500
    assert stacks.both("GET", "/health/").status == 200
    assert stacks.both("POST", "/predict/", b"", CSV_HEADERS).body == SAMPLES_MISSING


@pytest.mark.parametrize("query,body,headers,content_type,expected", [
    ("ret_mode=echo", "my text, мой текст".encode("utf-16"), {"Content-Type": "text/plain; charset=utf16"},
     "text/plain; charset=utf-8", "my text, мой текст".encode()),
    ("ret_mode=echo&ret_mimetype=text/plain_drum_test&ret_charset=utf16", b"hi", {"Content-Type": "text/plain"},
     "text/plain_drum_test; charset=utf16", "hi".encode("utf-16")),
    ("ret_mode=echo", b"\x00\xff", {"Content-Type": "application/octet-stream;"}, "application/octet-stream", b"\x00\xff"),
    ("ret_mode=none", b"x", {}, "text/plain; charset=utf-8", b""),
    ("ret_mode=nomime", b"x", {}, "text/html; charset=utf-8", b"x"),
    ("ret_mode=count", b"one two three four five six seven eight nine ten", {"Content-Type": "application/x-www-urlencoded"},
     "text/plain; charset=utf-8", b"10"),
    ("ret_mode=binary", b"0123456789", {"Content-Type": "application/x-www-urlencoded"}, "application/octet-stream", (10).to_bytes(4, "big")),
])
def test_unstructured_responses(stacks_for, query, body, headers, content_type, expected):
    answer = stacks_for("unstructured").both("POST", f"/predictUnstructured/?{query}", body, headers)
    assert (answer.status, answer.header("content-type"), answer.body) == (200, content_type, expected)


def test_unstructured_hook_arguments(stacks_for):
    answer = stacks_for("unstructured").both(
        "POST", "/predictUnstructured/?ret_mode=kwargs&a=1&a=2", b"\x01", {"Content-Type": "image/png", "X-DataRobot-Consumer-Id": "c1"}
    )
    seen = answer.json
    assert seen["type"] == "bytes" and seen["mimetype"] == "image/png" and seen["charset"] == "<absent>"
    assert seen["query"] == [["a", "1"], ["a", "2"], ["ret_mode", "kwargs"]]
    assert seen["headers"]["X-Datarobot-Consumer-Id"] == "c1" and seen["headers"]["Content-Type"] == "image/png"
    text = stacks_for("unstructured").both("POST", "/predictUnstructured/?ret_mode=kwargs", b"t", {"Content-Type": "text/csv"}).json
    assert (text["type"], text["charset"]) == ("str", "utf-8")


def test_transform_response_matches_requests_toolbelt(stacks_for):
    body, headers = multipart({"X": ("X.csv", b"a,b\n1,2\n3,4\n", "text/csv"), "y": ("y.csv", b"t\n1\n0\n", "text/csv")})
    answer = stacks_for("transform").both("POST", "/transform/", body, headers)
    expected = MultipartEncoder(
        fields={"X.format": "csv", "X.transformed": ("X.transformed", b"a t,b t\r\n2,4\r\n6,8", "application/octet-stream"),
                "y.format": "csv", "y.transformed": ("y.transformed", b"t\r\n1\r\n0", "application/octet-stream")},
        boundary="<boundary>",
    ).to_string()
    assert answer.header("content-type") == "multipart/form-data; boundary=<boundary>"
    assert answer.body == expected


def test_sparse_transform(stacks_for):
    body, headers = multipart({"X": ("x.mtx", MTX, "text/plain"), "X.colnames": ("c", b"a\nb\nc\n", "text/plain")})
    answer = stacks_for("transform").both("POST", "/transform/", body, headers)
    assert b'name="X.format"\r\n\r\nsparse\r\n' in answer.body and b"a t\nb t\nc t" in answer.body


def test_error_server_answers_513():
    from tests.conftest import Stacks

    stacks = Stacks(None, load_error="An error occurred when loading your artifact: boom")
    for method, path in (("GET", "/"), ("GET", "/ping"), ("GET", "/ping/"), ("GET", "/health/"), ("POST", "/predict/"), ("POST", "/invocations")):
        answer = stacks.both(method, path, CSV, CSV_HEADERS)
        assert (answer.status, answer.body) == (513, b'{"message":"ERROR: An error occurred when loading your artifact: boom"}\n')
    assert stacks.both("GET", "/info/").status == 404
    assert stacks.both("GET", "/livez").status == 200 and stacks.both("GET", "/readyz").status == 513


def test_a_form_past_werkzeugs_limits_is_a_413_not_a_500(stacks_for):
    """DRUM answers 500 `ERROR: 413 Request Entity Too Large` (a framework limit); both stacks answer 413."""
    boundary = "b" * 16
    part = f'--{boundary}\r\nContent-Disposition: form-data; name="f"\r\n\r\nv\r\n'.encode()
    body = part * 200_000 + f"--{boundary}--\r\n".encode()
    answer = stacks_for("regression").both("POST", "/predict/", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert (answer.status, answer.body) == (
        413, b'{"message":"ERROR: 413 Request Entity Too Large: The data value transmitted exceeds the capacity limit."}\n')
    big_field = f'--{boundary}\r\nContent-Disposition: form-data; name="f"\r\n\r\n'.encode() + b"v" * 600_000 + f"\r\n--{boundary}--\r\n".encode()
    answer = stacks_for("regression").both("POST", "/predict/", big_field, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert answer.status == 413
