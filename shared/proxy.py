"""DRUM's /directAccess/<path> and /nim/<path>: the request forwarded to the predictor's OpenAI-compatible upstream and
its answer sent back as it arrives, as steps the backend performs with its HTTP client (httpx, blocking or async)."""
from __future__ import annotations

from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from werkzeug.datastructures import Headers

from drum_compat.shared.guards.streaming import StreamAborted
from drum_compat.shared.http import NeutralRequest, NeutralResponse, json_response
from drum_compat.shared.steps import CloseUpstream, Forward, ReadUpstream, Steps

# RFC 9110 7.6.1: meant for one connection, never forwarded; Host is the upstream's own
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
                        "te", "trailer", "transfer-encoding", "upgrade", "host", "content-length"})
# the upstream's own, replaced by what the serving server writes on every answer
SERVER_OWN = frozenset({"server", "date"})
# what a path segment may hold unencoded (RFC 3986 pchar): anything else, "/", "?", "#" and "%" included, is data
SEGMENT_SAFE = "!$&'()*+,;=:@-._~"
DOT_SEGMENTS = frozenset({".", ".."})
TIMEOUT_PARAMETER = "NIM_DIRECT_ACCESS_REQUEST_TIMEOUT"
DEFAULT_TIMEOUT = 3600  # seconds, DRUM's


def without_credentials(url: str) -> str:
    """`url` as it may be shown in answers, logs and `drum-compat config`: its user and password left out."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


def hop_by_hop(headers) -> frozenset[str]:
    """The lowercased names never forwarded: RFC 9110's, and those the message's own Connection header names."""
    named = {token.strip().lower() for name, value in headers if name.lower() == "connection" for token in value.split(",")}
    return HOP_BY_HOP | named


def forwarded_headers(headers: Headers) -> list[tuple[str, str]]:
    dropped = hop_by_hop(headers.items())
    return [(name, value) for name, value in headers.items() if name.lower() not in dropped]


def upstream_path(request: NeutralRequest, path: str) -> str | None:
    """The route's variable part as the client sent it, each segment re-encoded so that what was encoded stays data
    (%2F, %3F, %23 never become structure); None if a segment is a dot segment, which would leave the upstream's base."""
    routed = request.path[:len(request.path) - len(path)]
    raw = request.raw_path or ""
    tail = raw[len(routed):] if raw.startswith(routed) else quote(path, safe="")
    segments = [unquote(segment) for segment in tail.rstrip("/").split("/")]
    if any(segment in DOT_SEGMENTS for segment in segments):
        return None
    return "/".join(quote(segment, safe=SEGMENT_SAFE) for segment in segments)


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
    the answer's status, headers and body as the upstream sent them; hop-by-hop headers are dropped both ways, the
    upstream's Server and Date replaced by ours, and the path kept under the upstream's own."""
    shown = without_credentials(upstream)
    forwarded = upstream_path(request, path)
    if forwarded is None:
        return json_response({"message": f"ERROR: The path {path!r} would leave the base path of the upstream at {shown}"}, 400)
    url = f"{upstream.rstrip('/')}/{forwarded}"
    if request.query_string:
        url += "?" + request.query_string.decode("latin-1")
    headers = forwarded_headers(request.headers)
    body, size = request.body_file()
    if size or "Content-Length" in request.headers:
        headers.append(("Content-Length", str(size)))
    else:
        body = None  # no body: nothing sent, not an empty chunked one
    answer = yield Forward(request.method, url, headers, body, timeout)
    if isinstance(answer, BaseException):
        return json_response({"message": f"ERROR: {upstream_failure(answer, upstream, timeout)}"}, 500)
    dropped = (hop_by_hop(answer.headers) - {"content-length"}) | SERVER_OWN
    kept = Headers([(name, value) for name, value in answer.headers if name.lower() not in dropped])
    return NeutralResponse(answer.status, headers=kept, chunks=UpstreamStream(answer.handle, shown))


def upstream_failure(error: BaseException, upstream: str, timeout: float) -> str:
    shown = without_credentials(upstream)
    if isinstance(error, TimeoutError):
        return f"The upstream at {shown} did not answer within {timeout:g} s ({TIMEOUT_PARAMETER})"
    return f"The upstream at {shown} could not be reached: {str(error).replace(upstream, shown)}"
