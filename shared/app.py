"""The neutral application: a route table, its handlers, its guards and the headers every response carries;
a backend serves each request with a shared.cycle.RequestCycle over it."""
from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, replace
from typing import Any, Callable

from werkzeug.datastructures import Headers
from werkzeug.routing import Rule

from drum_compat.shared import __version__
from drum_compat.shared.errors import error_response
from drum_compat.shared.guards.admission import AdmissionGate, AdmissionLimits
from drum_compat.shared.guards.front_door import FrontDoor, FrontDoorSettings
from drum_compat.shared.guards.retirement import Retirement
from drum_compat.shared.guards.security import CorsPolicy, harden
from drum_compat.shared.guards.supervision import SupervisionLimits
from drum_compat.shared.handlers import ErrorServerHandlers, PredictionHandlers, is_constant
from drum_compat.shared.http import NeutralRequest, NeutralResponse, canonical_allow, header_names, set_headers
from drum_compat.shared.metrics import Metrics
from drum_compat.shared.model.config import ModelConfig, read_model_metadata
from drum_compat.shared.model.python_model import PythonModel
from drum_compat.shared.openapi import ApiDocs, bundled_assets
from drum_compat.shared.record import Recorder
from drum_compat.shared.request_id import REQUEST_ID_HEADER, RequestIds
from drum_compat.shared.routes import (ERROR_SERVER_ROUTES, PREDICTION_ROUTES, Route, RouteMatch, build_url_map,
                                      flask_methods, prefixed, resolve)
from drum_compat.shared.server_types import ServerType
from drum_compat.shared.timings import PredictorTimings

logger = logging.getLogger("drum_compat")

DRUM_REQUEST_ID_HEADER = "X_Request_ID"  # DRUM's own spelling, underscores included
VERSION_HEADER = "X-Drum-Version"
REMEMBERED_MATCHES = 4096  # distinct (method, path) matches kept; paths with variable parts could be many


@dataclass(frozen=True)
class AppSettings:
    server_type: ServerType  # its stack is what /info/ reports as drumServer; its name labels the metrics
    url_prefix: str = ""
    cors: CorsPolicy = CorsPolicy()
    admission: AdmissionLimits = AdmissionLimits()
    supervision: SupervisionLimits = SupervisionLimits()  # when a worker is replaced (runtime.supervisor)
    front_door: FrontDoorSettings = FrontDoorSettings()
    metrics_dir: str | None = None  # prometheus_client's multiprocess directory; None: this process only
    direct_access_url: str = ""  # the OpenAI-compatible upstream of /directAccess/ and /nim/; empty: 400, as DRUM
    stream_batch_rows: int = 10_000  # rows per batch of /predictionsStream/
    pps_target: dict | None = None  # a deployment config's `target`: predictions answered in PPS format (shared.pps)
    show_perf: bool = False  # each prediction timed for /stats/ (shared.timings)


