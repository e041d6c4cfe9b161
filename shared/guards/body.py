"""The request body limit and its buffer: 413 when Content-Length says too much or as soon as a streamed
body crosses the limit (holding at most the limit plus one chunk); bodies past 10 MiB go to a temp file."""
from __future__ import annotations

import os
import tempfile

from drum_compat.shared.http import NeutralResponse, json_response

SPOOL_ABOVE = 10 * 1024 * 1024  # bytes kept in memory before the body moves to a temporary file
CHUNK = 64 * 1024  # the pieces a held body or an upstream's answer is passed on in


class RequestBody:
    """A body received chunk by chunk under a limit. `feed` returns False once the limit is crossed
    (nothing more is kept); `close` removes the temporary file, if any."""

    def __init__(self, limit: int, spool_dir: str | None = None) -> None:
        self.limit = limit
        self.size = 0
        self.complete = False  # set by the front door once all of it arrived within the limit
        self._spool_dir = spool_dir
        self._file: tempfile.SpooledTemporaryFile | None = None  # made for the first byte: most GETs have none

    def _opened(self) -> tempfile.SpooledTemporaryFile:
        if self._file is None:
            self._file = tempfile.SpooledTemporaryFile(max_size=SPOOL_ABOVE, dir=self._spool_dir)
        return self._file

    def feed(self, chunk: bytes) -> bool:
        self.size += len(chunk)
        if self.size > self.limit:
            return False
        if chunk:
            self._opened().write(chunk)
        return True

    @property
    def spooled(self) -> bool:
        return self._file is not None and self._file._rolled  # moved to a temporary file

    @property
    def file(self):
        """The body as a file at its start (what a WSGI app reads as wsgi.input)."""
        file = self._opened()
        file.seek(0)
        return file

    def read(self) -> bytes:
        return self.file.read() if self._file is not None else b""

    def read_at(self, offset: int, size: int) -> bytes:
        """Bytes at `offset`, without moving the file's position: safe beside a reader of `file` in another thread."""
        if self._file is None:
            return b""
        if self.spooled:
            return os.pread(self._file.fileno(), size, offset)
        return self._file._file.getbuffer()[offset:offset + size].tobytes()

    def as_wsgi_input(self, environ: dict) -> None:
        """Make a WSGI environ's body this one: plain bytes of a known length, however the client sent them."""
        environ["wsgi.input"] = self.file
        environ["CONTENT_LENGTH"] = str(self.size)
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        environ["wsgi.input_terminated"] = True

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def declared_length(content_length: str | None) -> int | None:
    return int(content_length) if content_length is not None and content_length.strip().isdigit() else None


def declared_too_large(content_length: str | None, limit: int) -> bool:
    declared = declared_length(content_length)
    return declared is not None and declared > limit


def cut_short(received: int, declared: int | None) -> NeutralResponse:
    """The body ended before its Content-Length (the client went away or half-closed): never scored."""
    what = f"after {received} of the {declared} bytes its Content-Length declared" if declared is not None else "before its last chunk"
    return json_response({"message": f"ERROR: The request body ended {what}"}, 400, [("Connection", "close")])


def malformed_chunks() -> NeutralResponse:
    """400: the chunked framing is broken (a chunk size that is no number, a chunk without its CRLF), so where the next
    request would start is unknown and the connection closes. One message on every stack: llhttp does not say what
    gunicorn's reader says."""
    return json_response({"message": "ERROR: The request body is not valid chunked transfer coding"}, 400,
                         [("Connection", "close")])


def too_slow(seconds: float) -> NeutralResponse:
    """408: the body did not arrive by the request's deadline (a client trickling it holds a connection and a buffer)."""
    return json_response({"message": f"ERROR: The request body did not arrive within {seconds:g} s "
                                     "(DRUM_CLIENT_REQUEST_TIMEOUT)"}, 408, [("Connection", "close")])


def too_large(limit: int) -> NeutralResponse:
    """413 in DRUM's error format; the rest of the body is never read, so the connection closes."""
    return json_response(
        {"message": f"ERROR: Request body is larger than {limit} bytes (DRUM_MAX_UPLOAD_SIZE)"}, 413, [("Connection", "close")]
    )
