"""DRUM's runtime-parameter values file (`--runtime-params-file`, RUNTIME_PARAMS_FILE): every parameter that
model-metadata.yaml's runtimeParameterDefinitions declares gets its value from the file, else its default, checked by
DRUM's rules (trafaret, as DRUM checks them) and set as MLOPS_RUNTIME_PARAM_<NAME> for the server and its workers."""
from __future__ import annotations

import json
import os
from typing import Any

import trafaret as t
import yaml

from drum_compat.shared.model.config import METADATA_FILE
from drum_compat.shared.runtime_parameters import PREFIX, RuntimeParameterException

DEFINITIONS_KEY = "runtimeParameterDefinitions"
TYPES = ("string", "boolean", "numeric", "credential", "deployment")


class RuntimeParametersFileError(RuntimeParameterException):
    """DRUM's message for a values file or definitions it cannot load; DRUM exits 1 with it."""


def _payload_check(kind: str, payload: t.Trafaret) -> t.Dict:
    return t.Dict({t.Key("payload"): t.Null | payload, t.Key("type"): t.Enum(kind)})


def payload_checks(definition: dict) -> t.Dict:
    """DRUM's check of one parameter's `{"type", "payload"}`, which also gives the value set (integers stay integers)."""
    return _payload_check(definition["type"], {
        "string": t.String(), "boolean": t.Bool(), "deployment": t.String(),
        "numeric": t.Float(gte=definition["min_value"], lte=definition["max_value"]),
        "credential": t.Dict({t.Key("credentialType"): t.String}).allow_extra("*"),
    }[definition["type"]])


DEFINITION = t.Dict({
    t.Key("fieldName", to_name="name"): t.String,
    t.Key("type"): t.Enum(*TYPES),
    t.Key("allowEmpty", optional=True, default=True, to_name="allow_empty"): t.Bool,
    t.Key("defaultValue", optional=True, default=None, to_name="default"): t.Any,
    t.Key("minValue", optional=True, default=None, to_name="min_value"): t.Float | t.Null,
    t.Key("maxValue", optional=True, default=None, to_name="max_value"): t.Float | t.Null,
}).ignore_extra("*")


def _yaml(path: str, empty: str, invalid: str, missing: str) -> Any:
    try:
        with open(path, encoding="utf-8") as file:
            content = yaml.safe_load(file)
    except yaml.YAMLError as exc:
        raise RuntimeParametersFileError(f"{invalid} {exc}") from None
    except FileNotFoundError:
        raise RuntimeParametersFileError(missing) from None
    if not content:
        raise RuntimeParametersFileError(empty)
    return content


def definitions(code_dir: str) -> dict[str, dict]:
    metadata = _yaml(os.path.join(code_dir, METADATA_FILE), "Model-metadata YAML file is empty!",
                     "Invalid model-metadata YAML content!", f"{METADATA_FILE} must exist to use runtime parameters")
    declared = metadata.get(DEFINITIONS_KEY)
    if not declared:
        raise RuntimeParametersFileError(f"{METADATA_FILE}: YAML file must contain at least one parameter definition "
                                         f"in the section '{DEFINITIONS_KEY}'")
    found: dict[str, dict] = {}
    for declaration in declared:
        try:
            definition = DEFINITION.check(declaration)
        except t.DataError as exc:
            raise RuntimeParametersFileError(f"Failed to load runtime parameter: {exc}") from None
        if definition["name"] in found:
            raise RuntimeParametersFileError(f"Failed to load runtime parameter [{definition['name']}], duplicated definition")
        found[definition["name"]] = definition
    return found


def runtime_parameter_values(values_path: str, code_dir: str) -> dict[str, str]:
    """The MLOPS_RUNTIME_PARAM_<NAME> variables DRUM sets from the file, in its JSON form; keys the definitions do not
    declare are ignored, as DRUM ignores them."""
    declared = definitions(code_dir)
    values = _yaml(values_path, "Runtime parameter values YAML file is empty!", "Invalid runtime parameter values YAML content!",
                   f"Runtime parameter values file does not exist! filepath: {values_path}")
    variables = {}
    for name, definition in declared.items():
        try:
            checked = payload_checks(definition).check({"type": definition["type"], "payload": values.get(name, definition["default"])})
        except t.DataError as exc:
            raise RuntimeParametersFileError(f"Failed to load runtime parameter '{name}'. {exc}") from None
        variables[f"{PREFIX}{name}"] = json.dumps(checked)
    return variables
