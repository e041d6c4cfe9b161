"""Request payloads in (CSV, MTX, multipart `X`/`X.colnames`/`y`, unstructured bodies) and
response payloads out (predictions JSON as pandas writes it, the transform multipart body)."""
from __future__ import annotations

import io
import os
import sys
import uuid
from dataclasses import dataclass
from typing import Iterator

import pandas as pd
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.formparser import FormDataParser
from werkzeug.http import parse_options_header

from drum_compat.shared.errors import DrumError
from drum_compat.shared.http import NeutralRequest
from drum_compat.shared.small_csv import read_small_numeric_csv

MTX_MIMETYPE = "text/mtx"
CSV_MIMETYPES = frozenset({None, "", "text/csv", "text/plain"})
FORM_MIMETYPES = frozenset({"multipart/form-data", "application/x-www-form-urlencoded"})
# Flask 3.1's defaults for non-file form fields (MAX_FORM_MEMORY_SIZE, MAX_FORM_PARTS).
MAX_FORM_MEMORY_SIZE = 500_000
MAX_FORM_PARTS = 1000

SAMPLES_MISSING = (
    "Samples should be provided as:   - a csv or mtx under `X` form-data param key.  - binary data"
)


class SamplesMissing(ValueError):
    pass


def content_type_parts(content_type: str | None) -> tuple[str, str | None]:
    """(mimetype, charset) as DRUM reads them: mimetype case kept, charset parameter optional."""
    mimetype, options = parse_options_header(content_type or "")
    return mimetype, options.get("charset")


@dataclass
class ParsedBody:
    """What Flask's request.data / request.files hold for this body."""

    data: bytes
    files: MultiDict


def parse_body(request: NeutralRequest) -> ParsedBody:
    """Form bodies are parsed into files, leaving in `data` what the parser did not read, exactly as werkzeug does."""
    mimetype = request.mimetype
    if mimetype not in FORM_MIMETYPES:
        return ParsedBody(request.body, MultiDict())
    parser = FormDataParser(max_form_memory_size=MAX_FORM_MEMORY_SIZE, max_form_parts=MAX_FORM_PARTS, silent=True)
    # what is left of the stream is request.data: nothing after a parsed form, the whole body when the form
    # could not even start (a multipart type without a boundary)
    rest, _, files = parser.parse(io.BytesIO(request.body), mimetype, len(request.body), request.mimetype_params)
    return ParsedBody(rest.read(), files)


def mimetype_from_filename(filename: str | None) -> str | None:
    return MTX_MIMETYPE if os.path.splitext(filename or "")[1] == ".mtx" else None


@dataclass
class StructuredInput:
    binary_data: bytes
    mimetype: str | None
    charset: str | None


def fetch_input(request: NeutralRequest, body: ParsedBody, key: str) -> StructuredInput:
    """A file part named `key` (mimetype by file extension only), else the raw body for `X`."""
    part: FileStorage | None = body.files.get(key)
    if part is not None:
        return StructuredInput(part.stream.read(), mimetype_from_filename(part.filename), None)
    if body.data and key == "X":
        mimetype, charset = content_type_parts(request.content_type)
        return StructuredInput(body.data, mimetype, charset)
    raise SamplesMissing(SAMPLES_MISSING)


def fetch_sparse_colnames(body: ParsedBody) -> list[str] | None:
    part = body.files.get("X.colnames")
    raw = part.stream.read() if part is not None else b""
    if not raw:
        return None
    return [line.strip().decode("utf-8") for line in io.BytesIO(raw).readlines()]


def unsupported_payload_message(mimetype: str | None) -> str:
    return (
        f"payload format `{mimetype}` is not supported by predictor/transformer. "
        "Make DRUM support the format or implement `read_input_data` hook to read the data. "
    )


def is_supported_mimetype(mimetype: str | None) -> bool:
    return mimetype in CSV_MIMETYPES or mimetype == MTX_MIMETYPE


def read_structured_input(binary_data: bytes, mimetype: str | None, sparse_colnames: list[str] | None = None) -> pd.DataFrame:
    """DRUM's reader: MTX through scipy, anything else as UTF-8 CSV through pandas."""
    try:
        if mimetype == MTX_MIMETYPE:
            from scipy.io import mmread  # scipy, 12 MiB of every worker's memory, loads for a sparse payload only

            return pd.DataFrame.sparse.from_spmatrix(mmread(io.BytesIO(binary_data)), columns=sparse_colnames)
        frame = read_small_numeric_csv(binary_data)
        if frame is not None:
            return frame
        try:
            frame = pd.read_csv(io.BytesIO(binary_data))
        except UnicodeDecodeError:
            raise DrumError("Supplied CSV input file encoding must be UTF-8.") from None
        if frame.shape[1] == 1:
            # a single column: blank lines are missing values, not separators
            frame = pd.read_csv(io.BytesIO(binary_data), skip_blank_lines=False)
        return frame
    except pd.errors.ParserError:
        raise DrumError(f"Pandas failed to read input binary data {binary_data!r}") from None


