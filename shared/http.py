"""Neutral request and response values that both web stacks translate to and from.

A request is what a WSGI server would hand Flask; a response is a status, a header list and body bytes."""
from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol

from werkzeug.datastructures import Headers, ImmutableHeadersMixin
from werkzeug.exceptions import HTTPException
from werkzeug.sansio.request import Request as SansIORequest

JSON_MIMETYPE = "application/json"
HTML_MIMETYPE = "text/html; charset=utf-8"


class BodySource(Protocol):
    size: int
    file: Any

    def read(self) -> bytes: ...


def target_path(target: str) -> str:
    """The path of a request target as sent (origin or absolute form), its query left out, its encoding intact."""
    if not target.startswith("/"):
        target = "/" + target.split("://", 1)[-1].partition("/")[2]
    return target.partition("?")[0]


class NeutralRequest(SansIORequest):
    """werkzeug's sans-I/O request (args, mimetype, host... exactly as Flask sees them) plus the body."""

    def __init__(
        self,
        *,
        method: str,
        path: str,
        body: "bytes | BodySource" = b"",
        headers: Headers | None = None,
        query_string: bytes = b"",
        scheme: str = "http",
        server: tuple[str, int | None] | None = None,
        root_path: str = "",
        remote_addr: str | None = None,
        raw_path: str | None = None,
    ) -> None:
        super().__init__(
            method=method,
            scheme=scheme,
            server=server,
            root_path=root_path,
            path=path,
            query_string=query_string,
            headers=headers if headers is not None else Headers(),
            remote_addr=remote_addr,
        )
        self._body = body
        self.view_args: dict = {}  # the route's variable parts, as Flask's request.view_args
        self.raw_path = raw_path  # the target's path as sent, percent-encoding intact; None: not known

    @property
    def body(self) -> bytes:
        """The body bytes; a body the server spooled is read only here, in the model thread."""
        if not isinstance(self._body, bytes):
            self._body = self._body.read()
        return self._body

    @body.setter
    def body(self, body: "bytes | BodySource") -> None:
        self._body = body

    def body_file(self) -> tuple[Any, int]:
        """The body as a file at its start and its size, without reading a spooled body into memory."""
        if isinstance(self._body, bytes):
            return io.BytesIO(self._body), len(self._body)
        return self._body.file, self._body.size


class RequestHeaders(ImmutableHeadersMixin, Headers):
    """A request's headers, which nothing changes once they arrived: looked up by name through a dict (werkzeug's
    Headers walks its list, and raises and catches a KeyError for every absent name a guard asks about)."""

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__()
        self._list = list(pairs)  # Headers' own storage, filled once: the mixin refuses every change after
        self._by_name: dict[str, str] = {}
        for name, value in self:
            self._by_name.setdefault(name.lower(), value)  # the first, as Headers.get answers

    def get(self, key, default=None, type=None):  # noqa: A002 - werkzeug's signature
        if type is None and isinstance(key, str):
            return self._by_name.get(key.lower(), default)
        return super().get(key, default, type)

    def __contains__(self, key) -> bool:
        return key.lower() in self._by_name if isinstance(key, str) else super().__contains__(key)


def own_headers(*pairs: tuple[str, str]) -> Headers:
    """Headers of the server's own pairs, put into Headers' list directly (its constructor checks each value
    through three layers of calls)."""
    headers = Headers()
    headers._list = list(pairs)
    return headers


def header_names(headers: Headers) -> set[str]:
    return {name.lower() for name, _ in headers}


def set_headers(headers: Headers, pairs: Iterable[tuple[str, str]], present: set[str] | None = None) -> None:
    """`headers.set(name, value)` for each pair, with one scan of the names already there (`present`, if the caller
    has them): werkzeug's set and `in` each walk the list and raise a KeyError when the name is absent, which is
    every time on a fresh response. The values are the server's own, or a request header's (which no parser lets
    hold a newline): an absent name's pair goes straight into Headers' list, past `add`'s newline check."""
    present = header_names(headers) if present is None else present
    for name, value in pairs:
        lowered = name.lower()
        if lowered in present:
            headers.set(name, value)
        else:
            headers._list.append((name, value))
            present.add(lowered)


def passed_by_wsgi_servers(raw_name: bytes) -> bool:
    """gunicorn's default header_map and werkzeug's server drop a header whose name holds "_", so a client cannot
    smuggle X_Request_ID: every path to the app drops it too."""
    return b"_" not in raw_name


# CONTENT_TYPE and CONTENT_LENGTH are CGI keys of their own, which werkzeug's headers leave out when empty
EMPTY_MEANS_ABSENT = ("Content-Type", "Content-Length")


def wsgi_style_headers(raw: Iterable[tuple[bytes, bytes]]) -> RequestHeaders:
    """Request headers as a WSGI server presents them: names Title-Cased the way werkzeug derives
    them from CGI keys, repeated names joined with ",", and those it drops left out (`passed_by_wsgi_servers`,
    an empty Content-Type or Content-Length)."""
    merged: dict[str, str] = {}
    for raw_name, raw_value in raw:
        if not passed_by_wsgi_servers(raw_name):
            continue
        name = raw_name.decode("latin-1")
        key = name.title()
        value = raw_value.decode("latin-1")
        merged[key] = f"{merged[key]},{value}" if key in merged else value
    for key in EMPTY_MEANS_ABSENT:
        if merged.get(key) == "":
            del merged[key]
    return RequestHeaders(merged.items())


@dataclass
class NeutralResponse:
    status: int
    body: bytes = b""
    headers: Headers = field(default_factory=Headers)
    # a streamed answer: what the handler returned, an iterator of bytes run in the model thread, which the gate
    # turns into a shared.guards.streaming.ModelStream that backends read through the cycle; `body` stays empty
    chunks: Any = None

    def complete(self) -> "NeutralResponse":
        """Add what Flask adds to every response: a default Content-Type and, unless streamed, the Content-Length."""
        present = header_names(self.headers)
        defaults = [] if "content-type" in present else [("Content-Type", HTML_MIMETYPE)]
        if self.chunks is None:
            defaults.append(("Content-Length", str(len(self.body))))
        set_headers(self.headers, defaults, present)
        return self


def flask_json_dumps(payload: Any) -> bytes:
    """Flask's default JSON provider outside debug mode: sorted keys, compact, ASCII, trailing newline."""
    text = json.dumps(payload, ensure_ascii=True, sort_keys=True, separators=(",", ":"))
    return (text + "\n").encode("ascii")


def json_response(payload: Any, status: int = 200, headers: Iterable[tuple[str, str]] = ()) -> NeutralResponse:
    return NeutralResponse(status, flask_json_dumps(payload), own_headers(("Content-Type", JSON_MIMETYPE), *headers))


# werkzeug builds Allow from a set, so its order follows the process's hash seed; one fixed order
# (which reproduces DRUM's documented `HEAD, GET, OPTIONS` and `POST, OPTIONS`) for every process.
METHOD_ORDER = ("HEAD", "GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def canonical_allow(allow: str) -> str:
    rank = {method: index for index, method in enumerate(METHOD_ORDER)}
    methods = [method.strip() for method in allow.split(",") if method.strip()]
    return ", ".join(sorted(methods, key=lambda method: (rank.get(method, len(rank)), method)))


def response_from_http_exception(exc: HTTPException) -> NeutralResponse:
    """werkzeug's own rendering of a routing or HTTP error (HTML body, Allow or Location header)."""
    rendered = exc.get_response()
    return NeutralResponse(rendered.status_code, rendered.get_data(), Headers(rendered.headers))
