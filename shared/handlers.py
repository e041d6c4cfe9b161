"""Route handlers: one method per endpoint of the route table, NeutralRequest in, NeutralResponse out.
`PredictionHandlers` serve a loaded model; `ErrorServerHandlers` answer 513 when loading failed."""
from __future__ import annotations

import logging
import time
from functools import partial

from werkzeug.datastructures import Headers

from drum_compat.shared import __version__
from drum_compat.shared.guards.admission import AdmissionGate
from drum_compat.shared.metrics import Metrics
from drum_compat.shared.errors import MODEL_LOAD_FAILED_STATUS, unprocessable
from drum_compat.shared.http import (JSON_MIMETYPE, NeutralRequest, NeutralResponse, flask_json_dumps, json_response,
                                     own_headers)
from drum_compat.shared import proxy
from drum_compat.shared.model import chat
from drum_compat.shared.monitoring import PredictionReporter, elapsed_ms, reported_stream
from drum_compat.shared.tracing import RequestTracer, chat_request_attributes, chat_response_attributes, traced
from drum_compat.shared.model.config import read_model_metadata
from drum_compat.shared.openapi import ApiDocs
from drum_compat.shared.model.python_model import Predictions, PythonModel
from drum_compat.shared.model.target_types import TargetType
from drum_compat.shared.pps import pps_json
from drum_compat.shared.payloads import (
    CSV_MIMETYPES,
    FORM_MIMETYPES,
    csv_batches,
    fetch_input,
    fetch_sparse_colnames,
    content_type_parts,
    is_supported_mimetype,
    multipart_form,
    parse_body,
    predictions_json,
    read_structured_input,
    transform_response_parts,
    unsupported_payload_message,
)
from drum_compat.shared.resources import ResourceMonitor
from drum_compat.shared.runtime_parameters import RuntimeParameters
from drum_compat.shared.server_types import Stack
from drum_compat.shared.steps import Steps
from drum_compat.shared.timings import UNMEASURED, PredictorTimings, timed

logger = logging.getLogger("drum_compat")
OK_BODY = flask_json_dumps({"message": "OK"})  # the health checks' answer, encoded once
LLM_ID = "LLM_ID"  # the runtime parameter naming a text-generation model's LLM, for GET /models
MODELS_ONLY_TEXTGEN = "get_supported_llm_models is supported only for TextGen models"
NOT_AN_OPENAI_PREDICTOR = "This endpoint is only supported by OpenAI based predictors"  # DRUM's text, no ERROR: prefix
PAYLOAD_FORMATS = {"csv": None, "mtx": None}
CHAT_NOT_IMPLEMENTED = "This model's chat interface was called, but chat() is not implemented."
CHAT_NOT_SUPPORTED = "This model's chat interface was called, but chat is not supported."
CHAT_TARGETS = (TargetType.TEXT_GENERATION, TargetType.AGENTIC_WORKFLOW)  # where a missing hook is "not implemented"
NOT_READY_WEDGED = ("ERROR: every model thread is held by a request that passed DRUM_CLIENT_REQUEST_TIMEOUT; "
                    "this worker is recycled once that work ends")
UNSTRUCTURED_TARGETS = (TargetType.UNSTRUCTURED, TargetType.TEXT_GENERATION)
NDJSON_MIMETYPE = "application/x-ndjson"


def ok() -> NeutralResponse:
    return NeutralResponse(200, OK_BODY, own_headers(("Content-Type", JSON_MIMETYPE)))


def prepended(first: bytes, rest):
    """`first`, then the rest; closing this closes the rest (its generator's cleanup runs)."""
    try:
        yield first
        yield from rest
    finally:
        rest.close()


def _is_text_mimetype(mimetype: str) -> bool:
    return mimetype.startswith("text/") or mimetype == JSON_MIMETYPE


def constant(handler):
    """A handler whose answer depends on nothing: not the request, not the model's or the guards' state, so that an
    answer it gave may be given again (fastapi_backend.at_once replays it). tests/test_cycle.py holds it to that."""
    handler.constant = True
    return handler


def is_constant(handlers, endpoint: str) -> bool:
    return getattr(getattr(handlers, endpoint, None), "constant", False)


