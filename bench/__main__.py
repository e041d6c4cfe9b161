"""`make bench`: start each server type on loopback with the example model, send a bounded number of
keep-alive requests from N connections, and print p50/p99/throughput with ratios to gunicorn."""
from __future__ import annotations

import argparse
import statistics
import threading
import time
from pathlib import Path

import httpx

from drum_compat.compat.running import RunningServer

MODEL = Path(__file__).resolve().parent.parent / "examples" / "models" / "regression"
CSV_10_ROWS = b"sqft,bedrooms,age\n" + b"".join(f"{1000 + i},{i % 4 + 1},{i}\n".encode() for i in range(10))
WORKLOADS = {
    "ping": ("GET", "/ping", None),
    "predict 10 rows": ("POST", "/predictions/", CSV_10_ROWS),
}


def run_load(base_url: str, method: str, path: str, body: bytes | None, requests: int, connections: int, time_limit: float):
    latencies: list[float] = []
    failures = [0]
    lock = threading.Lock()
    deadline = time.monotonic() + time_limit

    def connection(count: int) -> None:
        with httpx.Client(base_url=base_url, timeout=30, headers={"Content-Type": "text/csv"}) as client:
            for _ in range(count):
                if time.monotonic() > deadline:
                    return
                started = time.perf_counter()
                try:
                    ok = client.request(method, path, content=body).status_code == 200
                except httpx.HTTPError:
                    ok = False
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed) if ok else None
                    failures[0] += 0 if ok else 1

    started = time.perf_counter()
    threads = [threading.Thread(target=connection, args=(requests // connections,)) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else float("nan")
    return {"ok": len(latencies), "failed": failures[0], "rps": len(latencies) / wall,
            "p50_ms": statistics.median(latencies) * 1000 if latencies else float("nan"), "p99_ms": p99 * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--server-types", nargs="+", default=["gunicorn", "fastapi"])
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds per workload, at most")
    args = parser.parse_args()
    results = {}
    for server_type in args.server_types:
        # a queue as deep as the connections: this measures speed; bench.overload measures refusals
        with RunningServer(MODEL, server_type, env={"DRUM_EXECUTOR_QUEUE_DEPTH": str(max(args.connections))}) as server:
            for name, (method, path, body) in WORKLOADS.items():
                run_load(server.base_url, method, path, body, 50, 1, 10)  # warm-up
                for connections in args.connections:
                    results[server_type, name, connections] = run_load(
                        server.base_url, method, path, body, args.requests, connections, args.time_limit
                    )
    baseline = args.server_types[0]
    print(f"{'server':10} {'workload':18} {'conns':>5} {'ok':>6} {'fail':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}  vs {baseline} (req/s, p99)")
    for (server_type, name, connections), figures in results.items():
        base = results[baseline, name, connections]
        print(f"{server_type:10} {name:18} {connections:>5} {figures['ok']:>6} {figures['failed']:>5} {figures['rps']:>9.0f} "
              f"{figures['p50_ms']:>8.2f} {figures['p99_ms']:>8.2f}  x{figures['rps'] / base['rps']:.2f}, x{figures['p99_ms'] / base['p99_ms']:.2f}")


if __name__ == "__main__":
    main()
