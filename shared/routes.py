"""THE route table: every DRUM route once, with its endpoint name, methods and slash rule.

The Flask blueprint is generated from it, and the FastAPI side routes through `resolve`, which uses
werkzeug's Map (Flask's own router), so 308/404/405/HEAD/OPTIONS are decided the same way on both."""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule

from drum_compat.shared.http import NeutralRequest, NeutralResponse, response_from_http_exception


@dataclass(frozen=True)
class Route:
    rule: str
    endpoint: str  # Flask endpoint inside the `model_api` blueprint; custom_flask.py hooks match on it
    methods: tuple[str, ...] = ("GET",)
    strict_slashes: bool = True
    runs_model: bool = False  # calls model code: runs in the model executor, never on an event loop
    extension: bool = False  # added by custom_flask.py or custom_fastapi.py: its framework answers, the guards still apply
    forwards: bool = False  # may wait on an upstream (DRUM's proxy)
    constant: bool = False  # its handler says it is (shared.handlers.constant): the core sets it from there


POST = ("POST",)

PROBE_ROUTES: tuple[Route, ...] = (
    Route("/", "ping"),
    Route("/ping/", "ping", strict_slashes=False),
    Route("/health/", "health"),
    Route("/livez", "livez"),  # 503 while the worker is being replaced (runtime.supervisor)
    Route("/readyz", "readyz"),  # 503 while every model thread is wedged
    Route("/startupz", "startupz"),
)
INFO_ROUTES: tuple[Route, ...] = (
    Route("/info/", "info"),
    Route("/capabilities/", "capabilities"),
    Route("/stats/", "stats"),
    Route("/metrics", "metrics"),
)
MODEL_ROUTES: tuple[Route, ...] = (
    Route("/predict/", "predict", POST, runs_model=True),
    Route("/predictions/", "predict", POST, runs_model=True),
    Route("/invocations", "predict", POST, runs_model=True),
    Route("/transform/", "transform", POST, runs_model=True),
    Route("/predictionsStream/", "predict_stream", POST, runs_model=True),  # an addition to DRUM
    Route("/predictUnstructured/", "predict_unstructured", POST, runs_model=True),
    Route("/predictionsUnstructured/", "predict_unstructured", POST, runs_model=True),
)

# OpenAI-style routes of text-generation models, without trailing slash as DRUM defines them (the OpenAI client's paths)
LLM_ROUTES: tuple[Route, ...] = (
    Route("/chat/completions", "chat", POST, runs_model=True),
    Route("/v1/chat/completions", "chat", POST, runs_model=True),
    Route("/models", "models", runs_model=True),
    Route("/v1/models", "models", runs_model=True),
)
# DRUM's proxy to an OpenAI-compatible upstream; Python models have none, so DRUM (and this table) answer 400
PROXY_ROUTES: tuple[Route, ...] = (
    Route("/directAccess/<path:path>", "forward_request", ("GET", "POST", "PUT"), forwards=True),
    Route("/nim/<path:path>", "forward_request", ("GET", "POST", "PUT"), forwards=True),
)
# additions to DRUM: the OpenAPI document of this table and a page showing it (shared.openapi)
API_DOC_ROUTES: tuple[Route, ...] = (
    Route("/openapi.json", "openapi"),
    Route("/docs", "docs"),
    *(Route(f"/docs/{name}", "docs_asset") for name in ("swagger-ui.css", "swagger-ui-bundle.js")),
)

PREDICTION_ROUTES = PROBE_ROUTES + INFO_ROUTES + MODEL_ROUTES + LLM_ROUTES + PROXY_ROUTES + API_DOC_ROUTES
# DRUM's error server (contract 1.7): probes and model routes answer the load failure (no model
# code runs); the information routes do not exist there.
ERROR_SERVER_ROUTES = PROBE_ROUTES + tuple(replace(route, runs_model=False) for route in MODEL_ROUTES)


PLACEHOLDER = re.compile(r"<(?:[a-z]+:)?([a-z_]+)>")
EXAMPLE_SEGMENT = "v1/models"  # what a request corpus puts where a rule has a variable part


def example_path(rule: str) -> str:
    """A path the rule matches: each variable part filled with an example (for request corpora)."""
    return PLACEHOLDER.sub(EXAMPLE_SEGMENT, rule)


def openapi_path(rule: str) -> tuple[str, list[str]]:
    """The rule as an OpenAPI path template, and its parameters' names."""
    return PLACEHOLDER.sub(r"{\1}", rule), PLACEHOLDER.findall(rule)


def prefixed(rule: str, url_prefix: str) -> str:
    """The rule as Flask's blueprint registration writes it under `url_prefix`."""
    if not url_prefix:
        return rule
    return "/".join((url_prefix.rstrip("/"), rule.lstrip("/"))) if rule else url_prefix


def extension_route(rule: str, methods) -> Route:
    """A route custom_flask.py added, by its werkzeug rule."""
    return Route(rule, f"extension {rule}", tuple(sorted(methods)), extension=True)


def flask_methods(route: Route) -> set[str]:
    # Flask adds OPTIONS to every rule (automatic OPTIONS); werkzeug's Rule adds HEAD to GET rules.
    return set(route.methods) | {"OPTIONS"}


def build_url_map(routes: tuple[Route, ...], url_prefix: str = "") -> Map:
    return Map(
        [
            Rule(
                prefixed(route.rule, url_prefix),
                endpoint=route.endpoint,
                methods=flask_methods(route),
                strict_slashes=route.strict_slashes,
            )
            for route in routes
        ]
    )


@dataclass(frozen=True)
class RouteMatch:
    endpoint: str
    view_args: dict
    runs_model: bool
    rule: str  # the rule as matched, URL prefix included: the metrics' route label
    extension: bool = False
    forwards: bool = False
    constant: bool = False

    def own_copy(self) -> "RouteMatch":
        """This match with view_args of its own (dataclasses.replace costs ten times as much)."""
        return RouteMatch(self.endpoint, dict(self.view_args), self.runs_model, self.rule, self.extension, self.forwards,
                          self.constant)

    @property
    def waits_on_nothing(self) -> bool:
        """Answered by the core at once: no model thread, no upstream, no extension's framework."""
        return not (self.runs_model or self.extension or self.forwards)


def resolve(url_map: Map, routes_by_endpoint: dict[str, Route], request: NeutralRequest) -> RouteMatch | NeutralResponse:
    """Match like Flask does (bind to the request's host, scheme and root path)."""
    adapter = url_map.bind(
        request.host.lower(),
        script_name=request.root_path or None,
        subdomain="",
        url_scheme=request.scheme,
        path_info=request.path,
        query_args=request.query_string.decode("latin-1"),
    )
    try:
        rule, view_args = adapter.match(method=request.method, return_rule=True)
    except HTTPException as exc:  # RequestRedirect (308), NotFound, MethodNotAllowed
        return response_from_http_exception(exc)
    route = routes_by_endpoint[rule.endpoint]
    if request.method == "OPTIONS" and "OPTIONS" not in route.methods:
        response = NeutralResponse(200)
        allowed = adapter.allowed_methods()
        if allowed:  # Flask leaves an empty Allow set out (werkzeug finds none for non-strict /ping)
            response.headers.set("Allow", ", ".join(allowed))
        return response
    return RouteMatch(rule.endpoint, view_args, route.runs_model, rule.rule, route.extension, route.forwards,
                      route.constant)
