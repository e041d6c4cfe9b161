"""What the parity runner sends: the built-in corpus (every route and method, each payload kind the target type
accepts, the error paths, requests no parser should accept as they are), the user's data sliced several ways, and the
user's own cases from a YAML file."""
from __future__ import annotations

import io
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import httpx
import pandas as pd
import yaml

from drum_compat.shared.routes import PREDICTION_ROUTES, example_path, prefixed

METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")
BOUNDARY = "b0undaryb0undaryb0undary0000000a"
CSV = b"x,y\n1,2\n3,4\n"
CSV_HEADERS = {"Content-Type": "text/csv"}
MTX = b"%%MatrixMarket matrix coordinate real general\n2 3 2\n1 1 1.5\n2 3 2.0\n"
UNSTRUCTURED_TARGET = "unstructured"
TRANSFORM_TARGET = "transform"


@dataclass(frozen=True)
class Case:
    group: str  # routes, payloads, data, errors, user, fuzz: the report's sections
    name: str
    method: str
    path: str  # with its query string
    body: bytes = b""
    headers: dict = field(default_factory=dict)
    chunked: bool = False  # sent with Transfer-Encoding: chunked (over sockets only)
    raw: bytes = b""  # the request's bytes as they are sent, on a connection of their own (the rest is its label)

    @property
    def label(self) -> str:
        return f"{self.group}: {self.name}"


