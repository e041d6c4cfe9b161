"""gunicorn's own HTTP/1.1 parser as the judge of the requests llhttp reads otherwise: uvicorn's protocol hands it the
bytes of a request llhttp refused (or found odd), and answers with the page gunicorn would have written."""
from __future__ import annotations

import functools

from gunicorn.config import Config
from gunicorn.http import errors
from gunicorn.http.parser import RequestParser

from drum_compat.shared.guards.protocol import ProtocolLimits, ProtocolRefusal

PEER = ("127.0.0.1", 0)  # the parser wants one; only a proxy-protocol check reads it, and that is off

# gunicorn's Worker.handle_error, as a table: the first class an error is an instance of gives the status, the reason
# and the page's message (a format of the error's text); a client error of any other class is a 400 with its text
ANSWERS = (
    (errors.InvalidRequestLine, 400, "Bad Request", "Invalid Request Line '{}'"),
    (errors.InvalidRequestMethod, 400, "Bad Request", "Invalid Method '{}'"),
    (errors.InvalidHTTPVersion, 400, "Bad Request", "Invalid HTTP Version '{}'"),
    (errors.UnsupportedTransferCoding, 501, "Bad Request", "{}"),
    (errors.LimitRequestLine, 414, "URI Too Long", "{}"),
    (errors.LimitRequestHeaders, 431, "Request Header Fields Too Large", "Error parsing headers: '{}'"),
    (errors.ExpectationFailed, 417, "Expectation Failed", "{}"),
)


@functools.lru_cache(maxsize=8)
def _config(limits: ProtocolLimits) -> Config:
    config = Config()
    for name in ProtocolLimits.__dataclass_fields__:
        config.set(name, getattr(limits, name))
    return config


# what gunicorn's reader raises for a chunked body whose framing is broken
BODY_ERRORS = (errors.InvalidChunkSize, errors.ChunkMissingTerminator, errors.InvalidChunkExtension)


def gunicorn_refusal(data: bytes, limits: ProtocolLimits, heads_only: bool = False) -> ProtocolRefusal | None:
    """What gunicorn answers to `data` (one connection's bytes from a request's start: one or more requests, the last
    one possibly incomplete): the refusal of the first request it refuses, in its head or (unless `heads_only`) its
    chunked body; None where it refuses none of them (it accepts them all, or the bytes end before it can tell)."""
    try:
        for request in RequestParser(_config(limits), [data], PEER):
            if not heads_only:
                request.body.read()
    except BODY_ERRORS as error:
        return None if heads_only else refusal_of(error)
    except errors.ParseException as error:
        return refusal_of(error)
    except (StopIteration, errors.NoMoreData):
        pass
    return None


def refusal_of(error: errors.ParseException) -> ProtocolRefusal:
    for kind, status, reason, message in ANSWERS:
        if isinstance(error, kind):
            return ProtocolRefusal(status, reason, message.format(error))
    return ProtocolRefusal(400, "Bad Request", str(error))
