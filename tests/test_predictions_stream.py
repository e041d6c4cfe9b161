"""/predictionsStream/ (an addition to DRUM): a CSV scored DRUM_STREAM_BATCH_ROWS rows at a time, each batch answered
as one line of what /predict/ answers for those rows, the same bytes on both stacks; errors before the first line keep
/predict/'s statuses, a failure after it truncates the answer; the first line leaves before the last batch is scored."""
from __future__ import annotations

import json
import textwrap

import httpx
import pytest

from drum_compat.compat.parity.cases import multipart
from tests.processes import serve
from drum_compat.shared.app import AppSettings
from drum_compat.shared.model.config import resolve_model_config
from drum_compat.shared.model.python_model import PythonModel
from drum_compat.shared.server_types import SERVER_TYPES
from tests.conftest import Stacks
from tests.models import EXAMPLES

HOUSES = (EXAMPLES.parent / "data" / "houses.csv").read_bytes()
CSV = {"Content-Type": "text/csv"}


def stacks_of(code_dir, batch_rows: int, target_type: str = "regression") -> Stacks:
    model = PythonModel.load(resolve_model_config(str(code_dir), target_type=target_type))
    return Stacks(model, settings=AppSettings(server_type=SERVER_TYPES["gunicorn"], stream_batch_rows=batch_rows))


@pytest.fixture(scope="module")
def stacks():
    return stacks_of(EXAMPLES / "regression", batch_rows=3)


def rows(csv: bytes, start: int, stop: int) -> bytes:
    lines = csv.splitlines(keepends=True)
    return lines[0] + b"".join(lines[1 + start:1 + stop])


def test_each_line_is_predicts_answer_for_its_batch(stacks):
    answer = stacks.both("POST", "/predictionsStream/", HOUSES, CSV)
    assert answer.status == 200 and dict(answer.headers)["content-type"] == "application/x-ndjson"
    lines = answer.body.splitlines(keepends=True)
    count = len(HOUSES.splitlines()) - 1
    assert len(lines) == -(-count // 3) and all(line.endswith(b"\n") for line in lines)
    for index, line in enumerate(lines):
        assert line[:-1] == stacks.flask("POST", "/predict/", rows(HOUSES, 3 * index, 3 * index + 3), CSV).body
    whole = stacks.flask("POST", "/predict/", HOUSES, CSV).json["predictions"]
    assert [value for line in lines for value in json.loads(line)["predictions"]] == whole


def test_what_cannot_be_batched_is_scored_whole_as_one_line(stacks):
    body, headers = multipart({"X": ("houses.csv", HOUSES, "text/csv")})
    answer = stacks.both("POST", "/predictionsStream/", body, headers)
    assert answer.status == 200 and answer.body == stacks.flask("POST", "/predict/", HOUSES, CSV).body + b"\n"


@pytest.mark.parametrize("body, headers", [(b"", CSV), (b"\xff\xfe,x\n1,2\n", CSV), (b"a,b\n1,2,3,4\n", CSV),
                                            (HOUSES, {"Content-Type": "application/json"})])
def test_errors_before_the_first_line_are_predicts_errors(stacks, body, headers):
    # the same status as /predict/ (a malformed CSV's message names the batch, not the whole body's bytes)
    answer = stacks.both("POST", "/predictionsStream/", body, headers)
    predicted = stacks.flask("POST", "/predict/", body, headers)
    assert answer.status == predicted.status != 200 and answer.json["message"]


def test_an_unstructured_model_is_sent_to_its_routes(stacks_for):
    answer = stacks_for("unstructured").both("POST", "/predictionsStream/", HOUSES, CSV)
    assert answer.status == 422 and "predictUnstructured" in answer.json["message"]


# Batches of 10 rows valued 0..39: batch k is scored only once the client has made the file received-k (it has line
# k-1), so a stream held back on its way (buffered whole, or a line behind) never gets past its first line.
GATED_SCORING = '''
import os
import time
import pandas as pd

def load_model(code_dir):
    return code_dir

def score(data, model, **kwargs):
    if (data.iloc[:, 0] == -1).any():
        raise ValueError("a row the model cannot score")
    batch, waited = int(data.iloc[0, 0]) // 10, 0
    while batch and not os.path.exists(os.path.join(model, f"received-{batch}")):
        assert waited < 6000, f"the client never received line {batch - 1}"
        time.sleep(0.01)
        waited += 1
    return pd.DataFrame({"Predictions": data.iloc[:, 0].astype(float)})
'''


@pytest.mark.servers
@pytest.mark.parametrize("server_type", ["gunicorn", "uvicorn"])
def test_the_first_batch_arrives_early_and_a_later_failure_truncates(tmp_path, server_type):
    (tmp_path / "custom.py").write_text(textwrap.dedent(GATED_SCORING))
    csv = b"x\n" + b"".join(b"%d\n" % value for value in range(40))
    env = {"DRUM_STREAM_BATCH_ROWS": "10"}
    with serve(tmp_path, server_type, "--target-type", "regression", env=env) as server:
        lines = []
        with httpx.stream("POST", f"{server.base_url}/predictionsStream/", content=csv, headers=CSV, timeout=60) as answer:
            for line in answer.iter_lines():
                lines.append(json.loads(line)["predictions"])
                (tmp_path / f"received-{len(lines)}").touch()  # the next batch may be scored
        assert lines == [[float(v) for v in range(start, start + 10)] for start in (0, 10, 20, 30)]
        failing = csv + b"-1\n"
        with pytest.raises(httpx.RemoteProtocolError):  # no clean end: the client can tell it is incomplete
            with httpx.stream("POST", f"{server.base_url}/predictionsStream/", content=failing, headers=CSV) as answer:
                list(answer.iter_lines())
        assert httpx.get(f"{server.base_url}/ping/").status_code == 200  # the worker carries on


def test_a_header_only_csv_is_one_empty_batch(stacks):
    answer = stacks.both("POST", "/predictionsStream/", b"sqft,bedrooms,age\n", CSV)
    assert (answer.status, answer.body) == (200, b'{"predictions":[]}\n')


@pytest.mark.servers
@pytest.mark.parametrize("server_type", ["gunicorn", "uvicorn"])
def test_a_spooled_body_is_streamed_whole_while_the_disconnect_is_watched(tmp_path, server_type):
    # past the 10 MiB kept in memory: the body is a temp file, read by the model thread while the event loop
    # watches for the client leaving; neither may move the other's position
    csv = b"x\n" + b"1\n" * 6_000_000
    constant = EXAMPLES.parent.parent / "bench" / "models" / "constant"  # scores any columns
    with serve(constant, server_type, env={"DRUM_STREAM_BATCH_ROWS": "100000"}) as server:
        with httpx.stream("POST", f"{server.base_url}/predictionsStream/", content=csv, headers=CSV, timeout=120) as answer:
            assert answer.status_code == 200
            lines = [line for line in answer.iter_lines() if line]
    assert len(lines) == 60 and sum(line.count(",") + 1 for line in lines) == 6_000_000
