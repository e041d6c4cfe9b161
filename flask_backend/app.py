"""Build the Flask app around a neutral DrumApp: Flask routes (so custom_flask.py sees DRUM's
endpoint names), every view and error goes through the core, and responses leave byte for byte."""
from __future__ import annotations

import logging
import time
from functools import partial
from typing import Callable

from flask import Blueprint, Flask, Response, g, request
from werkzeug.datastructures import Headers

from drum_compat.compat.rate_store import connect_blocking
from drum_compat.flask_backend.guards import GuardMiddleware
from drum_compat.flask_backend.model_pool import BlockingModelRunner
from drum_compat.shared.app import DrumApp
from drum_compat.shared.errors import error_response
from drum_compat.shared.guards.admission import UNWEDGED
from drum_compat.shared.guards.front_door import ARRIVED_KEY, BODY_KEY, FrontDoor
from drum_compat.shared.guards.rate_limit import make_buckets
from drum_compat.shared.http import NeutralRequest, NeutralResponse
from drum_compat.shared.request_id import REQUEST_ID_HEADER, choose_request_id, current_request_id

BLUEPRINT_NAME = "model_api"
logger = logging.getLogger("drum_compat")
CORE_EXTENSION = "drum_compat"  # app.extensions key holding the DrumApp (gunicorn's worker_exit closes it)


def neutral_request() -> NeutralRequest:
    return NeutralRequest(
        method=request.method,
        path=request.path,
        body=request.environ[BODY_KEY],  # read and bounded by flask_backend.guards
        headers=Headers(list(request.headers.items())),
        query_string=request.query_string,
        scheme=request.scheme,
        server=request.server,
        root_path=request.root_path,
        remote_addr=request.remote_addr,
    )


def flask_response(response: NeutralResponse) -> Response:
    return Response(response.body, status=response.status, headers=list(response.headers.items()))


def _view(core: DrumApp, endpoint: str, model_runner: BlockingModelRunner | None):
    def view(**view_args):
        request = neutral_request()
        if model_runner is None:
            return flask_response(core.call(endpoint, request))
        return flask_response(model_runner.run(partial(core.call, endpoint, request), g.drum_started))

    view.__name__ = endpoint
    return view


def build_blueprint(core: DrumApp, model_runner: BlockingModelRunner) -> Blueprint:
    blueprint = Blueprint(BLUEPRINT_NAME, __name__)
    views = {}
    for route in core.routes:
        view = views.setdefault(route.endpoint, _view(core, route.endpoint, model_runner if route.runs_model else None))
        blueprint.add_url_rule(
            route.rule, endpoint=route.endpoint, view_func=view, methods=list(route.methods), strict_slashes=route.strict_slashes
        )
    # DRUM's handler: also catches what custom_flask.py hooks raise for blueprint routes
    blueprint.register_error_handler(Exception, lambda exc: flask_response(error_response(exc)))
    return blueprint


def log_only(why: str) -> None:
    logger.warning("Worker should be recycled (%s) but is not run by gunicorn: carrying on", why)


def create_flask_app(core: DrumApp, recycle: Callable[[str], None] = log_only) -> Flask:
    # No static folder: drum-compat serves no files (DRUM's Flask app had an unused /static/ rule).
    app = Flask(__name__, static_folder=None)
    app.extensions[CORE_EXTENSION] = core

    @app.before_request
    def start_request() -> None:
        g.drum_started = request.environ[ARRIVED_KEY]
        g.drum_request_id = choose_request_id(request.headers.get(REQUEST_ID_HEADER))
        g.drum_request_id_token = current_request_id.set(g.drum_request_id)

    @app.after_request
    def finish_request(response: Response) -> Response:
        request_id = g.get("drum_request_id") or choose_request_id(None)
        core.stamp(response.headers, request_id, request.method, request.headers)
        core.log_response(request.method, request.path, response.status_code, g.get("drum_started", time.monotonic()), request_id)
        return response

    @app.teardown_request
    def reset_request_id(exc: BaseException | None) -> None:
        token = g.pop("drum_request_id_token", None)
        if token is not None:
            current_request_id.reset(token)

    model_runner = BlockingModelRunner(core.gate, partial(recycle, UNWEDGED))
    core.on_close(lambda: model_runner.executor.shutdown(wait=True))
    app.register_blueprint(build_blueprint(core, model_runner), url_prefix=core.settings.url_prefix)
    front_door = core.settings.front_door
    app.wsgi_app = GuardMiddleware(app.wsgi_app, FrontDoor(core), make_buckets(front_door.rate_limit, front_door.redis_url, connect_blocking))
    return app