class DrumApp:
    def __init__(self, handlers, routes: tuple[Route, ...], settings: AppSettings, metrics: Metrics | None = None) -> None:
        self.handlers = handlers
        self.recorder: Recorder | None = None  # DRUM_RECORD_REQUESTS: set by the process that writes the file; None: off
        self.metrics = metrics or Metrics(settings.server_type.name, settings.metrics_dir)
        self.gate = getattr(handlers, "admission", None) or AdmissionGate(settings.admission, self.metrics)
        self.front_door = FrontDoor(settings.front_door, self.metrics)
        routes = tuple(replace(route, constant=is_constant(handlers, route.endpoint)) for route in routes)
        self.routes = routes
        self.settings = settings
        self.extension_routes: tuple[Route, ...] = ()
        self.url_map = build_url_map(routes, settings.url_prefix)
        self._routes_by_endpoint = {route.endpoint: route for route in routes}
        self._matches: dict[tuple[str, str, str], RouteMatch] = {}
        self.request_ids = RequestIds()
        self.retirement = Retirement()
        self._cleanups: list[Callable[[], None]] = [self.metrics.worker_stopped]
        self._closed = False

    @classmethod
    def for_model(cls, model: PythonModel, settings: AppSettings, new_lock: Callable[[], Any] = threading.Lock) -> "DrumApp":
        """`new_lock`: a lock the backend's request side and its model threads can both take."""
        metrics = Metrics(settings.server_type.name, settings.metrics_dir)
        gate = AdmissionGate(settings.admission, metrics, new_lock=new_lock)
        title = (read_model_metadata(model.config.code_dir) or {}).get("name") or "DRUM model"
        docs = ApiDocs(PREDICTION_ROUTES, settings.url_prefix, title, __version__, bundled_assets())
        handlers = PredictionHandlers(model, settings.server_type.stack, gate, metrics, docs, upstream=settings.direct_access_url,
                                      stream_batch_rows=settings.stream_batch_rows, pps_target=settings.pps_target,
                                      timings=PredictorTimings() if settings.show_perf else None)
        return cls(handlers, PREDICTION_ROUTES, settings, metrics)

    @classmethod
    def for_load_error(cls, load_error: BaseException | str, settings: AppSettings) -> "DrumApp":
        return cls(ErrorServerHandlers(str(load_error)), ERROR_SERVER_ROUTES, settings)

    @classmethod
    def load(cls, config: ModelConfig, settings: AppSettings, with_error_server: bool = False,
             new_lock: Callable[[], Any] = threading.Lock) -> "DrumApp":
        """Load the model; on failure serve DRUM's error server if asked to, else raise."""
        try:
            model = PythonModel.load(config)
        except Exception as exc:
            if not with_error_server:
                raise
            logger.exception("Model failed to load; serving the error server (513) instead")
            return cls.for_load_error(exc, settings)
        return cls.for_model(model, settings, new_lock)

    # -- worker lifetime ---------------------------------------------------------------------------
    def on_close(self, cleanup: Callable[[], None]) -> None:
        self._cleanups.append(cleanup)

    def close(self) -> None:
        """Worker cleanup, once, after the server stopped taking requests: the registered steps in
        reverse order (as DRUM's worker context); a failing step is logged and the rest still run."""
        if self._closed:
            return
        self._closed = True
        while self._cleanups:
            cleanup = self._cleanups.pop()
            try:
                cleanup()
            except Exception:
                logger.exception("Worker cleanup step %r failed", cleanup)
        logger.info("Worker %d finished: cleanup done", os.getpid())

    # -- the pieces ------------------------------------------------------------------------------
    def request_id_for(self, request: NeutralRequest) -> str:
        return self.request_ids.choose(request.headers.get(REQUEST_ID_HEADER))

    def add_extension_routes(self, routes) -> None:
        """Routes an extension added (their rules already prefixed as served): the core routes them too, so the rate
        limit, the metrics' route label and the access line treat them as its own; their framework answers them."""
        taken = {prefixed(route.rule, self.settings.url_prefix) for route in self.routes}
        added = tuple(route for route in routes if route.rule not in taken)
        self.extension_routes += added
        self.url_map = build_url_map(self.routes, self.settings.url_prefix)
        for route in self.extension_routes:
            self.url_map.add(Rule(route.rule, endpoint=route.endpoint, methods=flask_methods(route)))
        self._routes_by_endpoint.update({route.endpoint: route for route in added})
        self._matches.clear()

    def resolve(self, request: NeutralRequest) -> RouteMatch | NeutralResponse:
        """The route, as werkzeug's Map decides; a match depends only on the method and the path (no rule names a host),
        so matches are remembered (answers such as redirects, which name the host, are not). Each request gets its
        own view_args: Flask hooks may change theirs (a url_value_preprocessor pops values)."""
        matched = self._remembered_match(request)
        return matched.own_copy() if isinstance(matched, RouteMatch) else matched

    def _remembered_match(self, request: NeutralRequest) -> RouteMatch | NeutralResponse:
        """`resolve`'s answer, a match shared by every request to its path: read it, never hand it out."""
        key = (request.method, request.root_path, request.path)
        matched = self._matches.get(key)
        if matched is None:
            matched = resolve(self.url_map, self._routes_by_endpoint, request)
            if isinstance(matched, RouteMatch) and len(self._matches) < REMEMBERED_MATCHES:
                self._matches[key] = matched
        return matched

    def answers_at_once(self, request: NeutralRequest) -> bool:
        """Whether the whole answer needs nothing but the request itself: a routing answer (404, 405, a redirect,
        automatic OPTIONS), or a route that waits on nothing (probes, information) and takes no rate token."""
        matched = self._remembered_match(request)
        if not isinstance(matched, RouteMatch):
            return True
        return matched.waits_on_nothing and self.front_door.rate_limited_client(request, matched) is None

    def call(self, endpoint: str, request: NeutralRequest) -> NeutralResponse:
        """Run a handler; any exception becomes DRUM's error response (never escapes to a server)."""
        try:
            return getattr(self.handlers, endpoint)(request)
        except Exception as exc:
            return error_response(exc)

    @property
    def closes_connections(self) -> bool:
        """Whether every answer now ends its connection: none outlives its answer (DRUM_QUEUE_IN_BACKLOG,
        shared.guards.balance), or the worker it reached is retiring."""
        return self.settings.admission.queue_in_backlog or self.retirement.begun

    def stamp(self, headers: Headers, request_id: str, method: str, request_headers) -> None:
        """What every response carries, whichever code path produced it (views, routing errors,
        Flask's automatic OPTIONS): the request id, the version, a fixed Allow order, security headers
        and the CORS answer."""
        present = header_names(headers)
        stamps = [(DRUM_REQUEST_ID_HEADER, request_id), (REQUEST_ID_HEADER, request_id), (VERSION_HEADER, __version__)]
        if "allow" in present:
            stamps.append(("Allow", canonical_allow(headers["Allow"])))
        if self.closes_connections:
            stamps.append(("Connection", "close"))
        set_headers(headers, stamps, present)
        harden(headers, self.settings.cors, method, request_headers, present)
