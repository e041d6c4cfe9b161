"""Generated requests for differential fuzzing (hypothesis): methods, paths, query strings, headers, content
types and parameters, CSV shapes and encodings, multipart edge cases, chunked bodies; raw requests bent where HTTP
parsers disagree (odd bytes, line ends, repeated and odd fields, transfer codings, chunk lines); and the search itself."""
from __future__ import annotations

from typing import Callable
from urllib.parse import quote, urlencode

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from drum_compat.compat.parity.cases import BOUNDARY, METHODS, Case, multipart
from drum_compat.shared.routes import PREDICTION_ROUTES, example_path

TOKEN = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", min_size=1, max_size=12)
PRINTABLE = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30)
RULES = sorted({example_path(route.rule) for route in PREDICTION_ROUTES})
MODEL_RULES = sorted({route.rule for route in PREDICTION_ROUTES if route.runs_model})
CONTENT_TYPES = ("text/csv", "TEXT/CSV", "text/plain", "application/json", "application/octet-stream", "text/mtx",
                 "application/x-www-form-urlencoded", "multipart/form-data", f"multipart/form-data; boundary={BOUNDARY}",
                 "image/png", "no/such", "", ";")
CHARSETS = ("utf-8", "UTF-8", "latin-1", "utf-16", "ascii", "no-such-charset")
ENCODINGS = ("utf-8", "latin-1", "utf-16")


@st.composite
def paths(draw) -> str:
    # most requests go where the payload parsers are: a model route as written
    exact = st.sampled_from(MODEL_RULES)
    varied = st.sampled_from(RULES).flatmap(lambda rule: st.sampled_from((rule, rule.rstrip("/") or "/", rule + "/", "/" + rule)))
    unknown = st.lists(TOKEN, min_size=1, max_size=3).map(lambda parts: "/" + "/".join(parts))
    path = draw(st.one_of(exact, exact, varied, unknown))
    query = draw(st.lists(st.tuples(TOKEN, PRINTABLE), max_size=3))
    return path + (f"?{urlencode(query, quote_via=quote)}" if query else "")


@st.composite
def content_types(draw) -> str:
    mimetype = draw(st.sampled_from(CONTENT_TYPES))
    if draw(st.booleans()) and mimetype and "boundary" not in mimetype:
        mimetype += f"; charset={draw(st.sampled_from(CHARSETS))}"
    return mimetype


@st.composite
def csv_bodies(draw) -> bytes:
    columns = draw(st.lists(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x17F, exclude_characters=',"\r\n'),
                                    min_size=1, max_size=6), min_size=1, max_size=4, unique=True))
    cell = st.one_of(st.integers(-10**6, 10**6).map(str), st.floats(allow_nan=False, width=32).map(repr),
                     st.text(st.characters(min_codepoint=0x20, max_codepoint=0x17F, exclude_characters=',"\r\n'), max_size=5))
    # at least one row: a frame the model scores, where the stacks' answers can differ (hypothesis favours empty lists,
    # and a header alone is answered alike whatever the model does; the corpus has its own empty-CSV cases)
    rows = draw(st.lists(st.lists(cell, min_size=len(columns), max_size=len(columns)), min_size=1, max_size=6))
    text = "\n".join(",".join(row) for row in [columns, *rows]) + draw(st.sampled_from(("\n", "", "\r\n")))
    return text.encode(draw(st.sampled_from(ENCODINGS)), "replace")


@st.composite
def multipart_bodies(draw) -> tuple[bytes, dict]:
    name = draw(st.sampled_from(("X", "x", "data", "X.colnames", "y")))
    filename = draw(st.sampled_from(("data.csv", "X.mtx", "x.MTX", "noext", None)))
    content = draw(csv_bodies())
    field = (filename, content, draw(st.sampled_from(("text/csv", "text/plain", "application/octet-stream")))) if filename else content.decode("latin-1")
    return multipart({name: field})


@st.composite
def cases(draw) -> Case:
    method = draw(st.one_of(st.just("POST"), st.sampled_from(METHODS)))
    path = draw(paths())
    headers = {}
    kind = draw(st.sampled_from(("csv", "csv", "csv", "multipart", "bytes", "none")))
    if kind == "multipart":
        body, headers = draw(multipart_bodies())
    else:
        body = {"none": st.just(b""), "csv": csv_bodies(), "bytes": st.binary(max_size=64)}[kind]
        body = draw(body)
        content_type = draw(st.one_of(st.just("text/csv"), content_types()))
        if content_type:
            headers["Content-Type"] = content_type
    for name, value in draw(st.dictionaries(TOKEN, PRINTABLE, max_size=3)).items():
        headers.setdefault(f"X-{name}", value)
    chunked = bool(body) and draw(st.booleans())
    return Case("fuzz", f"{method} {path} ({kind}{', chunked' if chunked else ''})", method, path, body, headers, chunked)


