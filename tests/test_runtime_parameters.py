"""DRUM's runtime-parameter semantics and messages (contract section 4, checklist 36-38)."""
import json

import pytest

from drum_compat.shared.runtime_parameters import InvalidJsonException, InvalidRuntimeParam, RuntimeParameterException, RuntimeParameters


def env(name, value):
    return {f"MLOPS_RUNTIME_PARAM_{name}": json.dumps(value) if not isinstance(value, str) else value}


@pytest.mark.parametrize("value,payload", [
    ({"type": "string", "payload": "Some string value"}, "Some string value"),
    ({"type": "boolean", "payload": True}, True),
    ({"type": "numeric", "payload": 10}, 10),
    ({"type": "numeric", "payload": 10.5}, 10.5),
    ({"type": "numeric", "payload": "12"}, "12"),
    ({"type": "numeric", "payload": True}, True),
    ({"type": "credential", "payload": {"credentialType": "s3", "awsKey": "k"}}, {"credentialType": "s3", "awsKey": "k"}),
    ({"type": "deployment", "payload": "abc"}, "abc"),
    ({"type": "string", "payload": None}, None),
])
def test_valid(value, payload):
    environ = env("P", value)
    assert RuntimeParameters.has("P", environ) and RuntimeParameters.get("P", environ) == payload
    assert not RuntimeParameters.has("ZZZZ", environ)


@pytest.mark.parametrize("value,fragment", [
    ({"type": "STRING", "payload": "x"}, "'type'"),
    ({"type": "str", "payload": "x"}, "'type'"),
    ({"type": "CREDENTIAL", "payload": {"credentialType": "s3"}}, "'type'"),
    ({"type": "string", "payload": ""}, "blank value is not allowed"),
    ({"type": "string", "payload": 3}, "value is not a string"),
    ({"type": "boolean", "payload": "true"}, "value should be True or False"),
    ({"type": "boolean", "payload": {}}, "value should be True or False"),
    ({"type": "numeric", "payload": "text"}, "value can't be converted to float"),
    ({"type": "numeric", "payload": {}}, "value can't be converted to float"),
    ({"type": "credential", "payload": {}}, "'credentialType': DataError('is required')"),
    ({"type": "credential", "payload": {"credentialType": ""}}, "blank value is not allowed"),
    ({"type": "string", "payload": "x", "extra": 1}, "extra is not allowed key"),
    ({"type": "string"}, "'payload': DataError('is required')"),
])
def test_invalid(value, fragment):
    with pytest.raises(InvalidRuntimeParam, match="Invalid runtime parameter!") as caught:
        RuntimeParameters.get("P", env("P", value))
    assert fragment in str(caught.value)
    assert isinstance(caught.value, RuntimeParameterException)


def test_not_json_and_missing():
    with pytest.raises(InvalidJsonException, match=r"Invalid runtime parameter json payload. payload=\{nope"):
        RuntimeParameters.get("P", {"MLOPS_RUNTIME_PARAM_P": "{nope"})
    with pytest.raises(ValueError, match="Runtime parameter 'Q' does not exist!"):
        RuntimeParameters.get("Q", {})


def test_model_code_imports_drum_api(tmp_path, monkeypatch):
    """`from datarobot_drum import RuntimeParameters, CustomHTTPError` works without the real package."""
    from drum_compat.shared.drum_api import install_datarobot_drum_module

    install_datarobot_drum_module()
    import datarobot_drum
    from datarobot_drum.custom_task_interfaces import BinaryEstimatorInterface

    monkeypatch.setenv("MLOPS_RUNTIME_PARAM_TOKEN", '{"type": "string", "payload": "s3cr3t"}')
    assert datarobot_drum.RuntimeParameters.get("TOKEN") == "s3cr3t"
    error = datarobot_drum.CustomHTTPError("nope", status_code=409)
    assert (str(error), error.status_code) == ("nope", 409)
    assert issubclass(BinaryEstimatorInterface, datarobot_drum.custom_task_interfaces.CustomTaskInterface)
