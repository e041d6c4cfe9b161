"""A model that reads its runtime parameters as under DRUM: declared in model-metadata.yaml, their values from
`--runtime-params-file values.yaml` (or, in DataRobot, from the deployment)."""
from datarobot_drum import RuntimeParameters


def load_model(code_dir):
    return {"threshold": RuntimeParameters.get("THRESHOLD"), "user": RuntimeParameters.get("API_CREDENTIAL")["user"]}


def score_unstructured(model, data, **kwargs):
    return f"threshold={model['threshold']} user={model['user']}\n"
