"""`drum-compat replay`: requests recorded by DRUM_RECORD_REQUESTS sent again to two servers (A and B), at a set
rate, their answers compared as the parity runner compares them; a diff report with latency percentiles per side."""
from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx
from rich.console import Console
from rich.table import Table

from drum_compat.compat.parity.cases import Case
from drum_compat.compat.parity.compare import differences
from drum_compat.compat.parity.report import Result, as_json, print_table
from drum_compat.compat.parity.runner import TRANSPORT_FAILED, Side
from drum_compat.shared.record import REDACTED, REPLAYED_HEADER

DIFFERENT, UNREADABLE = 1, 2
# the connection's own headers, re-made by the client that replays
NOT_REPLAYED = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive", "accept-encoding"})


class RecordingError(ValueError):
    pass


def recorded_cases(paths: list[Path], extra_headers: dict[str, str]) -> tuple[list[Case], int]:
    """The replayable requests of the recording files, in order, and how many were left out (body not recorded)."""
    cases, omitted = [], 0
    for path in paths:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise RecordingError(f"{path}: {exc.strerror}") from None
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                if "body_omitted" in entry:
                    omitted += 1
                    continue
                headers = {name: value for name, value in entry["headers"]
                           if name.lower() not in NOT_REPLAYED and value != REDACTED}
                target = entry["path"] + (f"?{entry['query']}" if entry["query"] else "")
                body = base64.b64decode(entry["body"])
            except (ValueError, KeyError, TypeError) as exc:
                raise RecordingError(f"{path}:{number}: not a recorded request ({exc})") from None
            cases.append(Case("replay", f"{path.name}:{number} {entry['method']} {target}", entry["method"], target, body,
                              {**headers, **extra_headers, REPLAYED_HEADER: "1"}))
    return cases, omitted


def paced(cases: list[Case], rate: float) -> Iterator[Case]:
    """At most `rate` requests a second (0: as fast as the servers answer)."""
    started = time.monotonic()
    for index, case in enumerate(cases):
        if rate > 0:
            time.sleep(max(0.0, started + index / rate - time.monotonic()))
        yield case


def percentiles(seconds: list[float]) -> dict[str, float | None]:
    if not seconds:
        return {"p50": None, "p90": None, "p99": None}
    if len(seconds) == 1:
        return {"p50": seconds[0], "p90": seconds[0], "p99": seconds[0]}
    cuts = statistics.quantiles(seconds, n=100, method="inclusive")
    return {"p50": cuts[49], "p90": cuts[89], "p99": cuts[98]}


def timed(side: Side, case: Case):
    began = time.perf_counter()
    answer = side.send(case)
    return answer, time.perf_counter() - began


def unreachable(side: Side) -> str | None:
    """Why `side` cannot be replayed to (any HTTP answer will do: it is there), or None."""
    try:
        side.client.get(side.base_url + "/")
    except httpx.TransportError as exc:
        return f"{side.label} is unreachable ({type(exc).__name__}: {exc or 'no answer'})"
    return None


def run(args: argparse.Namespace) -> int:
    malformed = [header for header in args.header if ":" not in header]
    if malformed:
        print(f"drum-compat: error: --header {malformed[0]!r}: expected NAME:VALUE", file=sys.stderr)
        return UNREADABLE
    extra = {name.strip(): value.strip() for name, value in (header.split(":", 1) for header in args.header)}
    try:
        cases, omitted = recorded_cases(args.log, extra)
    except RecordingError as exc:
        print(f"drum-compat: error: {exc}", file=sys.stderr)
        return UNREADABLE
    console = Console(soft_wrap=True)  # a long line (a body, a path) stays one line, as a file or a grep wants it
    results, latency = [], {"a": [], "b": []}
    with httpx.Client(timeout=args.request_timeout) as client_a, httpx.Client(timeout=args.request_timeout) as client_b:
        a, b = Side(args.a, args.a.rstrip("/"), client_a), Side(args.b, args.b.rstrip("/"), client_b)
        down = [reason for reason in map(unreachable, (a, b)) if reason]
        if down:  # one line, not a difference per request and a latency for refused connections
            print(f"drum-compat: error: {'; '.join(down)}: nothing replayed", file=sys.stderr)
            return UNREADABLE
        for case in paced(cases, args.rate):
            answers = {}
            for name, side in (("a", a), ("b", b)):
                answers[name], seconds = timed(side, case)
                if answers[name].status != TRANSPORT_FAILED:  # a request with no answer has no latency
                    latency[name].append(seconds)
            results.append(Result(case, tuple(differences(case.method, case.path, answers["a"], answers["b"])),
                                  answers["a"].status, answers["b"].status))
    figures = {side: percentiles(values) for side, values in latency.items()}
    print_table(results, args.a, args.b, console)
    table = Table(title="latency")
    for column in ("", "p50", "p90", "p99"):
        table.add_column(column, justify="right" if column else "left")
    for side, label in (("a", args.a), ("b", args.b)):
        table.add_row(label, *("-" if figures[side][p] is None else f"{figures[side][p] * 1000:.1f} ms" for p in ("p50", "p90", "p99")))
    console.print(table)
    if omitted:
        console.print(f"{omitted} recorded request(s) left out: their bodies were over DRUM_RECORD_MAX_BODY")
    if args.report:
        args.report.write_text(json.dumps({
            "a": args.a, "b": args.b, "replayed": len(results), "omitted": omitted,
            "different": sum(not result.alike for result in results), "latency": figures,
            "cases": [{"name": r.case.name, "status": [r.status_a, r.status_b], "differences": [as_json(difference) for difference in r.differences]}
                      for r in results if not r.alike],
        }, indent=2) + "\n")
    return DIFFERENT if any(not result.alike for result in results) else 0