def multipart(fields: dict) -> tuple[bytes, dict]:
    """A multipart/form-data body with a fixed boundary; a field is (filename, bytes, content type), or a
    string for a plain form field."""
    files = {name: (None, value.encode()) if isinstance(value, str) else value for name, value in fields.items()}
    request = httpx.Request("POST", "http://parity/", files=files,
                            headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    return request.read(), {"Content-Type": request.headers["Content-Type"]}


# every kind of body a structured model's /predict/ (and /transform/) may be sent, well or badly formed
STRUCTURED_PAYLOADS: dict[str, tuple[bytes, dict]] = {
    "raw csv": (CSV, CSV_HEADERS),
    "raw csv no content type": (CSV, {}),
    "raw csv text/plain": (CSV, {"Content-Type": "text/plain; charset=latin-1"}),
    "raw csv uppercase mimetype": (CSV, {"Content-Type": "TEXT/CSV"}),
    "json body": (b'{"x": [1]}', {"Content-Type": "application/json"}),
    "octet-stream": (CSV, {"Content-Type": "application/octet-stream"}),
    "form urlencoded": (CSV, {"Content-Type": "application/x-www-form-urlencoded"}),
    "empty body": (b"", CSV_HEADERS),
    "empty body no headers": (b"", {}),
    "multipart X csv": multipart({"X": ("data.csv", CSV, "text/csv")}),
    "multipart X plain field": multipart({"X": "x,y\n1,2\n"}),
    "multipart wrong key": multipart({"data": ("data.csv", CSV, "text/csv")}),
    "multipart X mtx": multipart({"X": ("X.mtx", MTX, "text/plain"), "X.colnames": ("c", b"a\nb\nc\n", "text/plain")}),
    "multipart X mtx no colnames": multipart({"X": ("x.mtx", MTX, "application/octet-stream")}),
    "multipart X MTX uppercase ext": multipart({"X": ("x.MTX", MTX, "text/plain")}),
    "multipart no boundary": (CSV, {"Content-Type": "multipart/form-data"}),
    "raw mtx": (MTX, {"Content-Type": "text/mtx;"}),
    "unicode csv": ("naïve,ünï\n1,2\n".encode(), CSV_HEADERS),
    "latin-1 csv": ("naïve,x\n1,2\n".encode("latin-1"), CSV_HEADERS),
    "single column with blank lines": (b"x\n1\n\n3\n", CSV_HEADERS),
    "malformed csv": (b'a,b\n1,2,3,4\n"x', CSV_HEADERS),
    "header only csv": (b"x,y\n", CSV_HEADERS),
    "whitespace body": (b"\n\n", CSV_HEADERS),
    "binary garbage": (bytes(range(256)), CSV_HEADERS),
}
# what an unstructured model's hook may be sent: its bytes, mimetype and charset reach it as DRUM passes them
UNSTRUCTURED_PAYLOADS: dict[str, tuple[bytes, dict]] = {
    "utf-8 text": ("my text, мой текст".encode("utf-8"), {"Content-Type": "text/plain; charset=UTF-8"}),
    "utf-16 text": ("my text".encode("utf-16"), {"Content-Type": "text/plain; charset=utf16"}),
    "octet-stream": (b"\x00\x01\xff", {"Content-Type": "application/octet-stream"}),
    "json": (b'{"k": "v"}', {"Content-Type": "application/json"}),
    "form urlencoded": (b"a=1&b=2", {"Content-Type": "application/x-www-form-urlencoded"}),
    "no content type": (b"no content type", {}),
    "empty body": (b"", {}),
    "bad utf-8": (b"\xff\xfe bad utf8", {"Content-Type": "text/plain"}),
    "unknown charset": (b"x", {"Content-Type": "text/plain; charset=no-such-charset"}),
    "image": (b"\x01\x02", {"Content-Type": "image/png"}),
    "multipart": multipart({"filekey": ("words.txt", b"a b c", "text/plain")}),
}
JSON_HEADERS = {"Content-Type": "application/json"}


def chat_request(**fields) -> bytes:
    # the association id is fixed: without one the server draws a uuid4, which no two servers share
    return json.dumps({"model": "any", "messages": [{"role": "user", "content": "hello big world"}],
                       "datarobot_association_id": "parity", **fields}).encode()


# what OpenAI clients send to /chat/completions, and what they get wrong; a model without a chat hook answers 404
CHAT_PAYLOADS: dict[str, tuple[bytes, dict]] = {
    "chat completion": (chat_request(), JSON_HEADERS),
    "streamed chat": (chat_request(stream=True), JSON_HEADERS),
    "chat, json with charset": (chat_request(), {"Content-Type": "application/json; charset=utf-8"}),
    "chat, text/plain": (chat_request(), {"Content-Type": "text/plain"}),
    "chat, malformed json": (b'{"messages": [', JSON_HEADERS),
    "chat, json null": (b"null", JSON_HEADERS),
    "chat, json list": (b"[1, 2]", JSON_HEADERS),
    "chat, messages not a list": (b'{"messages": 5}', JSON_HEADERS),
}
PREDICT_PATHS = ("/predict/", "/predictions/", "/invocations")
CHAT_PATHS = ("/chat/completions", "/v1/chat/completions")
UNSTRUCTURED_PATHS = ("/predictUnstructured/", "/predictionsUnstructured/")


def route_cases(url_prefix: str = "") -> list[Case]:
    """Every rule of DRUM's route table with and without its trailing slash, unknown paths, every method."""
    paths: list[str] = []
    for route in PREDICTION_ROUTES:
        rule = prefixed(example_path(route.rule), url_prefix)
        if rule == "/":
            paths.append(rule)
            continue
        paths += [rule, rule.rstrip("/") if rule.endswith("/") else rule + "/"]
    paths += [prefixed(path, url_prefix) for path in ("/nope", "/static/x", "/predict/extra", "//info/", "/info/?a=1",
                                                       "/%E2%9C%93/", "/info%2F")]
    paths = list(dict.fromkeys(paths))
    return [Case("routes", f"{method} {path}", method, path, CSV if method in ("POST", "PUT", "PATCH") else b"", CSV_HEADERS)
            for path in paths for method in METHODS]


def payload_cases(target_type: str, url_prefix: str = "") -> list[Case]:
    """Each payload kind the target type accepts, on each path that takes it; and chat requests, for every model."""
    if target_type == UNSTRUCTURED_TARGET:
        payloads, paths = UNSTRUCTURED_PAYLOADS, UNSTRUCTURED_PATHS
    else:
        payloads, paths = STRUCTURED_PAYLOADS, PREDICT_PATHS + ("/predictionsStream/",) + (
            ("/transform/",) if target_type == TRANSFORM_TARGET else ())
    kinds = [(payloads, paths), (CHAT_PAYLOADS, CHAT_PATHS)]
    return [Case("payloads", f"{name} to {path}", "POST", prefixed(path, url_prefix), body, headers)
            for payloads, paths in kinds for path in paths for name, (body, headers) in payloads.items()]


# requests that HTTP/1.1 parsers judge differently (gunicorn's, uvicorn's llhttp), with "{path}" for the target: each
# server's page for what it refuses, or the route's answer for what it reads; then headers a parser may join or pass on
MALFORMED_GETS = {
    "bare LF line ends": b"GET {path} HTTP/1.1\nHost: x\n\n",
    "a bare LF in the head": b"GET {path} HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n",
    "obsolete line folding": b"GET {path} HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
    "a space before the colon": b"GET {path} HTTP/1.1\r\nHost: x\r\nX-A : b\r\n\r\n",
    "NUL in the request line": b"GET {path}\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
    "raw UTF-8 in the target": b"GET {path}\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n",
    "a tab in the request line": b"GET\t{path} HTTP/1.1\r\nHost: x\r\n\r\n",
    "two spaces in the request line": b"GET  {path} HTTP/1.1\r\nHost: x\r\n\r\n",
    "a lower-case version": b"GET {path} http/1.1\r\nHost: x\r\n\r\n",
    "a target without a slash": b"GET x{path} HTTP/1.1\r\nHost: x\r\n\r\n",
    "bytes before the method": b"\x01\x02GET {path} HTTP/1.1\r\nHost: x\r\n\r\n",
    "not HTTP": b"hello world\r\n\r\n",
    "a header name with @": b"GET {path} HTTP/1.1\r\nHost: x\r\nX@A: b\r\n\r\n",
    "a header without a colon": b"GET {path} HTTP/1.1\r\nHost: x\r\nFoo\r\n\r\n",
    "an empty header name": b"GET {path} HTTP/1.1\r\nHost: x\r\n: b\r\n\r\n",
    "CR in a header value": b"GET {path} HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n",
    "NUL in a header value": b"GET {path} HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "DEL in a header value": b"GET {path} HTTP/1.1\r\nHost: x\r\nX-A: a\x7fb\r\n\r\n",
    "a byte over 0x7F in a header value": b"GET {path} HTTP/1.1\r\nHost: x\r\nX-A: a\xffb\r\n\r\n",
    "a fragment in the target": b"GET {path}#x HTTP/1.1\r\nHost: x\r\n\r\n",
    "two Host headers": b"GET {path} HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
}
_POST = b"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
MALFORMED_POSTS = {
    "Content-Length and Transfer-Encoding": _POST + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "Transfer-Encoding: identity": _POST + b"Transfer-Encoding: identity\r\n\r\n",
    "an unknown transfer coding": _POST + b"Transfer-Encoding: foo\r\n\r\n",
    "chunked twice": _POST + b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
    "a Content-Length that is no number": _POST + b"Content-Length: abc\r\n\r\n",
    "a negative Content-Length": _POST + b"Content-Length: -1\r\n\r\n",
    "a Content-Length with a sign": _POST + b"Content-Length: +4\r\n\r\nx\n1\n",
    "two different Content-Lengths": _POST + b"Content-Length: 4\r\nContent-Length: 2\r\n\r\nx\n1\n",
    "two Content-Type headers": _POST + b"Content-Type: application/json\r\nContent-Length: 4\r\n\r\nx\n1\n",
    "an empty Content-Type": b"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: \r\nContent-Length: 4\r\n\r\nx\n1\n",
    "a trailer after a chunked body": _POST + b"Transfer-Encoding: chunked\r\n\r\n4\r\nx\n1\n\r\n0\r\n"
                                      b"Content-Type: application/json\r\n\r\n",
    "a chunk size that is no number": _POST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nx\n\r\n0\r\n\r\n",
    "a chunk without its CRLF": _POST + b"Transfer-Encoding: chunked\r\n\r\n2\r\nx\nX0\r\n\r\n",
    "a NUL in a chunk extension": _POST + b"Transfer-Encoding: chunked\r\n\r\n2;\x00\r\nx\n\r\n0\r\n\r\n",
}


def protocol_cases(target_type: str, url_prefix: str = "") -> list[Case]:
    """The malformed requests above, the GETs to /ping and the POSTs to a route that reads the body for this model."""
    post_path = UNSTRUCTURED_PATHS[0] if target_type == UNSTRUCTURED_TARGET else PREDICT_PATHS[0]
    return [Case("protocol", name, method, prefixed(path, url_prefix),
                 raw=raw.replace(b"{path}", prefixed(path, url_prefix).encode()))
            for method, path, requests in (("GET", "/ping", MALFORMED_GETS), ("POST", post_path, MALFORMED_POSTS))
            for name, raw in requests.items()]


def data_slices(data: bytes) -> dict[str, bytes]:
    """The user's CSV as 1 row, all rows, columns shuffled (seeded), the first column missing, and empty; a file pandas
    cannot read as CSV is sent whole and empty."""
    try:
        frame = pd.read_csv(io.BytesIO(data))
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError):
        return {"all rows": data, "empty file": b""}

    def csv(part: pd.DataFrame) -> bytes:
        return part.to_csv(index=False).encode()

    columns = list(frame.columns)
    shuffled = columns[:]
    random.Random(0).shuffle(shuffled)
    slices = {"1 row": csv(frame.head(1)), "all rows": data, "columns shuffled": csv(frame[shuffled]), "empty file": b""}
    if len(columns) > 1:
        slices["a column missing"] = csv(frame[columns[1:]])
    return slices


