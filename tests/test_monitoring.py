"""MLOps monitoring (--monitor, --monitor-embedded) against DRUM 1.18.1 itself: the same requests to both, each spooling
to a directory of its own through datarobot-mlops's filesystem spooler, and the records compared; then what DRUM does
not show: several workers, a recycle and a stop lose nothing, and the answer never waits for MLOps."""
from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path

import httpx
import pandas as pd
import pytest

from drum_compat.compat.running import run_to_exit
from drum_compat.runtime.monitoring import MLOpsReporter
from tests.models import write_model
from tests.processes import READY_TIMEOUT, serve
from tests.test_against_drum import DRUM, REFERENCE_MISSING, ROOT, running_drum

needs_drum = pytest.mark.skipif(not DRUM.exists() and not os.environ.get("CI"), reason=REFERENCE_MISSING)
STACKS = ["gunicorn", "fastapi"]
# what each model is asked: CSV to both routes, a form, and what the model refuses (not reported, as in DRUM)
PREDICTIONS = [("/predict/", {"content": b"x\n1\n2\n3\n", "headers": {"Content-Type": "text/csv"}}),
               ("/predictions/", {"content": b"x,y\n4,a\n5,b\n", "headers": {"Content-Type": "text/csv"}}),
               ("/predict/", {"files": {"X": ("x.csv", b"x\n7\n")}}),
               ("/predict/", {"content": b"\xff\xfe", "headers": {"Content-Type": "text/csv"}})]
LABELS = {"binary": {"POSITIVE_CLASS_LABEL": "yes", "NEGATIVE_CLASS_LABEL": "no"},
          "multiclass": {"CLASS_LABELS": "cat dog horse"}, "multilabel": {"CLASS_LABELS": "a b c"}}


def monitored(spool: Path, **extra: str) -> dict:
    spool.mkdir(exist_ok=True)
    return {"MONITOR": "true", "DEPLOYMENT_ID": "deployment-1", "MODEL_ID": "model-1",
            "MONITOR_SETTINGS": f"spooler_type=filesystem;directory={spool}", **extra}


def spooled(spool: Path) -> list[dict]:
    """Every record spooled, in the order written, its data decoded (a float kept apart from an integer: `3.0` is not
    `3`); what differs from run to run (the record's id, the time) left out, the execution time checked to be one."""
    records = []
    for path in sorted(spool.glob("fs_spool.*"), key=lambda path: int(path.suffix[1:])):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            data = json.loads(record["data"], parse_float=lambda text: f"float {text}")
            data.pop("timestamp")
            if "executionTime" in data:
                assert float(str(data.pop("executionTime")).removeprefix("float ")) >= 0
            records.append({"header": {k: v for k, v in record["header"].items() if k != "id"}, "data": data})
    return records


def send(url: str, requests) -> list[int]:
    with httpx.Client(base_url=url, timeout=30) as client:
        return [client.post(path, **kwargs).status_code for path, kwargs in requests]


INTEGERS = '''
import pandas as pd

def load_model(code_dir):
    return "m"

def score(data, model, **kwargs):
    return pd.DataFrame({"Predictions": data.iloc[:, 0].astype(int) * 3})
'''


@needs_drum
@pytest.mark.servers
@pytest.mark.parametrize("model", ["regression", "integers", "regression_extra", "binary", "multiclass", "multilabel",
                                   "anomaly"])
