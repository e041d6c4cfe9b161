"""POST /chat/completions and /v1/chat/completions as DRUM 1.18 answers them, alike on both stacks: a ChatCompletion
as sorted JSON, chunks as server-sent events flushed one by one from the model thread, DRUM's errors, and a client
that leaves mid-stream stopping the hook and freeing its thread."""
from __future__ import annotations

import json
import shutil
import textwrap

import httpx
import pytest

from drum_compat.compat.parity.cases import chat_request
from tests.processes import serve, wait_until
from drum_compat.shared.model.config import resolve_model_config
from drum_compat.shared.model.python_model import PythonModel
from tests.conftest import Stacks
from tests.models import EXAMPLES

CHAT_MODEL = EXAMPLES / "chat"
JSON = {"Content-Type": "application/json"}
TEXTGEN = ("--target-type", "textgeneration")
TARGET = {"TARGET_NAME": "resultText"}


def chat_stacks(code_dir=CHAT_MODEL, target_type="textgeneration") -> Stacks:
    return Stacks(PythonModel.load(resolve_model_config(str(code_dir), target_type=target_type, target_name="resultText")))


@pytest.fixture(scope="module")
def stacks():
    return chat_stacks()


def hook_model(tmp_path, body: str, target_type="textgeneration") -> Stacks:
    (tmp_path / "custom.py").write_text(textwrap.dedent(body))
    return chat_stacks(tmp_path, target_type)


def events(body: bytes) -> list[str]:
    assert body.endswith(b"data: [DONE]\n\n")
    return [block for block in body.decode().split("\n\n") if block]


@pytest.mark.parametrize("path", ["/chat/completions", "/v1/chat/completions"])
def test_a_completion_is_drums_sorted_json_with_the_association_id(stacks, path):
    answer = stacks.both("POST", path, chat_request(), JSON)
    assert answer.status == 200
    assert answer.body == json.dumps({
        "choices": [{"finish_reason": "stop", "index": 0, "message": {"content": "hello big world", "role": "assistant"}}],
        "created": 1735689600, "datarobot_association_id": "parity", "id": "chatcmpl-echo", "model": "echo",
        "object": "chat.completion"}, sort_keys=True, separators=(",", ":")).encode() + b"\n"


def test_a_streamed_answer_is_one_event_per_chunk_then_done(stacks):
    answer = stacks.both("POST", "/chat/completions", chat_request(stream=True), JSON)
    assert answer.status == 200 and dict(answer.headers)["content-type"] == "text/event-stream; charset=utf-8"
    blocks = events(answer.body)
    assert blocks[-1] == "data: [DONE]"
    chunks = [json.loads(block.removeprefix("data: ")) for block in blocks[:-1]]
    assert [chunk["choices"][0]["delta"]["content"] for chunk in chunks] == ["hello", "big", "world"]
    assert {chunk["datarobot_association_id"] for chunk in chunks} == {"parity"}
    # DRUM's bytes: chunk.to_json(indent=None), the fields in the type's order, not sorted
    assert blocks[0].startswith('data: {"id":"chatcmpl-echo","choices":[{"delta":{"content":"hello"}')


def test_without_an_association_id_each_answer_gets_its_own(stacks):
    body = json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode()
    ids = {stacks.flask("POST", "/chat/completions", body, JSON).json["datarobot_association_id"] for _ in range(2)}
    assert len(ids) == 2 and all(len(tag) == 36 for tag in ids)  # uuid4s


def test_capabilities_say_whether_the_model_chats(stacks, stacks_for):
    assert stacks.both("GET", "/capabilities/").json["supported_methods"] == {"chat": True}
    assert stacks_for("regression").both("GET", "/capabilities/").json["supported_methods"] == {"chat": False}


NO_HOOK = '''
def load_model(code_dir):
    return "m"

def score(data, model, **kwargs):
    raise NotImplementedError
'''


def test_no_hook_answers_drums_404_by_target_type(tmp_path, stacks_for):
    answer = hook_model(tmp_path, NO_HOOK).both("POST", "/chat/completions", chat_request(), JSON)
    assert (answer.status, answer.json) == (
        404, {"message": "ERROR: This model's chat interface was called, but chat() is not implemented."})
    answer = stacks_for("regression").both("POST", "/v1/chat/completions", chat_request(), JSON)
    assert (answer.status, answer.json) == (404, {"message": "ERROR: This model's chat interface was called, but chat is not supported."})


@pytest.mark.parametrize("body, headers, status, payload", [
    (chat_request(), {"Content-Type": "text/plain"}, 500, {"message": "ERROR: 415 Unsupported Media Type: Did not attempt "
     "to load JSON data because the request Content-Type was not 'application/json'."}),
    (b'{"messages": [', JSON, 400, {"error": "The browser (or proxy) sent a request that this server could not understand."}),
    (b"[1]", JSON, 500, {"message": "ERROR: 'list' object has no attribute 'get'"}),
    (b"null", JSON, 500, {"message": "ERROR: 'NoneType' object has no attribute 'get'"}),
])
def test_bodies_that_are_not_a_chat_request_fail_as_in_drum(stacks, body, headers, status, payload):
    answer = stacks.both("POST", "/chat/completions", body, headers)
    assert (answer.status, answer.json) == (status, payload)