def csv_batches(file, rows: int) -> Iterator[pd.DataFrame]:
    """A CSV read `rows` rows at a time, as the frames are needed (read_structured_input's rules, batch by batch)."""
    try:
        reader = pd.read_csv(file, chunksize=rows)
        first = next(reader)
        if first.shape[1] == 1:  # a single column: blank lines are missing values, not separators
            file.seek(0)
            reader = pd.read_csv(file, chunksize=rows, skip_blank_lines=False)
            first = next(reader)
        yield first
        yield from reader
    except UnicodeDecodeError:
        raise DrumError("Supplied CSV input file encoding must be UTF-8.") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DrumError(f"Pandas failed to read the streamed CSV: {exc}") from None


def predictions_json(predictions: pd.DataFrame, extra_model_output: pd.DataFrame | None) -> bytes:
    """DRUM's body, concatenated from pandas' own JSON (10 significant digits, NaN as null)."""
    out = predictions[predictions.columns[0]] if len(predictions.columns) == 1 else predictions
    records = out.to_json(orient="records")
    if extra_model_output is None:
        return f'{{"predictions":{records}}}'.encode()
    return f'{{"predictions":{records},"extraModelOutput":{extra_model_output.to_json(orient="split")}}}'.encode()


def is_sparse_frame(frame: pd.DataFrame) -> bool:
    if any(isinstance(dtype, pd.SparseDtype) for dtype in frame.dtypes):
        return True
    # a scipy matrix in a cell: only possible once something (the model) loaded scipy.sparse
    sparse = sys.modules.get("scipy.sparse")
    return sparse is not None and len(frame) > 0 and frame.shape[1] > 0 and sparse.issparse(frame.iloc[0].values[0])


def _serializable_columns(frame: pd.DataFrame) -> pd.DataFrame:
    columns = [str(name).strip().replace("\n", "\\n") for name in frame.columns]
    if len([name for name in columns if name]) != frame.shape[1]:
        raise ValueError(
            "Column name serialization check failed, deserializing column names resulted in "
            f"{len([name for name in columns if name])}, expected {frame.shape[1]}\n"
            "Ensure there are no column names made up entirely of whitespace"
        )
    frame = frame.copy(deep=False)
    frame.columns = columns
    return frame


def csv_payload(frame: pd.DataFrame) -> bytes:
    frame = _serializable_columns(frame)
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, lineterminator="\r\n")
    return buffer.getvalue()[:-2].encode("utf-8")


def mtx_payload(frame: pd.DataFrame) -> tuple[bytes, bytes]:
    from scipy.io import mmwrite  # see read_structured_input

    frame = _serializable_columns(frame)
    sink = io.BytesIO()
    mmwrite(sink, frame.sparse.to_coo())
    return sink.getvalue(), "\n".join(str(name) for name in frame.columns).encode("utf-8")


def multipart_form(fields: list[tuple[str, bytes, bool]], boundary: str | None = None) -> tuple[bytes, str]:
    """Encode (name, value, is_file) parts byte for byte as requests_toolbelt's MultipartEncoder
    does for DRUM: file parts carry filename=name and application/octet-stream."""
    boundary = boundary or uuid.uuid4().hex
    chunks = []
    for name, value, is_file in fields:
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"'
        if is_file:
            head += f'; filename="{name}"\r\nContent-Type: application/octet-stream'
        chunks.append(head.encode() + b"\r\n\r\n" + value + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def transform_response_parts(features: pd.DataFrame, target: pd.DataFrame | None) -> list[tuple[str, bytes, bool]]:
    if is_sparse_frame(features):
        payload, colnames = mtx_payload(features)
        parts = [("X.format", b"sparse", False), ("X.transformed", payload, True), ("X.colnames", colnames, True)]
    else:
        parts = [("X.format", b"csv", False), ("X.transformed", csv_payload(features), True)]
    if target is not None:
        parts += [("y.format", b"csv", False), ("y.transformed", csv_payload(target), True)]
    return parts
