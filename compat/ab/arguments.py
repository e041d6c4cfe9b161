"""The command lines of `drum-compat ab` and `drum-compat ab-status`, apart from their runners so that building
the CLI's parser imports nothing heavy."""
from __future__ import annotations

import argparse
from typing import Mapping

from drum_compat.runtime.options import MODEL_OPTIONS, add_server_arguments


def add_ab_arguments(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    parser.add_argument("--code-dir", required=True, help="the model directory, served by both arms")
    parser.add_argument("--address", required=True, help="host:port the nginx front listens on")
    parser.add_argument("--fastapi-weight", type=float, default=10.0, metavar="PERCENT",
                        help="share of requests (or of clients, with --sticky) the fastapi arm answers; default 10")
    parser.add_argument("--sticky", action="store_true", help="split by client address: a client always meets the same arm")
    parser.add_argument("--mirror", action="store_true",
                        help="also send every request to the other arm and discard its answer (shadow traffic)")
    parser.add_argument("--nginx", metavar="PATH", help="the nginx binary; default: nginx on PATH, else /usr/sbin/nginx")
    parser.add_argument("--startup-timeout", type=float, default=120.0, help="seconds an arm may take to load the model")
    add_server_arguments(parser, environ, MODEL_OPTIONS)


def add_status_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("front", metavar="URL", help="the A/B front, e.g. http://127.0.0.1:8080 (read from this host)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
