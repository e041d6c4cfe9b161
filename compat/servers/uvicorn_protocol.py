"""uvicorn's httptools protocol held to gunicorn's rules (shared.guards.protocol): its limits and error pages,
any token method reaching the app, and an answer for a client that half-closes after its request."""
from __future__ import annotations

import os
import resource
from typing import Callable

import httptools
import psutil
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from drum_compat.runtime.supervisor import die_with_parent
from drum_compat.fastapi_backend.at_once import AnswersAtOnce, Pending, Replayed

from drum_compat.shared.guards.protocol import (ProtocolLimits, ProtocolRefusal, bodiless, first_line_verdict, malformed,
                                               repeated_field_refusal, version_refusal)
from drum_compat.shared.guards.room import longest_waiting, short_of_fds
from drum_compat.shared.metrics import CLOSED_FOR_ROOM, SLOW_HEAD

# llhttp parses a fixed list of methods; these are the ones it is sure to know
PARSED_METHODS = frozenset({b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH"})
STAND_IN_METHOD = b"GET"  # what llhttp parses in place of a method it does not know
HTTP_VERSION_SUFFIX = len(" HTTP/1.1")
HEAD_END = b"\r\n\r\n"


class Refused(Exception):
    def __init__(self, refusal: ProtocolRefusal) -> None:
        self.refusal = refusal


class DrumConfig(uvicorn.Config):
    """uvicorn's Config plus the protocol limits and the master's pid, which travel with it to each spawned worker."""

    def __init__(self, *args, protocol_limits: ProtocolLimits = ProtocolLimits(), queue_in_backlog: bool = False,
                 **kwargs) -> None:
        super().__init__(*args, http=DrumHttpToolsProtocol, **kwargs)
        self.protocol_limits = protocol_limits
        self.queue_in_backlog = queue_in_backlog  # DRUM_QUEUE_IN_BACKLOG: the worker accepts itself (servers.uvicorn_balancing)
        self.master = os.getpid()
        self.warned_short_of_fds = False  # in each worker: the first closure for room is logged, the metric counts all
        self.connection_closed: Callable[[], None] | None = None  # in each worker: DRUM_QUEUE_IN_BACKLOG's accept loop

    def load(self) -> None:
        # the worker's first step (the supervisor never loads): it must not outlive the master
        die_with_parent(self.master)
        super().load()


class DrumHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, config: DrumConfig, *args, **kwargs) -> None:
        super().__init__(config, *args, **kwargs)
        self.limits = config.protocol_limits
        self.fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        # the lean dispatch's answers at once (fastapi_backend.at_once); None serves every request through the app
        self.at_once: AnswersAtOnce | None = getattr(self.app, "at_once", None)
        self._may_answer_at_once = False
        self._answering: tuple[RequestResponseCycle, Pending | Replayed] | None = None
        self._singletons: set[bytes] = set()  # this message's Host and Content-Type, to refuse a second one
        self._head_done = False  # a header after the head is a chunked trailer: never a request header, as on gunicorn

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._between_messages = True
        self._real_method: bytes | None = None
        # a connection that never sends its first head is closed after the keep-alive period, as gunicorn does
        self._head_timer = self.loop.call_later(self.timeout_keep_alive, self._head_too_slow)
        self.head_wait_since: float | None = self.loop.time()  # None while a request is read or answered
        if short_of_fds(len(self.connections), self.fd_limit, psutil.Process().num_fds):
            self._close_for_room()

    def _close_for_room(self) -> None:
        others = ((other.head_wait_since, other) for other in self.connections
                  if other is not self and getattr(other, "head_wait_since", None) is not None
                  and not other.transport.is_closing())
        oldest = longest_waiting(others)
        if oldest is None:
            return
        if not self.config.warned_short_of_fds:
            self.config.warned_short_of_fds = True
            self.logger.warning("Worker %d is near its limit of %d open files: each new connection closes the one that "
                                "has waited longest for a request (counted in drum_rejections_total{reason=\"%s\"})",
                                os.getpid(), self.fd_limit, CLOSED_FOR_ROOM)
        oldest._count(CLOSED_FOR_ROOM)
        oldest.transport.close()

    def connection_lost(self, exc) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)
        if self.config.connection_closed is not None:
            self.config.connection_closed()

    def handle_websocket_upgrade(self) -> None:
        super().handle_websocket_upgrade()
        if self.config.connection_closed is not None:  # no HTTP connection any more, as uvicorn counts them: a socket
            self.config.connection_closed()  # open for good must not take a model thread's place for good

    def data_received(self, data: bytes) -> None:
        # uvicorn's, with gunicorn's answers where the parser or a limit refuses
        self._unset_keepalive_if_required()
        if self._between_messages and self._head_timer is None and HEAD_END not in data:
            # a head that does not end within the keep-alive period is closed, as gunicorn does
            self._head_timer = self.loop.call_later(self.timeout_keep_alive, self._head_too_slow)
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
        """llhttp would reject a token method it does not know (gunicorn hands it to the app), so it parses a stand-in
        and the app gets the real method; gunicorn's refusals of the request line come first."""
        verdict = first_line_verdict(data, PARSED_METHODS)
        if isinstance(verdict, ProtocolRefusal):
            raise Refused(verdict)
        if verdict is None:
            return data
        self._real_method = verdict
        return STAND_IN_METHOD + data[len(verdict):]

    def _unsupported_upgrade_warning(self) -> None:
        pass  # as gunicorn: an upgrade nobody serves (WebSockets are off without custom_fastapi.py) is answered, unlogged

    def _refuse(self, refusal: ProtocolRefusal) -> None:
        if not self.transport.is_closing():
            self.transport.write(refusal.page())
            self.transport.close()

    # parser callbacks, each held to gunicorn's limits
    def on_message_begin(self) -> None:
        self._between_messages = False
        self._singletons.clear()
        self._head_done = False
        self._unset_keepalive_if_required()  # a request answered at once armed it, and pipelined ones may follow
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        method = self._real_method or self.parser.get_method()
        refusal = self.limits.request_line_refusal(len(method) + 1 + len(self.url) + HTTP_VERSION_SUFFIX)
        if refusal is not None:
            raise Refused(refusal)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._head_done:
            return  # the app's scope holds this very list: a trailer must not reach it (a spoofing path)
        refusal = self.limits.header_refusal(len(self.headers), name, value) or repeated_field_refusal(name, self._singletons)
        if refusal is not None:
            raise Refused(refusal)
        super().on_header(name, value)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _count(self, reason: str) -> None:
        core = getattr(self.at_once, "core", None)  # counted where the core is at hand (no extension loaded)
        if core is not None:
            core.metrics.rejected(reason)

    def _head_too_slow(self) -> None:
        self._head_timer = None
        self._count(SLOW_HEAD)
        self.transport.close()

    def on_headers_complete(self) -> None:
        self._head_done = True
        self._stop_head_timer()
        self.head_wait_since = None
        method = self._real_method or self.parser.get_method()
        refusal = version_refusal(self.parser.get_http_version(), (method + b" " + self.url).decode("latin-1"))
        if refusal is not None:
            raise Refused(refusal)
        self._may_answer_at_once = (self.at_once is not None and self._real_method is None
                                    and not self.expect_100_continue and bodiless(self.headers))
        super().on_headers_complete()
        self._may_answer_at_once = False
        if self._real_method is not None:
            self.scope["method"] = self._real_method.decode("latin-1")  # the app's task has not started yet
            self._real_method = None

    def _start_asgi_task(self, cycle: RequestResponseCycle, app) -> None:
        # called by on_headers_complete when no answer is pending (else the request waits in uvicorn's pipeline)
        if self._may_answer_at_once and app is self.app:
            taken = self.at_once.take(cycle.scope)
            if taken is not None:
                self._answering = (cycle, taken)  # answered once the parser has seen the message end
                return
        super()._start_asgi_task(cycle, app)

    def on_message_complete(self) -> None:
        self._between_messages = True
        super().on_message_complete()
        if self._answering is not None:
            transport_cycle, taken = self._answering
            self._answering = None
            self._answer_at_once(transport_cycle, taken)

    def _answer_at_once(self, transport_cycle: RequestResponseCycle, taken: Pending | Replayed) -> None:
        try:
            keep_alive = self.at_once.answer(taken, self.transport.write, self.server_state.default_headers,
                                             transport_cycle.keep_alive)
        except Exception as exc:  # as uvicorn's run_asgi: logged, then its plain 500, which closes the connection
            self.logger.error("Exception in ASGI application\n", exc_info=exc)
            self.loop.create_task(transport_cycle.send_500_response())
            return
        transport_cycle.response_complete = True
        if not keep_alive:
            self.transport.close()
        transport_cycle.on_response()

    def on_response_complete(self) -> None:
        self.head_wait_since = self.loop.time()
        super().on_response_complete()

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
