"""`drum-compat ab-status URL`: the two arms of an A/B front side by side, from their own /metrics (read through
the front): requests, error ratio, p50/p99 latency, refusals and their reasons; scrapes and probes left out."""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from dataclasses import asdict, dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

from drum_compat.compat.ab.front import ARM_METRICS, ARMS

# not the clients' traffic: the scrapes this command sends, and the probes (`ab`'s readiness checks, a kubelet's)
NOT_TRAFFIC = ("/metrics", "/livez", "/readyz", "/startupz")
READINESS_PATH = "/startupz"  # what `ab` asks of each arm and of the front until it answers: never counted here


@dataclass
class ArmFigures:
    requests: int = 0
    errors: int = 0  # 5xx answers
    p50: float | None = None  # seconds, from the latency histogram's buckets
    p99: float | None = None
    rejections: dict = field(default_factory=dict)

    @property
    def error_ratio(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


def quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """Prometheus's histogram_quantile: linear within the bucket that holds the q-th observation."""
    buckets = sorted(buckets)
    total = buckets[-1][1] if buckets else 0
    if not total:
        return None
    rank, lower, below = q * total, 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if upper == float("inf"):
                return lower
            return lower + (upper - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = upper, count
    return lower


def figures(exposition: str) -> ArmFigures:
    arm = ArmFigures()
    buckets: dict[float, float] = defaultdict(float)
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            labels = sample.labels
            if labels.get("route") in NOT_TRAFFIC:
                continue
            if sample.name == "drum_requests_total":
                arm.requests += int(sample.value)
                arm.errors += int(sample.value) if labels["status"].startswith("5") else 0
            elif sample.name == "drum_request_duration_seconds_bucket":
                buckets[float(labels["le"])] += sample.value
            elif sample.name == "drum_rejections_total" and sample.value:
                arm.rejections[labels["reason"]] = arm.rejections.get(labels["reason"], 0) + int(sample.value)
    arm.p50, arm.p99 = quantile(list(buckets.items()), 0.5), quantile(list(buckets.items()), 0.99)
    return arm


def arm_figures(front: str) -> dict[str, ArmFigures]:
    found = {}
    with httpx.Client(timeout=10) as client:
        for arm in ARMS:
            response = client.get(front.rstrip("/") + ARM_METRICS.format(arm=arm))
            response.raise_for_status()
            found[arm] = figures(response.text)
    return found


def milliseconds(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def show(found: dict[str, ArmFigures], console: Console) -> None:
    table = Table(title="A/B arms")
    table.add_column("")
    for arm in found:
        table.add_column(arm, justify="right")
    rows = {
        "requests": lambda a: str(a.requests),
        "error ratio (5xx)": lambda a: f"{a.error_ratio:.2%}",
        "p50 latency": lambda a: milliseconds(a.p50),
        "p99 latency": lambda a: milliseconds(a.p99),
        "refused (413, 429, 503, 504...)": lambda a: str(sum(a.rejections.values())),
    }
    for name, cell in rows.items():
        table.add_row(name, *(cell(arm) for arm in found.values()))
    for reason in sorted({reason for arm in found.values() for reason in arm.rejections}):
        table.add_row(f"rejected: {reason}", *(str(arm.rejections.get(reason, 0)) for arm in found.values()))
    console.print(table)


def run(args: argparse.Namespace) -> int:
    front = args.front if "://" in args.front else f"http://{args.front}"  # `127.0.0.1:9200` as typed
    try:
        found = arm_figures(front)
    except httpx.HTTPError as exc:
        print(f"drum-compat: error: cannot read the arms' metrics through {front}: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({arm: {**asdict(figure), "error_ratio": figure.error_ratio} for arm, figure in found.items()}, indent=2))
    else:
        show(found, Console())
    return 0
