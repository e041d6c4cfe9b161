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
from drum_compat.runtime.bootstrap import configure_logging, model_config
from drum_compat.runtime.extensions import FASTAPI_EXTENSION_FILE, extension_refusal
from drum_compat.runtime.instance import InstanceError
from drum_compat.runtime.listener import ADDRESS_UNAVAILABLE, AddressUnavailable
from drum_compat.runtime.deployment_config import DeploymentConfigError, deployment_target
from drum_compat.runtime.options import ServerOptions, add_server_arguments
from drum_compat.runtime.datarobot_api import api_access_of
from drum_compat.runtime.monitoring import DrumStartError, monitoring_of
from drum_compat.runtime.refusals import add_drum_only_arguments, option_rows, unserved
from drum_compat.runtime.params_file import RuntimeParametersFileError, runtime_parameter_values
from drum_compat.compat.parity.arguments import add_parity_arguments, add_replay_arguments
from drum_compat.runtime.record import unusable_reason
from drum_compat.runtime.settings import SECRET_SHOWN_AS, SETTINGS, Resolved, SettingError, core_settings, resolve_server_type, resolve_settings, server_kwargs
from drum_compat.runtime.tls import CERTFILE, TlsConfigError, check_tls
from drum_compat.shared import __version__
from drum_compat.shared.model.config import ModelConfigError
from drum_compat.shared.model.python_model import find_code_file
from drum_compat.shared.proxy import without_credentials
from drum_compat.shared.runtime_parameters import RuntimeParameters
from drum_compat.shared.server_types import SERVER_TYPES, Server, Stack

USAGE_ERROR = 2
PRODUCTION_NEEDS_WORKERS = "Production mode requires a non-zero number of workers [--max-workers > 0]."
SERVER_MODE_HEADER = "Detected REST server mode - this is an advanced option"  # what DRUM's --verbose prints
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
    return parser


def settings_help() -> str:
    """The settings table as `server --help` shows it: read from env vars or runtime parameters."""
    lines = ["server settings (environment variable or MLOPS_RUNTIME_PARAM_<NAME>; see `drum-compat config`):"]
    for setting in SETTINGS:
        names = " / ".join(dict.fromkeys(setting.names[stack] for stack in Stack if stack in setting.names))
        default = "" if setting.default is None else f"; default {setting.default!r}"
        lines.append(f"  {names}: {setting.help} ({setting.accepted()}{default})")
    return "\n".join(lines)


def effective_settings(server_type: str, environ: Mapping[str, str]):
    resolution = resolve_settings(SERVER_TYPES[server_type].stack, environ)
    return resolution, server_kwargs(resolution, SERVER_TYPES[server_type].server)


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


def server_options(args: argparse.Namespace, environ: Mapping[str, str]) -> ServerOptions:
    server_type = resolve_server_type(environ)
    resolution, settings = effective_settings(server_type, environ)
    for message in resolution.warnings:
        logger.warning(message)
    if check_tls(resolution, environ) and SERVER_TYPES[server_type].server == Server.WERKZEUG:
        raise ValueError(f"{CERTFILE} is set, but DRUM_SERVER_TYPE={server_type} (Flask's debugging server) "
                         "serves plain HTTP only; use gunicorn or fastapi for TLS.")
    workers = resolution.value("workers")
    if resolution.values["workers"].source == "default" and args.max_workers > 0:
        workers = args.max_workers  # DRUM: the CUSTOM_MODEL_WORKERS parameter beats --max-workers
    if "workers" in settings:
        settings["workers"] = workers
    record = resolution.value("record_requests")
    if record and (reason := unusable_reason(record)):
        raise ValueError(f"DRUM_RECORD_REQUESTS={record!r} cannot be recorded to: {reason}")
    if not args.code_dir:
        raise ValueError("--code-dir (or env CODE_DIR) is required")
    if SERVER_TYPES[server_type].server == Server.UVICORN and not find_code_file(args.code_dir, FASTAPI_EXTENSION_FILE):
        # gunicorn ignores a WebSocket upgrade and answers the request; so does uvicorn then (DRUM's routes never
        # upgrade), unless the model's custom_fastapi.py may serve WebSockets
        settings["ws"] = "none"
    if not args.address:
        raise ValueError("--address host[:port] (or env ADDRESS) is required")
    port = args.address.rpartition(":")[2] if ":" in args.address else "8080"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--address {args.address!r}: the port must be a number from 1 to 65535")
    return ServerOptions(
        code_dir=os.path.abspath(args.code_dir),
        address=args.address,
        target_type=args.target_type,
        positive_class_label=args.positive_class_label,
        negative_class_label=args.negative_class_label,
        class_labels=args.class_labels,
        class_labels_file=args.class_labels_file,
        logging_level=args.logging_level,
        with_error_server=args.with_error_server,
        deployment_config=args.deployment_config,
        show_perf=args.show_perf,
        user_secrets_mount_path=args.user_secrets_mount_path,
        user_secrets_prefix=args.user_secrets_prefix,
        monitoring=monitoring.to_dict() if (monitoring := monitoring_of(args, environ)) else None,
        api_access=access.to_dict() if (access := api_access_of(args)) else None,
        workers=workers,
        target_name=environ.get("TARGET_NAME") or None,
        server_type=server_type,
        server_settings=settings,
        core_settings=core_settings(resolution),
    )


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
        if args.command == "ab-status":
            from drum_compat.compat.ab.status import run as show_status

            return show_status(args)
        if args.production and args.max_workers == 0 and not RuntimeParameters.has("CUSTOM_MODEL_WORKERS", environ):
            print(PRODUCTION_NEEDS_WORKERS)  # DRUM's check, words and status
            return 1
        refusals = unserved(args, environ)
        if refusals:
            for line in refusals:
                print(f"drum-compat: error: {line}", file=sys.stderr)
            return USAGE_ERROR
        if args.verbose:
            print(SERVER_MODE_HEADER)
        parameters = runtime_parameter_values(args.runtime_params_file, args.code_dir) if args.runtime_params_file and args.code_dir else {}
        # as under DRUM, whose server type and gunicorn settings are read once the file is loaded
        options = server_options(args, {**environ, **parameters})
        model_config(options)  # reads model-metadata.yaml only: the model itself loads in the workers
        if options.deployment_config:
            deployment_target(options.deployment_config)  # DRUM finds a bad one in each worker, rebooted forever
        refusal = extension_refusal(options.code_dir, SERVER_TYPES[options.server_type].stack)
        if refusal:
            raise ValueError(refusal)
    except (RuntimeParametersFileError, DeploymentConfigError) as exc:  # DRUM's message and status 1
        print(f"drum-compat: error: {exc}", file=sys.stderr)
        return 1
    except DrumStartError as exc:  # DRUM prints these on standard output
        print("\n".join(exc.lines))
        return 1
    except (ValueError, ModelConfigError, SettingError, TlsConfigError) as exc:
        print(f"drum-compat: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
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
