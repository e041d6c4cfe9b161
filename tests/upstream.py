"""A stand-in for a NIM's OpenAI-compatible server, for the proxy tests (run by uvicorn on loopback): it echoes what
reached it, streams large answers, counts large uploads without keeping them, and can be slow or redirect."""
from __future__ import annotations

import asyncio
import json

MIB = 1024 * 1024
SLOW_UPSTREAM = 5  # seconds /v1/slow takes to answer


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    received = 0
    while True:
        message = await receive()
        received += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    path = scope["path"]
    if path.startswith("/v1/big/"):  # /v1/big/<MiB>: that many MiB of "x", streamed
        size = int(path.rsplit("/", 1)[1]) * MIB
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream"), (b"content-length", str(size).encode())]})
        for _ in range(size // MIB):
            await send({"type": "http.response.body", "body": b"x" * MIB, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/v1/slow":
        await asyncio.sleep(SLOW_UPSTREAM)
    if path == "/v1/moved":
        await send({"type": "http.response.start", "status": 302, "headers": [(b"location", b"/v1/elsewhere")]})
        await send({"type": "http.response.body", "body": b""})
        return
    answer = json.dumps({"method": scope["method"], "path": path, "raw_path": scope["raw_path"].decode(),
                         "query": scope["query_string"].decode(), "received": received,
                         "headers": {k.decode(): v.decode() for k, v in scope["headers"]}}).encode()
    # hop-by-hop headers, one of them named by Connection, and a Server and Date of its own (uvicorn's are off)
    await send({"type": "http.response.start", "status": 201,
                "headers": [(b"content-type", b"application/json"), (b"x-upstream", b"nim"), (b"keep-alive", b"timeout=99"),
                            (b"proxy-authenticate", b"Basic"), (b"connection", b"x-upstream-hop"), (b"x-upstream-hop", b"1"),
                            (b"server", b"upstream-nim"), (b"date", b"Thu, 01 Jan 1970 00:00:00 GMT")]})
    await send({"type": "http.response.body", "body": answer})
