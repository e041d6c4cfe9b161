"""DRUM's MLOps monitoring (--monitor, --monitor-embedded) through datarobot-mlops: the options' check at start, as
DRUM's, and each worker's reporter, which sends what the core reports from a thread of its own, after the answer."""
from __future__ import annotations

import argparse
import importlib
import logging
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping

import pandas as pd

from drum_compat.shared.monitoring import latest_prompt

logger = logging.getLogger("drum_compat")

PROMPT_COLUMN = "promptText"  # DRUM's default prompt column: the deployment's own is read from DataRobot's API
SETTINGS_REFRESH = 60.0  # seconds between two readings of a deployment's drift and data-collection settings (DRUM's)
PENDING_REPORTS = 10_000  # reports waiting for the thread; beyond, a report is dropped (counted, warned)
WARN_EVERY = 60.0  # seconds between two warnings of dropped or failed reports
CLOSE_TIMEOUT = 30.0  # seconds a graceful stop waits for the reports still queued


class DrumStartError(Exception):
    """The start is refused as DRUM refuses it (its options' checks): `lines` printed on standard output, status 1."""

    def __init__(self, *lines: str) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


@dataclass(frozen=True)
class Monitoring:
    """What a worker needs to report, from DRUM's monitoring options."""
    deployment_id: str
    model_id: str | None
    monitor_settings: str | None  # the MLOps channel ("spooler_type=filesystem;directory=..."); None: DataRobot's API
    webserver: str | None = None
    api_token: str | None = None
    api_access: bool = False  # --allow-dr-api-access: the deployment's settings are read from DataRobot's API

    def to_dict(self) -> dict:
        return asdict(self)


def monitoring_of(args: argparse.Namespace, environ: Mapping[str, str]) -> Monitoring | None:
    """DRUM's verify_monitoring_options, its words and status (DrumStartError), then what the workers report with;
    None when monitoring is off."""
    deployment_id = args.deployment_id or environ.get("MLOPS_DEPLOYMENT_ID") or None
    model_id = args.model_id or environ.get("MLOPS_MODEL_ID") or None
    if not (args.monitor or args.monitor_embedded):
        return None
    missing = [flag for flag, value in (("--model-id", model_id), ("--deployment-id", deployment_id)) if value is None]
    if args.monitor:
        if args.target_type == "unstructured":
            raise DrumStartError("Error: MLOps monitoring can not be used in unstructured mode.")
        if args.monitor_settings is None:
            missing.append("--monitor-settings")
    else:
        if args.target_type != "unstructured":
            raise DrumStartError("Error: MLOps embedded monitoring is supported for unstructured modes only.")
        missing += [flag for flag, value in (("--webserver", args.webserver), ("--api-token", args.api_token))
                    if value is None]
    if missing:
        raise DrumStartError("\n", "Error: MLOps Monitoring requires all monitoring options to be present.",
                              "Note: The following MLOps monitoring option(s) is/are missing:",
                              *(f"  {flag}" for flag in missing), "\n",
                              "These options can also be obtained via environment variables", "\n")
    try:  # here, not at the top: its import cost stays out of servers that do not monitor
        importlib.import_module("datarobot_mlops.mlops")
    except ImportError as exc:
        raise DrumStartError(f"MLOps module was not imported: Error importing MLOps python module(new path): {exc} "
                              "(install datarobot-mlops, as DRUM does)") from None
    return Monitoring(deployment_id, model_id, args.monitor_settings, args.webserver, args.api_token,
                      bool(args.allow_dr_api_access))


def started_mlops(monitoring: Monitoring) -> Any:
    """An initialised MLOps object, configured as DRUM's _init_mlops and _configure_mlops configure it."""
    from datarobot_mlops.mlops import MLOps

    mlops = MLOps()
    mlops.set_deployment_id(monitoring.deployment_id)
    if monitoring.model_id:
        mlops.set_model_id(monitoring.model_id)
    if monitoring.monitor_settings:
        mlops.set_channel_config(monitoring.monitor_settings)
    else:
        mlops.set_api_spooler(mlops_service_url=monitoring.webserver, mlops_api_token=monitoring.api_token)
        mlops.set_async_reporting()
    return mlops.init()


def report_predictions(mlops: Any, features: Callable[[], pd.DataFrame], predictions: pd.DataFrame,
                       milliseconds: float) -> None:
    """DRUM's BaseLanguagePredictor.monitor: the stats, then the rows with their predictions (one column: its values;
    more: a row of values each, with the class names)."""
    mlops.report_deployment_stats(num_predictions=len(predictions), execution_time_ms=milliseconds)
    class_names = None
    if len(predictions.columns) == 1:
        values = predictions[predictions.columns[0]].tolist()
    else:
        values = predictions.values.tolist()
        class_names = list(predictions.columns)
    mlops.report_predictions_data(features_df=features(), predictions=values, class_names=class_names)


