"""An OTLP/HTTP receiver for tests: a real socket on 127.0.0.1 that takes what an exporter sends to /v1/traces,
/v1/logs and /v1/metrics, decodes it with opentelemetry-proto, and keeps it as plain dicts to compare."""
from __future__ import annotations

import gzip
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

MESSAGES = {"/v1/traces": ExportTraceServiceRequest, "/v1/logs": ExportLogsServiceRequest,
            "/v1/metrics": ExportMetricsServiceRequest}


def plain(value: dict) -> object:
    """An OTLP AnyValue as Python: {"stringValue": "x"} is "x"."""
    (kind, inner), = value.items() if value else (("", None),)
    if kind == "kvlistValue":
        return {item["key"]: plain(item.get("value", {})) for item in inner.get("values", [])}
    if kind == "arrayValue":
        return [plain(item) for item in inner.get("values", [])]
    if kind == "intValue":
        return int(inner)
    return inner


def attributes(items: list) -> dict:
    return {item["key"]: plain(item.get("value", {})) for item in items or []}


class OtlpReceiver:
    """A context manager: `.endpoint` is what OTEL_EXPORTER_OTLP_ENDPOINT names."""

    def __init__(self) -> None:
        self.received: dict[str, list[dict]] = {path: [] for path in MESSAGES}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                message = MESSAGES.get(self.path)
                if message is None:
                    self.send_response(404)
                else:
                    with receiver.lock:
                        receiver.received[self.path].append(MessageToDict(message.FromString(body)))
                    self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "OtlpReceiver":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def spans(self) -> list[dict]:
        """Every span received: its name, kind, ids, attributes, status, events and its resource's attributes."""
        found = []
        with self.lock:
            for request in self.received["/v1/traces"]:
                for resource_spans in request.get("resourceSpans", []):
                    resource = attributes(resource_spans.get("resource", {}).get("attributes"))
                    for scope_spans in resource_spans.get("scopeSpans", []):
                        for span in scope_spans.get("spans", []):
                            found.append({
                                "name": span["name"], "kind": span.get("kind"), "trace_id": span.get("traceId"),
                                "span_id": span.get("spanId"), "parent_span_id": span.get("parentSpanId"),
                                "attributes": attributes(span.get("attributes")), "status": span.get("status", {}),
                                "events": [{"name": event["name"], "attributes": attributes(event.get("attributes"))}
                                           for event in span.get("events", [])],
                                "scope": scope_spans.get("scope", {}).get("name"), "resource": resource})
        return found

    def logs(self) -> list[dict]:
        found = []
        with self.lock:
            for request in self.received["/v1/logs"]:
                for resource_logs in request.get("resourceLogs", []):
                    for scope_logs in resource_logs.get("scopeLogs", []):
                        for record in scope_logs.get("logRecords", []):
                            found.append({"body": plain(record.get("body", {})), "severity": record.get("severityText"),
                                          "trace_id": record.get("traceId"), "span_id": record.get("spanId"),
                                          "attributes": attributes(record.get("attributes")),
                                          "scope": scope_logs.get("scope", {}).get("name")})
        return found

    def metrics(self) -> list[dict]:
        found = []
        with self.lock:
            for request in self.received["/v1/metrics"]:
                for resource_metrics in request.get("resourceMetrics", []):
                    for scope_metrics in resource_metrics.get("scopeMetrics", []):
                        found += scope_metrics.get("metrics", [])
        return found
