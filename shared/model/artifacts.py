"""Serialized model artifacts found in the code dir when there is no `load_model` hook, and the
scikit-learn predictor that scores them when there is no `score` hook."""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

from drum_compat.shared.errors import DrumError
from drum_compat.shared.model.target_types import CLASSIFICATION, TargetType

RUNNING_LANG_MSG = "Running environment language: Python."
# DRUM 1.18's Python predictors claim these extensions (its message lists them sorted); pickles load here.
ARTIFACT_EXTENSIONS = (".h5", ".onnx", ".pkl", ".pth")
LOADABLE_EXTENSIONS = (".pkl",)
# What DRUM's language detection counts as an artifact of each language, in its order.
LANGUAGE_ARTIFACTS = {"python": [".pkl", ".pth", ".h5", ".joblib", ".onnx"], "r": [".rds"], "java": [".jar", ".zip", ".java", ".mojo"]}
CUSTOM_FILES = {"python": ("custom.py",), "r": ("custom.R", "custom.r")}


def check_language(code_dir: str) -> None:
    """DRUM's first check of a code dir: its artifacts (searched recursively) and custom files must name
    one language; otherwise DRUM's exact message."""
    code_dir = os.path.abspath(code_dir)
    files = [path for path in Path(code_dir).rglob("*") if not path.is_dir()]
    by_artifacts = [language for language, extensions in LANGUAGE_ARTIFACTS.items()
                    if any(path.name.lower().endswith(tuple(extensions)) for path in files)]
    by_custom = [language for language, names in CUSTOM_FILES.items()
                 if any(os.path.isfile(os.path.join(code_dir, name)) for name in names)]
    artifact_language = by_artifacts[0] if len(by_artifacts) == 1 else None
    custom_language = by_custom[0] if len(by_custom) == 1 else None
    undetected = artifact_language is None and custom_language is None
    disagree = None not in (artifact_language, custom_language) and artifact_language != custom_language
    if undetected or disagree:
        raise DrumError(
            "Can not detect language by artifacts and/or custom.py/R files.\n"
            f"Detected: language by artifacts - {artifact_language}; language by custom - {custom_language}.\n"
            "Code directory must have one or more model artifacts belonging to the same language:\n"
            "Python/R/Java, with an extension:\n"
            f"Python models: {LANGUAGE_ARTIFACTS['python']}\n"
            f"R models: {LANGUAGE_ARTIFACTS['r']}\n"
            f"Java models: {LANGUAGE_ARTIFACTS['java']}.\n"
            "Or one of custom.py/R files."
            f"\n\nFiles(100 first) found in {code_dir}:\n" + "\n".join(sorted(os.listdir(code_dir))[0:100]) + "\n"
        )


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
