"""The small-CSV shortcut against pandas' read_csv: on generated CSVs in and around the shapes it accepts, every frame
it makes equals read_csv's (values, dtypes, names, index, blocks), and it declines whatever it cannot prove."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drum_compat.shared.payloads import read_structured_input
from drum_compat.shared.small_csv import SMALL_CSV_MAX_BYTES, read_small_numeric_csv

PLAIN_NAMES = st.sampled_from(["a", "b", "c", "sqft", "x_1", "y.2", "Z-3", "_"])
NAMES = st.one_of(PLAIN_NAMES, st.sampled_from(["a", "Unnamed: 0", "a b", "", "nan", "1", "é", "-z", " a"]))
# mostly within the shortcut's digit limits, sometimes across them
SHORT_DIGITS = st.text("0123456789", min_size=1, max_size=7)
DIGITS = st.one_of(SHORT_DIGITS, SHORT_DIGITS, SHORT_DIGITS, SHORT_DIGITS, st.text("0123456789", min_size=1, max_size=20))
SIGN = st.sampled_from(["", "", "-"])
INTEGER = st.builds(lambda sign, whole: sign + whole, SIGN, DIGITS)
DECIMAL = st.builds(lambda sign, whole, part: f"{sign}{whole}.{part}", SIGN, DIGITS, DIGITS)
ODD = st.one_of(st.floats(allow_nan=False, allow_infinity=False).map(repr), st.integers(-(2**70), 2**70).map(str),
                st.sampled_from(["", "NA", "nan", "True", " 1", "1e5", "+1", ".5", "1.", '"1"', "0x1", "1_0", "١"]))
# a column is of one kind, as real features are; a few are anything
COLUMN_KINDS = st.sampled_from([INTEGER, INTEGER, DECIMAL, DECIMAL, st.one_of(INTEGER, DECIMAL), st.one_of(INTEGER, ODD)])
LINE_END = st.sampled_from(["\n"] * 5 + ["\r\n"])


@st.composite
def csv_bodies(draw) -> bytes:
    columns = draw(st.integers(1, 5))
    plain = draw(st.integers(0, 3)) > 0
    names = draw(st.lists(PLAIN_NAMES if plain else NAMES, min_size=columns, max_size=columns, unique=plain))
    kinds = [draw(COLUMN_KINDS) for _ in range(columns + 1)]
    rows = [[draw(kind) for kind in kinds[: columns + (draw(st.integers(0, 20)) == 0)]]
            for _ in range(draw(st.integers(0, 12)))]
    lines = [",".join(names)] + [",".join(row) for row in rows]
    if draw(st.integers(0, 5)) == 0 and len(lines) > 2:
        lines.insert(draw(st.integers(1, len(lines) - 1)), "")
    end = draw(LINE_END)
    return (end.join(lines) + (end if draw(st.booleans()) else "")).encode()


def pandas_frame(body: bytes) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(body))


def assert_same_frame(ours: pd.DataFrame, theirs: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(ours, theirs, check_exact=True, check_index_type=True, check_column_type=True)
    assert [block.dtype for block in ours._mgr.blocks] == [block.dtype for block in theirs._mgr.blocks]
    # equal as values, and numbers as bits: -0.0 stays -0.0
    for name in theirs.select_dtypes("number").columns:
        assert ours[name].to_numpy().tobytes() == theirs[name].to_numpy().tobytes(), name


@settings(max_examples=1500, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(csv_bodies())
def test_every_frame_it_makes_is_the_one_read_csv_makes(body):
    ours = read_small_numeric_csv(body)
    if ours is not None:
        assert_same_frame(ours, pandas_frame(body))


@settings(max_examples=500, deadline=None, derandomize=True)
@given(st.lists(st.lists(st.one_of(st.integers(-(10**11), 10**11).map(str),
                                   st.decimals(allow_nan=False, allow_infinity=False, places=4,
                                               min_value=-(10**10), max_value=10**10).map(str)),
                         min_size=3, max_size=3), min_size=1, max_size=20))
def test_plain_numeric_csvs_take_the_shortcut_and_match(rows):
    body = ("a,b,c\n" + "".join(",".join(row) + "\n" for row in rows)).encode()
    ours = read_small_numeric_csv(body)
    assert ours is not None, body
    assert_same_frame(ours, pandas_frame(body))


@pytest.mark.parametrize("body", [
    b"a,b\n1,2\n\n3,4\n",           # a blank line: pandas skips it, or reads NaN in a single column
    b"a,b\r\n1,2\r\n",              # CRLF
    b"a,a\n1,2\n",                  # duplicate names are mangled by pandas
    b"a,\n1,2\n",                   # an unnamed column
    b"\xef\xbb\xbfa,b\n1,2\n",      # a byte order mark
    b"a,b\n1,2,3\n",                # a longer row makes an index
    b"a,b\n1\n",                    # a shorter row makes NaN
    b"a,b\n1,NA\n",                 # missing values
    b"a\n1234567890123456789\n",    # past int64's 18 safe digits
    b"a\n0.1234567890123456\n",     # past 15 significant digits
    b"a,b\n",                       # no rows
    b"a\n1e5\n",                    # exponents
    b"a\n+1\n",                     # explicit signs
    b"a\n1\n" * 200,                # past the size where pandas is quicker
])
def test_it_declines_what_it_cannot_prove(body):
    assert read_small_numeric_csv(body) is None


def test_the_size_limit_is_where_pandas_takes_over():
    row = b"1,2\n"
    at_limit = b"a,b\n" + row * ((SMALL_CSV_MAX_BYTES - 4) // len(row))
    assert read_small_numeric_csv(at_limit) is not None
    assert read_small_numeric_csv(at_limit + row) is None


def test_requests_read_through_it_get_read_csvs_frame_either_way():
    small = b"sqft,bedrooms,price\n1200,3,1.5\n800,-2,-0.0\n"
    assert read_small_numeric_csv(small) is not None
    assert_same_frame(read_structured_input(small, "text/csv"), pandas_frame(small))
    declined = b"sqft,city\n1200,Boston\n"
    frame = read_structured_input(declined, "text/csv")
    assert_same_frame(frame, pandas_frame(declined))
    assert frame["sqft"].dtype == np.int64


def test_each_frame_has_its_own_column_labels_though_the_header_repeats():
    body = b"sqft,bedrooms\n1200,3\n"
    first = read_small_numeric_csv(body)
    first.columns.name = "features"  # what a model may do to the frame it was given
    second = read_small_numeric_csv(body)
    assert second.columns.name is None
    assert list(second.columns) == ["sqft", "bedrooms"]
