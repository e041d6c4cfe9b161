"""Build the Flask app around a neutral DrumApp: Flask dispatches (so custom_flask.py hooks see DRUM's endpoint
names) to views that only run the request's core cycle, routed once by the core, and answers leave byte for byte."""
from __future__ import annotations

import logging
from functools import partial

from flask import Blueprint, Flask, Response, request
from flask.ctx import RequestContext
from werkzeug.routing import Rule

from drum_compat.runtime.rate_store import blocking_store
from drum_compat.flask_backend.cycle import CycleMiddleware, StreamedBody
from drum_compat.flask_backend.steps import BlockingSteps
from drum_compat.shared.app import DrumApp
from drum_compat.shared.cycle import CYCLE_KEY
from drum_compat.shared.errors import error_response
from drum_compat.shared.http import NeutralResponse
from drum_compat.shared.steps import run_steps

BLUEPRINT_NAME = "model_api"
logger = logging.getLogger("drum_compat")
CORE_EXTENSION = "drum_compat"  # app.extensions key holding the DrumApp (gunicorn's worker_exit closes it)


def flask_response(response: NeutralResponse, body=None) -> Response:
    """`body`: what to send instead of `response.body` (a streamed answer's chunks)."""
    return Response(response.body if body is None else body, status=response.status,
                    headers=list(response.headers.items()))


class CoreRoutedContext(RequestContext):
    """A request the core already routed to one of DRUM's rules gets that rule without a second match; Flask
    matches only what the core left (extension routes, routing errors, automatic OPTIONS)."""

    def match_request(self) -> None:
        cycle = self.request.environ.get(CYCLE_KEY)
        rule = self.app.core_rules.get(cycle.route.rule) if cycle is not None and cycle.route is not None else None
        if rule is None:
            super().match_request()
            return
        self.request.url_rule, self.request.view_args = rule, cycle.route.view_args


class CoreRoutedFlask(Flask):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.core_rules: dict[str, Rule] = {}  # DRUM's rules as Flask registered them, by rule text (RouteMatch.rule)

    def request_context(self, environ: dict) -> RequestContext:
        return CoreRoutedContext(self, environ)


def _view(endpoint: str, steps: BlockingSteps):
    def view(**view_args):
        environ = request.environ
        cycle, perform = environ[CYCLE_KEY], partial(steps.perform, environ)
        response = run_steps(cycle.handle(), perform)
        return flask_response(response, StreamedBody(cycle, perform) if response.chunks is not None else None)

    view.__name__ = endpoint
    return view


def build_blueprint(core: DrumApp, steps: BlockingSteps) -> Blueprint:
    blueprint = Blueprint(BLUEPRINT_NAME, __name__)
    views = {}
    for route in core.routes:
        view = views.setdefault(route.endpoint, _view(route.endpoint, steps))
        blueprint.add_url_rule(
            route.rule, endpoint=route.endpoint, view_func=view, methods=list(route.methods), strict_slashes=route.strict_slashes
        )
    # DRUM's handler: also catches what custom_flask.py hooks raise for blueprint routes
    blueprint.register_error_handler(Exception, lambda exc: flask_response(error_response(exc)))
    return blueprint


def create_flask_app(core: DrumApp, bridged: bool = False) -> Flask:
    """`bridged`: served by the FastAPI stack through a2wsgi (custom_flask.py there), whose loop already ran the
    cycle's front door and left the cycle in the environ: no WSGI loop of our own, no rate store."""
    # No static folder: drum-compat serves no files (DRUM's Flask app had an unused /static/ rule).
    app = CoreRoutedFlask(__name__, static_folder=None)
    app.extensions[CORE_EXTENSION] = core

    @app.after_request
    def finish_request(response: Response) -> Response:
        request.environ[CYCLE_KEY].stamp(response.headers, response.status_code)
        return response

    front_door = core.settings.front_door
    take = None if bridged else blocking_store(front_door.rate_limit, front_door.redis_url)
    steps = BlockingSteps(take, core.gate.limits.threads)

    def stop_model_threads() -> None:
        # a hung call is abandoned (runtime.supervisor.exit_past_hung_calls); gevent's pool would wait for it forever
        if not (steps.under_gevent and core.gate.calls):
            steps.executor.shutdown(wait=False, cancel_futures=True)

    core.on_close(stop_model_threads)
    core.on_close(steps.close_upstream)
    app.register_blueprint(build_blueprint(core, steps), url_prefix=core.settings.url_prefix)
    app.core_rules = {rule.rule: rule for rule in app.url_map.iter_rules() if rule.endpoint.startswith(f"{BLUEPRINT_NAME}.")}
    if not bridged:
        app.wsgi_app = CycleMiddleware(app.wsgi_app, core, steps)
    return app
