"""Differential fuzzing: generated requests (compat.parity.fuzz) sent to both stacks, in-process and over real
sockets (chunked bodies included); any difference fails with hypothesis's shrunk example.
`make test` runs a fixed, bounded set; `make fuzz` a long random search (DRUM_COMPAT_FUZZ_EXAMPLES)."""
from __future__ import annotations

import os

import httpx
import pytest

from drum_compat.compat.parity.cases import Case
from drum_compat.compat.parity.compare import differences
from drum_compat.compat.parity.fuzz import raw_cases, search
from drum_compat.compat.parity.runner import Side
from tests.processes import serve
from tests.models import write_model

LONG_RUN = "DRUM_COMPAT_FUZZ_EXAMPLES" in os.environ  # make fuzz: new random cases every run
IN_PROCESS_EXAMPLES = int(os.environ.get("DRUM_COMPAT_FUZZ_EXAMPLES", 300))
OVER_SOCKETS_EXAMPLES = int(os.environ.get("DRUM_COMPAT_FUZZ_EXAMPLES", 150))


def shown(failure: tuple[Case, list] | None) -> str:
    if failure is None:
        return ""
    case, lines = failure
    sent = repr(case.raw) if case.raw else f"{case.method} {case.path} headers={case.headers} body={case.body[:200]!r} chunked={case.chunked}"
    return sent + "\n" + "\n".join(map(str, lines))


@pytest.mark.parametrize("model", ["regression", "unstructured", "transform"])
def test_both_apps_answer_generated_requests_alike(stacks_for, model):
    stacks = stacks_for(model)

    def check(case: Case) -> list[str]:
        # werkzeug's test client reads a target starting with "//" as a host (a network-path reference) where
        # servers read a path; such targets are fuzzed over sockets below
        return [] if case.path.startswith("//") else stacks.differences(case)

    failure = search(IN_PROCESS_EXAMPLES, check, derandomize=not LONG_RUN)
    assert failure is None, shown(failure)


def test_the_search_reports_a_difference_shrunk():
    # a check that finds any POST with a body different: the search must return it, shrunk to a tiny body
    failure = search(200, lambda case: ["differs"] if case.method == "POST" and case.body else [], derandomize=True)
    assert failure is not None
    case, lines = failure
    # a generated CSV holds a row at least: the smallest is a one-character header and one cell, b"0\n0\n"
    assert (case.method, lines, case.headers.keys() <= {"Content-Type"}) == ("POST", ["differs"], True) and len(case.body) <= 4


@pytest.mark.servers
def test_both_servers_answer_generated_requests_alike_over_sockets(tmp_path):
    code_dir, options = write_model(tmp_path, "regression")
    with serve(code_dir, "gunicorn", "--target-type", "regression") as gunicorn, \
            serve(code_dir, "fastapi", "--target-type", "regression") as uvicorn, \
            httpx.Client(timeout=30) as client_a, httpx.Client(timeout=30) as client_b:
        a, b = Side("gunicorn", gunicorn.base_url, client_a), Side("fastapi", uvicorn.base_url, client_b)
        sent = []

        def check(case: Case) -> list[str]:
            sent.append(case)
            return differences(case.method, case.path, a.send(case), b.send(case))

        failure = search(OVER_SOCKETS_EXAMPLES, check, derandomize=not LONG_RUN)
    assert failure is None, shown(failure)
    assert any(case.chunked for case in sent) and any(case.method == "POST" and case.body for case in sent)


@pytest.mark.servers
def test_both_servers_answer_generated_malformed_requests_alike(tmp_path):
    """Raw requests bent where HTTP parsers disagree: uvicorn's answers are gunicorn's, byte for byte."""
    code_dir, options = write_model(tmp_path, "regression")
    with serve(code_dir, "gunicorn", "--target-type", "regression") as gunicorn, \
            serve(code_dir, "fastapi", "--target-type", "regression") as uvicorn, httpx.Client(timeout=30) as client:
        a, b = Side("gunicorn", gunicorn.base_url, client), Side("fastapi", uvicorn.base_url, client)
        failure = search(OVER_SOCKETS_EXAMPLES, lambda case: differences(case.method, case.path, a.send(case), b.send(case)),
                         derandomize=not LONG_RUN, strategy=raw_cases())
    assert failure is None, shown(failure)