class DeploymentSettings:
    """What DRUM reads of the deployment from DataRobot's API (--allow-dr-api-access) for a chat's report: the prompt
    column, and whether feature drift or data collection is on, read again each minute. Without the access, or where
    the reading fails (a warning, as DRUM's), DRUM's defaults: `promptText`, both on."""

    def __init__(self, deployment_id: str, api_access: bool) -> None:
        self.prompt_column = PROMPT_COLUMN
        self._drift = self._collection = True
        self._deployment = None
        self._read_at = time.monotonic()
        if api_access:
            try:
                import datarobot

                self._deployment = datarobot.Deployment.get(deployment_id)
                self._read()
            except Exception as exc:
                logger.warning(f"Failed to get deployment info: {exc}", exc_info=True)
        if self._deployment is not None:
            self.prompt_column = (self._deployment.model or {}).get("prompt", PROMPT_COLUMN)

    def _read(self) -> None:
        self._drift = self._deployment.get_drift_tracking_settings()["feature_drift"]["enabled"]
        self._collection = self._deployment.get_predictions_data_collection_settings()["enabled"]
        self._read_at = time.monotonic()

    def collects(self) -> bool:
        """Whether a chat's prompt and completion are reported (its stats always are)."""
        if self._deployment is not None and time.monotonic() - self._read_at > SETTINGS_REFRESH:
            self._read()
        return self._drift or self._collection


def report_chat(mlops: Any, settings: DeploymentSettings, params: Any, completion: str, association_id: str,
                milliseconds: float) -> None:
    """DRUM's _mlops_report_chat_prediction."""
    mlops.report_deployment_stats(num_predictions=1, execution_time_ms=milliseconds)
    if not settings.collects():
        return
    prompt = latest_prompt(params)
    if prompt is not None:
        mlops.report_predictions_data(pd.DataFrame([{settings.prompt_column: prompt}]), [completion],
                                      association_ids=[association_id])


class MLOpsReporter:
    """The core's PredictionReporter for one worker: each report is queued and sent by one thread, in order, so that
    the answer never waits for MLOps; `close` sends what is queued, then shuts MLOps down (its spooler flushed).
    The thread and its queue are the OS's even under gevent: native model threads report, the hub never waits."""

    def __init__(self, mlops: Any, settings: DeploymentSettings | None = None, capacity: int = PENDING_REPORTS) -> None:
        from gevent import monkey  # only where monitoring is on: the FastAPI stack never loads gevent otherwise

        self.mlops = mlops
        self.settings = settings or DeploymentSettings("", api_access=False)
        self.capacity = capacity
        self._queue = monkey.get_original("queue", "SimpleQueue")()
        self._sent = monkey.get_original("_thread", "allocate_lock")()
        self._sent.acquire()  # released by the thread once it has sent the last report
        self.dropped = self.failed = 0
        self._warned_at: dict[str, float] = {}  # by kind of warning: a drop never hides a failure
        monkey.get_original("_thread", "start_new_thread")(self._send, ())

    def predictions(self, features: Callable[[], pd.DataFrame], predictions: pd.DataFrame, milliseconds: float) -> None:
        self._put(lambda: report_predictions(self.mlops, features, predictions, milliseconds))

    def chat(self, params: Any, completion: str, association_id: str, milliseconds: float) -> None:
        self._put(lambda: report_chat(self.mlops, self.settings, params, completion, association_id, milliseconds))

    def failed_chat(self, milliseconds: float) -> None:
        self._put(lambda: self.mlops.report_deployment_stats(num_predictions=0, execution_time_ms=milliseconds))

    def _put(self, report: Callable[[], None]) -> None:
        if self._queue.qsize() >= self.capacity:  # memory stays bounded when MLOps is slower than the traffic
            self.dropped += 1
            self._warn("dropped", f"MLOps reporting falls behind: {self.dropped} report(s) dropped so far, {self.capacity} waiting")
            return
        self._queue.put(report)

    def _warn(self, kind: str, message: str) -> None:
        now = time.monotonic()
        if now - self._warned_at.get(kind, -WARN_EVERY) >= WARN_EVERY:
            self._warned_at[kind] = now
            logger.warning("%s (warned once a minute at most)", message)

    def _send(self) -> None:
        while (report := self._queue.get()) is not None:
            try:
                report()
            except Exception as exc:  # a report that fails never stops the next ones, nor any answer
                self.failed += 1
                self._warn("failed", f"MLOps reporting failed ({type(exc).__name__}: {exc}); {self.failed} report(s) failed so far")
        self._sent.release()

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        self._queue.put(None)
        if not self._sent.acquire(timeout=timeout):
            logger.warning("MLOps: the reports still queued %g s into the stop were not sent", timeout)
        self.mlops.shutdown()
