"""`drum-compat`: the command line. `drum-compat server` takes DRUM's options (or their
environment variables), checks everything it can before any model code runs, then starts the server."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import textwrap
from typing import Mapping, Sequence

from drum_compat.compat.ab.arguments import add_ab_arguments, add_status_arguments
from drum_compat.compat.checks import START_ERRORS, USAGE_ERROR, effective_settings, refused, start_checks
from drum_compat.compat.extras import MissingExtra, require_extra
from drum_compat.compat.parity.arguments import add_parity_arguments, add_replay_arguments
from drum_compat.runtime.bootstrap import configure_logging
from drum_compat.runtime.datarobot_api import api_access_of
from drum_compat.runtime.extensions import extension_refusal
from drum_compat.runtime.instance import InstanceError
from drum_compat.runtime.listener import ADDRESS_UNAVAILABLE, AddressUnavailable
from drum_compat.runtime.monitoring import DrumStartError, monitoring_of
from drum_compat.runtime.options import add_server_arguments
from drum_compat.runtime.refusals import add_drum_only_arguments, option_rows, unserved
from drum_compat.runtime.requirements import unmet_warning
from drum_compat.runtime.settings import SECRET_SHOWN_AS, SETTINGS, Resolved, resolve_server_type
from drum_compat.shared import __version__
from drum_compat.shared.proxy import without_credentials
from drum_compat.shared.server_types import SERVER_TYPES, Stack

logger = logging.getLogger("drum_compat.settings")


HELP_WIDTH = 100


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs as written (wrapped by `described`), and each option's default where it has one worth
    saying; never a default read from the environment (it may be a token): those options name their variable instead."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "%(default)" in text or "(env " in text or default is None or default is False or default in ([], "", argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)"


def described(text: str) -> dict:
    """A command's parser settings: its one-line `help` in the list of commands and its wrapped description."""
    return {"help": text.split(". ")[0].rstrip(".") + ".", "description": textwrap.fill(text, HELP_WIDTH),
            "formatter_class": HelpFormatter}


