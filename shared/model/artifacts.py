"""Serialized model artifacts found in the code dir when there is no `load_model` hook, and the
scikit-learn predictor that scores them when there is no `score` hook."""
from __future__ import annotations

import os
import pickle
from typing import Any

from shared.errors import DrumError
from shared.model.target_types import CLASSIFICATION, TargetType

RUNNING_LANG_MSG = "Running environment language: Python."
# DRUM's framework predictors claim these extensions; only pickle/joblib ones load here.
ARTIFACT_EXTENSIONS = (".h5", ".joblib", ".onnx", ".pkl", ".pmml", ".pth")
LOADABLE_EXTENSIONS = (".pkl", ".joblib")


def find_artifact(code_dir: str) -> str:
    files = sorted(os.listdir(code_dir))
    listing = " | ".join(files)
    found = [
        os.path.join(code_dir, name)
        for name in files
        if not os.path.isdir(os.path.join(code_dir, name)) and name.lower().endswith(ARTIFACT_EXTENSIONS)
    ]
    if len(found) > 1:
        raise DrumError(
            f"\n\n{RUNNING_LANG_MSG}\nMultiple serialized model files found. Remove extra artifacts "
            f"or overwrite custom.load_model()\nList of retrieved files are: {listing}"
        )
    if not found:
        raise DrumError(
            f"\n\n{RUNNING_LANG_MSG}\nCould not find model artifact file in: {code_dir} supported by default predictors.\n"
            f"They support filenames with the following extensions {list(ARTIFACT_EXTENSIONS)}.\n"
            "If your artifact is not supported by default predictor, implement custom.load_model() hook.\n"
            f"List of retrieved files are: {listing}"
        )
    return found[0]


def load_artifact(path: str) -> Any:
    if not path.lower().endswith(LOADABLE_EXTENSIONS):
        raise DrumError(
            f"\n\n{RUNNING_LANG_MSG}\nCould not load model from artifact file {path}. "
            "No builtin support for this model was detected"
        )
    try:
        if path.lower().endswith(".joblib"):
            import joblib

            return joblib.load(path)
        with open(path, "rb") as fp:
            return pickle.load(fp, encoding="latin1")
    except Exception as exc:
        raise DrumError(f"Could not load model from the artifact file. Exception: {exc!r}") from exc


class SklearnPredictor:
    name = "scikit-learn"

    @staticmethod
    def can_use(model: Any) -> bool:
        try:
            from sklearn.base import BaseEstimator
        except ImportError:
            return False
        return isinstance(model, BaseEstimator)

    @staticmethod
    def predict(data, model, target_type: TargetType):
        if target_type in CLASSIFICATION:
            labels = list(model.classes_) if hasattr(model, "classes_") else None
            return model.predict_proba(data), labels
        if target_type in (TargetType.REGRESSION, TargetType.ANOMALY):
            return model.predict(data), None
        raise DrumError(f"Target type '{target_type.value}' is not supported by 'SKLearnPredictor' predictor")
