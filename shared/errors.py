"""Exceptions and how each becomes a response, with DRUM's exact bodies (contract section 1.6).

Model code raises CustomHTTPError to choose a status; anything else unexpected is a 500 `ERROR: ...`."""
from __future__ import annotations

import logging

from werkzeug.exceptions import HTTPException

from drum_compat.shared.http import NeutralResponse, json_response

logger = logging.getLogger("drum_compat")

USER_ERROR_HEADER = ("X-Drum-User-Http-Error", "true")
MODEL_LOAD_FAILED_STATUS = 513


class DrumError(Exception):
    """A failure DRUM reports as 500 `{"message": "ERROR: <text>"}`."""


class BaseCustomUserError(Exception):
    """Base of errors whose status and message the model author chose (DRUM's name)."""

    status_code = 400


class CustomHTTPError(BaseCustomUserError):
    """`from datarobot_drum import CustomHTTPError`: answered with this status and message as is."""

    def __init__(self, message: str, status_code: int = 400) -> None:
        super().__init__(message)
        self.status_code = status_code


def is_user_http_error(exc: BaseException) -> bool:
    # Matched by name so the real datarobot_drum's class, when installed, is honoured too.
    return any(cls.__name__ == "BaseCustomUserError" for cls in type(exc).__mro__)


def error_response(exc: BaseException) -> NeutralResponse:
    if is_user_http_error(exc):
        return json_response({"message": str(exc)}, getattr(exc, "status_code", 400), [USER_ERROR_HEADER])
    if isinstance(exc, HTTPException) and exc.code == 413:
        # werkzeug's form limits (parts, field sizes): the client's mistake, so 413 where DRUM answers 500,
        # in DRUM's wording
        return json_response({"message": f"ERROR: {exc}"}, 413)
    logger.exception(exc)
    if isinstance(exc, HTTPException) and exc.code == 400:
        return json_response({"error": exc.description}, 400)
    return json_response({"message": f"ERROR: {exc}"}, 500)


def unprocessable(message: str) -> NeutralResponse:
    return json_response({"message": f"ERROR: {message}"}, 422)
