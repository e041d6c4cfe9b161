"""uvicorn's httptools protocol held to gunicorn's rules (shared.guards.protocol): its limits and error pages,
any token method reaching the app, and an answer for a client that half-closes after its request."""
from __future__ import annotations

import re

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from drum_compat.shared.guards.protocol import ProtocolLimits, ProtocolRefusal, malformed, method_refusal, version_refusal

# llhttp parses a fixed list of methods; these are the ones it is sure to know
PARSED_METHODS = frozenset({b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH"})
STAND_IN_METHOD = b"GET"  # what llhttp parses in place of a method it does not know
FIRST_TOKEN = re.compile(rb"([^ \r\n]*) ")
REQUEST_LINE_VERSION = re.compile(rb"[^ \r\n]+ [^ \r\n]+ HTTP/(\d)\.(\d)\r?\n")
HTTP_VERSION_SUFFIX = len(" HTTP/1.1")


class Refused(Exception):
    def __init__(self, refusal: ProtocolRefusal) -> None:
        self.refusal = refusal


class DrumConfig(uvicorn.Config):
    """uvicorn's Config plus the protocol limits, which travel with it to each spawned worker."""

    def __init__(self, *args, protocol_limits: ProtocolLimits = ProtocolLimits(), **kwargs) -> None:
        super().__init__(*args, http=DrumHttpToolsProtocol, **kwargs)
        self.protocol_limits = protocol_limits


class DrumHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, config: DrumConfig, *args, **kwargs) -> None:
        super().__init__(config, *args, **kwargs)
        self.limits = config.protocol_limits

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._between_messages = True
        self._real_method: bytes | None = None

    def data_received(self, data: bytes) -> None:
        # uvicorn's, with gunicorn's answers where the parser or a limit refuses
        self._unset_keepalive_if_required()
        try:
            if self._between_messages:
                data = self._stand_in_for_unknown_method(data)
            self.parser.feed_data(data)
        except Refused as refused:
            self._refuse(refused.refusal)
        except httptools.HttpParserCallbackError as error:  # a callback raised: ours carry their refusal
            self._refuse(error.__context__.refusal if isinstance(error.__context__, Refused) else malformed())
        except httptools.HttpParserError:
            self._refuse(malformed())
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()

    def _stand_in_for_unknown_method(self, data: bytes) -> bytes:
        """gunicorn hands any token method to the app (which answers 404/405); llhttp would reject one it does
        not know, so it parses a stand-in and the app gets the real method. Versions llhttp rejects get
        gunicorn's answer too."""
        version = REQUEST_LINE_VERSION.match(data)
        if version is not None:
            refusal = version_refusal(f"{int(version.group(1))}.{int(version.group(2))}", "")
            if refusal is not None:
                raise Refused(refusal)
        match = FIRST_TOKEN.match(data)
        if match is None or match.group(1) in PARSED_METHODS:
            return data
        method = match.group(1)
        refusal = method_refusal(method.decode("latin-1"))
        if refusal is not None:
            raise Refused(refusal)
        self._real_method = method
        return STAND_IN_METHOD + data[len(method):]

    def _refuse(self, refusal: ProtocolRefusal) -> None:
        if not self.transport.is_closing():
            self.transport.write(refusal.page())
            self.transport.close()

    # parser callbacks, each held to gunicorn's limits
    def on_message_begin(self) -> None:
        self._between_messages = False
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        method = self._real_method or self.parser.get_method()
        refusal = self.limits.request_line_refusal(len(method) + 1 + len(self.url) + HTTP_VERSION_SUFFIX)
        if refusal is not None:
            raise Refused(refusal)

    def on_header(self, name: bytes, value: bytes) -> None:
        refusal = self.limits.header_refusal(len(self.headers), name, value)
        if refusal is not None:
            raise Refused(refusal)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        method = self._real_method or self.parser.get_method()
        refusal = version_refusal(self.parser.get_http_version(), (method + b" " + self.url).decode("latin-1"))
        if refusal is not None:
            raise Refused(refusal)
        super().on_headers_complete()
        if self._real_method is not None:
            self.scope["method"] = self._real_method.decode("latin-1")  # the app's task has not started yet
            self._real_method = None

    def on_message_complete(self) -> None:
        self._between_messages = True
        super().on_message_complete()

    def eof_received(self) -> bool | None:
        """The client has sent all it will (`shutdown(SHUT_WR)`, `nc -N`): answer what it asked, then close.
        A body still short of its Content-Length ends there (the app refuses it, as on gunicorn); a chunked
        one without its last chunk is a disconnect."""
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            return None  # nothing to answer: let the transport close
        cycle.keep_alive = False
        if cycle.more_body:
            cycle.message_event.set()
            if not any(name == b"content-length" for name, _ in self.headers):
                cycle.disconnected = True
                return None  # nothing will be answered: let the transport close
            cycle.more_body = False
        return True  # keep the transport open to write the answer
