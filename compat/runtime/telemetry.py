"""OpenTelemetry as DRUM sets it up (its common.setup_otel): traces, logs and metrics over OTLP/HTTP wherever
OTEL_EXPORTER_OTLP_ENDPOINT is set, in each worker; and the tracer the core's handlers open DRUM's spans with."""
from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Any, Iterator, Mapping

from drum_compat.shared.runtime_parameters import RuntimeParameters
from drum_compat.shared.tracing import traced_stream

ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
SCOPE = "datarobot_drum.drum.root_predictors.prediction_server"  # DRUM's tracer's name: the spans' scope
logger = logging.getLogger("drum_compat")


def otel_disabled(environ: Mapping[str, str]) -> bool:
    """DRUM's own switch (the OTEL_SDK_DISABLED runtime parameter), or the SDK's (the variable), which turns DRUM's
    exporters into no-ops."""
    if RuntimeParameters.has("OTEL_SDK_DISABLED", environ) and RuntimeParameters.get("OTEL_SDK_DISABLED", environ):
        return True
    return environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def otel_wanted(environ: Mapping[str, str]) -> bool:
    return bool(environ.get(ENDPOINT)) and not otel_disabled(environ)


class ExcludeOtelLogs(logging.Filter):
    """The SDK's own logs stay out of the export (DRUM's): a failing exporter would log about itself forever."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith("opentelemetry")


class Telemetry:
    """One worker's providers, set up as DRUM's: processors that export at once where several workers run, in
    batches where one does; metrics with delta temporality. `close` flushes and shuts them down (a graceful stop)."""

    def __init__(self, workers: int) -> None:
        # imported here: a server without an endpoint never pays for them
        from opentelemetry import metrics, trace
        from opentelemetry._logs import set_logger_provider
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, SimpleLogRecordProcessor
        from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider, ObservableCounter
        from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        several = workers > 1
        resource = Resource.create()
        self.traces = TracerProvider(resource=resource)
        self.traces.add_span_processor((SimpleSpanProcessor if several else BatchSpanProcessor)(OTLPSpanExporter()))
        trace.set_tracer_provider(self.traces)
        self.logs = LoggerProvider(resource=resource)
        set_logger_provider(self.logs)
        self.logs.add_log_record_processor((SimpleLogRecordProcessor if several else BatchLogRecordProcessor)(OTLPLogExporter()))
        self.log_handler = LoggingHandler(level=logging.DEBUG, logger_provider=self.logs)
        self.log_handler.addFilter(ExcludeOtelLogs())
        logging.getLogger().addHandler(self.log_handler)  # after the console's, whose filter adds the request id
        delta = AggregationTemporality.DELTA
        exporter = OTLPMetricExporter(preferred_temporality={Counter: delta, Histogram: delta, ObservableCounter: delta})
        self.metrics = MeterProvider(metric_readers=[PeriodicExportingMetricReader(exporter)], resource=resource)
        metrics.set_meter_provider(self.metrics)
        self.tracer = OtelTracer(self.traces.get_tracer(SCOPE))

    def close(self) -> None:
        """DRUM's order: traces, metrics, logs; each flushed to the endpoint first."""
        logging.getLogger().removeHandler(self.log_handler)
        for provider in (self.traces, self.metrics, self.logs):
            provider.shutdown()


class OtelTracer:
    """The core's RequestTracer over an OpenTelemetry tracer, with DRUM's otel_context and iter_stream_with_span."""

    def __init__(self, tracer: Any) -> None:
        from opentelemetry import context, trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self._tracer, self._context, self._trace = tracer, context, trace
        self._propagator = TraceContextTextMapPropagator()

    @contextmanager
    def span(self, name: str, headers: Mapping[str, str]) -> Iterator[Any]:
        token = self._context.attach(self._propagator.extract(carrier=headers))
        try:
            with self._tracer.start_as_current_span(name) as span:
                yield span
        finally:
            self._context.detach(token)

    def current_span(self) -> Any:
        return self._trace.get_current_span()

    def fail(self, message: str) -> None:
        self._trace.get_current_span().set_status(self._trace.StatusCode.ERROR, message)

    def stream(self, parent: Any, chunks: Iterator[bytes]) -> Iterator[bytes]:
        # not made current: the chunks may be drawn from another thread than the one that opened it
        span = self._tracer.start_span("drum.chat.completions.stream", context=self._trace.set_span_in_context(parent))
        try:
            yield from traced_stream(chunks, span.set_attributes)
        except Exception as exc:
            span.record_exception(exc)
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            raise
        finally:
            span.end()
