"""OpenTelemetry (OTEL_EXPORTER_OTLP_ENDPOINT) against DRUM 1.18.1 itself: the same requests to both, each exporting to
an OTLP/HTTP receiver of the test's own (a real socket; bodies decoded with opentelemetry-proto), and the spans, log
records and metrics compared; then a graceful stop flushes, several workers export at once, and OTEL_SDK_DISABLED
exports nothing."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.otlp import OtlpReceiver
from tests.processes import serve, wait_until
from tests.test_against_drum import DRUM, REFERENCE_MISSING, ROOT, running_drum

needs_drum = pytest.mark.skipif(not DRUM.exists() and not os.environ.get("CI"), reason=REFERENCE_MISSING)
STACKS = ["gunicorn", "fastapi"]
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
QUICK = {"OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_BLRP_SCHEDULE_DELAY": "100", "OTEL_METRIC_EXPORT_INTERVAL": "300"}
MODEL = '''
import logging
import pandas as pd
from opentelemetry import metrics, trace

tracer = trace.get_tracer("my.model")
rows_scored = metrics.get_meter("my.model").create_counter("rows_scored")

def load_model(code_dir):
    return "m"

def score(data, model, **kwargs):
    with tracer.start_as_current_span("model.score") as span:
        span.set_attribute("rows", len(data))
        logging.getLogger("my.model").warning("scoring %d rows", len(data))
        rows_scored.add(len(data))
        if data.iloc[0, 0] == 99:
            raise ValueError("ninety-nine")
        return pd.DataFrame({"Predictions": [1.0] * len(data)})
'''
REQUESTS = [
    ("/predict/", {"content": b"x\n1\n2\n", "headers": {"Content-Type": "text/csv", "traceparent": TRACEPARENT,
                                                         "X-DataRobot-Consumer-Id": "c-1", "X-DataRobot-Consumer-Type": "user"}}),
    ("/predictions/", {"content": b"x\n99\n", "headers": {"Content-Type": "text/csv", "X-Request-ID": "rid-7"}}),
    ("/transform/", {"content": b"x\n1\n", "headers": {"Content-Type": "text/csv"}}),  # the wrong route: 422, no error
    ("/directAccess/v1/models", {}),  # a Python model is no OpenAI predictor: 400, the span in ERROR
]


def model_dir(tmp_path: Path) -> Path:
    code_dir = tmp_path / "model"
    code_dir.mkdir(exist_ok=True)
    (code_dir / "custom.py").write_text(MODEL)
    return code_dir


def b64(hex_id: str) -> str:
    import base64

    return base64.b64encode(bytes.fromhex(hex_id)).decode()


def span_shapes(spans: list[dict]) -> list[tuple]:
    """What DRUM's spans say, without what differs from run to run (ids, times, the SDK's resource): each span's name,
    kind, scope, parent (the client's traceparent, another span by name, or none), attributes, status, and events
    (an exception's message: its type is each server's own class path)."""
    by_id = {span["span_id"]: span for span in spans}

    def parent(span: dict) -> str | None:
        if span["parent_span_id"] is None:
            return None
        if span["parent_span_id"] == b64(PARENT_ID):
            assert span["trace_id"] == b64(TRACE_ID)
            return "traceparent"
        return "span " + by_id[span["parent_span_id"]]["name"]

    return sorted(((span["name"], span["kind"], span["scope"], parent(span), json.dumps(span["attributes"], sort_keys=True),
                   span["status"].get("code"), span["status"].get("message"),
                   tuple((event["name"], event["attributes"].get("exception.message")) for event in span["events"]))
                  for span in spans), key=repr)


def exported(run, code_dir: Path, target_type: str, requests, **env) -> tuple[OtlpReceiver, list[int]]:
    """What a server (`run(code_dir, target_type, env)`, a context manager giving its URL) exports for `requests`,
    read after its graceful stop."""
    with OtlpReceiver() as receiver:
        with run(code_dir, target_type, {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, **QUICK, **env}) as url:
            with httpx.Client(base_url=url, timeout=30) as client:
                statuses = [client.post(path, **kwargs).status_code if kwargs or path.startswith("/predict")
                            else client.get(path).status_code for path, kwargs in requests]
    return receiver, statuses


def drum(code_dir, target_type, env):
    return running_drum(code_dir, target_type, **env)


class ours:
    def __init__(self, stack: str) -> None:
        self.stack = stack

    def __call__(self, code_dir, target_type, env):
        from contextlib import contextmanager

        @contextmanager
        def running():
            with serve(code_dir, self.stack, "--target-type", target_type, env=env) as server:
                yield server.base_url
        return running()


@needs_drum
@pytest.mark.servers
def test_spans_logs_and_metrics_are_drums_on_both_stacks(tmp_path):
    code_dir = model_dir(tmp_path)
    expected, expected_statuses = exported(drum, code_dir, "regression", REQUESTS)
    assert expected_statuses == [200, 500, 422, 400]
    expected_spans = span_shapes(expected.spans())
    assert [shape[0] for shape in expected_spans] == ["drum.directAccess", "drum.invocations", "drum.invocations",
                                                      "drum.transform", "model.score", "model.score"]
    for stack in STACKS:
        received, statuses = exported(ours(stack), code_dir, "regression", REQUESTS)
        assert statuses == expected_statuses, stack
        assert span_shapes(received.spans()) == expected_spans, stack
        # the model's log records: in its span's trace, with the request id DRUM puts on them
        spans = received.spans()
        failed = next(span for span in spans if span["name"] == "drum.invocations" and span["status"].get("code"))
        logs = {record["body"]: record for record in received.logs() if record["scope"] == "my.model"}
        assert logs.keys() == {"scoring 2 rows", "scoring 1 rows"}
        assert logs["scoring 1 rows"]["attributes"]["context_data"] == {"request_id": "rid-7"}
        assert logs["scoring 1 rows"]["trace_id"] == failed["trace_id"]
        assert logs["scoring 2 rows"]["trace_id"] == b64(TRACE_ID) and logs["scoring 2 rows"]["severity"] == "WARN"
        # the model's counter, with DRUM's delta temporality
        counted = [metric for metric in received.metrics() if metric["name"] == "rows_scored"]
        assert sum(int(point["asInt"]) for metric in counted for point in metric["sum"]["dataPoints"]) == 3
        assert {metric["sum"]["aggregationTemporality"] for metric in counted} == {"AGGREGATION_TEMPORALITY_DELTA"}


@needs_drum
@pytest.mark.servers
def test_chat_spans_carry_drums_gen_ai_attributes_streamed_or_not(tmp_path):
    code_dir = ROOT / "examples" / "models" / "chat"
    chats = [("/v1/chat/completions", {"json": {"model": "m", "messages": [
                 {"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]},
                 "headers": {"traceparent": TRACEPARENT}}),
             ("/chat/completions", {"json": {"model": "m", "stream": True, "messages": [
                 {"role": "user", "content": [{"type": "text", "text": "one two"}, {"type": "image_url", "image_url": {"url": "u"}}]}]}}),
             ("/v1/chat/completions", {"json": {"model": "m"}})]  # the hook fails
    expected, expected_statuses = exported(drum, code_dir, "textgeneration", chats, TARGET_NAME="resultText")
    expected_spans = span_shapes(expected.spans())
    assert [shape[0] for shape in expected_spans] == ["drum.chat.completions"] * 3 + ["drum.chat.completions.stream"]
    for stack in STACKS:
        received, statuses = exported(ours(stack), code_dir, "textgeneration", chats, TARGET_NAME="resultText")
        assert statuses == expected_statuses, stack
        assert span_shapes(received.spans()) == expected_spans, stack


@needs_drum
@pytest.mark.servers
def test_an_unstructured_prediction_is_drums_span(tmp_path):
    from tests.models import write_model

    code_dir, _ = write_model(tmp_path, "unstructured")
    request = [("/predictUnstructured/", {"content": b"abc", "headers": {"X-DataRobot-Consumer-Type": "agent"}})]
    expected, expected_statuses = exported(drum, code_dir, "unstructured", request)
    assert [shape[0] for shape in span_shapes(expected.spans())] == ["drum.predictUnstructured"]
    for stack in STACKS:
        received, statuses = exported(ours(stack), code_dir, "unstructured", request)
        assert (statuses, span_shapes(received.spans())) == (expected_statuses, span_shapes(expected.spans())), stack


@pytest.mark.servers
@pytest.mark.parametrize("stack", STACKS)
def test_a_graceful_stop_flushes_what_one_worker_batched(tmp_path, stack):
    code_dir = model_dir(tmp_path)
    with OtlpReceiver() as receiver:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "600000",
               "OTEL_BLRP_SCHEDULE_DELAY": "600000"}  # one worker batches: only the stop sends them
        with serve(code_dir, stack, "--target-type", "regression", env=env) as server:
            assert httpx.post(f"{server.base_url}/predict/", content=b"x\n1\n", headers={"Content-Type": "text/csv"}).status_code == 200
        assert sorted(span["name"] for span in receiver.spans()) == ["drum.invocations", "model.score"]
        assert [record["body"] for record in receiver.logs() if record["scope"] == "my.model"] == ["scoring 1 rows"]


@pytest.mark.servers
@pytest.mark.parametrize("stack", STACKS)
def test_several_workers_export_each_span_as_it_ends(tmp_path, stack):
    code_dir = model_dir(tmp_path)
    with OtlpReceiver() as receiver:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "600000",
               "CUSTOM_MODEL_WORKERS": "2"}  # as DRUM: several workers export at once, whatever the batch delay
        with serve(code_dir, stack, "--target-type", "regression", env=env) as server:
            assert httpx.post(f"{server.base_url}/predict/", content=b"x\n1\n", headers={"Content-Type": "text/csv"}).status_code == 200
            wait_until(lambda: len(receiver.spans()) == 2, "both spans exported while the server runs")


@pytest.mark.servers
def test_otel_sdk_disabled_exports_nothing(tmp_path):
    code_dir = model_dir(tmp_path)
    with OtlpReceiver() as receiver:
        for env in ({"OTEL_SDK_DISABLED": "true"},
                    {"MLOPS_RUNTIME_PARAM_OTEL_SDK_DISABLED": json.dumps({"type": "boolean", "payload": True})}):
            with serve(code_dir, "fastapi", "--target-type", "regression",
                       env={"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, **QUICK, **env}) as server:
                assert httpx.post(f"{server.base_url}/predict/", content=b"x\n1\n",
                                  headers={"Content-Type": "text/csv"}).status_code == 200
        assert receiver.received == {path: [] for path in receiver.received}


def test_a_server_without_monitoring_or_an_endpoint_never_imports_their_libraries(tmp_path):
    probe = f"""
import sys
from drum_compat.runtime.bootstrap import build_core
from drum_compat.runtime.options import ServerOptions
from drum_compat.shared.server_types import Stack
core = build_core(ServerOptions(code_dir={str(model_dir(tmp_path))!r}, address="127.0.0.1:1", target_type="regression"),
                  Stack.FASTAPI)
print(sorted({{name.split(".")[0] + "." + name.split(".")[1] if "." in name else name for name in sys.modules
               if name.startswith(("opentelemetry.sdk", "opentelemetry.exporter", "datarobot_mlops"))}}))
"""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("OTEL_", "MONITOR"))}
    shown = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip().splitlines()[-1] == "[]"


@needs_drum
def test_chat_attributes_are_drums_for_odd_messages():
    """DRUM's own extract_chat_*_attributes, run in its venv, against ours on what a client may send."""
    from drum_compat.shared.tracing import chat_request_attributes, chat_response_attributes

    requests = [{"model": "m", "messages": ["not a message", {"role": "user", "content": "hi"},
                                            {"role": "user", "content": [{"type": "text", "text": "a"}, "junk",
                                                                         {"type": "image_url", "image_url": {"url": "u"}}]}]},
                {}, {"messages": [{"role": "system", "content": None}, {"content": 3}]}]
    responses = [{"model": "m", "choices": [1, {"message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"},
                                            {"message": "not a message"}]}, {}]
    code = ("import json, sys\nfrom datarobot_drum.drum.common import extract_chat_request_attributes as a, "
            "extract_chat_response_attributes as b\nrequests, responses = json.load(sys.stdin)\n"
            "print(json.dumps([a(r) for r in requests] + [b(r) for r in responses]))")
    drums = subprocess.run([str(DRUM.parent / "python"), "-c", code], input=json.dumps([requests, responses]),
                           capture_output=True, text=True, check=True, timeout=120)
    ours = [chat_request_attributes(r) for r in requests] + [chat_response_attributes(r) for r in responses]
    assert json.loads(json.dumps(ours)) == json.loads(drums.stdout.strip().splitlines()[-1])
