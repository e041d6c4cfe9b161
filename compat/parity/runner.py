"""`drum-compat parity`: a model directory served by gunicorn and by uvicorn (or one of them against a running
deployment), every case sent to both over loopback, the answers compared; exit 1 on any difference, 2 if no start."""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from typing import Mapping

import httpx
from rich.console import Console
from rich.progress import Progress

from drum_compat.runtime.options import MODEL_OPTIONS, as_arguments, secret_environment
from drum_compat.compat.parity.arguments import DEFAULT_SERVER_TYPES
from drum_compat.compat.parity.cases import (Case, InputFileError, data_cases, payload_cases, protocol_cases, read_inputs,
                                             route_cases, user_cases)
from drum_compat.compat.parity.compare import Answer, Difference, differences, normalise, split_documented
from drum_compat.compat.parity.raw import NoAnswer, exchange
from drum_compat.compat.parity.report import Result, print_table, write_json, write_junit
from drum_compat.compat.reaper import Reaper
from drum_compat.compat.running import RunningServer
from drum_compat.runtime.settings import SettingError, resolve_settings
from drum_compat.shared.routes import prefixed
from drum_compat.shared.server_types import SERVER_TYPES

DIFFERENT, CANNOT_START = 1, 2
TRANSPORT_FAILED = 0  # the status recorded when no answer came back
# the operator's settings go to both servers; these stay per instance
NOT_SHARED = ("DRUM_SERVER_TYPE", "PROMETHEUS_MULTIPROC_DIR")


class CannotStart(RuntimeError):
    pass


