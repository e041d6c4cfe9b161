"""What a recorded request is (DRUM_RECORD_REQUESTS), as a plain JSON-ready dict: its head with secrets redacted,
its body within a cap (base64), and its answer's status and duration; writing it is the caller's business."""
from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import parse_qsl, urlencode

from drum_compat.shared.http import NeutralRequest
from drum_compat.shared.routes import PROBE_ROUTES, RouteMatch

ALWAYS_REDACTED = frozenset({"authorization", "proxy-authorization", "cookie"})
# what `drum-compat replay` sends with every request, so that a recording server does not record its replay again
REPLAYED_HEADER = "X-Drum-Compat-Replay"
# probes and scrapes: a kubelet's or Prometheus's every few seconds would drown the clients' requests
NOT_RECORDED = frozenset({route.endpoint for route in PROBE_ROUTES} | {"metrics"})
REDACTED = "<redacted>"
RECORD_VERSION = 1


@dataclass(frozen=True)
class RecordPolicy:
    sample_percent: int = 100  # of the requests answered, how many are recorded
    redact: frozenset = field(default_factory=frozenset)  # lower-case header names recorded as REDACTED, besides the above
    max_body: int = 1024 * 1024  # bytes; a larger body is recorded without its bytes (body_omitted)
    redact_query: tuple = ()  # lower-case words: a query parameter whose name contains one is recorded as REDACTED

    def redacted(self, name: str) -> bool:
        return name.lower() in ALWAYS_REDACTED or name.lower() in self.redact

    def query(self, query_string: bytes) -> str:
        """The query as recorded: unchanged, unless a parameter named like a secret is in it."""
        query = query_string.decode("latin-1")
        pairs = parse_qsl(query, keep_blank_values=True)
        if not any(word in name.lower() for name, _ in pairs for word in self.redact_query):
            return query
        return urlencode([(name, REDACTED if any(word in name.lower() for word in self.redact_query) else value)
                          for name, value in pairs], safe="<>")


class Recorder(Protocol):
    """Where recorded requests go (runtime.record.FileRecorder): it samples, and writes one entry per line."""

    policy: RecordPolicy

    def keep(self) -> bool: ...
    def write(self, entry: dict) -> None: ...


def worth_recording(request: NeutralRequest, route: RouteMatch | None) -> bool:
    """A client's request: not a probe, a scrape, or one `drum-compat replay` sent."""
    return (route is None or route.endpoint not in NOT_RECORDED) and REPLAYED_HEADER not in request.headers


def record_entry(policy: RecordPolicy, request: NeutralRequest, body: bytes | None, body_size: int, status: int,
                 seconds: float, request_id: str, server_type: str, now: float | None = None) -> dict:
    """`body`: the bytes received, or None when they are not kept (over the cap, or the body never completed)."""
    entry = {
        "v": RECORD_VERSION,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(now)),
        "method": request.method,
        "path": request.root_path + request.path,
        "query": policy.query(request.query_string),
        "headers": [[name, REDACTED if policy.redacted(name) else value] for name, value in request.headers.items()],
        "status": status,
        "seconds": round(seconds, 6),
        "request_id": request_id,
        "server_type": server_type,
    }
    if body is None:
        entry["body_omitted"] = body_size
    else:
        entry["body"] = base64.b64encode(body).decode("ascii")
    return entry
