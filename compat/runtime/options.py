"""DRUM's `drum server` options, declared once: flag, environment variable, kind and help.
The argparse parser, the env fallbacks and the options handed to each worker derive from it."""
from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict, dataclass
from typing import Callable, Mapping

from drum_compat.shared.runtime_parameters import RuntimeParameters

WORKER_OPTIONS_ENV = "DRUM_COMPAT_SERVER_OPTIONS"  # how the launcher hands options to workers
LOG_LEVELS = ("noset", "debug", "info", "warning", "error", "critical")
_TRUE = {"1", "true", "yes", "y", "t", "on"}
_FALSE = {"0", "false", "no", "n", "f", "off"}


def parse_bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"{name}={value!r} is not a boolean; use one of {sorted(_TRUE | _FALSE)}")


@dataclass(frozen=True)
class DrumOption:
    flag: str
    env: str | None
    help: str
    kind: str = "value"  # value | int | list | flag | choice | file (an existing file, made absolute, as DRUM checks it)
    choices: tuple[str, ...] = ()
    default: object = None
    aliases: tuple[str, ...] = ()  # DRUM's other spellings of the flag
    secret: bool = False  # never shown (drum-compat config)

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


SERVER_OPTIONS: tuple[DrumOption, ...] = (
    DrumOption("--code-dir", "CODE_DIR", "Model directory: custom.py hooks and/or one model artifact.", aliases=("-cd",)),
    DrumOption("--address", "ADDRESS", "host[:port] to listen on; the port defaults to 8080."),
    DrumOption("--target-type", "TARGET_TYPE", "Target type; may also come from model-metadata.yaml."),
    DrumOption("--positive-class-label", "POSITIVE_CLASS_LABEL", "Binary models: the positive class label."),
    DrumOption("--negative-class-label", "NEGATIVE_CLASS_LABEL", "Binary models: the negative class label."),
    DrumOption("--class-labels", "CLASS_LABELS", "Multiclass/multilabel labels (env: space separated).", kind="list"),
    DrumOption("--class-labels-file", "CLASS_LABELS_FILE", "File with one class label per line."),
    DrumOption("--logging-level", None, "Log level.", kind="choice", choices=LOG_LEVELS, default="warning"),
    DrumOption("--with-error-server", "WITH_ERROR_SERVER", "If the model fails to load, answer 513 with the cause instead of exiting.", kind="flag"),
    DrumOption("--max-workers", "MAX_WORKERS", "Server worker processes (default 1).", kind="int", default=0),
    DrumOption("--show-perf", None, "Time each prediction for /stats/'s time_info, as DRUM does.", kind="flag"),
    DrumOption("--deployment-config", "DEPLOYMENT_CONFIG", "JSON deployment config whose `target` section makes /predict/ "
               "and /predictions/ answer in DataRobot's PPS format, as DRUM does.", kind="file"),
    DrumOption("--runtime-params-file", "RUNTIME_PARAMS_FILE", "YAML values of the runtime parameters model-metadata.yaml "
               "defines (runtimeParameterDefinitions), as DRUM loads them.", kind="file"),
)


# DRUM's options that change nothing unless one drum-compat refuses is on (monitoring, DataRobot API access), or that
# `drum server` accepts for other commands' sake: accepted, with DRUM's (lack of) effect
ACCEPTED_OPTIONS: tuple[DrumOption, ...] = (
    DrumOption("--deployment-id", "DEPLOYMENT_ID", "MLOps deployment id (used only by --monitor)."),
    DrumOption("--model-id", "MODEL_ID", "MLOps model id (used only by --monitor)."),
    DrumOption("--monitor-settings", "MONITOR_SETTINGS", "MLOps agent settings (used only by --monitor)."),
    DrumOption("--webserver", "EXTERNAL_WEB_SERVER_URL", "DataRobot's URL (used only by --monitor, --allow-dr-api-access)."),
    DrumOption("--api-token", "API_TOKEN", "DataRobot API token (used only by --monitor, --allow-dr-api-access).", secret=True),
    DrumOption("--query", None, "Query params of `drum score`'s unstructured mode (no effect on a server, as in DRUM)."),
    DrumOption("--content-type", None, "Content type of `drum score`'s unstructured mode (no effect on a server, as in DRUM)."),
    DrumOption("--language", None, "The model's language; drum-compat serves Python models.", kind="choice",
               choices=("python", "r", "java", "other")),
    DrumOption("--verbose", None, "Print DRUM's mode header at start.", kind="flag"),
    DrumOption("--show-stacktrace", "SHOW_STACKTRACE", "Show a startup failure's stack trace (drum-compat always logs it).",
               kind="flag"),
    DrumOption("--production", "PRODUCTION", "[DEPRECATED in DRUM] Requires --max-workers, as in DRUM; no other effect.",
               kind="flag"),
)
SERVED_LANGUAGE = "python"