# what bends a request where parsers disagree; none changes how many body bytes follow, so every request is whole
ODD_BYTES = (b"\x00", b"\r", b"\t", b"\x7f", b"\x80", b"\xc3\xa9", b"\xff", b" ", b"@", b":", b"\x0b", b"\x0c")
ODD_FIELDS = (b": empty-name", b"no-colon", b"X-A : space-before-colon", b"X-A:\x00", b" folded", b"\tfolded",
              b"Host: second.example", b"Content-Type: application/json", b"Content-Type: ", b"Content-Length: 0",
              b"Expect: 100-continue", b"Transfer-Encoding: identity", b"Transfer-Encoding: gzip", b"Connection: close",
              b"X_Request_ID: abc", b"X-Request-ID: <script>", b"X-" + b"a" * 300 + b": long-name")
VERSIONS = (b"HTTP/1.1", b"HTTP/1.0", b"http/1.1", b"HTTP/1.2", b"HTTP/2.0", b"HTTP/1.01", b"HTTP/ 1.1", b"HTTP/1.1 ", b"")
CHUNK_SIZE_LINES = (b"zz", b"-4", b" 4", b"4 ", b"0x4", b"4;ext", b"4;ext=\"v\"", b"4;\x00", b"4\t", b"+4")


@st.composite
def raw_cases(draw) -> Case:
    """A whole request to a model route or a probe, as bytes, bent in one to three places."""
    method, path = draw(st.sampled_from((("GET", "/ping"), ("GET", "/info/"), ("POST", "/predict/"),
                                          ("POST", "/predictions/"))))
    body = b"x\n1\n" if method == "POST" else b""
    chunked = bool(body) and draw(st.booleans())
    fields = [b"Host: 127.0.0.1"] + ([b"Content-Type: text/csv"] if body else [])
    if body:
        fields.append(b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % len(body))
    line, version, chunk_size = [method.encode(), path.encode()], draw(st.sampled_from(VERSIONS)), b"%x" % len(body)
    bends = []
    for _ in range(draw(st.integers(1, 3))):
        bend = draw(st.sampled_from(("byte in the line", "byte in a field", "field", "repeat", "version", "LF", "chunk")))
        if bend == "byte in the line":
            part = draw(st.integers(0, 1))
            at = draw(st.integers(0, len(line[part])))
            line[part] = line[part][:at] + draw(st.sampled_from(ODD_BYTES)) + line[part][at:]
        elif bend == "byte in a field":
            index = draw(st.integers(0, len(fields) - 1))
            at = draw(st.integers(0, len(fields[index])))
            fields[index] = fields[index][:at] + draw(st.sampled_from(ODD_BYTES)) + fields[index][at:]
        elif bend == "field":
            fields.insert(draw(st.integers(0, len(fields))), draw(st.sampled_from(ODD_FIELDS)))
        elif bend == "repeat":
            fields.append(draw(st.sampled_from(fields)))
        elif bend == "version":
            version = draw(st.sampled_from(VERSIONS))
        elif bend == "chunk" and chunked:
            chunk_size = draw(st.sampled_from(CHUNK_SIZE_LINES))
        bends.append(bend)
    ends = [draw(st.sampled_from((b"\r\n", b"\r\n", b"\n"))) if "LF" in bends else b"\r\n" for _ in range(len(fields) + 2)]
    head = b" ".join(line) + (b" " + version if version else b"") + ends[0]
    head += b"".join(field + end for field, end in zip(fields, ends[1:])) + ends[-1]
    raw = head + (chunk_size + b"\r\n" + body + b"\r\n0\r\n\r\n" if chunked else body)
    return Case("fuzz", f"raw {method} {path} ({', '.join(bends)})", method, path, raw=raw)


def search(examples: int, check: Callable[[Case], list], derandomize: bool = False,
           seed: int | None = None, strategy: st.SearchStrategy[Case] | None = None) -> tuple[Case, list] | None:
    """Run `check` on up to `examples` generated cases (`strategy`'s; by default requests any HTTP client sends); the
    shrunk case that differed and its differences, or None. `derandomize`: the same cases every run (a CI gate),
    instead of new ones (a search); `seed`: the same cases as another run with that seed."""
    failure: dict = {}

    @settings(max_examples=examples, deadline=None, database=None, derandomize=derandomize, print_blob=False,
              phases=(Phase.generate, Phase.shrink), suppress_health_check=list(HealthCheck))
    @given(cases() if strategy is None else strategy)
    def alike(case: Case) -> None:
        found = check(case)
        if found:
            failure["case"], failure["differences"] = case, found  # the last one seen is the shrunk one
            raise AssertionError("\n".join(map(str, found)))

    if seed is not None:
        alike = hypothesis_seed(seed)(alike)
    try:
        alike()
    except AssertionError:
        return failure["case"], failure["differences"]
    return None
