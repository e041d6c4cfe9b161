"""The benchmark's results as a markdown table (ratios to DRUM and to each stack's bare app), the issue's targets
checked on them, and a PNG chart."""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field

MIB = 1024 * 1024
# the large request's pandas work timed with no server at all (bench.bare): the floor under every server's time
WORK_ALONE = "pandas work alone (no server)"


@dataclass
class Cell:
    """One arm, one workload, one number of connections: every repeat's figures."""
    rps: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)  # the workers' CPU per answered request, microseconds
    errors: int = 0

    @property
    def median_rps(self) -> float:
        return statistics.median(self.rps)

    @property
    def median_p99(self) -> float:
        return statistics.median(self.p99)

    def median_cpu_us(self) -> str:
        return f"{statistics.median(self.cpu_us):.0f}" if self.cpu_us else "-"

    def spread(self) -> str:
        low, high = min(self.rps), max(self.rps)
        return f"±{(high - low) / 2 / self.median_rps * 100:.0f}%" if self.median_rps else "-"


def ratio(value: float, base: float | None) -> str:
    return f"{value / base:.2f}x" if base else "-"


def paired_ratio(cell: Cell, base: Cell) -> float:
    """The median of each round's ratio: the arms of one round run back to back, so a slow spell of the machine (its
    speed swings by a third within minutes) falls on both sides of a ratio instead of on one arm's median."""
    return statistics.median(value / against for value, against in zip(cell.rps, base.rps, strict=True))


