"""`custom_fastapi.py`: found and applied as DRUM applies custom_flask.py (`init_app(app)` before the app serves), behind
the cycle's guards; and `in_model_thread`, for its routes that run model code under admission."""
from __future__ import annotations

from functools import partial
from typing import Any, Callable

from fastapi import FastAPI, Request
from starlette.responses import Response

from drum_compat.runtime.extensions import FASTAPI_EXTENSION_FILE, apply_extension
from drum_compat.fastapi_backend.cycle import CycleMiddleware
from drum_compat.shared.cycle import CYCLE_KEY
from drum_compat.shared.http import NeutralResponse
from drum_compat.shared.model.python_model import find_code_file
from drum_compat.shared.steps import run_steps_async

STEPS_STATE = "drum_steps"  # app.state attribute holding the app's AsyncSteps (its model threads)


class AdmissionRefused(Exception):
    """No model thread in time (503) or past the deadline (504): answered as DRUM's guards answer."""

    def __init__(self, response: NeutralResponse) -> None:
        super().__init__(response.status)
        self.response = response


async def in_model_thread(request: Request, work: Callable[..., Any], *args, **kwargs) -> Any:
    """Run `work(*args, **kwargs)` in one of the worker's model threads through the admission gate, as DRUM's own
    model routes run (DRUM_EXECUTOR_WORKERS, queue depth and timeout, DRUM_CLIENT_REQUEST_TIMEOUT); its result, or
    AdmissionRefused, which the app answers with DRUM's 503 or 504."""
    cycle = request.scope[CYCLE_KEY]
    steps = getattr(request.app.state, STEPS_STATE)
    outcome = await run_steps_async(
        cycle.core.gate.model_call(lambda: Result(work(*args, **kwargs)), cycle.arrived, cycle.request_id),
        partial(steps.perform, None))
    if isinstance(outcome, Result):
        return outcome.value
    raise AdmissionRefused(outcome)


class Result:
    """What the work returned, told apart from the gate's refusal."""

    def __init__(self, value: Any) -> None:
        self.value = value


async def refused(request: Request, exc: AdmissionRefused) -> Response:
    response = exc.response.complete()
    return Response(response.body, response.status, dict(response.headers.items()))


def load_fastapi_extensions(app: FastAPI, code_dir: str) -> bool:
    """Returns whether an extension was applied."""
    path = find_code_file(code_dir, FASTAPI_EXTENSION_FILE)
    if path is None:
        return False
    app.add_exception_handler(AdmissionRefused, refused)
    apply_extension(path, app, "FastAPI")
    # Starlette puts middleware added later outermost: ours goes back outside, so every request, the ones an
    # extension's middleware refuses included, meets the front door and gets its metrics and access line
    app.user_middleware.sort(key=lambda middleware: middleware.cls is not CycleMiddleware)
    return True
