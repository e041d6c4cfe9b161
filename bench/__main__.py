"""`make bench`: every server pinned to its own core, the load generator on another, one run: requests/s, p50, p99,
non-2xx and worker memory per workload and number of connections, each cell repeated, with ratios to DRUM 1.18 (when
`make bench-reference` installed it), to bare apps doing the same work and, with --baseline, to an earlier drum-compat;
then large inputs; the issue's targets checked; a markdown report and a PNG chart in --out."""
from __future__ import annotations

import argparse
import contextlib
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench import load, report
from bench.arms import BASELINE, DRUM, Running, all_arms, baseline_arms, drum_compat, work_alone_seconds

CSV_HEADER = b"sqft,bedrooms,age\n"


def csv_rows(count: int) -> bytes:
    return CSV_HEADER + b"".join(b"%d,%d,%d\n" % (1000 + index % 3000, index % 4 + 1, index % 90) for index in range(count))


def workloads() -> dict:
    return {"ping": ("GET", "/ping", None), "predict 10 rows": ("POST", "/predictions/", csv_rows(10)),
            "predict 10,000 rows": ("POST", "/predictions/", csv_rows(10_000))}


def large_csv(folder: Path, megabytes: int) -> Path:
    path = folder / f"{megabytes}mb.csv"
    block = csv_rows(100_000)[len(CSV_HEADER):]
    with path.open("wb") as out:
        out.write(CSV_HEADER)
        while out.tell() < megabytes * 1_000_000:
            out.write(block)
    return path


class PeakRss:
    """The server's worker memory, sampled every 20 ms while a request runs."""

    def __init__(self, server: Running) -> None:
        self.server = server
        self.peak = server.worker_rss()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.wait(0.02):
            self.peak = max(self.peak, self.server.worker_rss())

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()


def file_chunks(path: Path):
    with path.open("rb") as source:
        while chunk := source.read(1 << 20):
            yield chunk


