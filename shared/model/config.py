"""What a model directory is served as: target type and class labels from the command line,
the environment or model-metadata.yaml, resolved and checked once before the model loads."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from drum_compat.shared.model.target_types import NEEDS_TARGET_NAME, TargetType

METADATA_FILE = "model-metadata.yaml"


class ModelConfigError(ValueError):
    """The model directory or its options cannot be served; the message says what to change."""


@dataclass(frozen=True)
class ModelConfig:
    code_dir: str
    target_type: TargetType
    positive_class_label: str | None = None
    negative_class_label: str | None = None
    class_labels: tuple[str, ...] | None = None
    target_name: str | None = None

    @property
    def class_ordering(self) -> list[str] | None:
        """DRUM's request labels (its class_ordering): positive first for binary. A model's answer keeps its own column
        order; this order shows in DRUM's messages and where a model names no labels."""
        if self.target_type == TargetType.BINARY:
            return [self.positive_class_label, self.negative_class_label]
        if self.class_labels:
            return list(self.class_labels)
        return None


def read_model_metadata(code_dir: str) -> dict | None:
    path = Path(code_dir) / METADATA_FILE
    if not path.is_file():
        return None
    with path.open(encoding="utf-8") as fp:
        return yaml.safe_load(fp)


def read_class_labels_file(path: str) -> tuple[str, ...]:
    try:
        with open(path, encoding="utf-8") as fp:
            labels = tuple(line.strip() for line in fp if line.strip())
    except OSError as exc:
        raise ModelConfigError(f"Cannot read class labels file {path}: {exc.strerror}") from None
    if not labels:
        raise ModelConfigError(f"Class labels file {path} has no labels (one label per line).")
    return labels


def resolve_model_config(
    code_dir: str,
    target_type: str | None = None,
    positive_class_label: str | None = None,
    negative_class_label: str | None = None,
    class_labels: list[str] | tuple[str, ...] | None = None,
    target_name: str | None = None,
) -> ModelConfig:
    """Merge explicit options with model-metadata.yaml the way DRUM does; options win for labels,
    and a target type given both ways must agree."""
    if not code_dir or not os.path.isdir(code_dir):
        raise ModelConfigError(f"Code directory {code_dir!r} does not exist or is not a directory.")
    code_dir = os.path.abspath(code_dir)
    metadata = read_model_metadata(code_dir) or {}
    metadata_target = metadata.get("targetType")
    if target_type and metadata_target and target_type.lower() != str(metadata_target).lower():
        raise ModelConfigError(
            f"Target type provided in --target-type argument doesn't match target type from "
            f"{METADATA_FILE} file. Expected: {target_type}, actual: {metadata_target}."
        )
    chosen = target_type or metadata_target
    if not chosen:
        raise ModelConfigError(
            f"Target type is missing. Provide it with --target-type, env TARGET_TYPE or targetType in {METADATA_FILE}."
        )
    try:
        resolved_type = TargetType(str(chosen).lower())
    except ValueError:
        valid = ", ".join(t.value for t in TargetType)
        raise ModelConfigError(f"Unknown target type {chosen!r}; valid target types: {valid}.") from None

    inference = metadata.get("inferenceModel") or {}
    positive = positive_class_label if positive_class_label is not None else inference.get("positiveClassLabel")
    negative = negative_class_label if negative_class_label is not None else inference.get("negativeClassLabel")
    labels = class_labels if class_labels else inference.get("classLabels")
    labels = tuple(str(label) for label in labels) if labels else None

    if resolved_type == TargetType.BINARY:
        if positive is None or negative is None:
            raise ModelConfigError(
                "Positive/negative class labels are missing. They must be provided with either one: "
                "--positive-class-label/--negative-class-label arguments, environment variables, model config file."
            )
        positive, negative, labels = str(positive), str(negative), None
    elif resolved_type in (TargetType.MULTICLASS, TargetType.MULTILABEL):
        if not labels:
            raise ModelConfigError(
                "Class labels are missing. They must be provided with either one: --class-labels/"
                "--class-labels-file arguments, environment variables, model config file."
            )
        if len(set(labels)) != len(labels):
            raise ModelConfigError(f"Class labels must be unique; got {list(labels)}.")
        positive = negative = None
    else:
        positive = negative = labels = None

    if resolved_type in NEEDS_TARGET_NAME and not target_name:
        raise ModelConfigError(f"Unexpected empty target name for {resolved_type.value} target (set TARGET_NAME).")
    return ModelConfig(code_dir, resolved_type, positive, negative, labels, target_name or None)
