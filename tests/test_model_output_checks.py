"""Against DRUM 1.18.1 itself, on both stacks: models whose output breaks DRUM's checks (the same status and body
bytes), a transform's empty target or empty output, and an empty Content-Type (the issue's C1, C2, C4, C5, C14-C17)."""
from __future__ import annotations

import os

import httpx
import pytest

from tests.processes import serve
from tests.test_against_drum import DRUM, REFERENCE_MISSING, running_drum

pytestmark = [pytest.mark.servers,
              pytest.mark.skipif(not DRUM.exists() and not os.environ.get("CI"), reason=REFERENCE_MISSING)]
HEAD = "import numpy as np\nimport pandas as pd\n\ndef load_model(code_dir):\n    return 'm'\n\n"
BINARY = {"POSITIVE_CLASS_LABEL": "yes", "NEGATIVE_CLASS_LABEL": "no"}
CSV = {"content": b"x\n1\n2\n", "headers": {"Content-Type": "text/csv"}}
CASES = {
    # C14: the labels are not the model's
    "binary, a label that is not one": ("binary", BINARY, "def score(data, model, **kwargs):\n"
                                        "    return pd.DataFrame({'yes': [0.4] * len(data), 'maybe': [0.6] * len(data)})\n"),
    "multiclass, columns without names": ("multiclass", {"CLASS_LABELS": "cat dog horse"},
                                          "def score(data, model, **kwargs):\n"
                                          "    return pd.DataFrame(np.full((len(data), 3), 0.25))\n"),
    # C15: more columns than labels, one label missing
    "binary, extra columns and a label missing": ("binary", BINARY, "def score(data, model, **kwargs):\n"
                                                  "    n = len(data)\n"
                                                  "    return pd.DataFrame({'yes': [0.4] * n, 'other': [0.6] * n, 'x': [1] * n})\n"),
    "binary, extra columns in another order": ("binary", BINARY, "def score(data, model, **kwargs):\n"
                                               "    n = len(data)\n"
                                               "    return pd.DataFrame({'x': ['a'] * n, 'no': [0.6] * n, 'yes': [0.4] * n})\n"),
    # C16: several columns, none the prediction column
    "regression, no Predictions column": ("regression", {}, "def score(data, model, **kwargs):\n"
                                          "    return pd.DataFrame({'a': [1.0] * len(data), 'b': [2.0] * len(data)})\n"),
    # C17: probabilities as strings
    "binary, probabilities as strings": ("binary", BINARY, "def score(data, model, **kwargs):\n"
                                         "    return pd.DataFrame({'yes': ['0.3'] * len(data), 'no': ['0.7'] * len(data)})\n"),
    "binary, one column of strings": ("binary", BINARY, "def score(data, model, **kwargs):\n"
                                      "    return pd.DataFrame({'yes': ['0.3'] * len(data)})\n"),
}


def answers(url: str, requests) -> list[tuple[int, bytes]]:
    with httpx.Client(base_url=url, timeout=30) as client:
        return [(answer.status_code, answer.content) for answer in (client.post(path, **kwargs) for path, kwargs in requests)]


@pytest.mark.parametrize("case", CASES)
def test_a_model_output_drum_refuses_is_refused_alike(tmp_path, case):
    target_type, env, source = CASES[case]
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "custom.py").write_text(HEAD + source)
    requests = [("/predict/", CSV), ("/predictions/", CSV)]
    with running_drum(tmp_path / "m", target_type, **env) as url:
        expected = answers(url, requests)
    for stack in ("gunicorn", "fastapi"):
        with serve(tmp_path / "m", stack, "--target-type", target_type, env=env) as server:
            assert answers(server.base_url, requests) == expected, stack


def test_an_empty_target_file_is_ignored_by_transform_as_drum_ignores_it(tmp_path):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "custom.py").write_text(HEAD + "def transform(data, model):\n    return data * 2\n")
    form = {"files": {"X": ("x.csv", b"a\n1\n", "text/csv"), "y": ("y.csv", b"", "text/csv")}}
    def transformed(url: str) -> tuple[int, bytes]:
        answer = httpx.post(f"{url}/transform/", **form)
        boundary = answer.headers["Content-Type"].split("boundary=")[1].encode()
        return answer.status_code, answer.content.replace(boundary, b"BOUNDARY")  # each answer's own

    with running_drum(tmp_path / "t", "transform") as url:
        expected = transformed(url)
    assert expected[0] == 200
    for stack in ("gunicorn", "fastapi"):
        with serve(tmp_path / "t", stack, "--target-type", "transform") as server:
            assert transformed(server.base_url) == expected, stack


@pytest.mark.parametrize("features, rows, columns", [(b"a\n", 0, 1), (b"\na\n1\n", 1, 0)], ids=["zero rows", "zero columns"])
def test_an_empty_transform_output_is_answered_where_drum_fails(tmp_path, features, rows, columns):
    """C1, C2: DRUM fails an empty frame while writing its answer (a 500 from pandas); drum-compat answers it, a
    difference the guide documents and `parity --against` reports as such."""
    from drum_compat.compat.parity.compare import Answer, differences, split_documented

    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "custom.py").write_text(HEAD + "def transform(data, model):\n    return data\n")
    form = {"files": {"X": ("x.csv", features, "text/csv")}}
    with running_drum(tmp_path / "t", "transform") as url:
        drums = httpx.post(f"{url}/transform/", **form)
    assert drums.status_code == 500
    assert drums.json()["message"] in ("ERROR: single positional indexer is out-of-bounds", "ERROR: no types given")
    for stack in ("gunicorn", "fastapi"):
        with serve(tmp_path / "t", stack, "--target-type", "transform") as server:
            ours = httpx.post(f"{server.base_url}/transform/", **form)
        assert ours.status_code == 200, stack
        assert ours.content.count(b'filename="X.transformed"') == ours.content.count(b'name="X.format"') == 1, stack
        header = b"a\r\n" if rows == 0 else b"\r\n"  # the CSV of the frame: its header line alone, or an empty one
        assert b'filename="X.transformed"\r\nContent-Type: application/octet-stream\r\n\r\n' + header in ours.content
        lines = differences("POST", "/transform/", Answer(drums.status_code, list(drums.headers.items()), drums.content),
                            Answer(ours.status_code, list(ours.headers.items()), ours.content), against=True)
        unexpected, documented = split_documented("/transform/", lines)
        assert unexpected == [] and documented, stack


def test_an_empty_content_type_is_no_header_for_the_model_as_under_drum(tmp_path):
    """C5: werkzeug leaves an empty Content-Type (a CGI key of its own) out of the headers; uvicorn had kept it."""
    import json
    import socket

    from tests.models import write_model

    code_dir, _ = write_model(tmp_path, "unstructured")
    raw = (b"POST /predictUnstructured/?ret_mode=kwargs HTTP/1.1\r\nHost: x\r\nContent-Type: \r\nX-Mine: 1\r\n"
           b"Content-Length: 3\r\nConnection: close\r\n\r\nabc")

    def seen(port: int) -> dict:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(raw)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        return json.loads(answer.partition(b"\r\n\r\n")[2])

    with running_drum(code_dir, "unstructured") as url:
        expected = seen(int(url.rsplit(":", 1)[1]))
    assert "Content-Type" not in expected["headers"] and expected["headers"]["X-Mine"] == "1"
    for stack in ("gunicorn", "fastapi"):
        with serve(code_dir, stack, "--target-type", "unstructured") as server:
            assert seen(server.port) == expected, stack
