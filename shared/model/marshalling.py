"""DRUM's prediction marshalling: label ordering, the inferred negative class and the checks,
with DRUM's exact messages (data_marshalling.py)."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from drum_compat.shared.errors import DrumError
from drum_compat.shared.model.target_types import CLASSIFICATION, SINGLE_COLUMN, TargetType

PRED_COLUMN = "Predictions"

_TRUE = {"y", "yes", "t", "true", "on", "1"}
_FALSE = {"n", "no", "f", "false", "off", "0"}


def _standardize(label: Any) -> Any:
    """Labels compare as floats when they can, then as booleans, then case-insensitively."""
    try:
        return float(label)
    except (TypeError, ValueError):
        pass
    lowered = str(label).lower()
    if lowered in _TRUE:
        return 1.0
    if lowered in _FALSE:
        return 0.0
    return lowered


def _order_labels(request_labels: Sequence[str], model_labels: Sequence[Any] | None) -> list[str]:
    if model_labels is None:
        return list(request_labels)
    if {_standardize(label) for label in request_labels} != {_standardize(label) for label in model_labels}:
        # as DRUM prints them: the model's labels as it gave them (a hook's columns: a pandas Index)
        raise DrumError(f"Expected predictions to have columns {list(request_labels)}, but encountered {model_labels}")
    by_standard = {_standardize(label): label for label in request_labels}
    return [by_standard[_standardize(label)] for label in model_labels]


def _infer_negative_class(predictions: np.ndarray, labels: list[str]) -> np.ndarray:
    if predictions.shape[1] != 1:
        return predictions
    if len(labels) == 1:
        raise DrumError("Classification problems must have more than one class label")
    if len(labels) != 2:
        raise DrumError(
            f"Only one dimension of probability returned, but there are {len(labels)} class labels in this model"
        )
    negative, positive = labels  # DRUM's order, whatever the labels mean
    frame = pd.DataFrame(predictions, columns=[positive])
    frame[negative] = 1 - frame[positive]
    return frame[[negative, positive]].values


def _check_probabilities(predictions: np.ndarray, must_sum_to_one: bool) -> None:
    if (predictions < 0).any():
        raise DrumError("Your prediction probabilities have negative values")
    if (predictions > 1).any():
        raise DrumError("Your prediction probabilities have values greater than 1")
    if must_sum_to_one:
        good = np.isclose(predictions.sum(axis=1), 1)
        if not np.all(good):
            raise DrumError(f"Your prediction probabilities do not add up to 1. \n{predictions[~good]}")


def marshal_predictions(
    request_labels: list[str] | None,
    predictions: Any,
    target_type: TargetType,
    model_labels: Sequence[Any] | None = None,
    copy: bool = True,
) -> pd.DataFrame:
    """The predictions as DRUM's frame; `copy=False` when the frame is only serialized, so the model's arrays are
    shared rather than copied (pandas 3 copies an ndarray by default: the size of the predictions again)."""
    if not isinstance(predictions, np.ndarray):
        raise DrumError(f"predictions must return a np array, but received {type(predictions)}")
    if predictions.ndim == 1:
        predictions = predictions.reshape(-1, 1)
    if predictions.ndim != 2:
        raise DrumError(
            f"predictions must return a 2 dimensional array, but we received a {predictions.ndim} dimensional array"
        )
    if target_type in CLASSIFICATION:
        labels = _order_labels(request_labels, model_labels)
        if target_type != TargetType.MULTILABEL:
            predictions = _infer_negative_class(predictions, labels)
        if predictions.shape[1] != len(labels):
            raise DrumError(
                "Your predictions must return the probability distribution for the correct number of class labels. "
                f"Expected {len(labels)} columns, but received {predictions.shape[1]}"
            )
        # unconverted, as DRUM checks them: probabilities given as strings fail the comparison, as there
        _check_probabilities(predictions, must_sum_to_one=target_type != TargetType.MULTILABEL)
        return pd.DataFrame(predictions, columns=labels, copy=copy)
    if target_type in SINGLE_COLUMN:
        if predictions.shape[1] != 1:
            raise DrumError(
                "Regression, Text Generation, Agentic Workflow and anomaly predictions must contain only 1 column. "
                f"Your predictions have {predictions.shape[1]} columns"
            )
        return pd.DataFrame(predictions, columns=[PRED_COLUMN], copy=copy)
    return pd.DataFrame(predictions, copy=copy)
