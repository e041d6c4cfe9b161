"""`drum-compat parity`'s command line, apart from the runner so that `drum-compat server` does not import the
runner's libraries to build its parser."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Mapping

from drum_compat.runtime.options import MODEL_OPTIONS, add_server_arguments

DEFAULT_SERVER_TYPES = ("gunicorn", "fastapi")


def add_parity_arguments(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    parser.add_argument("--code-dir", required=True, help="the model directory, served on both stacks")
    add_server_arguments(parser, environ, MODEL_OPTIONS)
    parser.add_argument("--data", nargs="+", type=Path, default=[], metavar="FILE",
                        help="your own input files, each sent whole and sliced (1 row, columns shuffled, a column missing, empty)")
    parser.add_argument("--cases", nargs="+", type=Path, default=[], metavar="YAML",
                        help="your own requests: a list of {name, method, path, headers, body | body_file}")
    parser.add_argument("--junit", type=Path, metavar="XML", help="write a JUnit report (one test case per request)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write every result and difference as JSON")
    parser.add_argument("--against", metavar="URL", help="compare a running deployment (real DRUM, say) with --stack, "
                                                         "instead of gunicorn with uvicorn")
    parser.add_argument("--stack", choices=DEFAULT_SERVER_TYPES, default="fastapi", help="with --against: the server type to start")
    parser.add_argument("--fuzz", type=int, default=0, metavar="N", help="also send N generated requests (hypothesis)")
    parser.add_argument("--fuzz-seed", type=int, metavar="S", help="generate the same requests as another run with this seed")
    parser.add_argument("--startup-timeout", type=float, default=120.0, help="seconds a server may take to load the model")
    parser.add_argument("--request-timeout", type=float, default=60.0, help="seconds per request")


def add_replay_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log", nargs="+", type=Path, required=True, metavar="FILE",
                        help="recording files (DRUM_RECORD_REQUESTS, rotated ones included), replayed in the order given")
    parser.add_argument("--a", required=True, metavar="URL", help="the first server, e.g. http://127.0.0.1:8080")
    parser.add_argument("--b", required=True, metavar="URL", help="the second server")
    parser.add_argument("--rate", type=float, default=0.0, metavar="R", help="requests per second at most; 0: as fast as answered")
    parser.add_argument("--header", action="append", default=[], metavar="NAME:VALUE",
                        help="add this header to every request (a redacted Authorization, say); repeatable")
    parser.add_argument("--report", type=Path, metavar="FILE", help="write the differences and latency figures as JSON")
    parser.add_argument("--request-timeout", type=float, default=60.0, help="seconds per request")