def read_inputs(files: Iterable[Path]) -> dict[Path, bytes]:
    """Each --data file's bytes, read before any server starts: one that cannot be read is an InputFileError."""
    try:
        return {Path(file): Path(file).read_bytes() for file in files}
    except OSError as exc:
        raise InputFileError(f"--data {exc.filename}: {exc.strerror}") from None


def data_cases(inputs: dict[Path, bytes], target_type: str, url_prefix: str = "") -> list[Case]:
    cases = []
    for file, data in inputs.items():
        if target_type == UNSTRUCTURED_TARGET:
            for mimetype in ("application/octet-stream", "text/plain"):
                cases.append(Case("data", f"{file.name} as {mimetype}", "POST", prefixed("/predictUnstructured/", url_prefix),
                                  data, {"Content-Type": mimetype}))
            continue
        path = prefixed("/transform/" if target_type == TRANSFORM_TARGET else "/predict/", url_prefix)
        for name, body in data_slices(data).items():
            cases.append(Case("data", f"{file.name}, {name}", "POST", path, body, CSV_HEADERS))
        body, headers = multipart({"X": (file.name, data, "text/csv")})
        cases.append(Case("data", f"{file.name}, multipart X", "POST", path, body, headers))
    return cases


class InputFileError(ValueError):
    """A --cases or --data file that cannot be used: said in one line, before any server starts."""


