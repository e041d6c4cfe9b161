"""The load: wrk on its own core when it is installed (a Lua script sends the body), else an asyncio client of raw
keep-alive connections in this process; both report requests/s, p50, p99 and the answers that were not 2xx."""
from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.arms import LOAD_CORE

WRK_SCRIPT = """
local file = io.open("{body}", "rb")
wrk.method = "{method}"
wrk.body = file and file:read("*a") or nil
wrk.headers["Content-Type"] = "text/csv"
"""
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


@dataclass
class Figures:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx answers and socket errors
    requests: int


def generator() -> str:
    return "wrk" if shutil.which("wrk") else "asyncio client (wrk not installed)"


def run(url: str, method: str, body: bytes | None, connections: int, seconds: float) -> Figures:
    if shutil.which("wrk"):
        return run_wrk(url, method, body, connections, seconds)
    return asyncio.run(run_asyncio(url, method, body, connections, seconds))


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * UNITS[unit]


def run_wrk(url: str, method: str, body: bytes | None, connections: int, seconds: float) -> Figures:
    with tempfile.TemporaryDirectory() as folder:
        body_file = Path(folder) / "body"
        if body is not None:
            body_file.write_bytes(body)
        script = Path(folder) / "request.lua"
        script.write_text(WRK_SCRIPT.format(body=body_file if body is not None else "/nonexistent", method=method))
        pin = ["taskset", "-c", LOAD_CORE] if shutil.which("taskset") else []
        shown = subprocess.run([*pin, "wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "--timeout", "30s",
                                "-s", str(script), url], capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    return parse_wrk(shown)


def parse_wrk(shown: str) -> Figures:
    """wrk's report (with --latency) as Figures."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", shown)[1])
    p50 = _ms(re.search(r"\s50%\s+(\S+)", shown)[1])
    p99 = _ms(re.search(r"\s99%\s+(\S+)", shown)[1])
    requests = int(re.search(r"(\d+) requests in", shown)[1])
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", shown)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", shown)
    errors = (int(non_2xx[1]) if non_2xx else 0) + (sum(map(int, sockets.groups())) if sockets else 0)
    return Figures(rps, p50, p99, errors, requests)


async def run_asyncio(url: str, method: str, body: bytes | None, connections: int, seconds: float) -> Figures:
    host, port, path = re.fullmatch(r"http://([^:/]+):(\d+)(/.*)", url).groups()
    payload = body or b""
    head = (f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/csv\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds

    async def connection() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while time.perf_counter() < stop_at:
                began = time.perf_counter()
                writer.write(head)
                status_line = await reader.readline()
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - began)
                errors += not status_line.split(b" ")[1].startswith(b"2")
        finally:
            writer.close()

    began = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(connections)))
    wall = time.perf_counter() - began
    latencies.sort()
    pick = lambda share: latencies[min(len(latencies) - 1, int(len(latencies) * share))] * 1000  # noqa: E731
    return Figures(len(latencies) / wall, pick(0.5), pick(0.99), errors, len(latencies))
