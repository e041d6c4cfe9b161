"""The spans DRUM opens per request (drum.invocations, drum.transform, ...) and the attributes it puts on them, as plain
values: the handlers say which span and what it carries, the runtime's tracer (runtime.telemetry) opens it."""
from __future__ import annotations

import functools
import json
import logging
from contextlib import AbstractContextManager
from typing import Any, Callable, Iterator, Mapping, Protocol

logger = logging.getLogger("drum_compat")
CONSUMER_HEADERS = {"X-DataRobot-Consumer-Id": "gen_ai.request.consumer_id",
                    "X-DataRobot-Consumer-Type": "gen_ai.request.consumer_type"}


class RequestTracer(Protocol):
    def span(self, name: str, headers: Mapping[str, str]) -> AbstractContextManager:
        """A span made current around a handler, its parent the request's W3C `traceparent`; an exception that
        leaves it is recorded on it (event and ERROR status), as DRUM's otel_context does."""

    def current_span(self) -> Any:
        """The span of the handler running: its attributes are the handler's to add."""

    def fail(self, message: str) -> None:
        """The running handler's span ends in ERROR with `message`, though nothing was raised."""

    def stream(self, parent: Any, chunks: Iterator[bytes]) -> Iterator[bytes]:
        """The chunks of a streamed chat, passed on inside a child span of `parent` (drum.chat.completions.stream)
        that gets the completion's attributes however the stream ends."""


def traced(name: str):
    """A handler run inside DRUM's span `name` (its instance's `tracer`; None: not traced), with the consumer
    attributes DRUM takes from the request's headers."""
    def decorate(handler):
        @functools.wraps(handler)
        def run(self, request):
            if self.tracer is None:
                return handler(self, request)
            with self.tracer.span(name, request.headers) as span:
                span.set_attributes(consumer_attributes(request.headers))
                return handler(self, request)
        return run
    return decorate


def consumer_attributes(headers: Mapping[str, str]) -> dict:
    """DRUM's extract_request_headers."""
    return {attribute: headers.get(header) for header, attribute in CONSUMER_HEADERS.items() if headers.get(header)}


def _content_parts(content: Any) -> list:
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    if isinstance(content, list):
        return [{"type": "text", "content": part["text"]} if part.get("type") == "text" and "text" in part else part
                for part in content if isinstance(part, dict)]
    return [] if content is None else [{"type": "text", "content": str(content)}]


def _messages_attributes(kind: str, messages: list[tuple[int, dict, dict]], key: str, attributes: dict) -> dict:
    """DRUM's per-message attributes (`gen_ai.<kind>.N.role`/`.content`, the last one as `gen_ai.<kind>`) and all the
    messages as JSON under `key` (spans do not always take structured values); `messages`: (N, message, more), N its
    place among all the entries (DRUM counts those it skips), `more` what its JSON adds (a finish reason)."""
    entries = []
    for index, message, more in messages:
        role, content = message.get("role"), message.get("content")
        attributes[f"gen_ai.{kind}.{index}.role"] = role
        attributes[f"gen_ai.{kind}.{index}.content"] = content
        attributes[f"gen_ai.{kind}"] = content
        parts = _content_parts(content)
        entries.append({"role": role, **({"parts": parts} if parts else {}), **more})
    if entries:
        try:
            attributes[key] = json.dumps(entries)
        except Exception:
            logger.exception("Error serializing chat messages for span attributes")
    return attributes


def chat_request_attributes(params: Any) -> dict:
    """DRUM's extract_chat_request_attributes: the model asked for, each prompt message, the last one as gen_ai.prompt."""
    params = params or {}
    messages = [(index, message, {}) for index, message in enumerate(params.get("messages", [])) if isinstance(message, dict)]
    return _messages_attributes("prompt", messages, "gen_ai.input.messages", {"gen_ai.request.model": params.get("model")})


def chat_response_attributes(response: Any) -> dict:
    """DRUM's extract_chat_response_attributes, of a completion as a dict."""
    response = response or {}
    messages = []
    for index, choice in enumerate(response.get("choices", [])):
        if isinstance(choice, dict):
            message = choice.get("message", {})
            reason = choice.get("finish_reason")
            messages.append((index, message if isinstance(message, dict) else {},
                             {"finish_reason": reason} if reason is not None else {}))
    return _messages_attributes("completion", messages, "gen_ai.output.messages",
                                {"gen_ai.response.model": response.get("model")})


def completion_of_events(chunks: list[bytes]) -> dict:
    """DRUM's reconstruct_chat_response_from_sse: the completion a stream of server-sent events made."""
    model = None
    contents: dict = {}
    roles: dict = {}
    reasons: dict = {}
    for chunk in chunks:
        for line in (chunk.decode("utf-8") if isinstance(chunk, bytes) else chunk).splitlines():
            line = line.strip()
            if not line.startswith("data:") or line[5:].strip() == "[DONE]":
                continue
            try:
                parsed = json.loads(line[5:].strip())
            except ValueError:
                continue
            model = parsed.get("model") if model is None else model
            for choice in parsed.get("choices", []):
                index, delta = choice.get("index", 0), choice.get("delta", {})
                if delta.get("role"):
                    roles[index] = delta["role"]
                if delta.get("content"):
                    contents[index] = contents.get(index, "") + delta["content"]
                if choice.get("finish_reason"):
                    reasons[index] = choice["finish_reason"]
    indices = sorted(set(contents) | set(roles) | set(reasons))
    return {"model": model, "choices": [{"message": {"role": roles.get(index), "content": contents.get(index)},
                                         "finish_reason": reasons.get(index)} for index in indices]}


def traced_stream(chunks: Iterator[bytes], set_attributes: Callable[[dict], None]) -> Iterator[bytes]:
    """The chunks passed on; once the stream ends, however it ends, the completion's attributes (DRUM's
    iter_stream_with_span, whose span the tracer opens around this)."""
    seen = []
    try:
        for chunk in chunks:
            seen.append(chunk)
            yield chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()  # a client that left: the hook's iterator is closed too
        try:
            set_attributes(chat_response_attributes(completion_of_events(seen)))
        except Exception:
            logger.exception("Error reconstructing chat response for span attributes")
