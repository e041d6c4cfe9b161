"""DRUM's /directAccess/<path> and /nim/<path>: the request forwarded to the predictor's OpenAI-compatible upstream and
its answer sent back as it arrives, as steps the backend performs with its HTTP client (httpx, blocking or async)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from werkzeug.datastructures import Headers

from drum_compat.shared.guards.streaming import StreamAborted
from drum_compat.shared.http import NeutralRequest, NeutralResponse, json_response
from drum_compat.shared.steps import Steps

# RFC 9110 7.6.1: meant for one connection, never forwarded; Host is the upstream's own
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
                        "te", "trailer", "transfer-encoding", "upgrade", "host", "content-length"})
TIMEOUT_PARAMETER = "NIM_DIRECT_ACCESS_REQUEST_TIMEOUT"
DEFAULT_TIMEOUT = 3600  # seconds, DRUM's


@dataclass(frozen=True)
class Forward:
    """Step: send the request upstream, its body streamed from the file `body`; `timeout` bounds the connect and each
    read. Send back an Upstream with the answer's head (its body not read yet), or the error: a TimeoutError when
    `timeout` ran out, else the client's own."""

    method: str
    url: str
    headers: list[tuple[str, str]]
    body: Any
    timeout: float


@dataclass(frozen=True)
class Upstream:
    status: int
    headers: list[tuple[str, str]]
    handle: Any  # the backend's open response


@dataclass(frozen=True)
class ReadUpstream:
    """Step: the next piece of the answer's body as it arrived (undecoded), b"" at its end, or the error raised."""

    handle: Any


@dataclass(frozen=True)
class CloseUpstream:
    """Step: release the upstream connection (at the end, or when the client left early)."""

    handle: Any


def forwarded_headers(headers: Headers) -> list[tuple[str, str]]:
    return [(name, value) for name, value in headers.items() if name.lower() not in HOP_BY_HOP]


class UpstreamStream:
    """The upstream's answer body, read through the cycle like a model's stream (`next`, `close`)."""

    def __init__(self, handle: Any, url: str) -> None:
        self.handle = handle
        self.url = url
        self.closed = False

    def next(self) -> Steps[bytes | None]:
        if self.closed:
            return None
        chunk = yield ReadUpstream(self.handle)
        if isinstance(chunk, BaseException):
            yield from self.close()
            raise StreamAborted(f"the upstream at {self.url} failed mid-answer: {chunk!r}")
        if not chunk:
            yield from self.close()
            return None
        return chunk

    def close(self) -> Steps[None]:
        if not self.closed:
            self.closed = True
            yield CloseUpstream(self.handle)


def forward(request: NeutralRequest, upstream: str, path: str, timeout: float) -> Steps[NeutralResponse]:
    """As DRUM: method, headers, query and body to `<upstream>/<path without trailing />`, redirects not followed,
    the answer's status, headers and body as the upstream sent them (hop-by-hop headers aside, both ways)."""
    url = f"{upstream.rstrip('/')}/{path.rstrip('/')}"
    if request.query_string:
        url += "?" + request.query_string.decode("latin-1")
    headers = forwarded_headers(request.headers)
    body, size = request.body_file()
    if size or "Content-Length" in request.headers:
        headers.append(("Content-Length", str(size)))
    answer = yield Forward(request.method, url, headers, body, timeout)
    if isinstance(answer, BaseException):
        return json_response({"message": f"ERROR: {upstream_failure(answer, upstream, timeout)}"}, 500)
    kept = Headers([(name, value) for name, value in answer.headers if name.lower() not in HOP_BY_HOP - {"content-length"}])
    return NeutralResponse(answer.status, headers=kept, chunks=UpstreamStream(answer.handle, upstream))


def upstream_failure(error: BaseException, upstream: str, timeout: float) -> str:
    if isinstance(error, TimeoutError):
        return f"The upstream at {upstream} did not answer within {timeout:g} s ({TIMEOUT_PARAMETER})"
    return f"The upstream at {upstream} could not be reached: {error}"
