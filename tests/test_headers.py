"""The core's header helpers against werkzeug's own Headers, which they shortcut: request headers looked up through a
dict answer as Headers does and cannot change; set_headers leaves a response's headers as Headers.set one by one would."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import Headers

from drum_compat.shared.http import RequestHeaders, set_headers, wsgi_style_headers

NAMES = st.sampled_from(["Content-Type", "content-type", "Allow", "X-Request-ID", "Vary", "X-Frame-Options", "Origin"])
PAIRS = st.lists(st.tuples(NAMES, st.sampled_from(["a", "b", "text/html", ""])), max_size=6)


@settings(max_examples=300, derandomize=True)
@given(PAIRS, NAMES)
def test_request_headers_answer_lookups_as_werkzeug_headers(pairs, asked):
    ours, theirs = RequestHeaders(pairs), Headers(pairs)
    assert ours.get(asked) == theirs.get(asked)
    assert ours.get(asked, "default") == theirs.get(asked, "default")
    assert (asked in ours) == (asked in theirs)
    assert list(ours.items()) == list(theirs.items())
    if asked in theirs:
        assert ours[asked] == theirs[asked]


def test_request_headers_cannot_change_under_their_index():
    headers = wsgi_style_headers([(b"content-type", b"text/csv"), (b"x_request_id", b"smuggled")])
    assert headers.get("CONTENT-TYPE") == "text/csv" and "X-Request-Id" not in headers
    with pytest.raises(TypeError):
        headers.set("Content-Type", "text/plain")
    with pytest.raises(TypeError):
        headers["Origin"] = "https://example.com"


@settings(max_examples=300, derandomize=True)
@given(PAIRS, st.dictionaries(NAMES, st.sampled_from(["x", "y"]), max_size=4))
def test_set_headers_leaves_what_headers_set_one_by_one_leaves(existing, stamps):
    ours, theirs = Headers(existing), Headers(existing)
    set_headers(ours, stamps.items())
    for name, value in stamps.items():
        theirs.set(name, value)
    assert ours.to_wsgi_list() == theirs.to_wsgi_list()