RAISING = '''
from datarobot_drum import CustomHTTPError

def load_model(code_dir):
    return "m"

def chat(params, model):
    if params.get("refuse"):
        raise CustomHTTPError("no tokens left", 429)
    raise ValueError("the LLM is down")
'''
WRONG_TYPES = '''
def load_model(code_dir):
    return "m"

def chat(params, model, **kwargs):
    assert kwargs["headers"]["X-Tenant"] == "acme"  # DRUM passes the request headers to a hook that takes them
    return {"dict": "not a completion"} if params.get("dict") else iter(())
'''


def test_a_raising_hook_fails_with_its_own_text_or_status(tmp_path):
    stacks = hook_model(tmp_path, RAISING)
    answer = stacks.both("POST", "/chat/completions", chat_request(), JSON)
    assert (answer.status, answer.json) == (500, {"message": "ERROR: the LLM is down"})
    answer = stacks.both("POST", "/chat/completions", chat_request(refuse=True), JSON)
    assert (answer.status, answer.json) == (429, {"message": "no tokens left"})


def test_answers_that_are_neither_completion_nor_chunks(tmp_path):
    stacks = hook_model(tmp_path, WRONG_TYPES, target_type="regression")  # any target type may chat, as in DRUM
    answer = stacks.both("POST", "/chat/completions", chat_request(dict=True), {**JSON, "X-Tenant": "acme"})
    assert answer.status == 500 and answer.json["message"].startswith(
        "ERROR: Expected response to be ChatCompletion or Iterable[ChatCompletionChunk]. response type: <class 'dict'>.")
    empty = stacks.both("POST", "/chat/completions", chat_request(), {**JSON, "X-Tenant": "acme"})
    assert (empty.status, empty.body) == (200, b"data: [DONE]\n\n")  # an empty stream, as DRUM sends it


# -- over real servers ---------------------------------------------------------------------------------
PASS_THROUGH_FLASK = """
def init_app(app):
    @app.before_request
    def everyone_in():
        return None
"""


# The example chat model, plus a stream that a test paces: chunk N is made only once the client has made the file
# N in the request's `gate_dir`, which it does on receiving chunk N-1. A stream held back anywhere on its way to the
# client (buffered whole, or a chunk behind) never gets past its first chunk, whatever the machine's speed.
GATED_CHAT = """

import os as _os

_echo_chat = chat


def chat(completion_create_params, model, **kwargs):
    gate = completion_create_params.get("gate_dir")
    if not gate:
        return _echo_chat(completion_create_params, model, **kwargs)
    return gated(str(completion_create_params["messages"][-1]["content"]).split(), gate)


def gated(words, gate):
    for index, chunk in enumerate(stream(words, 0)):
        waited = 0
        while index and not _os.path.exists(_os.path.join(gate, str(index))):
            assert waited < 6000, f"the client never received chunk {index - 1}"
            time.sleep(0.01)
            waited += 1
        yield chunk
"""


@pytest.fixture(scope="module", params=["gunicorn", "uvicorn", "uvicorn through the WSGI bridge"])
def chat_server(request, tmp_path_factory):
    code_dir = tmp_path_factory.mktemp("gated") / "chat"
    shutil.copytree(CHAT_MODEL, code_dir)
    with open(code_dir / "custom.py", "a") as custom:
        custom.write(GATED_CHAT)
    if request.param.endswith("bridge"):  # a custom_flask.py: Flask answers, through a2wsgi, on uvicorn
        (code_dir / "custom_flask.py").write_text(PASS_THROUGH_FLASK)
    with serve(code_dir, request.param.split()[0], *TEXTGEN, env=TARGET) as server:
        yield server


FIVE_WORDS = "one two three four five"


def streamed(server, words: str = FIVE_WORDS, **fields):
    body = chat_request(stream=True, messages=[{"role": "user", "content": words}], **fields)
    return httpx.stream("POST", f"{server.base_url}/v1/chat/completions", content=body, headers=JSON, timeout=60)


@pytest.mark.servers
def test_each_chunk_reaches_the_client_as_the_hook_yields_it(chat_server, tmp_path):
    blocks = []
    with streamed(chat_server, gate_dir=str(tmp_path)) as response:
        assert response.status_code == 200 and response.headers["content-type"] == "text/event-stream; charset=utf-8"
        buffer = ""
        for text in response.iter_text():
            buffer += text
            while "\n\n" in buffer:
                block, buffer = buffer.split("\n\n", 1)
                blocks.append(block)
                (tmp_path / str(len(blocks))).touch()  # chunk N-1 is here: the hook may make chunk N
    words = [json.loads(block[6:])["choices"][0]["delta"]["content"] for block in blocks[:-1]]
    assert words == FIVE_WORDS.split() and blocks[-1] == "data: [DONE]"


@pytest.mark.servers
def test_a_client_that_leaves_mid_stream_stops_the_hook_and_frees_the_thread(chat_server):
    words = " ".join(f"w{index}" for index in range(50))
    with streamed(chat_server, words, chunk_delay=0.2) as response:
        received = ""
        for text in response.iter_text():
            received += text
            if received.count("\n\n") >= 2:
                break  # leaving after chunk 2: the connection closes here
    # one model thread (the default): this waits behind the stream unless the stream let go of it
    answer = httpx.post(f"{chat_server.base_url}/chat/completions", content=chat_request(), headers=JSON, timeout=60)
    assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"] == "hello big world"
    closed = wait_until(lambda: [line for line in chat_server.read_output().splitlines()
                                 if "echo stream closed by the server" in line], "the hook saw GeneratorExit")
    # stopped within a few chunks of the client leaving, not at the end of the 50
    assert int(closed[-1].split("after ")[1].split(" ")[0]) < 10
