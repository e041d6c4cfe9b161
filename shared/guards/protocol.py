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
# the start of a request, read before a parser stricter than gunicorn's: method, version and its digits
REQUEST_LINE = re.compile(rb"([^ \r\n]+) [^ \r\n]+ HTTP/((\d)\.(\d))\r?\n")
VERSIONLESS_LINE = re.compile(rb"[^ \r\n]+ [^ \r\n]+\r?\n")  # HTTP/0.9
FIRST_TOKEN = re.compile(rb"([^ \r\n]*) ")
USUAL_VERSIONS = frozenset({b"1.1", b"1.0"})


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


def first_line_verdict(data: bytes, known_methods: frozenset[bytes]) -> ProtocolRefusal | bytes | None:
    """What gunicorn says of a request's start where a stricter parser (llhttp) would answer otherwise or never: its
    refusal (HTTP/0.9, a version it rejects, a method that is no token); or a token method `known_methods` lacks, which
    gunicorn hands to the app (404/405); or None."""
    versionless = VERSIONLESS_LINE.match(data)
    if versionless is not None:
        return version_refusal("0.9", versionless.group().rstrip(b"\r\n").decode("latin-1"))
    line = REQUEST_LINE.match(data)
    if line is not None and line.group(2) not in USUAL_VERSIONS:
        refusal = version_refusal(f"{int(line.group(3))}.{int(line.group(4))}", "")
        if refusal is not None:
            return refusal
    match = line or FIRST_TOKEN.match(data)
    if match is None or match.group(1) in known_methods:
        return None
    method = match.group(1)
    return method_refusal(method.decode("latin-1")) or method


def bodiless(headers: list[tuple[bytes, bytes]]) -> bool:
    """No body follows the head (header names lowercased, as parsers hand them)."""
    return not any(name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0")
                   for name, value in headers)