# read for `drum-compat server` beside its options and settings, as DRUM reads it
OTHER_VARIABLES = ("TARGET_NAME: the name of the answer's column for textgeneration, vectordatabase and agenticworkflow "
                   "models (their start stops without it, as DRUM's)")


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="drum-compat", description=__doc__)
    parser.add_argument("--version", action="version", version=f"drum-compat {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    server_types = "; ".join(f"{name}: {kind.description}" for name, kind in SERVER_TYPES.items())
    server = commands.add_parser(
        "server", epilog=f"also read:\n  {OTHER_VARIABLES}\n\n{settings_help()}",
        **described(f"Serve a model directory with DRUM's HTTP API. DRUM_SERVER_TYPE picks the stack ({server_types})."),
    )
    add_server_arguments(server, environ)
    add_drum_only_arguments(server, environ)
    config = commands.add_parser(
        "config", **described("Show the effective server settings, where each comes from, and every warning. Every "
                              "setting of the table and every drum server option, as this environment sets them.")
    )
    config.add_argument("--server-type", choices=list(SERVER_TYPES), help="default: DRUM_SERVER_TYPE, else gunicorn")
    config.add_argument("--json", action="store_true", help="machine-readable output")
    parity = commands.add_parser(
        "parity", **described(
            "Serve a model on gunicorn and on uvicorn and prove they answer alike. Starts the model directory on both "
            "(loopback, your settings), sends every route, method, error path and payload kind, requests no parser should "
            "take as they are, your data sliced several ways and your own cases to both, and compares status, headers "
            "and body bytes. Exit 1 on any difference, 2 when the model cannot start or an input file cannot be read."),
    )
    add_parity_arguments(parity, environ)
    replay = commands.add_parser("replay", **described(
        "Send requests recorded by DRUM_RECORD_REQUESTS to two servers and compare. The answers are compared as parity "
        "compares them; the report gives the differences and each side's latency percentiles. Exit 1 on any "
        "difference, 2 when a recording cannot be read or a server cannot be reached."))
    add_replay_arguments(replay)
    ab = commands.add_parser(
        "ab", **described(
            "Serve a model on both stacks behind an nginx front that splits (or mirrors) traffic by weight. Starts the "
            "model on gunicorn and on uvicorn (each on its own loopback port, metrics and instance directory) behind an "
            "nginx front on --address that sends --fastapi-weight percent of requests to the fastapi arm. Every answer "
            "says which arm gave it (X-Drum-Stack). Runs until SIGTERM or Ctrl-C."),
    )
    add_ab_arguments(ab, environ)
    status = commands.add_parser("ab-status", **described(
        "The two arms of an A/B front side by side, from their /metrics. Requests, error ratio, p50 and p99 latency and "
        "refusals of each arm, read from the front's /metrics of each (the front's URL, http:// assumed)."))
    add_status_arguments(status)
    doctor = commands.add_parser("doctor", epilog=f"also read:\n  {OTHER_VARIABLES}", **described(
        "Say what a model directory needs before it is served here. Makes the server's checks with the same options "
        "(any `drum-compat server` command line works with doctor in its place), reads the model's requirements.txt "
        "against this Python, names the target type and labels, the stacks and extensions that apply, and loads the "
        "model as a worker would. Exit 0 when it is ready to serve, 1 with each problem said."))
    add_server_arguments(doctor, environ)
    add_drum_only_arguments(doctor, environ)
    return parser


def settings_help() -> str:
    """The settings table as `server --help` shows it: read from env vars or runtime parameters."""
    lines = ["server settings (environment variable or MLOPS_RUNTIME_PARAM_<NAME>; see `drum-compat config`):"]
    for setting in SETTINGS:
        names = " / ".join(dict.fromkeys(setting.names[stack] for stack in Stack if stack in setting.names))
        default = "" if setting.default is None else f"; default {setting.default!r}"
        lines.append(f"  {names}: {setting.help} ({setting.accepted()}{default})")
    return "\n".join(lines)


def _shown(setting, value):
    if setting.secret and value is not None:
        return SECRET_SHOWN_AS
    return without_credentials(value) if isinstance(value, str) else value  # a URL's user and password never shown


def show_config(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    server_type = args.server_type or resolve_server_type(environ)
    resolution, _ = effective_settings(server_type, environ)
    if args.server_type:
        resolution.values["server_type"] = Resolved(args.server_type, "--server-type")
    rows = [
        {"setting": setting.names.get(resolution.stack), "value": _shown(setting, resolution.values[setting.key].value),
         "source": resolution.values[setting.key].source}
        for setting in SETTINGS
        if setting.names.get(resolution.stack)
    ]
    drum_args = build_parser(environ).parse_args(["server"])  # drum server's options as the environment sets them
    options = option_rows(drum_args, environ, SECRET_SHOWN_AS)
    warnings = [*resolution.warnings, *(f"the server would refuse to start: {line}" for line in unserved(drum_args, environ))]
    try:
        monitoring_of(drum_args, environ)
        api_access_of(drum_args)
    except DrumStartError as exc:
        warnings.append("the server would stop at start: " + " ".join(line.strip() for line in exc.lines if line.strip()))
    if args.json:
        print(json.dumps({"server_type": server_type, "settings": rows, "drum_options": options, "warnings": warnings},
                         indent=2))
        return 0
    print(f"DRUM_SERVER_TYPE={server_type} ({SERVER_TYPES[server_type].description})")
    width = max(len(row["setting"]) for row in rows)
    for row in rows:
        shown = "(not set)" if row["value"] is None else repr(row["value"])
        print(f"  {row['setting']:<{width}}  {shown:<18} {row['source']}")
    print("drum server options (from the environment; the command line wins):")
    width = max(len(row["option"]) for row in options)
    for row in options:
        shown = "(not set)" if row["value"] in (None, False) else repr(row["value"])
        print(f"  {row['option']:<{width}}  {shown:<18} {row['source']}{'  REFUSED' if row['refused'] else ''}")
    for message in warnings:
        print(f"warning: {message}")
    return 0


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    try:
        parser = build_parser(environ)
    except ValueError as exc:  # an env var that cannot fill its option
        print(f"drum-compat: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    args = parser.parse_args(argv)
    configure_logging("warning")
    try:
        require_extra(args.command)
    except MissingExtra as exc:
        print(f"drum-compat: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    try:
        if args.command == "config":
            return show_config(args, environ)
        if args.command == "parity":
            from drum_compat.compat.parity.runner import run

            return run(args, environ)
        if args.command == "replay":
            from drum_compat.compat.replay import run as replay

            return replay(args)
        if args.command == "ab":
            from drum_compat.compat.ab.runner import run as run_ab

            return run_ab(args, environ)
        if args.command == "doctor":
            from drum_compat.compat.doctor import run as diagnose

            return diagnose(args, environ)
        if args.command == "ab-status":
            from drum_compat.compat.ab.status import run as show_status

            return show_status(args)
        options, parameters = start_checks(args, environ)
        if refusal := extension_refusal(options.code_dir, SERVER_TYPES[options.server_type].stack):
            raise ValueError(refusal)
    except START_ERRORS as exc:
        lines, status, on_stdout = refused(exc)
        print("\n".join(lines), file=sys.stdout if on_stdout else sys.stderr)
        return status
    if warning := unmet_warning(options.code_dir):  # served anyway, as under DRUM, but never silently
        logger.warning(warning)
    os.environ.update(parameters)  # the server and its workers, model code included, read them as under DRUM
    from drum_compat.compat.launch import launch

    try:
        launch(options)
    except AddressUnavailable as exc:
        print(f"drum-compat: error: {exc}", file=sys.stderr)
        return ADDRESS_UNAVAILABLE
    except InstanceError as exc:
        print(f"drum-compat: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
