"""From ServerOptions to a neutral DrumApp inside a worker: logging, model config, model load
(or DRUM's error server). Both backends' entry points start here."""
from __future__ import annotations

import logging
import os
import sys
import threading
from dataclasses import replace
from functools import partial
from typing import Any, Callable, Mapping

from drum_compat.runtime.datarobot_api import ApiAccess, connect
from drum_compat.runtime.deployment_config import deployment_target
from drum_compat.runtime.instance import instance_dir
from drum_compat.runtime.monitoring import DeploymentSettings, MLOpsReporter, Monitoring, started_mlops
from drum_compat.runtime.telemetry import Telemetry, otel_wanted
from drum_compat.runtime.user_secrets import hide_from_outputs, read_secrets
from drum_compat.runtime.options import ServerOptions
from drum_compat.runtime.record import recorder_from
from drum_compat.runtime.settings import MIB, read_secret, setting_value
from drum_compat.shared.app import AppSettings, DrumApp
from drum_compat.shared.access_log import configure_access_log
from drum_compat.shared.guards.admission import AdmissionLimits
from drum_compat.shared.guards.front_door import FrontDoorSettings
from drum_compat.shared.guards.rate_limit import RateLimitPolicy, parse_networks
from drum_compat.shared.guards.security import CorsPolicy, parse_origins
from drum_compat.shared.guards.supervision import SupervisionLimits
from drum_compat.shared.metrics import MULTIPROCESS_DIR_ENV
from drum_compat.shared.model.config import ModelConfig, read_class_labels_file, resolve_model_config
from drum_compat.shared.proxy import without_credentials
from drum_compat.shared.request_id import RequestIdLogFilter
from drum_compat.shared.server_types import DEFAULT_SERVER_TYPE, SERVER_TYPES, ServerType, Stack

LOG_FORMAT = "%(asctime)-15s %(levelname)s %(name)s:  %(message)s %(context_data)s"  # DRUM's
logger = logging.getLogger("drum_compat")


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(RequestIdLogFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.NOTSET if level == "noset" else level.upper())
    configure_access_log()


def model_config(options: ServerOptions) -> ModelConfig:
    labels = options.class_labels
    if not labels and options.class_labels_file:
        labels = read_class_labels_file(options.class_labels_file)
    return resolve_model_config(
        options.code_dir,
        target_type=options.target_type,
        positive_class_label=options.positive_class_label,
        negative_class_label=options.negative_class_label,
        class_labels=labels,
        target_name=options.target_name,
    )


def app_settings(server_type: ServerType, core: Mapping[str, Any],
                 environ: Mapping[str, str] | None = None) -> AppSettings:
    """The core's settings from the resolved table (runtime.settings.core_settings); a missing key
    keeps the table's default. The Redis URL, a secret, is read here from the operator's variable."""
    environ = os.environ if environ is None else environ
    value = partial(setting_value, core)

    rate_limit = None
    if value("rate_limit_enabled"):
        rate_limit = RateLimitPolicy(value("rate_limit_rpm"), value("rate_limit_burst"),
                                     parse_networks(value("trusted_proxies")), value("rate_limit_fail_open"),
                                     value("rate_limit_proxy"))
    front_door = FrontDoorSettings(
        max_upload_size=value("max_upload_size"), rate_limit=rate_limit,
        redis_url=read_secret("rate_limit_redis_url", server_type.stack, environ) if rate_limit else None,
        spool_dir=instance_dir(environ), body_timeout=value("request_timeout"),
    )

    admission = AdmissionLimits(
        threads=value("executor_workers"),
        queue_depth=value("executor_queue_depth"),
        queue_timeout=value("executor_queue_timeout"),
        deadline=value("request_timeout"),
        queue_in_backlog=value("queue_in_backlog"),
    )
    supervision = SupervisionLimits(deadline=value("request_timeout"), grace=value("stuck_call_grace"),
                                    max_rss=value("max_worker_rss_mb") * MIB)
    return AppSettings(server_type=server_type, url_prefix=value("url_prefix"),
                       cors=CorsPolicy(parse_origins(value("cors_origins"))), admission=admission, supervision=supervision,
                       front_door=front_door, metrics_dir=environ.get(MULTIPROCESS_DIR_ENV) or None,
                       direct_access_url=checked_url(value("direct_access_url"), "DRUM_DIRECT_ACCESS_URL"),
                       stream_batch_rows=value("stream_batch_rows"))


def checked_url(url: str, name: str) -> str:
    if url and not url.startswith(("http://", "https://")):
        raise ValueError(f"{name}={without_credentials(url)!r} is not an http:// or https:// URL")
    return url


def server_type_of(options: ServerOptions, stack: Stack) -> ServerType:
    """The server type the options name, if it runs this stack; else the stack's default (an app built in-process)."""
    named = SERVER_TYPES.get(options.server_type)
    return named if named is not None and named.stack == stack else DEFAULT_SERVER_TYPE[stack]


def build_core(options: ServerOptions, stack: Stack, new_lock: Callable[[], Any] = threading.Lock) -> DrumApp:
    """`new_lock`: a lock the stack's request side and its model threads can both take."""
    configure_logging(options.logging_level)
    core_values = options.core_settings or {}
    settings = app_settings(server_type_of(options, stack), core_values)
    if options.deployment_config:
        settings = replace(settings, pps_target=deployment_target(options.deployment_config))
    settings = replace(settings, show_perf=options.show_perf)
    # before the model loads, as DRUM: what load_model logs and traces is exported too
    telemetry = Telemetry(options.workers) if otel_wanted(os.environ) else None
    try:
        if options.api_access:  # as DRUM: before the model loads, so that load_model can use it
            connect(ApiAccess(**options.api_access))
        core = DrumApp.load(model_config(options), settings, options.with_error_server, new_lock)
    except BaseException:
        if telemetry is not None:
            telemetry.close()  # what load_model logged and traced reaches the endpoint before the worker exits
        raise
    if telemetry is not None:
        core.on_close(telemetry.close)  # cleanups run last first: MLOps shuts down before the exporters
        if hasattr(core.handlers, "tracer"):
            core.handlers.tracer = telemetry.tracer
    task = getattr(getattr(core.handlers, "model", None), "task", None)
    if task is not None:  # as DRUM: a CustomTask gets its user secrets once loaded (none set: an empty mapping)
        try:
            task.secrets = read_secrets(options.user_secrets_mount_path, options.user_secrets_prefix, os.environ)
        except Exception as exc:
            raise ValueError(f"Failed to load custom task class. Exception: {exc!r}") from exc
        hide_from_outputs(task.secrets)
    if options.monitoring and hasattr(core.handlers, "reporter"):  # DRUM's error server reports nothing
        monitoring = Monitoring(**options.monitoring)
        deployment = DeploymentSettings(monitoring.deployment_id, monitoring.api_access)
        core.handlers.reporter = MLOpsReporter(started_mlops(monitoring), deployment)
        core.on_close(core.handlers.reporter.close)
    core.recorder = recorder_from(partial(setting_value, core_values))
    if core.recorder is not None:
        core.on_close(core.recorder.close)
    return core
