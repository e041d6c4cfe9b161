"""The frame pandas' read_csv makes of a small, plainly numeric CSV, built without its parser, whose set-up cost is most
of a 10-row request. Anything outside the shapes proven identical to read_csv answers None and goes to pandas."""
from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
import pandas as pd

try:  # pandas >= 3.0: the blocks built directly, as read_csv's constructor would lay them out
    from pandas.api.internals import create_dataframe_from_blocks
except ImportError:  # pandas 2
    create_dataframe_from_blocks = None

# Past a few KiB pandas' own per-row speed wins over this reader's per-token Python.
SMALL_CSV_MAX_BYTES = 1024
_NAME = re.compile(rb"[A-Za-z_][A-Za-z0-9_.\-]*\Z")
_TOKEN = rb"-?[0-9]+(?:\.[0-9]+)?"
# Integers of at most 18 digits are int64 for pandas; more could be uint64 or object.
_INT_DIGITS = 18
# At most 15 significant digits and 15 decimals, a decimal is one correctly rounded division of an exact integer by an
# exact power of ten in pandas' parser (precise_xstrtod), the same double as Python's float().
_FLOAT_DIGITS = 15


def _rows_pattern(columns: int) -> re.Pattern:
    return re.compile(rb"(?:" + rb",".join([_TOKEN] * columns) + rb"\n)+")


_ROWS = {columns: _rows_pattern(columns) for columns in range(1, 65)}


def _digits(token: bytes) -> int:
    return len(token) - token.startswith(b"-") - (b"." in token)


def _column(tokens: list[bytes]) -> np.ndarray | None:
    most = max(map(_digits, tokens))
    if any(b"." in token for token in tokens):
        return np.array([float(token) for token in tokens], dtype=np.float64) if most <= _FLOAT_DIGITS else None
    return np.array([int(token) for token in tokens], dtype=np.int64) if most <= _INT_DIGITS else None


@lru_cache(maxsize=64)
def _column_index(header: bytes) -> pd.Index:
    """A client sends the same header again and again; inferring its labels' dtype is a third of the reading."""
    return pd.Index([name.decode("ascii") for name in header.split(b",")])


def _frame(header: bytes, columns: list[np.ndarray]) -> pd.DataFrame:
    index = pd.RangeIndex(0, len(columns[0]))
    labels = _column_index(header).copy()  # each frame its own Index: a model may set its name
    if create_dataframe_from_blocks is None:
        return pd.DataFrame(dict(zip(labels, columns)), columns=labels, index=index, copy=False)
    # one block per column, as read_csv's DataFrame(dict) makes them (the frame is the same down to its blocks)
    return create_dataframe_from_blocks([(column.reshape(1, -1), np.array([position]))
                                         for position, column in enumerate(columns)], index=index, columns=labels)


def read_small_numeric_csv(data: bytes) -> pd.DataFrame | None:
    """read_csv(BytesIO(data)) for a header of distinct plain names and at least one row of numbers, each row as
    long as the header, '\\n' line ends and no blank line; None for anything else."""
    if len(data) > SMALL_CSV_MAX_BYTES:
        return None
    header, newline, rows = data.partition(b"\n")
    names = header.split(b",")
    pattern = _ROWS.get(len(names))
    if pattern is None or not newline or len(set(names)) != len(names) or not all(_NAME.match(name) for name in names):
        return None
    if not rows.endswith(b"\n"):
        rows += b"\n"
    if pattern.fullmatch(rows) is None:
        return None
    tokens = rows.replace(b"\n", b",")[:-1].split(b",")
    columns = [_column(tokens[position :: len(names)]) for position in range(len(names))]
    if any(column is None for column in columns):
        return None
    return _frame(header, columns)
