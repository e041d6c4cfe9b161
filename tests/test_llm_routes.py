"""GET /models and /v1/models (OpenAI's models.list) as DRUM 1.18 answers them, alike on both stacks: 404 for
other target types, the hook's OpenAI Model objects, else the LLM_ID runtime parameter's model, else none."""
from __future__ import annotations

import json
import textwrap

import pytest

from drum_compat.shared.model.config import resolve_model_config
from drum_compat.shared.model.python_model import PythonModel
from tests.conftest import Stacks

HOOKED = '''
class Model:  # what openai.types.Model offers the server: its `object` and to_dict()
    object = "model"

    def __init__(self, model_id):
        self.id = model_id

    def to_dict(self):
        return {"id": self.id, "object": "model", "created": 1, "owned_by": "me"}

def load_model(code_dir):
    return ["llama", "mistral"]

def get_supported_llm_models(model):
    return [Model(name) for name in model] + ["not a model"]

def score(data, model, **kwargs):
    raise NotImplementedError
'''
PLAIN = '''
def load_model(code_dir):
    return "llm"

def score(data, model, **kwargs):
    raise NotImplementedError
'''


def textgen(tmp_path, source: str) -> Stacks:
    (tmp_path / "custom.py").write_text(textwrap.dedent(source))
    return Stacks(PythonModel.load(resolve_model_config(str(tmp_path), target_type="textgeneration", target_name="answer")))


@pytest.mark.parametrize("path", ["/models", "/v1/models"])
def test_other_target_types_get_drums_404(stacks_for, path):
    answer = stacks_for("regression").both("GET", path)
    assert (answer.status, answer.json) == (404, {"message": "ERROR: get_supported_llm_models is supported only for TextGen models"})


def test_the_hooks_models(tmp_path):
    stacks = textgen(tmp_path, HOOKED)
    for path in ("/models", "/v1/models"):
        answer = stacks.both("GET", path)
        assert answer.status == 200 and answer.body == json.dumps({"data": [
            {"created": 1, "id": "llama", "object": "model", "owned_by": "me"},
            {"created": 1, "id": "mistral", "object": "model", "owned_by": "me"}], "object": "list"},
            sort_keys=True, separators=(",", ":")).encode() + b"\n"
    assert stacks.both("GET", "/models/").status == 404  # no trailing slash, as DRUM
    assert stacks.both("POST", "/models").status == 405


def test_the_llm_id_runtime_parameter_or_nothing(tmp_path, monkeypatch):
    assert textgen(tmp_path, PLAIN).both("GET", "/models").json == {"data": [], "object": "list"}
    monkeypatch.setenv("MLOPS_RUNTIME_PARAM_LLM_ID", json.dumps({"type": "string", "payload": "gpt-4o"}))
    assert textgen(tmp_path, PLAIN).both("GET", "/models").json == {
        "data": [{"created": 1735689600, "id": "gpt-4o", "object": "model", "owned_by": "DataRobot"}], "object": "list"}


def test_unstructured_routes_of_a_text_generation_model_without_the_hook_fail_as_drum_does(tmp_path):
    answer = textgen(tmp_path, PLAIN).both("POST", "/predictUnstructured/", b"abc", {"Content-Type": "text/plain"})
    assert (answer.status, answer.json) == (500, {"message": "ERROR: 'NoneType' object is not callable"})  # DRUM 1.18's bytes


@pytest.mark.parametrize("method", ["GET", "POST", "PUT"])
@pytest.mark.parametrize("path", ["/directAccess/v1/chat/completions", "/nim/v1/models/", "/directAccess/a?b=1"])
def test_the_proxy_routes_answer_as_drum_does_for_a_python_model(stacks_for, method, path):
    # DRUM forwards only for OpenAI-based (GPU, NIM) predictors; every Python model gets this 400
    answer = stacks_for("regression").both(method, path, b"{}", {"Content-Type": "application/json"})
    assert (answer.status, answer.body) == (400, b'{"message":"This endpoint is only supported by OpenAI based predictors"}\n')
    assert stacks_for("regression").both("DELETE", path).status == 405
