"""The OpenAPI 3.1 document of the route table (every route, its payload kinds, its error answers) and the /docs
page that shows it with the Swagger UI files bundled in the swagger_ui_bundle package (no network needed)."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from drum_compat.shared.http import NeutralResponse
from drum_compat.shared.routes import Route, openapi_path, prefixed

JSON = "application/json"
DOC_ASSETS = {"swagger-ui.css": "text/css; charset=utf-8", "swagger-ui-bundle.js": "text/javascript; charset=utf-8"}
ERROR = {"type": "object", "properties": {"message": {"type": "string", "examples": ["ERROR: ..."]}}, "required": ["message"]}
BINARY = {"type": "string", "contentMediaType": "application/octet-stream"}
STRUCTURED_BODY = {
    "text/csv": {"schema": {"type": "string"}, "example": "x,y\n1,2\n"},
    "text/mtx": {"schema": {"type": "string", "description": "a Matrix Market (sparse) matrix"}},
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "X": {**BINARY, "description": "the rows: a CSV or a .mtx file"},
        "X.colnames": {**BINARY, "description": "with a .mtx X: the column names, one per line"},
    }, "required": ["X"]}},
}
TRANSFORM_BODY = {**STRUCTURED_BODY, "multipart/form-data": {"schema": {"type": "object", "properties": {
    **STRUCTURED_BODY["multipart/form-data"]["schema"]["properties"], "y": {**BINARY, "description": "the target, a CSV"}},
    "required": ["X"]}}}
MODEL_ERRORS = {
    "400": "the request cannot be read (malformed CSV or form, a body cut short)",
    "413": "the body is over DRUM_MAX_UPLOAD_SIZE", "422": "the model refused the input (CustomHTTPError or a check)",
    "429": "over the client's rate limit", "500": "the model raised", "503": "no model thread free in time",
    "504": "past DRUM_CLIENT_REQUEST_TIMEOUT",
}


@dataclass(frozen=True)
class Operation:
    summary: str
    answer: dict  # the 200 answer's content
    body: dict | None = None  # request body content by media type
    errors: tuple[str, ...] = ()  # error statuses, described by MODEL_ERRORS unless `why` says otherwise
    why: dict = field(default_factory=dict)


def json_answer(schema: dict) -> dict:
    return {JSON: {"schema": schema}}


OK_SCHEMA = {"type": "object", "properties": {"message": {"const": "OK"}}}
PREDICTIONS = {"type": "object", "properties": {"predictions": {"type": "array", "items": {}}}, "required": ["predictions"]}
ANY_OBJECT = {"type": "object"}
OPERATIONS: dict[str, Operation] = {
    "ping": Operation("Liveness (DRUM's /ping)", json_answer(OK_SCHEMA)),
    "health": Operation("Health: 200 once the model is loaded", json_answer(OK_SCHEMA)),
    "livez": Operation("Kubernetes liveness: 200 while the process runs", json_answer(OK_SCHEMA)),
    "readyz": Operation("Kubernetes readiness: 200 once loaded, 503 when every model thread is stuck", json_answer(OK_SCHEMA),
                        errors=("503",), why={"503": "every model thread is held past its deadline"}),
    "startupz": Operation("Kubernetes startup: 200 once the model is loaded", json_answer(OK_SCHEMA)),
    "info": Operation("The model: target type, labels, code dir, server", json_answer(ANY_OBJECT)),
    "capabilities": Operation("What the model supports", json_answer(ANY_OBJECT)),
    "stats": Operation("Memory, timings and admission figures of this worker", json_answer(ANY_OBJECT)),
    "metrics": Operation("Prometheus metrics", {"text/plain": {"schema": {"type": "string"}}}),
    "predict": Operation("Structured predictions", json_answer(PREDICTIONS), STRUCTURED_BODY, tuple(MODEL_ERRORS)),
    "predict_stream": Operation("Predictions of a large CSV, streamed: one line of /predict/'s answer per batch of "
                                "DRUM_STREAM_BATCH_ROWS rows (an addition to DRUM)", {"application/x-ndjson": {"schema": {
                                    "type": "string"}}}, STRUCTURED_BODY, tuple(MODEL_ERRORS)),
    "transform": Operation("Transform the rows (transform models)", {JSON: {"schema": ANY_OBJECT}, "multipart/form-data": {
        "schema": ANY_OBJECT}}, TRANSFORM_BODY, tuple(MODEL_ERRORS)),
    "predict_unstructured": Operation("Unstructured: the body reaches score_unstructured as sent", {"*/*": {"schema": BINARY}},
                                      {"*/*": {"schema": BINARY}}, tuple(MODEL_ERRORS)),
    "chat": Operation("OpenAI-style chat completion: a ChatCompletion, or server-sent chunks ending `data: [DONE]`",
                      {JSON: {"schema": ANY_OBJECT}, "text/event-stream": {"schema": {"type": "string"}}},
                      json_answer(ANY_OBJECT), ("400", "404", "500", "503", "504"),
                      why={"400": "the body is not JSON", "404": "the model has no chat hook",
                           "500": "a Content-Type other than application/json, or the chat hook raised"}),
    "models": Operation("The LLMs a text-generation model offers (OpenAI's models.list); 404 for other target types",
                        json_answer({"type": "object", "properties": {"object": {"const": "list"}, "data": {"type": "array"}}}),
                        errors=("404",), why={"404": "not a text-generation model"}),
    "forward_request": Operation("DRUM's proxy to an OpenAI-compatible upstream: 400, Python models have none",
                                 json_answer(ANY_OBJECT), errors=("400",), why={"400": "no OpenAI-based predictor"}),
    "openapi": Operation("This document", json_answer(ANY_OBJECT)),
    "docs": Operation("This document, as a page", {"text/html": {"schema": {"type": "string"}}}),
}


def operation_id(route: Route, method: str) -> str:
    """Unique per path and method: the endpoint, the rule's words, and the method when the route has several."""
    words = "_".join(re.findall(r"[A-Za-z0-9]+", route.rule)) or "root"
    return f"{route.endpoint}_{words}" + (f"_{method.lower()}" if len(route.methods) > 1 else "")


