"""`python -m bench.overload`: the overload check on every stack. A CPU-bound model behind 2 workers of 1 model
thread each gets many times its capacity for a bounded time, some calls past the deadline; probes run
throughout. Prints, per stack: answers by status, transport failures (hung or reset connections: must be 0),
the longest wait for an answer, probe latency, and how fast a prediction succeeds once the load stops.
`--defaults` runs it with drum-compat's default admission settings (queue 100, queue timeout 30 s)."""
from __future__ import annotations

import argparse
import collections
import random
import shutil
import tempfile
import threading
import time
from pathlib import Path

import httpx

from drum_compat.compat.running import RunningServer

STACKS = {
    "gunicorn-gevent": ("gunicorn", {}),
    "gunicorn-sync": ("gunicorn", {"DRUM_GUNICORN_WORKER_CLASS": "sync"}),
    "fastapi": ("fastapi", {}),
}
WORKERS = {"CUSTOM_MODEL_WORKERS": "2"}
LIMITS = {**WORKERS, "DRUM_EXECUTOR_WORKERS": "1", "DRUM_EXECUTOR_QUEUE_DEPTH": "2",
          "DRUM_EXECUTOR_QUEUE_TIMEOUT": "5", "DRUM_CLIENT_REQUEST_TIMEOUT": "2"}
CPU_BOUND = Path(__file__).resolve().parent.parent / "examples" / "models" / "cpu_bound"
FAST, SLOW = b"cpu=0.2", b"cpu=3"  # a tenth of the calls run past the 2 s deadline


def overload(base_url: str, clients: int, seconds: float) -> dict:
    statuses: collections.Counter = collections.Counter()
    longest_wait = [0.0]
    probe_latencies: list[float] = []
    probe_failures = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(seed: int) -> None:
        chooser = random.Random(seed)
        with httpx.Client(base_url=base_url, timeout=60) as http:
            while time.monotonic() < stop_at:
                body = SLOW if chooser.random() < 0.1 else FAST
                began = time.monotonic()
                try:
                    outcome = http.post("/predictUnstructured/", content=body).status_code
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                with lock:
                    statuses[outcome] += 1
                    longest_wait[0] = max(longest_wait[0], time.monotonic() - began)

    def prober() -> None:
        with httpx.Client(base_url=base_url, timeout=10) as http:
            while time.monotonic() < stop_at:
                began = time.monotonic()
                try:
                    ok = http.get("/ping").status_code == 200
                except httpx.HTTPError:
                    ok = False
                probe_latencies.append(time.monotonic() - began)
                probe_failures[0] += 0 if ok else 1
                time.sleep(0.1)

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(clients)] + [threading.Thread(target=prober)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 120)
    hung = sum(thread.is_alive() for thread in threads)
    ended = time.monotonic()
    with httpx.Client(base_url=base_url, timeout=30) as http:
        while http.post("/predictUnstructured/", content=FAST).status_code != 200:
            time.sleep(0.05)
    probe_latencies.sort()
    return {
        "statuses": dict(statuses), "hung_threads": hung, "probe_failures": probe_failures[0], "longest_wait_s": longest_wait[0],
        "probe_p50_ms": probe_latencies[len(probe_latencies) // 2] * 1000,
        "probe_max_ms": probe_latencies[-1] * 1000, "recovered_s": time.monotonic() - ended,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.overload", description=__doc__)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--clients", type=int, help="concurrent callers (capacity is 2 model threads); "
                        "default 16, or 200 with --defaults (enough to wait past the 30 s queue timeout)")
    parser.add_argument("--stacks", nargs="+", default=list(STACKS), choices=list(STACKS))
    parser.add_argument("--defaults", action="store_true", help="default admission settings, 2 workers")
    parser.add_argument("--queue-in-backlog", action="store_true", help="DRUM_QUEUE_IN_BACKLOG=true: waiting requests "
                        "stay in the kernel's listen backlog, as on DRUM (README: Supervision)")
    args = parser.parse_args()
    limits = {**(WORKERS if args.defaults else LIMITS), **({"DRUM_QUEUE_IN_BACKLOG": "true"} if args.queue_in_backlog else {})}
    clients = args.clients or (200 if args.defaults else 16)
    print(f"overload: {clients} clients for {args.seconds:g} s, {'default admission' if args.defaults else LIMITS}"
          f"{', DRUM_QUEUE_IN_BACKLOG' if args.queue_in_backlog else ''}", flush=True)
    with tempfile.TemporaryDirectory() as root:
        for name in args.stacks:
            server_type, env = STACKS[name]
            code_dir = shutil.copytree(CPU_BOUND, Path(root, name))  # the model writes files into its directory
            with RunningServer(code_dir, server_type, "--target-type", "unstructured", env={**env, **limits}) as server:
                figures = overload(server.base_url, clients, args.seconds)
            statuses = figures["statuses"]
            answered = sum(count for status, count in statuses.items() if status in (200, 503, 504))
            others = {status: count for status, count in statuses.items() if status not in (200, 503, 504)}
            print(f"{name:16} answered {answered:5}  200: {statuses.get(200, 0):4}  503: {statuses.get(503, 0):5}  "
                  f"504: {statuses.get(504, 0):3}  other/failed: {others or 0}  hung: {figures['hung_threads']}  "
                  f"longest wait {figures['longest_wait_s']:.1f} s  "
                  f"probe p50 {figures['probe_p50_ms']:.1f} ms max {figures['probe_max_ms']:.0f} ms "
                  f"(failed {figures['probe_failures']})  back to 200 in {figures['recovered_s']:.2f} s", flush=True)


if __name__ == "__main__":
    main()