def user_cases(cases_file: Path) -> list[Case]:
    """cases.yaml: a list of {name, method, path, headers, body | body_file} (body_file relative to the YAML file)."""
    try:
        entries = yaml.safe_load(Path(cases_file).read_text()) or []
    except (OSError, yaml.YAMLError) as exc:
        raise InputFileError(f"{cases_file}: {exc}") from None
    if not isinstance(entries, list):
        raise InputFileError(f"{cases_file}: expected a list of cases, got {type(entries).__name__}")
    cases = []
    for number, entry in enumerate(entries, 1):
        if not isinstance(entry, dict) or "path" not in entry:
            raise InputFileError(f"{cases_file}: case {number} needs at least a path")
        unknown = set(entry) - {"name", "method", "path", "headers", "body", "body_file"}
        if unknown:
            raise InputFileError(f"{cases_file}: case {number} has unknown keys {sorted(unknown)}")
        if "body_file" in entry:
            try:
                body = (Path(cases_file).parent / entry["body_file"]).read_bytes()
            except OSError as exc:
                raise InputFileError(f"{cases_file}: case {number}'s body_file {exc.filename}: {exc.strerror}") from None
        else:
            raw = entry.get("body", "")
            body = raw.encode() if isinstance(raw, str) else bytes(raw)
        method = str(entry.get("method", "POST" if body else "GET")).upper()
        headers = {str(name): str(value) for name, value in (entry.get("headers") or {}).items()}
        cases.append(Case("user", str(entry.get("name", f"case {number}")), method, str(entry["path"]), body, headers))
    return cases
