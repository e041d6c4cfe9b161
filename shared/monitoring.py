"""What a monitored deployment reports (DRUM's --monitor: BaseLanguagePredictor.monitor and its chat reports), as plain
values handed to a reporter: the core says what and when, the runtime's reporter (runtime.monitoring) sends it."""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Iterator, Protocol

import pandas as pd

logger = logging.getLogger("drum_compat")


class PredictionReporter(Protocol):
    """One worker's MLOps reporting. Every call returns at once: the reports are sent after the answer."""

    mlops: Any  # the MLOps object itself, which DRUM hands to score_unstructured as `mlops=`

    def predictions(self, features: Callable[[], pd.DataFrame], predictions: pd.DataFrame, milliseconds: float) -> None:
        """A structured prediction: `features()` reads the request's rows again, as DRUM does, off the request path."""

    def chat(self, params: Any, completion: str, association_id: str, milliseconds: float) -> None:
        """A chat's answer: `params`, the request's, of which the prompt is read off the request path (latest_prompt)."""

    def failed_chat(self, milliseconds: float) -> None: ...


def latest_prompt(params: Any) -> str | None:
    """The text DRUM reports as a chat's prompt: the last message's content, its parts joined; None (with DRUM's warning)
    for a content it does not know."""
    content = params["messages"][-1]["content"]
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        logger.warning(f"Unhandled prompt type: {type(content)}")
        return None
    parts = []
    for part in content:
        if part["type"] == "text":
            parts.append(part["text"])
        elif part["type"] == "image_url":
            parts.append(f"Image URL: {part['image_url']['url']}")
        elif part["type"] == "input_audio":
            parts.append(f"Audio Input, Format: {part['input_audio']['format']}")
        else:
            parts.append(f"Unhandled content type: {part['type']}")
    return "\n".join(parts)


def reported_stream(first: list, rest: Iterator, reporter: PredictionReporter, params: Any, association_id: str,
                    started: float) -> Iterator:
    """A streamed chat's chunks, passed on as they come; once the last has gone, the completion they made is reported,
    and a failure midway is reported as one (DRUM's generator). A client that leaves early is not reported, as in DRUM;
    closing this closes the hook's iterator."""
    content = []
    try:
        for chunks in (first, rest):
            for chunk in chunks:
                if chunk.choices and chunk.choices[0].delta.content:
                    content.append(chunk.choices[0].delta.content)
                yield chunk
    except Exception:
        reporter.failed_chat(elapsed_ms(started))
        raise
    finally:
        close = getattr(rest, "close", None)
        if close is not None:
            close()
    reporter.chat(params, "".join(content), association_id, elapsed_ms(started))


def elapsed_ms(started: float) -> float:
    return (time.time() - started) * 1000
