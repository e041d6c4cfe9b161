"""A text-generation model with DRUM's `chat` hook: it echoes the last user message word by word, as one
ChatCompletion or, with `"stream": true`, as ChatCompletionChunks (OpenAI's types, as DRUM expects them).
`chunk_delay` (seconds, in the request body) stands in for the time an LLM takes per token after the first."""
import logging
import time

from openai.types.chat import ChatCompletion, ChatCompletionChunk

logger = logging.getLogger("echo_chat")
CREATED = 1735689600  # fixed, so that answers compare byte for byte


def load_model(code_dir):
    return "echo"


def score(data, model, **kwargs):
    import pandas as pd

    return pd.DataFrame({"resultText": data.iloc[:, 0].astype(str)})


def chat(completion_create_params, model, **kwargs):
    words = str(completion_create_params["messages"][-1]["content"]).split()
    if completion_create_params.get("stream"):
        return stream(words, float(completion_create_params.get("chunk_delay", 0)))
    return ChatCompletion.model_validate({
        "id": "chatcmpl-echo", "object": "chat.completion", "created": CREATED, "model": model,
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": " ".join(words)}}],
    })


def stream(words, delay):
    sent = 0
    try:
        for index, word in enumerate(words):
            if index:
                time.sleep(delay)
            yield ChatCompletionChunk.model_validate({
                "id": "chatcmpl-echo", "object": "chat.completion.chunk", "created": CREATED, "model": "echo",
                "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}],
            })
            sent += 1
    except GeneratorExit:
        logger.warning("echo stream closed by the server after %d chunk(s)", sent)
        raise