def load_table(cells: dict, arms: list, workloads: list[str], connections: list[int]) -> str:
    drum = next((arm for arm in arms if arm.kind == "drum"), None)
    bare = {arm.stack: arm for arm in arms if arm.kind == "bare"}
    lines = ["| workload | conns | server | req/s | spread | p50 ms | p99 ms | non-2xx | vs DRUM | vs bare app | worker CPU µs/req |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for workload in workloads:
        for count in connections:
            base = cells.get((drum.name, workload, count)) if drum else None
            for arm in arms:
                cell = cells.get((arm.name, workload, count))
                if cell is None:
                    continue
                twin = bare.get(arm.stack) if arm.kind == "drum-compat" else None
                twin_cell = cells.get((twin.name, workload, count)) if twin else None
                lines.append(f"| {workload} | {count} | {arm.name} | {cell.median_rps:.0f} | {cell.spread()} | "
                             f"{statistics.median(cell.p50):.2f} | {cell.median_p99:.2f} | {cell.errors} | "
                             f"{ratio(cell.median_rps, base.median_rps if base else None)} | "
                             f"{ratio(cell.median_rps, twin_cell.median_rps if twin_cell else None)} | {cell.median_cpu_us()} |")
    return "\n".join(lines)


def baseline_table(cells: dict, arms: list, workloads: list[str], connections: list[int], prefix: str) -> str:
    """Each stack against the same stack of `--baseline`'s drum-compat: the paired ratio of requests/s (1.00x: no
    change), beside both arms' spreads, which say how large a ratio the run can tell from noise."""
    lines = ["| workload | conns | server | req/s vs baseline (paired) | spread | baseline's spread | p99 ms | baseline's p99 ms |",
             "|---|---|---|---|---|---|---|---|"]
    for workload in workloads:
        for count in connections:
            for arm in arms:
                if arm.kind != "baseline":
                    continue
                name = arm.name.removeprefix(prefix)
                cell, base = cells.get((name, workload, count)), cells.get((arm.name, workload, count))
                if cell is None or base is None:
                    continue
                lines.append(f"| {workload} | {count} | {name} | {paired_ratio(cell, base):.2f}x | {cell.spread()} | "
                             f"{base.spread()} | {cell.median_p99:.2f} | {base.median_p99:.2f} |")
    return "\n".join(lines)


def large_table(large: dict, drum_name: str | None, megabytes: int) -> str:
    lines = [f"| server | {megabytes} MB CSV: seconds | peak worker RSS MiB | time vs DRUM | RSS vs DRUM |", "|---|---|---|---|---|"]
    base = large.get(drum_name)
    for name, (seconds, peak) in large.items():
        shown_peak, peak_ratio = ("-", "-") if peak is None else (f"{peak / MIB:.0f}", ratio(peak, base[1] if base else None))
        lines.append(f"| {name} | {seconds:.2f} | {shown_peak} | {ratio(seconds, base[0] if base else None)} | {peak_ratio} |")
    return "\n".join(lines)


def stream_table(streamed: dict, megabytes: int) -> str:
    lines = [f"| server | {megabytes} MB CSV via /predictionsStream/: seconds | rows answered | worker RSS growth MiB |",
             "|---|---|---|---|"]
    for name, (seconds, rows, growth) in streamed.items():
        lines.append(f"| {name} | {seconds:.1f} | {rows} | {growth / MIB:.0f} |")
    return "\n".join(lines)


def targets(cells: dict, large: dict, streamed: dict, arms: list) -> list[tuple[str, bool, str]]:
    """The issue's targets, each with whether this run met it and the figures behind it."""
    drum = next((arm.name for arm in arms if arm.kind == "drum"), None)
    checks = []

    def p99(name, workload="predict 10 rows", count=8):
        cell = cells.get((name, workload, count))
        return cell.median_p99 if cell else None

    def add(label, name, base_name, needed, extra="", workload="predict 10 rows"):
        cell, base = cells.get((name, workload, 8)), cells.get((base_name, workload, 8))
        if cell is None or base is None:
            return
        paired = paired_ratio(cell, base)
        checks.append((label, paired >= needed, f"{paired:.2f}x (needs {needed}x; medians "
                                                f"{cell.median_rps / base.median_rps:.2f}x){extra}"))

    gevent, fastapi = "drum-compat gunicorn (gevent)", "drum-compat fastapi"
    if drum:
        for label, name, needed in (("fastapi", fastapi, 2.0), ("gunicorn", gevent, 1.5)):
            if p99(name) is not None and p99(drum) is not None:
                add(f"10 rows, 8 conns: {label} vs DRUM", name, drum, needed,
                    f", p99 {p99(name):.2f} vs {p99(drum):.2f} ms")
                checks.append((f"10 rows, 8 conns: {name} p99 <= DRUM's", p99(name) <= p99(drum),
                               f"{p99(name):.2f} vs {p99(drum):.2f} ms"))
    add("10 rows: fastapi vs bare FastAPI", fastapi, "bare FastAPI + uvicorn", 0.9)
    add("10 rows: gunicorn vs bare Flask", gevent, "bare Flask + gunicorn (gevent)", 0.9)
    add("guards on vs off (gunicorn)", "drum-compat gunicorn, guards on", "drum-compat gunicorn, guards off", 0.95)
    add("guards on vs off (fastapi)", "drum-compat fastapi, guards on", "drum-compat fastapi, guards off", 0.95)
    add("/ping: fastapi vs raw ASGI", fastapi, "raw ASGI + uvicorn (httptools)", 0.5, workload="ping")
    if drum in large:
        for name in (gevent, fastapi):
            if name in large:
                seconds, peak = large[name]
                floor = f"; the work alone {large[WORK_ALONE][0] / large[drum][0]:.2f}x" if WORK_ALONE in large else ""
                checks.append((f"50 MB: {name} time <= 0.8x DRUM", seconds <= 0.8 * large[drum][0],
                               f"{seconds / large[drum][0]:.2f}x{floor}"))
                checks.append((f"50 MB: {name} peak RSS <= DRUM's", peak <= large[drum][1],
                               f"{peak / MIB:.0f} vs {large[drum][1] / MIB:.0f} MiB"))
    refused = sum(cell.errors for cell in cells.values())
    checks.append(("no answer but 2xx in any load cell", refused == 0, f"{refused} non-2xx or socket errors"))
    for name, (_, _, growth) in streamed.items():
        checks.append((f"/predictionsStream/: {name} RSS growth < 256 MiB", growth < 256 * MIB, f"{growth / MIB:.0f} MiB"))
    return checks


def chart(cells: dict, arms: list, path, count: int = 8) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    workloads = sorted({workload for _, workload, _ in cells})
    figure, axes = pyplot.subplots(1, len(workloads), figsize=(6 * len(workloads), 5), squeeze=False)
    for axis, workload in zip(axes[0], workloads):
        shown = [(arm.name, cells[arm.name, workload, count]) for arm in arms if (arm.name, workload, count) in cells]
        axis.barh([name for name, _ in shown], [cell.median_rps for _, cell in shown],
                  xerr=[(max(cell.rps) - min(cell.rps)) / 2 for _, cell in shown], color="#4477aa")
        axis.set_title(f"{workload}, {count} connections")
        axis.set_xlabel("requests/s (median of repeats, bar: spread)")
        axis.invert_yaxis()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
