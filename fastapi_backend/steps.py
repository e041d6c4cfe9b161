"""How the event loop performs the core's steps, awaited: the body from `receive`, a token from the rate store,
the model call in the worker's model threads (the request's context carried in), the proxy's upstream with httpx."""
from __future__ import annotations

import asyncio
import contextvars
import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Awaitable, Callable

from drum_compat.runtime.rate_store import Outcome
from drum_compat.shared.steps import (BODY_COMPLETE, BODY_CUT_SHORT, BODY_MALFORMED, BODY_OVER_LIMIT, BODY_TOO_SLOW,
                                      STILL_RUNNING, CloseUpstream, Forward, ReadBody, ReadUpstream, Submit, TakeToken, Upstream,
                                      Wait)
from drum_compat.shared.guards.body import CHUNK, RequestBody

# the key of the disconnect a server's protocol ends a request with when it refused the chunked body's framing
MALFORMED_BODY_EVENT = "drum_compat.malformed_body"


async def receive_body(receive, body: RequestBody, seconds: float | None = None) -> str:
    """Receive into `body`, stopping as soon as it crosses the limit (the rest is never received) or `seconds` pass."""
    if seconds is None:
        return await receive_all(receive, body)
    try:
        if hasattr(asyncio, "timeout"):  # Python 3.11+: one timer for the whole body, no task of its own
            async with asyncio.timeout(seconds):
                return await receive_all(receive, body)
        return await asyncio.wait_for(receive_all(receive, body), seconds)
    except asyncio.TimeoutError:
        return BODY_TOO_SLOW


async def receive_all(receive, body: RequestBody) -> str:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return BODY_MALFORMED if message.get(MALFORMED_BODY_EVENT) else BODY_CUT_SHORT
        if not body.feed(message.get("body", b"")):
            return BODY_OVER_LIMIT
        if not message.get("more_body", False):
            return BODY_COMPLETE


async def file_chunks(file):
    while chunk := file.read(CHUNK):  # the spooled body: memory or a local temp file, never the network
        yield chunk


async def wait_at_most(handle: asyncio.Future, seconds: float | None):
    """The model call's result, or STILL_RUNNING once `seconds` pass. Neither the timer nor a cancelled request
    cancels the call, which keeps its slot (wait_for over shield does the same with two more futures per wait)."""
    if not handle.done():
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()

        def release(_=None) -> None:
            if not waiter.done():
                waiter.set_result(None)

        timer = loop.call_later(seconds, release) if seconds is not None else None
        handle.add_done_callback(release)
        try:
            await waiter
        finally:
            if timer is not None:
                timer.cancel()
            handle.remove_done_callback(release)
        if not handle.done():
            return STILL_RUNNING
    return handle.result()


class AsyncSteps:
    def __init__(self, take: Callable[[str], Awaitable[Outcome]] | None, threads: int) -> None:
        self.take = take  # the rate store (runtime.rate_store.async_store); None when the limit is off
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="drum-model")

    @functools.cached_property
    def upstream(self):
        """The proxy's client, made for its first request: httpx and what it loads are ~6 MiB of a worker that forwards
        nothing, as most do (DRUM_DIRECT_ACCESS_URL unset). One event loop makes it: no lock."""
        import httpx

        return httpx.AsyncClient(follow_redirects=False)

    async def close_upstream(self) -> None:
        if "upstream" in self.__dict__:
            await self.__dict__["upstream"].aclose()

    async def forward(self, step: Forward) -> Upstream | BaseException:
        import httpx  # loaded with the client

        request = self.upstream.build_request(step.method, step.url, headers=step.headers, content=None if step.body is None else file_chunks(step.body),
                                              timeout=step.timeout)
        try:
            response = await self.upstream.send(request, stream=True)
        except httpx.TimeoutException as exc:
            return TimeoutError(str(exc))
        except httpx.HTTPError as exc:
            return exc
        return Upstream(response.status_code, list(response.headers.multi_items()), (response, response.aiter_raw(CHUNK)))

    @staticmethod
    async def read_upstream(handle) -> bytes | BaseException:
        import httpx  # loaded with the client

        try:
            return await anext(handle[1], b"")
        except httpx.HTTPError as exc:
            return exc

    async def perform(self, receive, step):
        match step:
            case TakeToken(client):
                return await self.take(client)
            case ReadBody(body, seconds):
                return await receive_body(receive, body, seconds)
            case Submit(job):
                return asyncio.wrap_future(self.executor.submit(contextvars.copy_context().run, job))
            case Wait(handle, seconds):
                return await wait_at_most(handle, seconds)
            case Forward():
                return await self.forward(step)
            case ReadUpstream(handle):
                return await self.read_upstream(handle)
            case CloseUpstream(handle):
                return await handle[0].aclose()
        raise TypeError(f"not a step: {step!r}")