def post_large(server: Running, path: Path, route: str) -> tuple[float, int, int]:
    """Seconds for one upload and its whole answer, the peak worker RSS meanwhile, and the rows answered."""
    with PeakRss(server) as peak:
        began = time.perf_counter()
        with httpx.stream("POST", server.url + route, content=file_chunks(path), headers={"Content-Type": "text/csv"},
                          timeout=600) as answer:
            answer.raise_for_status()
            # a line per batch, {"predictions":[v,v,...]}: its values are its commas and one
            rows = sum(line.count(",") + 1 for line in answer.iter_lines() if line)
        seconds = time.perf_counter() - began
    return seconds, peak.peak, rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0, help="load per cell")
    parser.add_argument("--repeats", type=int, default=5, help="runs per cell; the median is reported, with the spread")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--only", nargs="*", default=[], help="run only the arms whose name holds one of these words")
    parser.add_argument("--large-mb", type=int, default=50, help="size of the single large CSV (0: skip)")
    parser.add_argument("--stream-mb", type=int, default=500, help="size of the CSV for /predictionsStream/ (0: skip)")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--baseline", metavar="DRUM_COMPAT", help="the drum-compat command of an earlier checkout (installed "
                        "in a venv of its own): its default stacks run beside these, and the report gives the ratios")
    args = parser.parse_args()
    every_arm = all_arms() + (baseline_arms(args.baseline) if args.baseline else [])
    arms = [arm for arm in every_arm if not args.only or any(word in arm.name for word in args.only)]
    print(f"load generator: {load.generator()}; DRUM 1.18: {'yes' if DRUM.exists() else 'not installed (make bench-reference)'}")
    cells: dict = {}
    with contextlib.ExitStack() as running:
        # every server up at once and the repeats interleaved, so a slow spell of the machine falls on every arm alike
        servers = {arm.name: running.enter_context(Running(arm)) for arm in arms}
        for name, (method, path, body) in workloads().items():
            chosen = [arm for arm in arms if arm.kind != "raw" or name == "ping"]
            for arm in chosen:
                load.run(servers[arm.name].url + path, method, body, 8, 1)  # warm-up
            for count in args.connections:
                for _ in range(args.repeats):
                    for arm in chosen:
                        before = servers[arm.name].worker_cpu()
                        figures = load.run(servers[arm.name].url + path, method, body, count, args.seconds)
                        after = servers[arm.name].worker_cpu()
                        cell = cells.setdefault((arm.name, name, count), report.Cell())
                        cell.rps.append(figures.rps)
                        cell.p50.append(figures.p50_ms)
                        cell.p99.append(figures.p99_ms)
                        cell.errors += figures.errors
                        if figures.requests and before.keys() == after.keys():  # not across a worker's restart
                            cell.cpu_us.append(1e6 * (sum(after.values()) - sum(before.values())) / figures.requests)
                for arm in chosen:
                    cell = cells[arm.name, name, count]
                    print(f"  {arm.name:36} {name:20} {count:>3} conns {cell.median_rps:>8.0f} req/s  p99 "
                          f"{cell.median_p99:6.2f} ms  non-2xx {cell.errors}  CPU {cell.median_cpu_us()} µs/req", flush=True)
    large: dict = {}
    streamed: dict = {}
    with tempfile.TemporaryDirectory() as folder:
        if args.large_mb:
            path = large_csv(Path(folder), args.large_mb)
            chosen = [arm for arm in arms
                      if arm.kind == "drum" or arm.name in ("drum-compat gunicorn (gevent)", "drum-compat fastapi")]
            with contextlib.ExitStack() as running:  # fresh servers: no heap left from the load cells
                servers = {arm.name: running.enter_context(Running(arm)) for arm in chosen}
                runs: dict = {arm.name: [] for arm in chosen}
                alone = []
                for _ in range(args.repeats):
                    for arm in chosen:
                        runs[arm.name].append(post_large(servers[arm.name], path, "/predictions/"))
                    alone.append(work_alone_seconds(path))  # in the same spell of the machine as the servers
            for arm in chosen:
                large[arm.name] = (min(run[0] for run in runs[arm.name]), max(run[1] for run in runs[arm.name]))
                print(f"  {arm.name:36} {args.large_mb} MB CSV {large[arm.name][0]:.2f} s, peak worker RSS "
                      f"{large[arm.name][1] / report.MIB:.0f} MiB", flush=True)
            large[report.WORK_ALONE] = (min(alone), None)
            print(f"  {report.WORK_ALONE:36} {args.large_mb} MB CSV {min(alone):.2f} s", flush=True)
        if args.stream_mb:
            path = large_csv(Path(folder), args.stream_mb)
            for name, server_type, stack in (("drum-compat gunicorn (gevent)", "gunicorn", "flask"),
                                              ("drum-compat fastapi", "fastapi", "fastapi")):
                if args.only and not any(word in name for word in args.only):
                    continue
                arm = drum_compat(name, server_type, stack, DRUM_MAX_UPLOAD_SIZE=str(2 * args.stream_mb * 1_000_000))
                with Running(arm) as server:
                    before = server.worker_rss()
                    seconds, peak, rows = post_large(server, path, "/predictionsStream/")
                streamed[name] = (seconds, rows, peak - before)
                print(f"  {name:36} {args.stream_mb} MB via /predictionsStream/ {seconds:.1f} s, RSS growth "
                      f"{(peak - before) / report.MIB:.0f} MiB", flush=True)
    drum_name = next((arm.name for arm in arms if arm.kind == "drum"), None)
    checks = report.targets(cells, large, streamed, arms)
    text = "\n\n".join(part for part in [
        f"Load generator: {load.generator()}, pinned to core 1; servers pinned to core 0; 1 worker; "
        f"{args.repeats} repeats of {args.seconds:g} s per cell, interleaved across the servers, all up at once "
        "(median, and half the min-max spread).",
        report.load_table(cells, arms, list(workloads()), args.connections),
        report.baseline_table(cells, arms, list(workloads()), args.connections, BASELINE) if args.baseline else "",
        report.large_table(large, drum_name, args.large_mb) if large else "",
        report.stream_table(streamed, args.stream_mb) if streamed else "",
        "| target | met | figures |\n|---|---|---|\n" + "\n".join(
            f"| {label} | {'yes' if met else '**no**'} | {figures} |" for label, met, figures in checks),
    ] if part)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.md").write_text(text + "\n")
    report.chart(cells, arms, args.out / "bench.png")
    print(text)
    print(f"\nwritten: {args.out / 'bench.md'}, {args.out / 'bench.png'}")


if __name__ == "__main__":
    main()
