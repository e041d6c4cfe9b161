"""How a gunicorn or werkzeug worker performs the core's steps, blocking: the body from wsgi.input, a token from
the rate store, the model call in its model threads (under gevent a native pool: model code never blocks the hub),
the proxy's upstream with httpx."""
from __future__ import annotations

import contextvars
import threading
from concurrent.futures import Executor, ThreadPoolExecutor, TimeoutError
from functools import partial
from typing import Callable

from gevent import monkey
from gunicorn.http.errors import ChunkMissingTerminator, InvalidChunkExtension, InvalidChunkSize

from drum_compat.runtime.rate_store import Outcome
from drum_compat.shared.steps import (BODY_COMPLETE, BODY_CUT_SHORT, BODY_MALFORMED, BODY_OVER_LIMIT, BODY_TOO_SLOW,
                                      STILL_RUNNING, CloseUpstream, Forward, ReadBody, ReadUpstream, Submit, TakeToken, Upstream,
                                      Wait)
from drum_compat.shared.guards.body import CHUNK, RequestBody


def native_lock():
    """An OS lock even where gevent patched `threading`: the hub and the native model threads both take it."""
    return monkey.get_original("_thread", "allocate_lock")()


def model_executor(threads: int) -> Executor:
    if monkey.is_module_patched("threading"):  # gunicorn's gevent worker
        from gevent.threadpool import ThreadPoolExecutor as NativeThreadPoolExecutor

        return NativeThreadPoolExecutor(max_workers=threads)
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="drum-model")


def submitted_by_a_greenlet(submit: Callable):
    """gevent's pool blocks a submit until one of its threads is free, which could be never (a hung model call) and
    would come before the requester's timed wait: the submit and the wait for its result run in a greenlet of their own,
    so the requester only ever waits on the returned AsyncResult, as long as its deadline allows."""
    import gevent
    from gevent.event import AsyncResult

    outcome = AsyncResult()

    def run() -> None:
        try:
            outcome.set(submit().result())
        except BaseException as exc:  # the requester's Wait raises it, as a future's result() would
            outcome.set_exception(exc)

    gevent.spawn(run)
    return outcome


# how much of wsgi.input one read asks for: gunicorn's reader costs per call (a buffer of its own, copies), and 64 KiB
# reads made a 50 MB body take ~twice as long to read as uvicorn does; kept under the worker's mmap threshold
# (runtime.startup), past which each read's buffer would be a fresh mapping, faulted in page by page
WSGI_READ = 512 * 1024


def read_body(environ: dict, body: RequestBody, seconds: float | None = None) -> str:
    """Read wsgi.input into `body`, stopping as soon as it crosses the limit (the rest stays unread) or `seconds` pass;
    then the app reads the spooled copy as its wsgi.input. Under gevent the whole read is timed; a gthread worker's
    socket can only bound each wait for data (gunicorn loops inside one read), so there a client that stalls is cut
    at the deadline, one that trickles is not."""
    if seconds is None:
        return read_all(environ, body)
    if monkey.is_module_patched("socket"):
        import gevent

        with gevent.Timeout(seconds, False):
            return read_all(environ, body)
        return BODY_TOO_SLOW
    sock = environ.get("gunicorn.socket")
    if sock is None:  # werkzeug's server: no socket to bound
        return read_all(environ, body)
    previous = sock.gettimeout()
    sock.settimeout(seconds)
    try:
        return read_all(environ, body)
    except TimeoutError:
        return BODY_TOO_SLOW
    finally:
        sock.settimeout(previous)


def read_all(environ: dict, body: RequestBody) -> str:
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH", "")
    remaining = int(length) if length.isdigit() else None
    if remaining is None and not environ.get("wsgi.input_terminated"):
        return BODY_COMPLETE  # no length and no terminated stream: WSGI says there is no body to read
    while remaining is None or remaining > 0:
        try:
            chunk = stream.read(WSGI_READ if remaining is None else min(WSGI_READ, remaining))
        except TimeoutError:  # the socket's bound (read_body): an OSError, but not a client gone
            raise
        except (InvalidChunkSize, ChunkMissingTerminator, InvalidChunkExtension):  # gunicorn's chunked reader
            return BODY_MALFORMED
        except OSError as error:  # gunicorn's NoMoreData, a reset connection; werkzeug's bad chunk header
            return BODY_MALFORMED if isinstance(error.__cause__, ValueError) else BODY_CUT_SHORT
        if not chunk:
            break
        if remaining is not None:
            remaining -= len(chunk)
        if not body.feed(chunk):
            return BODY_OVER_LIMIT
    body.as_wsgi_input(environ)
    return BODY_COMPLETE


def file_chunks(file):
    while chunk := file.read(CHUNK):
        yield chunk


class BlockingSteps:
    def __init__(self, take: Callable[[str], Outcome] | None, threads: int) -> None:
        self.take = take  # the rate store (runtime.rate_store.blocking_store); None when the limit is off
        self.executor = model_executor(threads)
        self.under_gevent = monkey.is_module_patched("threading")
        self._upstream = None
        self._upstream_lock = threading.Lock()

    @property
    def upstream(self):
        """The proxy's client, made for its first request (gevent-patched by then): httpx and what it loads are ~6 MiB
        of a worker that forwards nothing, as most do (DRUM_DIRECT_ACCESS_URL unset). Under a lock: gthread's
        request threads may forward at once, and a second client would never be closed."""
        with self._upstream_lock:
            if self._upstream is None:
                import httpx

                self._upstream = httpx.Client(follow_redirects=False)
            return self._upstream

    def close_upstream(self) -> None:
        if self._upstream is not None:
            self._upstream.close()

    def forward(self, step: Forward) -> Upstream | BaseException:
        import httpx  # loaded with the client

        request = self.upstream.build_request(step.method, step.url, headers=step.headers, content=None if step.body is None else file_chunks(step.body),
                                              timeout=step.timeout)
        try:
            response = self.upstream.send(request, stream=True)
        except httpx.TimeoutException as exc:
            return TimeoutError(str(exc))
        except httpx.HTTPError as exc:
            return exc
        return Upstream(response.status_code, list(response.headers.multi_items()), (response, response.iter_raw(CHUNK)))

    @staticmethod
    def read_upstream(handle) -> bytes | BaseException:
        import httpx  # loaded with the client

        try:
            return next(handle[1], b"")
        except httpx.HTTPError as exc:
            return exc

    def perform(self, environ: dict, step):
        match step:
            case TakeToken(client):
                return self.take(client)
            case ReadBody(body, seconds):
                return read_body(environ, body, seconds)
            case Submit(job):
                submit = partial(self.executor.submit, contextvars.copy_context().run, job)
                return submitted_by_a_greenlet(submit) if self.under_gevent else submit()
            case Wait(handle, seconds) if self.under_gevent:
                handle.wait(seconds)
                return handle.get() if handle.ready() else STILL_RUNNING
            case Wait(handle, seconds):
                try:
                    return handle.result(timeout=seconds)
                except TimeoutError:
                    return STILL_RUNNING
            case Forward():
                return self.forward(step)
            case ReadUpstream(handle):
                return self.read_upstream(handle)
            case CloseUpstream(handle):
                return handle[0].close()
        raise TypeError(f"not a step: {step!r}")
