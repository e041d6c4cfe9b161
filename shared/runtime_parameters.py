"""DRUM's runtime-parameter reader (contract section 4): `MLOPS_RUNTIME_PARAM_<NAME>` holds
`{"type": ..., "payload": ...}`; model code and compat's settings table both read through it."""
from __future__ import annotations

import json
import os
from typing import Any, Mapping

PREFIX = "MLOPS_RUNTIME_PARAM_"


class RuntimeParameterException(Exception):
    pass


class InvalidJsonException(RuntimeParameterException):
    pass


class InvalidRuntimeParam(RuntimeParameterException):
    pass


def _check_string(payload: Any) -> str | None:
    if not isinstance(payload, str):
        return "value is not a string"
    return "blank value is not allowed" if not payload.strip() else None


def _check_boolean(payload: Any) -> str | None:
    return None if isinstance(payload, bool) else "value should be True or False"


def _check_numeric(payload: Any) -> str | None:
    if isinstance(payload, (int, float)):  # bool is an int, as in DRUM's trafaret schema
        return None
    if isinstance(payload, str):
        try:
            float(payload)
            return None
        except ValueError:
            pass
    return "value can't be converted to float"


def _check_credential(payload: Any) -> str | None:
    if not isinstance(payload, dict):
        return "value is not a dict"
    if "credentialType" not in payload:
        return "{'credentialType': DataError('is required')}"
    if not isinstance(payload["credentialType"], str) or not payload["credentialType"].strip():
        return "{'credentialType': DataError('blank value is not allowed')}"
    return None


def _check_deployment(payload: Any) -> str | None:
    return None if isinstance(payload, str) else "value is not a string"


PAYLOAD_CHECKS = {
    "string": _check_string,
    "boolean": _check_boolean,
    "numeric": _check_numeric,
    "credential": _check_credential,
    "deployment": _check_deployment,
}


def _schema_error(value: Any) -> str | None:
    if not isinstance(value, dict):
        return "value is not a dict"
    extra = sorted(set(value) - {"type", "payload"})
    if extra:
        return "{" + ", ".join(f"'{key}': DataError('{key} is not allowed key')" for key in extra) + "}"
    missing = [key for key in ("type", "payload") if key not in value]
    if missing:
        return "{" + ", ".join(f"'{key}': DataError('is required')" for key in missing) + "}"
    check = PAYLOAD_CHECKS.get(value["type"])
    if check is None:
        expected = ", ".join(f'"{name}"' for name in PAYLOAD_CHECKS)
        return f"{{'type': DataError('value is not exactly one of {expected}')}}"
    if value["payload"] is None:
        return None
    problem = check(value["payload"])
    return None if problem is None else f"{{'payload': DataError({problem!r})}}"


def parse_runtime_parameter(raw: str) -> Any:
    """The payload of one runtime parameter's raw JSON, or DRUM's exception for it."""
    try:
        value = json.loads(raw)
    except ValueError:
        raise InvalidJsonException(f"Invalid runtime parameter json payload. payload={raw}") from None
    problem = _schema_error(value)
    if problem is not None:
        raise InvalidRuntimeParam(f"Invalid runtime parameter! env_value={value}, exception: {problem}, ")
    return value["payload"]


class RuntimeParameters:
    """`from datarobot_drum import RuntimeParameters`: DRUM's static API over the process environment."""

    @staticmethod
    def has(name: str, environ: Mapping[str, str] | None = None) -> bool:
        return f"{PREFIX}{name}" in (os.environ if environ is None else environ)

    @staticmethod
    def get(name: str, environ: Mapping[str, str] | None = None) -> Any:
        env = os.environ if environ is None else environ
        key = f"{PREFIX}{name}"
        if key not in env:
            raise ValueError(f"Runtime parameter '{name}' does not exist!")
        return parse_runtime_parameter(env[key])
