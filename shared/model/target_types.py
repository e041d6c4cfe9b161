"""DRUM's target types and the groups that decide how predictions are marshalled."""
from __future__ import annotations

from enum import Enum


class TargetType(Enum):
    # A plain Enum on purpose: DRUM's messages print str(member), i.e. "TargetType.REGRESSION".
    BINARY = "binary"
    REGRESSION = "regression"
    ANOMALY = "anomaly"
    UNSTRUCTURED = "unstructured"
    MULTICLASS = "multiclass"
    TRANSFORM = "transform"
    TEXT_GENERATION = "textgeneration"
    GEO_POINT = "geopoint"
    VECTOR_DATABASE = "vectordatabase"
    AGENTIC_WORKFLOW = "agenticworkflow"
    MULTILABEL = "multilabel"


CLASSIFICATION = frozenset({TargetType.BINARY, TargetType.MULTICLASS, TargetType.MULTILABEL})
SINGLE_COLUMN = frozenset(
    {
        TargetType.REGRESSION,
        TargetType.ANOMALY,
        TargetType.TEXT_GENERATION,
        TargetType.GEO_POINT,
        TargetType.VECTOR_DATABASE,
        TargetType.AGENTIC_WORKFLOW,
    }
)
# Predictions of these are sent as the model returned them; all others are cast to float64.
NON_NUMERIC_PREDICTIONS = frozenset(
    {TargetType.TEXT_GENERATION, TargetType.GEO_POINT, TargetType.VECTOR_DATABASE, TargetType.AGENTIC_WORKFLOW}
)
NEEDS_TARGET_NAME = frozenset({TargetType.TEXT_GENERATION, TargetType.VECTOR_DATABASE, TargetType.AGENTIC_WORKFLOW})