@dataclass(frozen=True)
class UnservedOption:
    """A `drum server` option drum-compat does not serve: the parser takes it so that it can be named, and the start is
    refused with why (exit 2), never dropped silently; `env`: the variables that set it, read as DRUM reads them."""
    flag: str
    why: str
    env: tuple[str, ...] = ()
    kind: str = "flag"  # flag | value
    # whether DRUM would act on it here; where it would not, it is accepted with DRUM's (lack of) effect
    acts: Callable[[argparse.Namespace, Mapping[str, str]], bool] = lambda args, environ: True


def deployment_id(args: argparse.Namespace, environ: Mapping[str, str]) -> str | None:
    """DRUM's: --deployment-id, else DEPLOYMENT_ID, else MLOPS_DEPLOYMENT_ID."""
    return args.deployment_id or environ.get("MLOPS_DEPLOYMENT_ID") or None


RUN_IT_INSIDE = "drum-compat starts no containers: run drum-compat inside the image instead"
NOT_YET = "drum-compat does not do this yet, and serving without it would lose what it does"
UNSERVED_OPTIONS: tuple[UnservedOption, ...] = (
    UnservedOption("--docker", f"runs the model in a Docker image; {RUN_IT_INSIDE}", kind="value"),
    UnservedOption("--memory", f"limits --docker's container; {RUN_IT_INSIDE}", kind="value"),
    UnservedOption("--skip-deps-install", f"concerns --docker's image build; {RUN_IT_INSIDE}"),
    UnservedOption("--gpu-predictor", "serves a GPU predictor (Triton, NIM, vLLM), which drum-compat does not run", kind="value"),
    *(UnservedOption(flag, "is for --gpu-predictor triton, which drum-compat does not run", kind="value")
      for flag in ("--triton-host", "--triton-http-port", "--triton-grpc-port")),
    UnservedOption("--sidecar", "runs DRUM as a sidecar of another model container, which drum-compat does not do"),
    # without a deployment id DRUM logs "Deployment id not set, monitoring will be disabled." and reports nothing
    UnservedOption("--monitor", f"reports every prediction to DataRobot MLOps; {NOT_YET}", ("MONITOR",),
                   acts=lambda args, environ: deployment_id(args, environ) is not None),
    UnservedOption("--monitor-embedded", f"lets an unstructured model report to DataRobot MLOps; {NOT_YET}",
                   ("MLOPS_REPORTING_FROM_UNSTRUCTURED_MODELS",)),
    UnservedOption("--allow-dr-api-access", f"gives model code a DataRobot API client; {NOT_YET}",
                   ("ALLOW_DR_API_ACCESS_FOR_ALL_CUSTOM_MODELS",)),
    UnservedOption("--user-secrets-mount-path", f"hands model code its user secrets; {NOT_YET}", ("USER_SECRETS_MOUNT_PATH",),
                   kind="value"),
    UnservedOption("--user-secrets-prefix", f"hands model code its user secrets; {NOT_YET}", ("USER_SECRETS_PREFIX",),
                   kind="value"),
    UnservedOption("--lazy-loading-file", "downloads model files from DataRobot's object storage at start, which drum-compat "
                   "does not reach", ("LAZY_LOADING_FILE",), kind="value"),
)
# set in the environment, DRUM exports traces, logs and metrics over OTLP (unless the OTEL_SDK_DISABLED runtime parameter)
OTLP_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"


@dataclass(frozen=True)
class ServerOptions:
    code_dir: str
    address: str
    target_type: str | None = None
    positive_class_label: str | None = None
    negative_class_label: str | None = None
    class_labels: list[str] | None = None
    class_labels_file: str | None = None
    logging_level: str = "warning"
    with_error_server: bool = False
    deployment_config: str | None = None  # its path: each worker reads it (runtime.deployment_config)
    show_perf: bool = False
    workers: int = 1  # effective: CUSTOM_MODEL_WORKERS, else --max-workers, else MAX_WORKERS, else 1
    target_name: str | None = None
    server_type: str = "gunicorn"
    server_settings: dict | None = None  # gunicorn or uvicorn settings, resolved from runtime.settings
    core_settings: dict | None = None  # what drum-compat applies in each worker (runtime.settings.core_settings)
    listen_fd: int | None = None  # the socket the launcher bound (runtime.listener), inherited by the server

    @property
    def host(self) -> str:
        return self.address.rpartition(":")[0] if ":" in self.address else self.address

    @property
    def port(self) -> int:
        return int(self.address.rpartition(":")[2]) if ":" in self.address else 8080

    def to_environ(self) -> dict[str, str]:
        return {WORKER_OPTIONS_ENV: json.dumps(asdict(self))}

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> "ServerOptions":
        env = os.environ if environ is None else environ
        if WORKER_OPTIONS_ENV not in env:
            raise RuntimeError(f"{WORKER_OPTIONS_ENV} is not set: start the server with `drum-compat server`.")
        return cls(**json.loads(env[WORKER_OPTIONS_ENV]))


def existing_file(path: str) -> str:
    if not os.path.exists(path):
        raise argparse.ArgumentTypeError(f"The file {path} does not exist!")  # DRUM's words
    return os.path.abspath(path)


