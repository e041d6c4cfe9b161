"""When two answers are "the same": status, headers and body bytes, after masking only what legitimately differs
between two servers or two requests (the documented list below); the differences, said plainly."""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from os.path import commonprefix
from urllib.parse import unquote

# header values set by the server itself or by the connection, never by DRUM's contract
VOLATILE_HEADERS = frozenset({"date", "server", "connection", "keep-alive"})
REQUEST_ID_HEADERS = frozenset({"x_request_id", "x-request-id"})  # random per request: present, value masked
# JSON keys that differ by design: /info/'s drumServer names the stack; with --against, the code dir is another path
INFO_DIFFERS_BY_DESIGN = ("drumServer",)
INFO_DIFFERS_AGAINST = ("codeDir", "drumVersion")
# routes whose content is per server or live: /info/ minus the keys above; /stats/ live figures, only its keys;
# /metrics counters and the server_type label, not its body
PER_SERVER_CONTENT = {"info": "info", "stats": "keys", "metrics": "none"}


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]  # lowercased names, sorted, volatile values masked
    body: bytes

    @property
    def json(self):
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key == name.lower()), None)


ORIGIN = "<origin>"


def normalise(status: int, raw_headers, body: bytes, origin: str | None = None) -> Answer:
    """`origin`: the server's own scheme://host:port, which redirects quote (two servers have two)."""
    headers = []
    boundary = None
    # a redirect quotes the origin in Location and its body (even a HEAD's Content-Length counts that body)
    quoted_origin = bool(origin) and (origin.encode() in body or any(origin in value for _, value in raw_headers))
    if quoted_origin:
        body = body.replace(origin.encode(), ORIGIN.encode())
    for name, value in raw_headers:
        key = name.lower()
        if key in VOLATILE_HEADERS or (quoted_origin and key == "content-length"):  # it follows the origin's length
            continue
        if key in REQUEST_ID_HEADERS:
            value = "<request-id>"
        if origin:
            value = value.replace(origin, ORIGIN)
        if key == "content-type" and "boundary=" in value:
            boundary = value.split("boundary=")[1].encode()
            value = value.replace(boundary.decode(), "<boundary>")
        headers.append((key, value))
    if boundary:
        body = body.replace(boundary, b"<boundary>")
    return Answer(status, sorted(headers), body)


def _masked_json(body: bytes, drop: tuple[str, ...], keys_only: bool) -> bytes:
    try:
        document = json.loads(body)
    except ValueError:
        return body
    if not isinstance(document, dict):
        return body
    kept = sorted(document) if keys_only else {key: value for key, value in document.items() if key not in drop}
    return json.dumps(kept, sort_keys=True).encode()


def stable(method: str, path: str, answer: Answer, against: bool) -> Answer:
    """The answer as it is compared: for the few routes whose content is per server or live (/info/, /stats/,
    /metrics), only what is stable, and no Content-Length (it follows that content)."""
    last = unquote(path.split("?", 1)[0]).rstrip("/").rsplit("/", 1)[-1]  # werkzeug matches /info%2F as /info/
    if method not in ("GET", "HEAD") or answer.status != 200 or last not in PER_SERVER_CONTENT:
        return answer
    headers = [(name, value) for name, value in answer.headers if name != "content-length"]
    kind = PER_SERVER_CONTENT[last]
    if kind == "keys":
        body = _masked_json(answer.body, (), keys_only=True)
    elif kind == "info":
        body = _masked_json(answer.body, INFO_DIFFERS_BY_DESIGN + (INFO_DIFFERS_AGAINST if against else ()), keys_only=False)
    else:
        body = b""
    return replace(answer, headers=headers, body=body)


def grouped(headers: list[tuple[str, str]]) -> dict[str, tuple[str, ...]]:
    """Each name with all its values (a repeated header is one entry, not the last of its values)."""
    values: dict[str, list[str]] = {}
    for name, value in headers:
        values.setdefault(name, []).append(value)
    return {name: tuple(found) for name, found in values.items()}


