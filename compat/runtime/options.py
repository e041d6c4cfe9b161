"""DRUM's `drum server` options, declared once: flag, environment variable, kind and help.
The argparse parser, the env fallbacks and the options handed to each worker derive from it."""
from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict, dataclass
from typing import Mapping

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


# the options that connect the model to DataRobot, read where they act: MLOps monitoring (runtime.monitoring) and API
# access (runtime.datarobot_api)
DATAROBOT_OPTIONS: tuple[DrumOption, ...] = (
    DrumOption("--monitor", "MONITOR", "Report every prediction to DataRobot MLOps (datarobot-mlops), as DRUM does; "
               "needs --deployment-id, --model-id and --monitor-settings.", kind="flag"),
    DrumOption("--monitor-embedded", "MLOPS_REPORTING_FROM_UNSTRUCTURED_MODELS", "Hand an unstructured model's "
               "score_unstructured an MLOps object (`mlops=`) to report with, as DRUM does; needs --deployment-id, "
               "--model-id, --webserver and --api-token.", kind="flag"),
    DrumOption("--deployment-id", "DEPLOYMENT_ID", "MLOps deployment id (env also MLOPS_DEPLOYMENT_ID)."),
    DrumOption("--model-id", "MODEL_ID", "MLOps model id (env also MLOPS_MODEL_ID)."),
    DrumOption("--monitor-settings", "MONITOR_SETTINGS", "MLOps channel, e.g. 'spooler_type=filesystem;directory=/spool'."),
    DrumOption("--webserver", "EXTERNAL_WEB_SERVER_URL", "DataRobot's URL (--allow-dr-api-access; --monitor-embedded "
               "without --monitor-settings)."),
    DrumOption("--api-token", "API_TOKEN", "DataRobot API token (--allow-dr-api-access; --monitor-embedded without "
               "--monitor-settings).", secret=True),
    DrumOption("--allow-dr-api-access", "ALLOW_DR_API_ACCESS_FOR_ALL_CUSTOM_MODELS", "Give model code a DataRobot API "
               "client (the `datarobot` package's, as DRUM sets it up); needs --webserver and --api-token.", kind="flag"),
)


# the rest of DRUM's options, read where they act (user secrets: runtime.refusals), or that `drum server` accepts for
# other commands' sake: accepted, with DRUM's (lack of) effect
ACCEPTED_OPTIONS: tuple[DrumOption, ...] = (
    *DATAROBOT_OPTIONS,
    DrumOption("--user-secrets-mount-path", "USER_SECRETS_MOUNT_PATH", "A CustomTask's user secrets, a JSON file each, "
               "handed over as its `secrets` as DRUM does (no effect on hook models, as in DRUM)."),
    DrumOption("--user-secrets-prefix", "USER_SECRETS_PREFIX", "A CustomTask's user secrets, a JSON variable "
               "<prefix>_<KEY> each, handed over as its `secrets` as DRUM does (no effect on hook models)."),
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
    user_secrets_mount_path: str | None = None  # a CustomTask's secrets, as files (runtime.user_secrets)
    user_secrets_prefix: str | None = None  # a CustomTask's secrets, as variables named <prefix>_<KEY>
    monitoring: dict | None = None  # --monitor or --monitor-embedded: runtime.monitoring.Monitoring's fields
    api_access: dict | None = None  # --allow-dr-api-access: runtime.datarobot_api.ApiAccess's fields
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
MODEL_OPTIONS = (*(option for option in SERVER_OPTIONS if option.flag not in ("--code-dir", "--address")),
                 *DATAROBOT_OPTIONS)


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


def as_arguments(args: argparse.Namespace, options: tuple[DrumOption, ...]) -> list[str]:
    """The parsed options back as a command line (only those that differ from their defaults); a secret is left out,
    for its variable (secret_environment): a command line is visible to every user of the machine."""
    arguments: list[str] = []
    for option in options:
        value = getattr(args, option.dest)
        if value == option.default or value is None or value is False or option.secret:
            continue
        if option.kind == "flag":
            arguments.append(option.flag)
        elif option.kind == "list":
            arguments += [option.flag, *value]
        else:
            arguments += [option.flag, str(value)]
    return arguments


def secret_environment(args: argparse.Namespace, options: tuple[DrumOption, ...]) -> dict[str, str]:
    """The secret options as given, as the variables that set them (as_arguments leaves them out)."""
    return {option.env: getattr(args, option.dest) for option in options if option.secret and getattr(args, option.dest)}