def openapi_document(routes: tuple[Route, ...], url_prefix: str, title: str, version: str) -> dict:
    paths: dict[str, dict] = {}
    for route in routes:
        operation = OPERATIONS.get(route.endpoint)
        if operation is None:  # the page's own files
            continue
        for method in route.methods:
            responses = {"200": {"description": "OK", "content": operation.answer}}
            for status in operation.errors:
                responses[status] = {"description": operation.why.get(status) or MODEL_ERRORS[status], "content": json_answer(ERROR)}
            entry = {"operationId": operation_id(route, method), "summary": operation.summary, "responses": responses}
            if operation.body is not None:
                entry["requestBody"] = {"required": True, "content": operation.body}
            template, names = openapi_path(prefixed(route.rule, url_prefix))
            if names:
                entry["parameters"] = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                                       for name in names]
            paths.setdefault(template, {})[method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version,
                 "description": "DataRobot DRUM's prediction API, served by drum-compat (the same on every server type)."},
        "paths": paths,
        "components": {"schemas": {"Error": ERROR}},
    }


PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>{title}</title><link rel="stylesheet" href="docs/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="docs/swagger-ui-bundle.js"></script>
<script>window.ui = SwaggerUIBundle({{url: "openapi.json", dom_id: "#swagger-ui"}});</script>
</body>
</html>
"""


class ApiDocs:
    """The document (built once, sorted and compact: the same bytes on every stack), the page and its two files."""

    def __init__(self, routes: tuple[Route, ...], url_prefix: str, title: str, version: str, assets: Path) -> None:
        self.document = openapi_document(routes, url_prefix, title, version)
        self.title = title
        self.assets = assets

    @cached_property
    def document_bytes(self) -> bytes:
        return json.dumps(self.document, sort_keys=True, separators=(",", ":")).encode() + b"\n"

    def openapi(self) -> NeutralResponse:
        response = NeutralResponse(200, self.document_bytes)
        response.headers.set("Content-Type", JSON)
        return response

    def page(self) -> NeutralResponse:
        response = NeutralResponse(200, PAGE.format(title=self.title).encode())
        response.headers.set("Content-Type", "text/html; charset=utf-8")
        return response

    def asset(self, name: str) -> NeutralResponse:
        response = NeutralResponse(200, self._loaded[name])
        response.headers.set("Content-Type", DOC_ASSETS[name])
        response.headers.set("Cache-Control", "public, max-age=86400")
        return response

    @cached_property
    def _loaded(self) -> dict[str, bytes]:
        """Read on the first request for one (1.4 MB, kept for the worker's life)."""
        return {name: (self.assets / name).read_bytes() for name in DOC_ASSETS}


def bundled_assets() -> Path:
    from swagger_ui_bundle import swagger_ui_path

    return Path(swagger_ui_path)