def as_text(body: bytes) -> str:
    return body.decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class Difference:
    """One part of two answers that is not alike: `part` is "status", "header <name>" or "body"; `a` and `b` are the
    two values, whole (a status; a header's values, None where it is absent; a body as text)."""
    part: str
    a: object
    b: object

    @staticmethod
    def shown(value: object) -> str:
        if value is None:
            return "(absent)"
        return repr(", ".join(value)) if isinstance(value, tuple) else str(value)

    def said(self, label_a: str = "a", label_b: str = "b") -> str:
        """One line, each value whole and named by its side."""
        return f"{self.part}: {label_a} {self.shown(self.a)} | {label_b} {self.shown(self.b)}"

    def __str__(self) -> str:
        return self.said()

    @property
    def parted_at(self) -> int:
        """Where two bodies stop being alike: the length of what they begin with in common."""
        return len(commonprefix([self.a, self.b]))

    def summary(self, label_a: str = "a", label_b: str = "b") -> str:
        """One short line: a body's is where the two part, and their lengths."""
        if self.part == "body":
            return f"body: differs from character {self.parted_at} ({label_a} {len(self.a)} long, {label_b} {len(self.b)})"
        return self.said(label_a, label_b)


def differences(method: str, path: str, a: Answer, b: Answer, against: bool = False) -> list[Difference]:
    """Empty when alike; else one entry per difference (status, each header, the body)."""
    a, b = stable(method, path, a, against), stable(method, path, b, against)
    found = []
    if a.status != b.status:
        found.append(Difference("status", a.status, b.status))
    headers_a, headers_b = grouped(a.headers), grouped(b.headers)
    for name in sorted(set(headers_a) | set(headers_b)):
        if headers_a.get(name) != headers_b.get(name):
            found.append(Difference(f"header {name}", headers_a.get(name), headers_b.get(name)))
    if a.body != b.body:
        found.append(Difference("body", as_text(a.body), as_text(b.body)))
    return found


# With --against a DRUM deployment: what the guide's "Where drum-compat deliberately differs" table says will
# differ. Such lines are reported as documented, apart from the differences that fail the run.
ADDED_HEADERS = ("x-content-type-options", "x-frame-options", "referrer-policy", "x-request-id")
ADDED_ROUTES = ("livez", "readyz", "startupz", "metrics", "predictionsStream", "openapi.json", "docs")


# DRUM's 500s that drum-compat answers otherwise, with the guide's row: (the route's last segment, or None for any;
# what DRUM's body says). pandas failing to write an empty transform output (zero rows, zero columns); gunicorn's
# reader refusing a chunked body, which DRUM's Flask turns into a 500
DRUM_FAILURES = (
    ("transform", ("single positional indexer is out-of-bounds", "no types given"),
     "/transform/ of an empty frame: answered, where DRUM fails"),
    (None, ("Invalid chunk size: ", "Invalid chunk terminator is not ", "Invalid chunk extension: "),
     "a malformed chunked body: 400, where DRUM answers 500"),
)


def answered_where_drum_fails(path: str, found: list[Difference]) -> str | None:
    """The guide's row when DRUM's answer (side a) is one of its own failures that drum-compat answers instead: every
    difference of the case (status, headers, body) is that difference."""
    last = unquote(path.split("?", 1)[0]).strip("/").split("/")[-1]
    drum_bodies = [difference.a for difference in found if difference.part == "body"]
    for route, failures, row in DRUM_FAILURES:
        if route in (None, last) and any(failure in body for body in drum_bodies for failure in failures):
            return row
    return None


def documented_difference(path: str, difference: Difference) -> str | None:
    """The guide's row that explains this difference from DRUM (side a), or None."""
    segments = unquote(path.split("?", 1)[0]).strip("/").split("/")
    if segments[-1] in ADDED_ROUTES or segments[0] == "docs":
        return "probes, /metrics, /predictionsStream/, /openapi.json and /docs: routes DRUM does not have"
    if segments[0] == "static":
        return "/static/<path>: no such route"
    part = difference.part
    if difference.a is None and part in {f"header {name}" for name in ADDED_HEADERS}:
        return "security headers and X-Request-ID on every response"
    if part == "header x-drum-version":
        return "X-Drum-Version: drum-compat's version"
    if part == "header allow" and None not in (difference.a, difference.b):
        if sorted(", ".join(difference.a).split(", ")) == sorted(", ".join(difference.b).split(", ")):
            return "Allow: one fixed order"
    if segments[-1] == "stats" and part == "body":
        return "/stats/: an admission section"
    return None


def split_documented(path: str, found: list[Difference]) -> tuple[list[Difference], list[tuple[Difference, str]]]:
    """(unexpected, documented with the guide's row that explains each)."""
    unexpected, documented = [], []
    whole_answer = answered_where_drum_fails(path, found)
    for difference in found:
        row = whole_answer or documented_difference(path, difference)
        if row is None:
            unexpected.append(difference)
        else:
            documented.append((difference, row))
    return unexpected, documented
