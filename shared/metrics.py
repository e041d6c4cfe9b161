"""Prometheus metrics with the same names and labels on both stacks, summed over a server's workers
through prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set by the launcher)."""
from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from drum_compat.shared import __version__
from drum_compat.shared.http import METHOD_ORDER, NeutralResponse, own_headers

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
# the `reason` label of drum_rejections_total: every guard's refusal
QUEUE_FULL, QUEUE_TIMEOUT, DEADLINE = "queue_full", "queue_timeout", "deadline"
RATE_LIMITED, BODY_TOO_LARGE, RATE_STORE_DOWN = "rate_limited", "body_too_large", "rate_limit_store_unavailable"
CLIENT_LEFT = "client_disconnected"  # the body ended before its Content-Length: never run
MALFORMED_BODY = "malformed_body"  # a chunked body the parser refused: never run
SLOW_BODY, SLOW_HEAD = "body_too_slow", "head_too_slow"  # a client that did not send its body (head) in time
CLOSED_FOR_ROOM = "closed_for_room"  # a connection waiting for a head, closed near the fd limit (shared.guards.room)
REJECTION_REASONS = (QUEUE_FULL, QUEUE_TIMEOUT, DEADLINE, RATE_LIMITED, BODY_TOO_LARGE, RATE_STORE_DOWN, CLIENT_LEFT,
                     MALFORMED_BODY, SLOW_BODY, SLOW_HEAD, CLOSED_FOR_ROOM)
UNMATCHED_ROUTE = "unmatched"  # 404/405/redirects: not one label per probing scanner's path
OTHER_METHOD = "other"  # any token is a method to gunicorn: not one label per scanner's invented one
# the `reason` label of drum_worker_replacements_total (shared.guards.supervision)
STUCK_CALL, MEMORY = "stuck_model_call", "memory"
REPLACEMENT_REASONS = (STUCK_CALL, MEMORY)


class Metrics:
    """This worker's metrics. Every series carries `server_type` (DRUM_SERVER_TYPE), so A/B
    dashboards split gunicorn from uvicorn answers."""

    def __init__(self, server_type: str, multiprocess_dir: str | None = None) -> None:
        self.server_type = server_type
        self.multiprocess_dir = multiprocess_dir
        # a private registry: nothing global, and two apps in one test process do not collide
        self.registry = CollectorRegistry(auto_describe=True)
        common = ["server_type"]
        self.requests = Counter("drum_requests", "HTTP requests answered, by route template, method and status.",
                                ["route", "method", "status", *common], registry=self.registry)
        self.latency = Histogram("drum_request_duration_seconds", "Time from arrival to the answer.",
                                 ["route", "method", *common], registry=self.registry)
        self.in_flight = Gauge("drum_requests_in_flight", "Requests being answered now.", common,
                               registry=self.registry, multiprocess_mode="livesum")
        self.queue_depth = Gauge("drum_model_queue_depth", "Model requests waiting for a model thread.", common,
                                 registry=self.registry, multiprocess_mode="livesum")
        self.threads_busy = Gauge("drum_model_threads_busy", "Model threads running model code (timed-out work included).",
                                  common, registry=self.registry, multiprocess_mode="livesum")
        self.rejections = Counter("drum_rejections", "Requests refused by a guard, by reason.", ["reason", *common],
                                  registry=self.registry)
        self.replacements = Counter("drum_worker_replacements", "Workers replaced by supervision, by reason "
                                    "(shared.guards.supervision).", ["reason", *common], registry=self.registry)
        self.model_time = Histogram("drum_model_duration_seconds", "Time model code ran per request.", common,
                                    registry=self.registry)
        info = Gauge("drum_server_info", "Which server answers: always 1.", ["version", *common],
                     registry=self.registry, multiprocess_mode="max")
        info.labels(__version__, server_type).set(1)
        for reason in REJECTION_REASONS:  # exported at 0 from the start, so rates and alerts see them
            self.rejections.labels(reason, server_type)
        for reason in REPLACEMENT_REASONS:
            self.replacements.labels(reason, server_type)
        # Each request updates several series; their labelled children are looked up once (labels() takes a lock
        # and builds a key every call) and gauges are written only when their value changes.
        self._in_flight = self.in_flight.labels(server_type)
        self._threads_busy = self.threads_busy.labels(server_type)
        self._queue_depth = self.queue_depth.labels(server_type)
        self._model_time = self.model_time.labels(server_type)
        self._answers: dict[tuple[str, str, int], tuple] = {}
        self._admission: tuple[int, int] | None = None
        self.admission_changed(0, 0)

    # -- what the guards and adapters report ---------------------------------------------------------------
    def answered(self, route: str, method: str, status: int, seconds: float) -> None:
        method = method if method in METHOD_ORDER else OTHER_METHOD
        key = (route, method, status)
        series = self._answers.get(key)
        if series is None:
            series = self._answers[key] = (self.requests.labels(route, method, str(status), self.server_type),
                                           self.latency.labels(route, method, self.server_type))
        series[0].inc()
        series[1].observe(seconds)

    def started(self) -> None:
        self._in_flight.inc()

    def finished(self) -> None:
        self._in_flight.dec()

    def rejected(self, reason: str) -> None:
        self.rejections.labels(reason, self.server_type).inc()

    def worker_replaced(self, reason: str) -> None:
        self.replacements.labels(reason, self.server_type).inc()

    def admission_changed(self, running: int, waiting: int) -> None:
        previous, self._admission = self._admission, (running, waiting)
        if previous is None or previous[0] != running:
            self._threads_busy.set(running)
        if previous is None or previous[1] != waiting:
            self._queue_depth.set(waiting)

    def model_ran(self, seconds: float) -> None:
        self._model_time.observe(seconds)

    # -- /metrics ------------------------------------------------------------------------------------------
    def exposition(self) -> NeutralResponse:
        if self.multiprocess_dir:  # every worker's files, live gauges of dead workers dropped
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=self.multiprocess_dir)
        else:
            registry = self.registry
        return NeutralResponse(200, generate_latest(registry), own_headers(("Content-Type", METRICS_CONTENT_TYPE)))

    def worker_stopped(self) -> None:
        """Drop this worker's live gauges (in-flight, queue) from the sums once it exits."""
        if self.multiprocess_dir:
            mark_process_dead(os.getpid(), self.multiprocess_dir)
