"""HTTP/1.1 protocol limits and refusals as gunicorn applies them (request line, header count and size,
method and version rules), with gunicorn's own error pages, so the uvicorn stack answers alike."""
from __future__ import annotations

import html
import re
from dataclasses import dataclass

# gunicorn's method rule (RFC 9110 token, upper case, 3 to 20 characters)
TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-zA-Z]+")
METHOD_BADCHAR = re.compile(r"[a-z#]")
HTTP_VERSIONS = ("1.0", "1.1")
# the usual request line, which both parsers read alike: a method by gunicorn's rule, an origin-form target of visible
# ASCII, HTTP/1.0 or 1.1, CRLF; any other whole line is UNUSUAL_LINE, for gunicorn's own parser to judge
USUAL_LINE = re.compile(rb"([A-Z0-9!$%&'*+\-.^_`|~]{3,20}) /[\x21-\x7e]* HTTP/1\.[01]\r\n")
UNUSUAL_LINE = "unusual line"
FIRST_TOKEN = re.compile(rb"([^ \r\n]*) ")
# gunicorn serves 1.0 <= version < 2.0; llhttp refuses 1.2 to 1.9
CONVENTIONAL_VERSION = re.compile(rb"[^ \r\n]+ [^ \r\n]+ HTTP/(1\.[2-9])\r\n")


@dataclass(frozen=True)
class ProtocolRefusal:
    """An answer written before any app sees the request; the connection closes after it."""

    status: int
    reason: str
    message: str

    def page(self) -> bytes:
        """The bytes gunicorn's `util.write_error` sends."""
        body = (f"<html>\n  <head>\n    <title>{self.reason}</title>\n  </head>\n  <body>\n"
                f"    <h1><p>{self.reason}</p></h1>\n    {html.escape(self.message)}\n  </body>\n</html>\n")
        head = (f"HTTP/1.1 {self.status} {self.reason}\r\nConnection: close\r\nContent-Type: text/html\r\n"
                f"Content-Length: {len(body)}\r\n\r\n")
        return (head + body).encode("latin-1")


def _bad_request(message: str) -> ProtocolRefusal:
    return ProtocolRefusal(400, "Bad Request", message)


@dataclass(frozen=True)
class ProtocolLimits:
    """DRUM_LIMIT_REQUEST_LINE, _FIELDS, _FIELD_SIZE by gunicorn's names, with its defaults; 0: no limit."""

    limit_request_line: int = 4094
    limit_request_fields: int = 100
    limit_request_field_size: int = 8190

    def request_line_refusal(self, length: int) -> ProtocolRefusal | None:
        """`length`: the request line without its CRLF, as much of it as has arrived."""
        if 0 < self.limit_request_line < length:
            return ProtocolRefusal(414, "URI Too Long", f"Request Line is too large ({length} > {self.limit_request_line})")
        return None

    def header_refusal(self, count: int, name: bytes, value: bytes) -> ProtocolRefusal | None:
        """`count`: headers before this one."""
        if 0 < self.limit_request_fields <= count:
            return _headers_too_large("limit request headers fields")
        # gunicorn measures the header line with its CRLF: `name: value\r\n`
        if 0 < self.limit_request_field_size < len(name) + len(value) + 4:
            return _headers_too_large("limit request headers fields size")
        return None


def _headers_too_large(what: str) -> ProtocolRefusal:
    return ProtocolRefusal(431, "Request Header Fields Too Large", f"Error parsing headers: '{what}'")


def method_refusal(method: str) -> ProtocolRefusal | None:
    if METHOD_BADCHAR.search(method) or not 3 <= len(method) <= 20 or not TOKEN.fullmatch(method):
        return _bad_request(f"Invalid Method 'Invalid HTTP method: {method!r}'")
    return None


def version_refusal(version: str, request_line: str) -> ProtocolRefusal | None:
    """gunicorn reads `GET /path` with no version (HTTP/0.9) as a bad request line, other versions as bad versions."""
    if version == "0.9":
        return _bad_request(f"Invalid Request Line 'Invalid HTTP request line: {request_line!r}'")
    if version not in HTTP_VERSIONS:
        major, _, minor = version.partition(".")
        return _bad_request(f"Invalid HTTP Version 'Invalid HTTP Version: ({major}, {minor})'")
    return None


# RFC 9110 section 5.3: fields of one member only; gunicorn refuses a request that repeats one
SINGLETON_FIELDS = frozenset({b"host", b"content-type"})


def repeated_field_refusal(name: bytes, seen: set[bytes]) -> ProtocolRefusal | None:
    """gunicorn's refusal of a second Host or Content-Type (`seen`: the singleton names so far, lowercased; this one is
    added), which a reader that joins repeats would take as one value that neither sender meant."""
    lowered = name.lower()
    if lowered not in SINGLETON_FIELDS:
        return None
    if lowered in seen:
        return _bad_request(f"Invalid HTTP Header: {lowered.upper().decode('latin-1')!r}")
    seen.add(lowered)
    return None


def malformed() -> ProtocolRefusal:
    """Anything else the parser rejects (gunicorn's page names the fault; this one cannot)."""
    return _bad_request("Invalid HTTP request received.")


def first_line_verdict(data: bytes, known_methods: frozenset[bytes]) -> ProtocolRefusal | bytes | str | None:
    """What a request's start says before a parser stricter than gunicorn's (llhttp) reads it: UNUSUAL_LINE for a whole
    first line of another shape than USUAL_LINE (HTTP/0.9, a bare LF, two spaces, another version: gunicorn's own
    parser must judge the head, as it checks more than the line, in its own order); a token method `known_methods`
    lacks, which gunicorn hands to the app (404/405); while the line is still arriving, gunicorn's refusal of a method
    that is no token; or None."""
    if USUAL_LINE.match(data) is None and b"\n" in data:
        return UNUSUAL_LINE
    method = unknown_method(data, known_methods)
    return method and (method_refusal(method.decode("latin-1")) or method)


def unknown_method(data: bytes, known_methods: frozenset[bytes]) -> bytes | None:
    """The request's method, where `known_methods` lacks it."""
    match = FIRST_TOKEN.match(data)
    return None if match is None or match.group(1) in known_methods else match.group(1)


def as_http_11(data: bytes) -> bytes:
    """`data` with its first line's HTTP/1.2 to 1.9 (gunicorn serves them as 1.x; llhttp refuses them) written 1.1."""
    line = CONVENTIONAL_VERSION.match(data)
    if line is None:
        return data
    return data[:line.start(1)] + b"1.1" + data[line.end(1):]


def chunked(headers: list[tuple[bytes, bytes]]) -> bool:
    """The body comes in chunks (header names lowercased, as parsers hand them)."""
    return any(name == b"transfer-encoding" for name, _ in headers)


def unusual_coding(headers: list[tuple[bytes, bytes]], version: str) -> bool:
    """A Transfer-Encoding other than one plain `chunked` in HTTP/1.1, which parsers judge differently (`identity`,
    `foo`, twice, any in HTTP/1.0)."""
    codings = [value for name, value in headers if name == b"transfer-encoding"]
    return bool(codings) and (version != "1.1" or len(codings) > 1 or codings[0].strip().lower() != b"chunked")


def bodiless(headers: list[tuple[bytes, bytes]]) -> bool:
    """No body follows the head (header names lowercased, as parsers hand them)."""
    return not any(name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0")
                   for name, value in headers)
