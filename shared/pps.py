"""DataRobot's PPS answer format, which DRUM gives /predict/ and /predictions/ when a deployment config is set
(`--deployment-config`): one record per row, labelled from the config's `target`, as DRUM 1.18 builds it."""
from __future__ import annotations

import json
from typing import Any, Callable, Mapping

import pandas as pd

from drum_compat.shared.model.target_types import TargetType

ANOMALY_LABEL = "Anomaly Score"  # what DRUM labels an anomaly score with, whatever the target's name


def class_names(class_mapping) -> list[str] | None:
    """`[["GALAXY", 0], ["QSO", 1]]` as the labels in index order."""
    if not class_mapping:
        return None
    return [pair[0] for pair in sorted(class_mapping, key=lambda pair: pair[1])]


def _single_value(row: pd.Series, index, target: Mapping, labels) -> dict:
    value = row.iloc[0]
    return {"prediction": value, "predictionValues": [{"label": target["name"], "value": value}], "rowId": index}


def _multiclass(row: pd.Series, index, target: Mapping, labels) -> dict:
    values = [{"label": label, "value": row[label]} for label in labels]
    highest = max(row.values)
    decision = next(value for value in values if value["value"] >= highest)["label"]
    return {"prediction": decision, "predictionValues": values, "rowId": index}


def _binary(row: pd.Series, index, target: Mapping, labels) -> dict:
    threshold = target["prediction_threshold"]
    positive, negative = labels[1], labels[0]
    value = row[positive]
    return {"prediction": positive if value > threshold else negative,
            "predictionValues": [{"label": positive, "value": value}, {"label": negative, "value": 1 - value}],
            "predictionThreshold": threshold, "rowId": index}


def _multilabel(row: pd.Series, index, target: Mapping, labels) -> dict:
    values = [{"label": label, "value": row[label]} for label in labels]
    threshold = target["prediction_threshold"]
    return {"prediction": [value["label"] for value in values if value["value"] > threshold], "predictionValues": values,
            "predictionThreshold": threshold, "rowId": index}


RECORDS: dict[TargetType, Callable[[pd.Series, Any, Mapping, list | None], dict]] = {
    TargetType.REGRESSION: _single_value, TargetType.ANOMALY: _single_value, TargetType.TEXT_GENERATION: _single_value,
    TargetType.GEO_POINT: _single_value, TargetType.VECTOR_DATABASE: _single_value,
    TargetType.AGENTIC_WORKFLOW: _single_value, TargetType.BINARY: _binary, TargetType.MULTICLASS: _multiclass,
    TargetType.MULTILABEL: _multilabel,
}


def pps_json(predictions: pd.DataFrame, extra_model_output: pd.DataFrame | None, target: Mapping,
             target_type: TargetType) -> bytes:
    """The body, encoded as DRUM encodes it (Python's json, NaN included); what DRUM fails on (a config without
    `class_mapping`, a value json cannot encode) raises here too, and is DRUM's 500."""
    if target_type == TargetType.ANOMALY:
        target = {**target, "name": ANOMALY_LABEL}
    record = RECORDS[target_type]  # the handler refuses the others (transform, unstructured) first
    labels = class_names(target["class_mapping"])
    rows = []
    for index, row in predictions.iterrows():
        entry = record(row, index, target, labels)
        if extra_model_output is not None:
            entry["extraModelOutput"] = extra_model_output.iloc[index].to_dict()
        rows.append(entry)
    return json.dumps({"data": rows}).encode()
