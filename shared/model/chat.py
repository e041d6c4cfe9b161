"""OpenAI-style chat as DRUM 1.18 runs a `chat` hook: the request's JSON, the hook's completion or chunks checked
and tagged with the association id, and the server-sent-event bytes of a streamed answer."""
from __future__ import annotations

import json
import uuid
from typing import Any, Iterator

from werkzeug.exceptions import BadRequest, UnsupportedMediaType

from drum_compat.shared.http import NeutralRequest

ASSOCIATION_ID_KEY = "datarobot_association_id"  # in the request body, and added to every answer object
EVENT_STREAM_MIMETYPE = "text/event-stream; charset=utf-8"
NOT_JSON = "Did not attempt to load JSON data because the request Content-Type was not 'application/json'."


def request_json(request: NeutralRequest) -> Any:
    """Flask's `request.json` outside debug mode: 415 for another Content-Type, a bare 400 for bytes that do not parse."""
    if not request.is_json:
        raise UnsupportedMediaType(NOT_JSON)
    try:
        return json.loads(request.body)
    except ValueError as exc:
        raise BadRequest() from exc


def association_id(params: Any) -> str:
    return params.get(ASSOCIATION_ID_KEY, None) or str(uuid.uuid4())


def is_streaming_response(result: Any) -> bool:
    return getattr(result, "object", None) != "chat.completion"


def checked_chunks(result: Any) -> tuple[list, Iterator]:
    """A streamed result's first chunk (taken now, in the hook's thread, so a wrong type fails before the answer
    starts) and the rest, as DRUM's _validate_chat_response."""
    try:
        chunks = iter(result)
        first = next(chunks)
        if type(first).__name__ != "ChatCompletionChunk" and getattr(first, "object", None) != "chat.completion.chunk":
            raise Exception(f"First chunk does not look like chat completion chunk. str(chunk): '{first}'")
    except StopIteration:
        return [], chunks
    except Exception as exc:
        raise Exception(
            f"Expected response to be ChatCompletion or Iterable[ChatCompletionChunk]. response type: {type(result)}."
            f"response(str): {str(result)}"
        ) from exc
    return [first], chunks


def event_stream(first: list, rest: Iterator, tag: str) -> Iterator[bytes]:
    """Each chunk as DRUM's _stream_openai_chunks writes it (every line of its JSON as `data: <line>`, then a blank
    line), one write per chunk, then `data: [DONE]`; closing this closes the hook's iterator."""
    try:
        for chunk in first:
            yield _event(chunk, tag)
        for chunk in rest:
            yield _event(chunk, tag)
        yield b"data: [DONE]\n\n"
    finally:
        close = getattr(rest, "close", None)
        if close is not None:
            close()


def _event(chunk: Any, tag: str) -> bytes:
    setattr(chunk, ASSOCIATION_ID_KEY, tag)
    lines = chunk.to_json(indent=None).splitlines()
    return ("".join(f"data: {line}\n" for line in lines) + "\n").encode("utf-8")