def test_each_prediction_is_reported_as_drum_reports_it(tmp_path, model):
    if model == "integers":  # answered as floats, reported as the model's integers (DRUM casts after reporting)
        code_dir, options = tmp_path / model, {"target_type": "regression"}
        code_dir.mkdir()
        (code_dir / "custom.py").write_text(INTEGERS)
    else:
        code_dir, options = write_model(tmp_path, model)
    env = {**LABELS.get(model, {})}
    with running_drum(code_dir, options["target_type"], **monitored(tmp_path / "drum", **env)) as url:
        expected_statuses = send(url, PREDICTIONS)
    expected = spooled(tmp_path / "drum")
    assert [record["header"]["dataType"] for record in expected] == ["DEPLOYMENT_STATS", "PREDICTIONS_DATA"] * 3
    for stack in STACKS:
        spool = tmp_path / stack
        with serve(code_dir, stack, "--target-type", options["target_type"], env=monitored(spool, **env)) as server:
            assert send(server.base_url, PREDICTIONS) == expected_statuses == [200, 200, 200, 500]
        assert spooled(spool) == expected, stack  # read after the stop: what was queued went out before the exit


@needs_drum
@pytest.mark.servers
def test_chat_answers_and_failures_are_reported_as_drum_reports_them(tmp_path):
    code_dir = ROOT / "examples" / "models" / "chat"
    chats = [("/v1/chat/completions", {"json": {"model": "m", "messages": [{"role": "user", "content": "hello there"}],
                                                "datarobot_association_id": "a-1"}}),
             ("/v1/chat/completions", {"json": {"model": "m", "stream": True, "datarobot_association_id": "a-2",
                                                "messages": [{"role": "user", "content": [
                                                    {"type": "text", "text": "one two"},
                                                    {"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]}}),
             ("/v1/chat/completions", {"json": {"model": "m"}}),  # no messages: the hook fails
             ("/predict/", {"content": b"promptText\nhi\nthere\n", "headers": {"Content-Type": "text/csv"}})]
    env = {"TARGET_NAME": "resultText"}
    with running_drum(code_dir, "textgeneration", **monitored(tmp_path / "drum", **env)) as url:
        expected_statuses = send(url, chats)
    expected = spooled(tmp_path / "drum")
    assert [record["data"].get("numPredictions") for record in expected] == [1, None, 1, None, 0, 2, None]
    for stack in STACKS:
        spool = tmp_path / stack
        with serve(code_dir, stack, "--target-type", "textgeneration", env=monitored(spool, **env)) as server:
            assert send(server.base_url, chats) == expected_statuses
        assert spooled(spool) == expected, stack


EMBEDDED = '''
def load_model(code_dir):
    return "m"

def score_unstructured(model, data, **kwargs):
    mlops = kwargs.get("mlops")
    if mlops is not None:
        mlops.report_deployment_stats(num_predictions=len(data.split()), execution_time_ms=1.5)
    return "reported" if mlops is not None else "no mlops", {"mimetype": "text/plain"}
'''


@needs_drum
@pytest.mark.servers
def test_an_unstructured_model_reports_with_the_mlops_object_it_is_handed(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "custom.py").write_text(EMBEDDED)
    request = [("/predictUnstructured/", {"content": b"a b c", "headers": {"Content-Type": "text/plain"}})]

    def embedded(spool: Path) -> dict:
        env = monitored(spool, MLOPS_REPORTING_FROM_UNSTRUCTURED_MODELS="true", EXTERNAL_WEB_SERVER_URL="http://127.0.0.1:9",
                        API_TOKEN="t0ken")
        del env["MONITOR"]
        return env

    with running_drum(tmp_path / "m", "unstructured", **embedded(tmp_path / "drum")) as url:
        with httpx.Client(base_url=url) as client:
            assert client.post(*request[0][:1], **request[0][1]).text == "reported"
    expected = spooled(tmp_path / "drum")
    assert [record["data"]["numPredictions"] for record in expected] == [3]
    for stack in STACKS:
        with serve(tmp_path / "m", stack, "--target-type", "unstructured", env=embedded(tmp_path / stack)) as server:
            assert httpx.post(server.base_url + request[0][0], **request[0][1]).text == "reported"
        assert spooled(tmp_path / stack) == expected, stack


@needs_drum
@pytest.mark.parametrize("env", [
    {"MONITOR": "true"},  # the ids and the settings missing
    {"MONITOR": "true", "DEPLOYMENT_ID": "d", "MODEL_ID": "m"},  # the settings missing
    {"MLOPS_REPORTING_FROM_UNSTRUCTURED_MODELS": "true", "MLOPS_DEPLOYMENT_ID": "d", "MLOPS_MODEL_ID": "m"},
], ids=["nothing", "no-settings", "embedded-structured"])
def test_incomplete_monitoring_options_stop_the_start_with_drums_words_and_status(tmp_path, env):
    code_dir, _ = write_model(tmp_path, "regression")
    drum = subprocess.run([str(DRUM), "server", "--code-dir", str(code_dir), "--address", "127.0.0.1:9",
                           "--target-type", "regression"], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120)
    ours = run_to_exit(code_dir, "gunicorn", "--target-type", "regression", env=env)
    assert ours.returncode == drum.returncode == 1
    drums_words = drum.stdout.split("usage:")[0].strip()  # DRUM prints its whole help after them
    assert drums_words and ours.stdout.strip() == drums_words


def test_monitoring_an_unstructured_model_is_refused_as_drum_refuses_it(tmp_path):
    code_dir, _ = write_model(tmp_path, "unstructured")
    result = run_to_exit(code_dir, "fastapi", "--target-type", "unstructured", env=monitored(tmp_path / "spool"))
    assert result.returncode == 1 and result.stdout.strip() == "Error: MLOps monitoring can not be used in unstructured mode."


def test_without_the_library_the_start_fails_with_drums_error(tmp_path):
    code_dir, _ = write_model(tmp_path, "regression")
    broken = tmp_path / "site" / "datarobot_mlops"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('datarobot-mlops is not installed here')\n")
    result = run_to_exit(code_dir, "gunicorn", "--target-type", "regression",
                         env={**monitored(tmp_path / "spool"), "PYTHONPATH": str(tmp_path / "site")})
    assert result.returncode == 1
    assert ("MLOps module was not imported: Error importing MLOps python module(new path): datarobot-mlops is not "
            "installed here") in result.stdout


@pytest.mark.servers
@pytest.mark.parametrize("stack", STACKS)
def test_several_workers_a_recycle_and_a_stop_lose_no_report(tmp_path, stack):
    code_dir, _ = write_model(tmp_path, "regression")
    recycle = "DRUM_GUNICORN_MAX_REQUESTS" if stack == "gunicorn" else "DRUM_UVICORN_MAX_REQUESTS"
    env = monitored(tmp_path / "spool", CUSTOM_MODEL_WORKERS="2", **{recycle: "7"})
    values = list(range(1, 41))
    with serve(code_dir, stack, "--target-type", "regression", env=env) as server:
        # a connection each: both workers serve, and each is recycled, several times. A request sent while both are
        # being replaced waits in the backlog for a new worker's start (seconds on a busy machine: uvicorn spawns a
        # fresh interpreter), so the client waits as long as a start may take
        for value in values:
            assert httpx.post(f"{server.base_url}/predict/", content=f"x\n{value}\n".encode(),
                              headers={"Content-Type": "text/csv"}, timeout=READY_TIMEOUT).status_code == 200
    records = spooled(tmp_path / "spool")
    stats = [record["data"] for record in records if record["header"]["dataType"] == "DEPLOYMENT_STATS"]
    rows = [record["data"] for record in records if record["header"]["dataType"] == "PREDICTIONS_DATA"]
    assert len(stats) == 40 and all(entry["numPredictions"] == 1 for entry in stats)
    assert sorted(row["features"]["x"][0] for row in rows) == values
    assert sorted(float(row["predictions"][0].removeprefix("float ")) for row in rows) == [2.0 * value for value in values]


class HeldMLOps:
    """An MLOps whose reports wait until the test lets them through, as a slow channel would."""

    def __init__(self) -> None:
        self.go = threading.Event()
        self.entered = threading.Event()  # the first report is being sent: what follows waits in the queue
        self.calls: list[tuple] = []
        self.shut = False

    def report_deployment_stats(self, num_predictions, execution_time_ms):
        self.entered.set()
        self.go.wait(30)
        if num_predictions == 13:
            raise RuntimeError("the channel refused it")
        self.calls.append(("stats", num_predictions))

    def report_predictions_data(self, features_df, predictions, class_names=None, association_ids=None):
        self.calls.append(("data", list(features_df["x"]), predictions, class_names))

    def shutdown(self):
        self.shut = True


def test_the_answer_never_waits_for_mlops_and_the_stop_sends_what_is_queued(caplog):
    mlops = HeldMLOps()
    reporter = MLOpsReporter(mlops, capacity=2)
    frame = pd.DataFrame({"x": [1, 2]})
    for rows in (1, 13, 2):
        reporter.predictions(lambda: frame, pd.DataFrame({"Predictions": [0.5] * rows}), 1.0)  # returns at once
        assert mlops.entered.wait(30)
    reporter.predictions(lambda: frame, pd.DataFrame({"yes": [0.1], "no": [0.9]}), 1.0)  # over the capacity: dropped
    assert mlops.calls == [] and reporter.dropped == 1
    assert "1 report(s) dropped so far, 2 waiting" in caplog.text
    mlops.go.set()
    reporter.close()
    # in order; the one that failed is counted and named, and the next one still went out; then MLOps shut down
    assert mlops.calls == [("stats", 1), ("data", [1, 2], [0.5], None), ("stats", 2), ("data", [1, 2], [0.5, 0.5], None)]
    assert reporter.failed == 1 and mlops.shut and "RuntimeError: the channel refused it" in caplog.text


def test_a_multi_column_answer_is_reported_with_its_class_names():
    mlops = HeldMLOps()
    mlops.go.set()
    reporter = MLOpsReporter(mlops)
    reporter.predictions(lambda: pd.DataFrame({"x": [3]}), pd.DataFrame({"yes": [0.25], "no": [0.75]}), 2.0)
    reporter.close()
    assert mlops.calls == [("stats", 1), ("data", [3], [[0.25, 0.75]], ["yes", "no"])]


@pytest.mark.servers
@pytest.mark.parametrize("stack", STACKS)
def test_a_stop_right_after_the_answer_still_sends_its_report(tmp_path, stack):
    code_dir, _ = write_model(tmp_path, "regression")
    rows = 3_000_000  # read again and spooled after the answer (a second or so): still under way when the stop comes
    with serve(code_dir, stack, "--target-type", "regression", env=monitored(tmp_path / "spool")) as server:
        answer = httpx.post(f"{server.base_url}/predict/", content=b"x\n" + b"3\n" * rows,
                            headers={"Content-Type": "text/csv"}, timeout=60)
        assert answer.status_code == 200
        server.stop()
    records = spooled(tmp_path / "spool")
    reported = [record["data"] for record in records if record["header"]["dataType"] == "PREDICTIONS_DATA"]
    assert sum(len(data["predictions"]) for data in reported) == rows
    assert {value for data in reported for value in data["features"]["x"]} == {3}


def test_parity_hands_both_servers_the_monitoring_options_and_the_token_by_its_variable():
    from drum_compat.compat.cli import build_parser
    from drum_compat.runtime.options import MODEL_OPTIONS, as_arguments, secret_environment

    args = build_parser({}).parse_args(["parity", "--code-dir", ".", "--monitor-embedded", "--deployment-id", "d",
                                        "--model-id", "m", "--webserver", "http://dr", "--api-token", "s3cret"])
    arguments = as_arguments(args, MODEL_OPTIONS)
    assert arguments == ["--monitor-embedded", "--deployment-id", "d", "--model-id", "m", "--webserver", "http://dr"]
    assert secret_environment(args, MODEL_OPTIONS) == {"API_TOKEN": "s3cret"}
