"""What `drum-compat server` checks before any model code runs, apart from its command line so that `doctor` makes the
same checks: its options from flags, variables and settings, and each refusal in DRUM's words and status."""
from __future__ import annotations

import argparse
import logging
import os
from typing import Mapping

from drum_compat.runtime.bootstrap import model_config
from drum_compat.runtime.datarobot_api import api_access_of
from drum_compat.runtime.deployment_config import DeploymentConfigError, deployment_target
from drum_compat.runtime.extensions import FASTAPI_EXTENSION_FILE
from drum_compat.runtime.monitoring import DrumStartError, monitoring_of
from drum_compat.runtime.options import ServerOptions
from drum_compat.runtime.params_file import RuntimeParametersFileError, runtime_parameter_values
from drum_compat.runtime.record import unusable_reason
from drum_compat.runtime.refusals import unserved
from drum_compat.runtime.settings import SettingError, resolve_server_type, resolve_settings, server_kwargs, core_settings
from drum_compat.runtime.tls import CERTFILE, TlsConfigError, check_tls
from drum_compat.shared.model.config import ModelConfigError
from drum_compat.shared.model.python_model import find_code_file
from drum_compat.shared.runtime_parameters import RuntimeParameters
from drum_compat.shared.server_types import SERVER_TYPES, Server

USAGE_ERROR = 2
PRODUCTION_NEEDS_WORKERS = "Production mode requires a non-zero number of workers [--max-workers > 0]."
SERVER_MODE_HEADER = "Detected REST server mode - this is an advanced option"  # what DRUM's --verbose prints
logger = logging.getLogger("drum_compat.settings")


def effective_settings(server_type: str, environ: Mapping[str, str]):
    resolution = resolve_settings(SERVER_TYPES[server_type].stack, environ)
    return resolution, server_kwargs(resolution, SERVER_TYPES[server_type].server)


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


class Refusal(Exception):
    """Why the server would not start, in DRUM's words and status where DRUM has them."""

    def __init__(self, lines: list[str], status: int, on_stdout: bool = False):
        super().__init__("\n".join(lines))
        self.lines, self.status, self.on_stdout = lines, status, on_stdout


# what a start refuses with: DRUM's status 1 for the files it reads, usage (2) for the rest
START_ERRORS = (Refusal, RuntimeParametersFileError, DeploymentConfigError, DrumStartError, ValueError, ModelConfigError,
                SettingError, TlsConfigError)


def refused(exc: Exception) -> tuple[list[str], int, bool]:
    """One of START_ERRORS as the server says it: its lines, its exit status, and whether on standard output."""
    if isinstance(exc, Refusal):
        return exc.lines, exc.status, exc.on_stdout
    if isinstance(exc, DrumStartError):  # DRUM prints these on standard output
        return list(exc.lines), 1, True
    status = 1 if isinstance(exc, (RuntimeParametersFileError, DeploymentConfigError)) else USAGE_ERROR
    return [f"drum-compat: error: {exc}"], status, False


def start_checks(args: argparse.Namespace, environ: Mapping[str, str]) -> tuple[ServerOptions, dict[str, str]]:
    """The checks `server` makes before any model code runs but for the stack's extension (`doctor` makes them too,
    and tells which stacks serve the directory): its options, and the values of its runtime parameters file; raises one
    of START_ERRORS."""
    if args.production and args.max_workers == 0 and not RuntimeParameters.has("CUSTOM_MODEL_WORKERS", environ):
        raise Refusal([PRODUCTION_NEEDS_WORKERS], 1, on_stdout=True)  # DRUM's check, words and status
    refusals = unserved(args, environ)
    if refusals:
        raise Refusal([f"drum-compat: error: {line}" for line in refusals], USAGE_ERROR)
    if args.verbose:
        print(SERVER_MODE_HEADER)
    parameters = runtime_parameter_values(args.runtime_params_file, args.code_dir) if args.runtime_params_file and args.code_dir else {}
    # as under DRUM, whose server type and gunicorn settings are read once the file is loaded
    options = server_options(args, {**environ, **parameters})
    model_config(options)  # reads model-metadata.yaml only: the model itself loads in the workers
    if options.deployment_config:
        deployment_target(options.deployment_config)  # DRUM finds a bad one in each worker, rebooted forever
    return options, parameters