class PredictionHandlers:
    def __init__(self, model: PythonModel, stack: Stack, admission: AdmissionGate, metrics: Metrics, docs: ApiDocs,
                 monitor: ResourceMonitor | None = None, upstream: str = "", stream_batch_rows: int = 10_000,
                 pps_target: dict | None = None, timings: PredictorTimings | None = None) -> None:
        self.api_docs = docs
        # runtime parameters: read once, at load
        self.llm_id = RuntimeParameters.get(LLM_ID) if RuntimeParameters.has(LLM_ID) else None
        timeout = proxy.TIMEOUT_PARAMETER
        self.upstream_timeout = int(RuntimeParameters.get(timeout)) if RuntimeParameters.has(timeout) else proxy.DEFAULT_TIMEOUT
        self.upstream = upstream  # DRUM_DIRECT_ACCESS_URL; empty: none
        self.stream_batch_rows = stream_batch_rows  # DRUM_STREAM_BATCH_ROWS
        self.pps_target = pps_target  # --deployment-config's `target`; None: DRUM's own answer format
        self.timings = timings  # --show-perf; None: /stats/'s time_info stays null, as DRUM's
        # set by the worker that serves them (runtime.bootstrap); None: off
        self.reporter: PredictionReporter | None = None  # --monitor: MLOps reporting (shared.monitoring)
        self.tracer: RequestTracer | None = None  # OTEL_EXPORTER_OTLP_ENDPOINT: DRUM's spans (shared.tracing)
        self.model = model
        self.stack = stack
        self.admission = admission
        self.telemetry = metrics
        self.monitor = monitor or ResourceMonitor()

    @property
    def target_type(self) -> TargetType:
        return self.model.config.target_type

    # -- health and information ----------------------------------------------------------------------
    @constant
    def ping(self, request: NeutralRequest) -> NeutralResponse:
        return ok()

    health = startupz = ping

    def livez(self, request: NeutralRequest) -> NeutralResponse:
        if self.admission.retiring is not None:
            return json_response({"message": f"ERROR: this worker is being replaced: {self.admission.retiring}"}, 503,
                                 [("Connection", "close")])  # its client had better reconnect to another worker
        return ok()

    def readyz(self, request: NeutralRequest) -> NeutralResponse:
        if self.admission.wedged:
            return json_response({"message": NOT_READY_WEDGED}, 503)
        return ok()

    def info(self, request: NeutralRequest) -> NeutralResponse:
        config = self.model.config
        info = {
            "targetType": config.target_type.value,
            "codeDir": config.code_dir,
            "language": "python",
            "drumVersion": __version__,
            "drumServer": str(self.stack),
            "modelMetadata": read_model_metadata(config.code_dir),
            "predictor": self.model.predictor_name,
        }
        if config.target_type == TargetType.BINARY:
            info["positiveClassLabel"] = config.positive_class_label
            info["negativeClassLabel"] = config.negative_class_label
        elif config.target_type == TargetType.MULTICLASS:
            info["classLabels"] = list(config.class_labels)
        return json_response(info)

    def capabilities(self, request: NeutralRequest) -> NeutralResponse:
        return json_response({"supported_methods": {"chat": self.model.supports_chat},
                              "supported_payload_formats": PAYLOAD_FORMATS})

    def stats(self, request: NeutralRequest) -> NeutralResponse:
        time_info = self.timings.report() if self.timings else UNMEASURED
        return json_response({**self.monitor.collect(), "time_info": time_info, "admission": self.admission.snapshot()})

    def metrics(self, request: NeutralRequest) -> NeutralResponse:
        return self.telemetry.exposition()

    def models(self, request: NeutralRequest) -> NeutralResponse:
        if self.target_type != TargetType.TEXT_GENERATION:
            logger.warning(MODELS_ONLY_TEXTGEN)
            return json_response({"message": f"ERROR: {MODELS_ONLY_TEXTGEN}"}, 404)
        return json_response(self.model.supported_llm_models(self.llm_id))

    @timed
    @traced("drum.chat.completions")
    def chat(self, request: NeutralRequest) -> NeutralResponse:
        """DRUM's do_chat: a ChatCompletion as JSON, anything else as a stream of server-sent events, made
        chunk by chunk in the model thread (shared.guards.streaming)."""
        params = chat.request_json(request)
        attributes = chat_request_attributes(params)  # DRUM's reads of the body come first: one it cannot read fails here
        span = self.tracer.current_span() if self.tracer is not None else None
        if span is not None:
            span.set_attributes(attributes)
        if not self.model.supports_chat:
            message = CHAT_NOT_IMPLEMENTED if self.target_type in CHAT_TARGETS else CHAT_NOT_SUPPORTED
            logger.error(message)
            return json_response({"message": f"ERROR: {message}"}, 404)
        tag = chat.association_id(params)
        started = time.time()
        try:
            result = self.model.chat(params, request.headers)
            streamed = chat.is_streaming_response(result)
            first, rest = chat.checked_chunks(result) if streamed else ([], None)
        except Exception:
            if self.reporter is not None:
                self.reporter.failed_chat(elapsed_ms(started))
            raise
        if not streamed:
            if self.reporter is not None:
                self.reporter.chat(params, result.choices[0].message.content, tag, elapsed_ms(started))
            setattr(result, chat.ASSOCIATION_ID_KEY, tag)
            answer = result.to_dict()
            if span is not None:
                span.set_attributes(chat_response_attributes(answer))
            return json_response(answer)
        if self.reporter is not None:
            first, rest = [], reported_stream(first, rest, self.reporter, params, tag, started)
        events = chat.event_stream(first, rest, tag)
        return NeutralResponse(200, headers=own_headers(("Content-Type", chat.EVENT_STREAM_MIMETYPE)),
                               chunks=self.tracer.stream(span, events) if span is not None else events)

    @traced("drum.directAccess")
    def forward_request(self, request: NeutralRequest) -> NeutralResponse | Steps[NeutralResponse]:
        # DRUM forwards only for OpenAI-based (GPU, NIM) predictors, which a Python model is not, unless the
        # operator names the upstream beside it (DRUM_DIRECT_ACCESS_URL)
        if not self.upstream:
            if self.tracer is not None:
                self.tracer.fail(NOT_AN_OPENAI_PREDICTOR)
            return json_response({"message": NOT_AN_OPENAI_PREDICTOR}, 400)
        return proxy.forward(request, self.upstream, request.view_args["path"], self.upstream_timeout)

    def openapi(self, request: NeutralRequest) -> NeutralResponse:
        return self.api_docs.openapi()

    def docs(self, request: NeutralRequest) -> NeutralResponse:
        return self.api_docs.page()

    def docs_asset(self, request: NeutralRequest) -> NeutralResponse:
        return self.api_docs.asset(request.path.rsplit("/", 1)[1])

    # -- model routes --------------------------------------------------------------------------------
    def _unsupported(self, mimetype: str | None) -> NeutralResponse | None:
        if is_supported_mimetype(mimetype) or self.model.has_read_input_data_hook:
            return None
        return unprocessable(unsupported_payload_message(mimetype))

    def _not_for_predictions(self) -> NeutralResponse | None:
        if self.target_type == TargetType.TRANSFORM:
            return unprocessable("This model has target type 'transform', use the /transform/ endpoint.")
        if self.target_type == TargetType.UNSTRUCTURED:
            return unprocessable(
                "This model has target type 'unstructured', use the /predictUnstructured/ or /predictionsUnstructured/ endpoint."
            )
        return None

    @timed
    @traced("drum.invocations")
    def predict(self, request: NeutralRequest) -> NeutralResponse:
        refused = self._not_for_predictions()
        if refused is not None:
            return refused
        body = parse_body(request)
        try:
            features = fetch_input(request, body, "X")
            colnames = fetch_sparse_colnames(body)
        except ValueError as exc:
            return unprocessable(str(exc))
        rejected = self._unsupported(features.mimetype)
        if rejected is not None:
            return rejected
        started = time.time()
        result = self.model.predict(features.binary_data, features.mimetype, features.charset, colnames)
        if self.reporter is not None:  # DRUM reads the rows again for MLOps: done off the request path
            self.reporter.predictions(partial(read_structured_input, features.binary_data, features.mimetype),
                                      result.monitored, elapsed_ms(started))
        return NeutralResponse(200, self._answer(result), own_headers(("Content-Type", JSON_MIMETYPE)))

    def _answer(self, result: Predictions) -> bytes:
        if self.pps_target is not None:
            return pps_json(result.predictions, result.extra_model_output, self.pps_target, self.target_type)
        return predictions_json(result.predictions, result.extra_model_output)

    def predict_stream(self, request: NeutralRequest) -> NeutralResponse:
        """/predictionsStream/ (an addition to DRUM): a raw CSV scored DRUM_STREAM_BATCH_ROWS rows at a time, each batch
        answered as it is scored, as one line holding what /predict/ answers for those rows (NDJSON). A body the model
        cannot take in batches (a form, MTX, a read_input_data hook) is scored whole: /predict/'s answer, as one line."""
        refused = self._not_for_predictions()
        if refused is not None:
            return refused
        mimetype, charset = content_type_parts(request.content_type)
        file, size = request.body_file()
        if not size or request.mimetype in FORM_MIMETYPES or mimetype not in CSV_MIMETYPES or self.model.has_read_input_data_hook:
            whole = self.predict(request)
            if whole.status == 200:
                whole.body += b"\n"
                whole.headers.set("Content-Type", NDJSON_MIMETYPE)
            return whole
        lines = (self._answer(batch) + b"\n"
                 for batch in (self._predict_batch(frame, mimetype, charset)
                               for frame in csv_batches(file, self.stream_batch_rows)))
        first = next(lines)  # now, in the handler: a CSV or a model that fails at once gets its error status
        return NeutralResponse(200, headers=own_headers(("Content-Type", NDJSON_MIMETYPE)), chunks=prepended(first, lines))

    def _predict_batch(self, frame, mimetype: str | None, charset: str | None) -> Predictions:
        """One batch of /predictionsStream/, monitored as a request of its own: its rows are kept as they were read."""
        started = time.time()
        features = frame.copy() if self.reporter is not None else None
        result = self.model.predict_frame(frame, None, mimetype, charset)
        if self.reporter is not None:
            self.reporter.predictions(lambda: features, result.monitored, elapsed_ms(started))
        return result

    @timed
    @traced("drum.transform")
    def transform(self, request: NeutralRequest) -> NeutralResponse:
        if self.target_type != TargetType.TRANSFORM:
            endpoint = "/predictUnstructured/" if self.target_type == TargetType.UNSTRUCTURED else "/predict/"
            return unprocessable(f"This model has target type {self.target_type}, use the {endpoint} endpoint.")
        body = parse_body(request)
        try:
            features = fetch_input(request, body, "X")
            colnames = fetch_sparse_colnames(body)
            target = fetch_input(request, body, "y") if "y" in body.files else None
            if target is not None and not target.binary_data:
                target = None  # DRUM reads a target only when it has bytes (`if target_binary_data:`)
        except ValueError as exc:
            return unprocessable(str(exc))
        for part in (features, target):
            rejected = self._unsupported(part.mimetype) if part is not None else None
            if rejected is not None:
                return rejected
        output, output_target = self.model.transform(
            (features.binary_data, features.mimetype, colnames),
            (target.binary_data, target.mimetype) if target is not None else None,
        )
        payload, content_type = multipart_form(transform_response_parts(output, output_target))
        return NeutralResponse(200, payload, own_headers(("Content-Type", content_type)))

    @timed
    @traced("drum.predictUnstructured")
    def predict_unstructured(self, request: NeutralRequest) -> NeutralResponse:
        if self.target_type not in UNSTRUCTURED_TARGETS:
            return unprocessable(
                f"This model has target type {self.target_type}, use either /predict/ or /predictions/ endpoint."
            )
        mimetype, charset = content_type_parts(request.content_type)
        mimetype = mimetype or "text/plain"
        data: str | bytes = request.body
        if _is_text_mimetype(mimetype):
            charset = charset or "utf-8"
            data = request.body.decode(charset)
        kwargs = {"mimetype": mimetype}
        if charset is not None:
            kwargs["charset"] = charset
        kwargs.update(query=request.args, headers=dict(request.headers))
        if self.reporter is not None:
            kwargs["mlops"] = self.reporter.mlops  # DRUM hands its MLOps object to the hook (--monitor-embedded)
        body, options = self.model.predict_unstructured(data, **kwargs)
        options = options or {}
        if isinstance(body, (str, type(None))):
            out_mimetype = options.get("mimetype", "text/plain")
            out_charset = options.get("charset", "utf-8")
            body = body.encode(out_charset) if body is not None else b""
        else:
            out_mimetype = options.get("mimetype", "application/octet-stream")
            out_charset = options.get("charset")
        headers = Headers()
        if out_mimetype is not None:
            headers.set("Content-Type", out_mimetype + (f"; charset={out_charset}" if out_charset is not None else ""))
        return NeutralResponse(200, body, headers)


class ErrorServerHandlers:
    """DRUM's error server: every route answers 513 with the load failure, so it can be read remotely."""

    def __init__(self, load_error: str) -> None:
        self.load_error = load_error

    def _failed(self, request: NeutralRequest) -> NeutralResponse:
        return json_response({"message": f"ERROR: {self.load_error}"}, MODEL_LOAD_FAILED_STATUS)

    ping = health = readyz = startupz = predict = predict_stream = transform = predict_unstructured = _failed

    def livez(self, request: NeutralRequest) -> NeutralResponse:
        # the process is alive and reporting its failure; restarting it would not help
        return ok()