def _env_default(option: DrumOption, environ: Mapping[str, str]):
    """DRUM's rule: an env var fills an option not given on the command line; empty means unset."""
    raw = environ.get(option.env, "") if option.env else ""
    if raw == "":
        return option.default
    if option.kind == "flag":
        return parse_bool(option.env, raw)
    if option.kind == "int":
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"{option.env}={raw!r} is not an integer") from None
    if option.kind == "list":
        return raw.split()
    return raw


# what describes the model and its serving, not where to listen: what `drum-compat parity` hands both servers
MODEL_OPTIONS = tuple(option for option in SERVER_OPTIONS if option.flag not in ("--code-dir", "--address"))


def add_server_arguments(parser: argparse.ArgumentParser, environ: Mapping[str, str],
                         options: tuple[DrumOption, ...] = SERVER_OPTIONS) -> None:
    for option in options:
        help_text = option.help + (f" (env {option.env})" if option.env else "")
        kwargs: dict = {"dest": option.dest, "default": _env_default(option, environ), "help": help_text}
        if option.kind == "flag":
            kwargs["action"] = "store_true"
        elif option.kind == "int":
            kwargs["type"] = int
        elif option.kind == "list":
            kwargs["nargs"] = "+"
        elif option.kind == "choice":
            kwargs["choices"] = option.choices
        elif option.kind == "file":
            kwargs["type"] = existing_file  # argparse checks an env var's default through it too
        parser.add_argument(option.flag, *option.aliases, **kwargs)


def add_drum_only_arguments(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    """The rest of `drum server`'s options: accepted with DRUM's effect, or taken so that the start can refuse them."""
    add_server_arguments(parser, environ, ACCEPTED_OPTIONS)
    for option in UNSERVED_OPTIONS:
        parser.add_argument(option.flag, dest=option.flag.lstrip("-").replace("-", "_"),
                            action="store_true" if option.kind == "flag" else "store",
                            help=f"Refused: DRUM's {option.flag} {option.why}.")


def otel_disabled(environ: Mapping[str, str]) -> bool:
    """DRUM's own switch (the OTEL_SDK_DISABLED runtime parameter), or the SDK's (the variable), which turns DRUM's
    exporters into no-ops."""
    if RuntimeParameters.has("OTEL_SDK_DISABLED", environ) and RuntimeParameters.get("OTEL_SDK_DISABLED", environ):
        return True
    return environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def refusals(args: argparse.Namespace, environ: Mapping[str, str]) -> dict[str, str]:
    """Why the start is refused: for each option (or variable) that asks for what drum-compat does not serve, one line."""
    found = {}
    for option in UNSERVED_OPTIONS:
        given = getattr(args, option.flag.lstrip("-").replace("-", "_"))
        set_by = [name for name in option.env if environ.get(name, "") != ""
                  and (option.kind == "value" or parse_bool(name, environ[name]))]
        if (given or set_by) and option.acts(args, environ):
            source = option.flag if given else f"{set_by[0]}={environ[set_by[0]]}"
            found[option.flag] = f"{source}: DRUM's {option.flag} {option.why}"
    if args.language not in (None, SERVED_LANGUAGE):
        found["--language"] = f"--language {args.language}: drum-compat serves Python models only"
    if environ.get(OTLP_ENDPOINT) and not otel_disabled(environ):
        found[OTLP_ENDPOINT] = (f"{OTLP_ENDPOINT}={environ[OTLP_ENDPOINT]}: DRUM exports traces, logs and metrics there "
                                f"(OpenTelemetry); {NOT_YET} (OTEL_SDK_DISABLED=true serves without them)")
    return found


def unserved(args: argparse.Namespace, environ: Mapping[str, str]) -> list[str]:
    return list(refusals(args, environ).values())


def option_rows(args: argparse.Namespace, environ: Mapping[str, str], hidden: str) -> list[dict]:
    """Each `drum server` option as the environment sets it, for `drum-compat config`: its value (a secret's shown as
    `hidden`), where it came from, and whether the start would refuse it."""
    refused = refusals(args, environ)
    rows = []
    for option in (*SERVER_OPTIONS, *ACCEPTED_OPTIONS, *UNSERVED_OPTIONS):
        names = (option.env,) if isinstance(option.env, str) else option.env or ()
        source = next((name for name in names if environ.get(name, "") != ""), None)
        value = getattr(args, option.flag.lstrip("-").replace("-", "_")) or (environ[source] if source else None)
        rows.append({"option": option.flag, "value": hidden if getattr(option, "secret", False) and value else value,
                     "source": source or "default", "refused": option.flag in refused})
    return rows


def as_arguments(args: argparse.Namespace, options: tuple[DrumOption, ...]) -> list[str]:
    """The parsed options back as a command line (only those that differ from their defaults)."""
    arguments: list[str] = []
    for option in options:
        value = getattr(args, option.dest)
        if value == option.default or value is None or value is False:
            continue
        if option.kind == "flag":
            arguments.append(option.flag)
        elif option.kind == "list":
            arguments += [option.flag, *value]
        else:
            arguments += [option.flag, str(value)]
    return arguments