@dataclass
class Side:
    label: str
    base_url: str
    client: httpx.Client

    def send(self, case: Case) -> Answer:
        if case.raw:
            try:
                return normalise(*exchange(self.base_url, case.method, case.raw, self.client.timeout.read), self.base_url)
            except (OSError, NoAnswer) as exc:
                return Answer(TRANSPORT_FAILED, [], f"no answer: {type(exc).__name__}: {exc}".encode())
        body = case.body
        content = iter([body[: len(body) // 2], body[len(body) // 2:]]) if case.chunked else body
        try:
            response = self.client.request(case.method, self.base_url + case.path, content=content, headers=case.headers)
        except httpx.HTTPError as exc:
            return Answer(TRANSPORT_FAILED, [], f"no answer: {type(exc).__name__}: {exc}".encode())
        return normalise(response.status_code, response.headers.multi_items(), response.content, self.base_url)


def shared_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """What RunningServer would otherwise leave out: the user's DRUM_* and runtime parameters."""
    return {name: value for name, value in environ.items()
            if name.startswith(("DRUM_", "MLOPS_RUNTIME_PARAM_")) and name not in NOT_SHARED}


def url_prefix_of(server_type: str, environ: Mapping[str, str]) -> str:
    """URL_PREFIX as the server will read it: every route, the readiness check's included, lives under it."""
    return resolve_settings(SERVER_TYPES[server_type].stack, environ).value("url_prefix")


def start(server_type: str, args: argparse.Namespace, model_arguments: list[str], environ: Mapping[str, str],
          reaper: Reaper | None = None) -> RunningServer:
    try:
        return RunningServer(args.code_dir, server_type, *model_arguments,
                             env={**shared_environment(environ), **secret_environment(args, MODEL_OPTIONS)},
                             timeout=args.startup_timeout, ready_path=prefixed("/", url_prefix_of(server_type, environ)),
                             reaper=reaper)
    except (RuntimeError, TimeoutError) as exc:
        raise CannotStart(f"the model did not start on {server_type}: {exc}") from None


def corpus(inputs: dict, target_type: str, url_prefix: str, own: list[Case]) -> list[Case]:
    return (route_cases(url_prefix) + payload_cases(target_type, url_prefix) + protocol_cases(target_type, url_prefix)
            + data_cases(inputs, target_type, url_prefix) + own)


def compared(case: Case, a: Side, b: Side, against: bool) -> Result:
    answer_a, answer_b = a.send(case), b.send(case)
    found = differences(case.method, case.path, answer_a, answer_b, against)
    unexpected, documented = split_documented(case.path, found) if against else (found, [])
    return Result(case, tuple(unexpected), answer_a.status, answer_b.status, tuple(documented))


def compare_all(cases: list[Case], a: Side, b: Side, against: bool, console: Console) -> list[Result]:
    results = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("comparing", total=len(cases))
        for case in cases:
            results.append(compared(case, a, b, against))
            progress.advance(task)
    return results


def fuzzed(examples: int, seed: int | None, a: Side, b: Side, against: bool, console: Console) -> list[Result]:
    """The generated cases that were alike, and the shrunk one that was not, if any (the search stops there)."""
    from drum_compat.compat.parity.fuzz import search

    alike: list[Result] = []

    def check(case: Case) -> list[Difference]:
        result = compared(case, a, b, against)
        if result.alike and len(alike) < examples:
            alike.append(result)
        return list(result.differences)

    console.print(f"fuzzing: up to {examples} generated requests" + (f" (seed {seed})" if seed is not None else ""))
    failure = search(examples, check, seed=seed)
    return alike if failure is None else alike + [compared(failure[0], a, b, against)]


def run(args: argparse.Namespace, environ: Mapping[str, str] | None = None, console: Console | None = None) -> int:
    environ = os.environ if environ is None else environ
    console = console or Console(soft_wrap=True)  # a long line (a body, a path) stays one line, as a file or a grep wants it
    try:  # a file that cannot be used stops the run before any server starts
        own = [case for path in args.cases for case in user_cases(path)]
        inputs = read_inputs(args.data)
    except InputFileError as exc:
        print(f"drum-compat: error: {exc}", file=sys.stderr)
        return CANNOT_START
    model_arguments = as_arguments(args, MODEL_OPTIONS)
    servers: list[RunningServer] = []
    started = time.monotonic()
    reaper = Reaper()  # should this process be killed, the servers it started still end
    try:
        kinds = [args.stack] if args.against else list(DEFAULT_SERVER_TYPES)
        for kind in kinds:
            servers.append(start(kind, args, model_arguments, environ, reaper))
        with httpx.Client(timeout=args.request_timeout) as client_a, httpx.Client(timeout=args.request_timeout) as client_b:
            if args.against:
                a = Side(args.against, args.against.rstrip("/"), client_a)
                b = Side(kinds[0], servers[0].base_url, client_b)
            else:
                a, b = (Side(kind, server.base_url, client) for kind, server, client in zip(kinds, servers, (client_a, client_b)))
            url_prefix = url_prefix_of(kinds[-1], environ)
            info = b.client.get(b.base_url + prefixed("/info/", url_prefix))
            # the error server (a model that failed to load) has no target type: its routes are the corpus
            target_type = info.json().get("targetType", "regression") if info.status_code == 200 else "regression"
            cases = corpus(inputs, target_type, url_prefix, own)
            console.print(f"parity: {len(cases)} cases, {a.label} vs {b.label} ({target_type} model in {args.code_dir})")
            results = compare_all(cases, a, b, bool(args.against), console)
            if args.fuzz:
                results += fuzzed(args.fuzz, args.fuzz_seed, a, b, bool(args.against), console)
    except (CannotStart, SettingError) as exc:
        print(f"drum-compat: error: {exc}", file=sys.stderr)
        return CANNOT_START
    finally:
        for server in servers:
            server.stop()
        reaper.close()
    seconds = time.monotonic() - started
    print_table(results, a.label, b.label, console)
    if args.junit:
        write_junit(results, a.label, b.label, args.junit, seconds)
    if args.json:
        write_json(results, a.label, b.label, args.json)
    return DIFFERENT if any(not result.alike for result in results) else 0
