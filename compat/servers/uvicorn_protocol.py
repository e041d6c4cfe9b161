"""uvicorn's httptools protocol held to gunicorn's rules (shared.guards.protocol): its limits and error pages (gunicorn's
own parser judging what llhttp refuses), any token method reaching the app, a broken chunked body answered by the core,
and an answer for a client that half-closes after its request."""
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
from drum_compat.fastapi_backend.steps import MALFORMED_BODY_EVENT
from drum_compat.servers.reference_parser import gunicorn_refusal

from drum_compat.shared.guards.protocol import (HTTP_VERSIONS, UNUSUAL_LINE, ProtocolLimits, ProtocolRefusal, bodiless, chunked,
                                               as_http_11, first_line_verdict, malformed, repeated_field_refusal,
                                               unknown_method, unusual_coding,
                                               version_refusal)
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
        self._received: list[bytes] = []  # the bytes since a request's start, for gunicorn's parser should llhttp refuse
        self._framing_lost = False  # a chunked body llhttp refused: nothing after it on this connection is a request

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
        if self._framing_lost:
            return
        self._unset_keepalive_if_required()
        if self._between_messages:
            self._received = [data]
            if self._head_timer is None and HEAD_END not in data:
                # a head that does not end within the keep-alive period is closed, as gunicorn does
                self._head_timer = self.loop.call_later(self.timeout_keep_alive, self._head_too_slow)
        elif not self._head_done:
            self._received.append(data)
        try:
            if self._between_messages:
                data = self._as_llhttp_reads_it(data)
            self.parser.feed_data(data)
        except Refused as refused:
            self._refuse(refused.refusal)
        except httptools.HttpParserCallbackError as error:  # a callback raised: ours carry their refusal
            if isinstance(error.__context__, Refused):
                self._refuse(error.__context__.refusal)
            else:
                self._parser_refused()
        except httptools.HttpParserError:
            self._parser_refused()
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()

    def _as_llhttp_reads_it(self, data: bytes) -> bytes:
        """A request's start, for llhttp: an unusual line is judged by gunicorn's parser first (llhttp may read `GET  /ping`
        where gunicorn refuses it), and what gunicorn serves llhttp would not is read through a stand-in: a version
        from 1.2 to 1.9 as 1.1, and a token method llhttp does not know as GET (the app gets the real method)."""
        verdict = first_line_verdict(data, PARSED_METHODS)
        if verdict is UNUSUAL_LINE:
            refusal = gunicorn_refusal(data, self.limits, heads_only=True)
            if refusal is not None:
                raise Refused(refusal)
            data = as_http_11(data)
            verdict = unknown_method(data, PARSED_METHODS)  # gunicorn took it: its method is a token
        if isinstance(verdict, ProtocolRefusal):
            raise Refused(verdict)
        if verdict is None:
            return data
        self._real_method = verdict
        return STAND_IN_METHOD + data[len(verdict):]

    def _unsupported_upgrade_warning(self) -> None:
        pass  # as gunicorn: an upgrade nobody serves (WebSockets are off without custom_fastapi.py) is answered, unlogged

    def _parser_refused(self) -> None:
        """llhttp refused the bytes. In a request's head: the page gunicorn writes for them (its parser reads them again;
        the page is the generic one only where it finds nothing wrong). In a chunked body: the app's request ends there,
        and the core answers it (shared.guards.body.malformed_chunks); the connection closes after that answer."""
        cycle = self.cycle
        if not self._head_done:
            self._refuse(gunicorn_refusal(b"".join(self._received), self.limits) or malformed())
        elif cycle is not None and hasattr(cycle, "framing_lost") and not cycle.response_started:
            self._framing_lost = cycle.framing_lost = True
            cycle.keep_alive = cycle.more_body = False
            cycle.message_event.set()
        else:
            self.transport.close()

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
        refusal, version = None, self.parser.get_http_version()
        if version not in HTTP_VERSIONS or unusual_coding(self.headers, version):
            # llhttp reads `Transfer-Encoding: identity` or `foo`, or any in HTTP/1.0; gunicorn refuses them, in its order
            refusal = gunicorn_refusal(b"".join(self._received), self.limits, heads_only=True) or version_refusal(
                version, (method + b" " + self.url).decode("latin-1"))
        if refusal is not None:
            raise Refused(refusal)
        has_body = not bodiless(self.headers)
        self._may_answer_at_once = (self.at_once is not None and self._real_method is None
                                    and not self.expect_100_continue and not has_body)
        super().on_headers_complete()
        self._may_answer_at_once = False
        if has_body and chunked(self.headers) and self.cycle is not None and self.cycle.scope is self.scope:
            self.cycle.receive = receive_noting_lost_framing(self.cycle)  # before the app's task first runs
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


def receive_noting_lost_framing(cycle: RequestResponseCycle):
    """The cycle's `receive`, which ends the request with a disconnect that says why (MALFORMED_BODY_EVENT) once the
    protocol has found its chunked framing broken: the core answers that, and any other reader sees a disconnect."""
    receive = cycle.receive
    cycle.framing_lost = False

    async def receive_until_framing_lost():
        if not cycle.framing_lost:
            message = await receive()
            if not cycle.framing_lost:
                return message
        return {"type": "http.disconnect", MALFORMED_BODY_EVENT: True}

    return receive_until_framing_lost
